"""The typed errors of claimflow.

Every error a person can cause carries a message that says what was wrong, in one line. The CLI prints
``error: <message>`` and exits with ``exit_code``; the API turns them into problem+json answers.
"""

from __future__ import annotations


class ClaimflowError(Exception):
    """Base of every error claimflow raises on purpose."""

    exit_code = 1
    keeps_writes = False
    """The refusal is itself a fact to keep: the transaction that raised it commits what it wrote before failing
    (``claimflow.db.session_scope``). Only for errors raised before the work writes anything else."""


class InvalidInput(ClaimflowError):
    """Input that is malformed or out of range (a bad date, an unknown kind, a broken policy file)."""

    exit_code = 2


class NotFound(ClaimflowError):
    """Something named by the caller does not exist (a case number, a staff member)."""

    exit_code = 3


class IllegalTransition(ClaimflowError):
    """A lifecycle move that the case's current state does not allow."""

    exit_code = 4

    def __init__(self, *, kind: str, state: str, action: str, allowed: tuple[str, ...]) -> None:
        self.kind = kind
        self.state = state
        self.action = action
        self.allowed = allowed
        allowed_text = ", ".join(allowed) if allowed else "none (final state)"
        super().__init__(f"{kind} in state '{state}' cannot '{action}'; allowed from '{state}': {allowed_text}")


class MissingTransitionData(InvalidInput):
    """A transition that needs data (reasons for a rejection, say) was applied without it."""


class DatabaseUnavailable(ClaimflowError):
    """The configured database cannot be reached."""

    exit_code = 5


def describe_validation_error(exc: Exception, *, source: str = "") -> str:
    """One line naming the first offending field of a pydantic ``ValidationError`` and why it was refused.

    ``staff[2].role: input should be 'handler', 'supervisor' or 'manager' (got 'boss')``
    """
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return f"{source}: {exc}" if source else str(exc)
    items = errors()
    if not items:
        return str(exc)
    first = items[0]
    path = ""
    for part in first.get("loc", ()):
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    message = str(first.get("msg", "invalid")).replace("Value error, ", "")
    message = message[:1].lower() + message[1:]
    got = first.get("input")
    shown = "" if first.get("type") == "missing" or isinstance(got, dict | list) else f" (got {got!r})"
    more = f" (+{len(items) - 1} more)" if len(items) > 1 else ""
    where = ": ".join(p for p in (source, path) if p)
    return f"{where}: {message}{shown}{more}" if where else f"{message}{shown}{more}"


class DecisionRefused(ClaimflowError):
    """A decision the desk refused (a wrong or used approval code, a role that may not decide, the four-eyes
    rule, an answer the rules do not allow): recorded on the case, the run asks again."""

    exit_code = 6
