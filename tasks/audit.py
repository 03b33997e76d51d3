"""Verifying the audit log's hash chains in the database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlmodel import Session, col, select

from models.audit import ChainBreak, ChainLink, verify_chain
from models.tables import Case, Event


@dataclass(frozen=True)
class AuditReport:
    cases_checked: int
    events_checked: int
    breaks: list[ChainBreak]

    @property
    def ok(self) -> bool:
        return not self.breaks


def _links(session: Session, case_id: int, counter: list[int]) -> Iterator[ChainLink]:
    statement = select(Event).where(Event.case_id == case_id).order_by(col(Event.sequence))
    for event in session.exec(statement):
        counter[0] += 1
        yield ChainLink(
            sequence=event.sequence,
            at=event.at,
            actor=event.actor,
            type=event.type,
            data=event.data,
            prev_hash=event.prev_hash,
            hash=event.hash,
        )


def verify_cases(session: Session, cases: list[Case] | None = None) -> AuditReport:
    """Verify the chain of each given case (all cases when None); reports the first break of each."""
    if cases is None:
        cases = list(session.exec(select(Case).order_by(col(Case.id))))
    counter = [0]
    breaks = []
    for case in cases:
        assert case.id is not None
        found = verify_chain(case.number, _links(session, case.id, counter))
        if found is not None:
            breaks.append(found)
    return AuditReport(cases_checked=len(cases), events_checked=counter[0], breaks=breaks)
