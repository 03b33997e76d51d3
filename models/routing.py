"""Who handles a case, and how the desk treats the customer: pure routing rules.

- A case goes to an active handler with room under their capacity; among them the best match wins
  (product-line skill and the customer's language first), and among equals the least loaded (open steps
  relative to capacity), then the fewest open steps, then the username, so the choice is repeatable.
- A complaint never goes to the handler or the department it is about: the service code requires an
  independent complaint function. Staff with the ``complaints`` skill are preferred for complaints.
- Elderly or vulnerable customers get the simplified document list, phone-first contact and the offer of a
  home visit.
- Amounts at or above the second-approval threshold need a second approver, who is never the handler.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from models.enums import CaseKind, ContactChannel, StaffRole
from models.errors import ClaimflowError

COMPLAINTS_SKILL = "complaints"


class NoEligibleHandler(ClaimflowError):
    """Nobody may take the case: every handler is excluded, inactive or at capacity.

    ``code`` names the reason for a message in the reader's language (``UNASSIGNED_REASONS``); the text is the
    reason in English, for the audit trail and the logs."""

    def __init__(self, reason: str, *, code: str = "") -> None:
        super().__init__(reason)
        self.code = code


UNASSIGNED_REASONS = ("no_staff", "no_capacity", "no_capacity_outside_excluded")
"""Why a new case could not be given to a handler, as its supervisors' message says it (``staff_unassigned``)."""


@dataclass(frozen=True)
class Candidate:
    """A staff member as routing sees them."""

    staff_id: int
    username: str
    role: StaffRole | str
    department: str | None
    skills: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()
    active: bool = True
    capacity: int = 20
    open_load: int = 0


@dataclass(frozen=True)
class RoutingRequest:
    """What routing needs to know about a case."""

    kind: CaseKind
    product_line: str | None
    language: str
    excluded_staff: frozenset[int] = frozenset()
    excluded_departments: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Assignment:
    staff_id: int
    username: str
    department: str | None
    reason: str


PRODUCT_LINES = ("motor", "health", "property", "travel", "life")
"""The product lines a claim can be sorted into (``models.mail.infer_product_line`` reads the same from a mail)."""


def triage_reason(kind: CaseKind | str, product_line: str | None) -> str | None:
    """Why a case waits for a person to sort it before it is routed, or None.

    A claim whose product line is not known goes to triage (the supervisors sort it with ``claimflow case triage``),
    not to whichever handler has room: a health claim at a motor handler is reassigned later, after its clock ran.
    """
    if CaseKind(kind) == CaseKind.claim and not product_line:
        return "triage: the claim's product line is not known; a supervisor sorts it (claimflow case triage)"
    return None


def complaint_exclusions(
    *, about_handler: int | None, about_department: str | None
) -> tuple[frozenset[int], frozenset[str]]:
    """The staff and departments a complaint about a case may not go to."""
    staff = frozenset({about_handler} if about_handler is not None else set())
    departments = frozenset({about_department} if about_department else set())
    return staff, departments


def choose_handler(request: RoutingRequest, candidates: Iterable[Candidate]) -> Assignment:
    """The handler for a case.

    Args:
        request: the case's kind, product line, the customer's language and who is excluded.
        candidates: every staff member, with their current open load.

    Returns:
        The chosen handler and the reason, in words (what matched, their load).

    Raises:
        NoEligibleHandler: no active handler outside the exclusions has room.
    """
    eligible = [
        c
        for c in candidates
        if c.active
        and c.role == StaffRole.handler
        and c.open_load < c.capacity
        and c.staff_id not in request.excluded_staff
        and (c.department is None or c.department not in request.excluded_departments)
    ]
    if not eligible:
        excluded, code = "", "no_capacity"
        if request.excluded_staff or request.excluded_departments:
            excluded, code = " outside the excluded handler and department", "no_capacity_outside_excluded"
        raise NoEligibleHandler(f"no active handler with free capacity{excluded} for this {request.kind}", code=code)
    wanted_skill = COMPLAINTS_SKILL if request.kind == CaseKind.complaint else request.product_line

    def rank(c: Candidate) -> tuple[int, int, Decimal, int, str]:
        skill = 0 if wanted_skill and wanted_skill in c.skills else 1
        language = 0 if _speaks(c.languages, request.language) else 1
        load = Decimal(c.open_load) / Decimal(max(c.capacity, 1))
        return (skill, language, load, c.open_load, c.username)

    best = min(eligible, key=rank)
    skill_ok, language_ok = rank(best)[0] == 0, rank(best)[1] == 0
    parts = []
    if wanted_skill:
        parts.append(f"skill {wanted_skill}" if skill_ok else f"no one with skill {wanted_skill} had room")
    parts.append(f"speaks {request.language}" if language_ok else f"no one speaking {request.language} had room")
    parts.append(f"load {best.open_load}/{best.capacity}")
    return Assignment(best.staff_id, best.username, best.department, "; ".join(parts))


FOLLOW_UP_ROLES = (StaffRole.supervisor, StaffRole.manager)


