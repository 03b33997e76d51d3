"""A held letter fixed from the UI (the ``release-message`` deployment): the ``fix_wording`` task a case's handler
gets when the wording check holds a letter back, done by giving the value it lacked or by checking it again after
the template or the rules were fixed. ``claimflow outbox release`` is the same from the command line.

Each function takes the session first and leaves the commit to the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlmodel import Session

from tasks.cases import get_case
from tasks.outbox import Released, default_config, release_held
from tasks.workflow import Desk, holder_or_supervisor


def release_case_letters(
    session: Session,
    desk: Desk,
    *,
    number: str,
    by: str,
    code: str,
    now: datetime,
    outbox_id: int | None = None,
    edits: Mapping[str, str] | None = None,
) -> Released:
    """Check the held letters of case ``number`` again (or the one ``outbox_id``, with ``edits``: the values it
    lacked) and send those that pass, as the case's handler or a supervisor or manager with their current code.

    Raises:
        CodeRefused: the code. NotAllowed: not the case's handler, nor a supervisor or manager. NotFound: no such
        case or held message of it. InvalidInput: edits naming a value the message does not have.
    """
    case = get_case(session, number)
    member = holder_or_supervisor(session, desk, case=case, by=by, code=code, now=now)
    return release_held(session, now=now, config=default_config(), case_id=case.id, outbox_id=outbox_id,
                        edits=edits or None, by=member.username)  # fmt: skip