def choose_follow_up(
    candidates: Iterable[Candidate], *, handler_id: int | None, handler_department: str | None, complaint: bool
) -> Assignment:
    """The supervisor who calls back a dissatisfied customer.

    A supervisor (a manager only when no supervisor is active) who is not the case's handler; for a complaint,
    also not from the handler's department (the review must be independent), preferring one with the
    ``complaints`` skill. Among equals the least loaded, then the username.

    Args:
        candidates: every staff member, with their current open load.
        handler_id: the case's handler, never chosen.
        handler_department: the handler's department, excluded for a complaint.
        complaint: whether the case is a complaint (its follow-up is a complaint review).

    Returns:
        The chosen supervisor and the reason, in words.

    Raises:
        NoEligibleHandler: nobody may take it (the step then stays with the supervisors' channel).
    """
    pool = [
        c
        for c in candidates
        if c.active
        and c.role in FOLLOW_UP_ROLES
        and c.staff_id != handler_id
        and not (complaint and handler_department is not None and c.department == handler_department)
    ]
    if not pool:
        where = " outside the handler's department" if complaint else ""
        raise NoEligibleHandler(f"no active supervisor or manager{where} other than the handler")

    def rank(c: Candidate) -> tuple[int, int, Decimal, str]:
        role = FOLLOW_UP_ROLES.index(StaffRole(c.role))
        skill = 0 if complaint and COMPLAINTS_SKILL in c.skills else 1
        return (role, skill, Decimal(c.open_load) / Decimal(max(c.capacity, 1)), c.username)

    best = min(pool, key=rank)
    reason = f"{StaffRole(best.role).value}, not the handler"
    if complaint:
        reason += "'s department" if handler_department else ""
        reason += "; complaints skill" if COMPLAINTS_SKILL in best.skills else ""
    return Assignment(best.staff_id, best.username, best.department, f"{reason}; load {best.open_load}")


def _speaks(languages: frozenset[str], language: str) -> bool:
    primary = language.split("-")[0]
    return language in languages or any(lang.split("-")[0] == primary for lang in languages)


@dataclass(frozen=True)
class CarePlan:
    """How the desk treats this customer."""

    simplified_documents: bool
    contact_first: ContactChannel
    offer_home_visit: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)


def care_plan(*, elderly: bool, vulnerable: bool, preferred: ContactChannel | str) -> CarePlan:
    """Elderly or vulnerable customers: simplified documents, phone first, a home visit offered."""
    if elderly or vulnerable:
        reasons = tuple(r for r, on in (("elderly", elderly), ("vulnerable", vulnerable)) if on)
        return CarePlan(True, ContactChannel.phone, True, reasons)
    return CarePlan(False, ContactChannel(preferred), False)


DOCUMENTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # product line: (full list, simplified list for elderly or vulnerable customers)
    "motor": (
        ("claim form", "driving licence", "vehicle licence", "police or accident report", "repair invoice",
         "photos of the damage", "bank account details"),
        ("claim form", "repair invoice", "bank account details"),
    ),
    "health": (
        ("claim form", "identity document", "medical records", "itemised hospital invoice",
         "discharge summary", "bank account details"),
        ("claim form", "itemised hospital invoice", "bank account details"),
    ),
    "property": (
        ("claim form", "proof of ownership", "photos of the damage", "repair quote or invoice",
         "police report for theft", "bank account details"),
        ("claim form", "photos of the damage", "bank account details"),
    ),
}  # fmt: skip
DEFAULT_DOCUMENTS = (("claim form", "identity document", "supporting evidence", "bank account details"),
                     ("claim form", "bank account details"))  # fmt: skip


def documents_for(product_line: str | None, *, simplified: bool) -> tuple[str, ...]:
    """The complete list of documents a claim needs (asked for once, all together)."""
    full, short = DOCUMENTS.get((product_line or "").lower(), DEFAULT_DOCUMENTS)
    return short if simplified else full


def needs_second_approval(amount: Decimal | None, threshold: Decimal) -> bool:
    """An amount at or above the threshold needs a second approver (four eyes)."""
    return amount is not None and amount >= threshold


def missing_documents(required: Sequence[str], received: Iterable[str]) -> tuple[str, ...]:
    """What is still owed, in the order it was asked for."""
    have = {r.strip().lower() for r in received}
    return tuple(d for d in required if d.strip().lower() not in have)


def reassignment_refusal(
    *,
    kind: CaseKind | str,
    product_line: str | None,
    target: Candidate,
    excluded_staff: frozenset[int] = frozenset(),
    excluded_departments: frozenset[str] = frozenset(),
) -> str | None:
    """Why a case may not be handed to ``target`` by a supervisor's reassignment (None: it may). The rules of
    routing that protect the customer still hold: an active handler; a complaint never to the handler or the
    department it is about; a claim to someone with the product line's skill where the line is known.

    Args:
        kind: the case's kind.
        product_line: the case's product line, if known.
        target: the new handler.
        excluded_staff: for a complaint, the handler of the case it is about.
        excluded_departments: for a complaint, that handler's department.

    Returns:
        A reason in words, or None.
    """
    if not target.active:
        return f"{target.username} is not active"
    if StaffRole(target.role) != StaffRole.handler:
        return f"{target.username} is a {StaffRole(target.role).value}, not a handler"
    about_team = target.department is not None and target.department in excluded_departments
    if kind == CaseKind.complaint and (target.staff_id in excluded_staff or about_team):
        return f"{target.username} belongs to the team the complaint is about"
    if kind == CaseKind.claim and product_line and product_line not in target.skills:
        return f"{target.username} has no {product_line} skill"
    return None
