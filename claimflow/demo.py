"""``claimflow demo``: a sample desk and three sample cases driven through the real desk.

The demo loads the sample staff, enrols them for approval codes, files a claim, a complaint about it and an
inquiry through intake (routing, deadlines, acknowledgements), starts their flow runs on the desk's Prefect
server and then plays the handlers: it answers each run's form with a real approval code, the way a person would
in the UI or with ``claimflow decide``. The claim is reviewed, asked for documents once, approved, paid and
closed; the inquiry is answered; the complaint is left waiting for the independent complaints team, so there is
something to decide in the UI.

The sample staff's secrets are printed and kept in ``<data dir>/demo-secrets.json`` (owner-only), so that a
newcomer without an authenticator app can follow the README's walk: ``claimflow staff code USER`` prints the code
their app would show (``demo_code``). That file holds only the secrets the demo made; a person enrolled with
``claimflow staff enroll`` is never in it, and a sample person enrolled again since the demo gets no code from it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine
from sqlmodel import Session, select

from claimflow.db import session_scope
from claimflow.secrets import decrypt, encrypt
from claimflow.settings import Settings
from models.enums import CaseKind, Channel, ContactChannel
from models.errors import DecisionRefused, InvalidInput
from models.otp import code_at, new_secret
from models.staff import StaffDirectory
from models.tables import Case, CaseCreate, CustomerCreate, Staff
from tasks.answers import event_count, outcome
from tasks.staff import enroll, import_directory
from tasks.workflow import Desk, intake


@dataclass(frozen=True)
class DemoCase:
    number: str
    kind: str
    status: str
    story: str


def sample_directory() -> StaffDirectory:
    text = (resources.files("claimflow") / "examples" / "staff.yaml").read_text(encoding="utf-8")
    return StaffDirectory.model_validate(yaml.safe_load(text))


def load_sample_desk(engine: Engine, settings: Settings) -> dict[str, str]:
    """Import the sample staff and (re-)enrol them; returns their secrets, also kept in the demo's secrets file."""
    directory = sample_directory()
    secrets: dict[str, str] = {}
    with session_scope(engine) as session:
        import_directory(session, directory=directory)
        for entry in directory.staff:
            secrets[entry.username] = secret = new_secret()
            enroll(session, username=entry.username, encrypted_secret=encrypt(settings, secret), force=True)
    path = secrets_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(secrets, indent=1), encoding="utf-8")
    return secrets


def secrets_file(settings: Settings) -> Path:
    return settings.data_dir / "demo-secrets.json"


def demo_code(engine: Engine, settings: Settings, username: str, *, sleep: Callable[[float], None] = time.sleep,
              clock: Callable[[], float] = time.time) -> str:  # fmt: skip
    """The approval code a sample person's app shows now, from the secret the demo gave them: one not used yet
    (a code is accepted once; when this window's and the next one's are both used, it waits for the next).

    Raises:
        InvalidInput: not a person the demo enrolled on this desk, or enrolled again since.
    """
    name = username.strip()
    try:
        known = json.loads(secrets_file(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    secret = known.get(name) if isinstance(known, dict) else None
    app = "an approval code comes from the person's authenticator app"
    if not isinstance(secret, str):
        raise InvalidInput(f"{name} was not enrolled by 'claimflow demo' on this desk: {app}")
    with Session(engine) as session:
        member = session.exec(select(Staff).where(Staff.username == name)).first()
    if member is None or member.totp_secret is None or decrypt(settings, member.totp_secret) != secret:
        raise InvalidInput(f"{name} was enrolled again since 'claimflow demo': {app}")
    return code_at(secret, datetime.fromtimestamp(fresh_counter(member.totp_last_counter, sleep, clock) * 30, UTC))


def fresh_counter(last_used: int | None, sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.time) -> int:  # fmt: skip
    """The first time step after ``last_used`` whose code the desk accepts now (this one or the next), waiting for
    the clock when both are used."""
    while True:
        current = int(clock()) // 30
        counter = max((last_used if last_used is not None else -1) + 1, current)
        if counter <= current + 1:
            return counter
        sleep(1)


SAMPLES: tuple[tuple[CaseKind, Channel, CustomerCreate, dict[str, Any]], ...] = (
    (
        CaseKind.claim,
        Channel.phone,
        CustomerCreate(name="张三丰", phone="13812345678", email="zhang.sanfeng@example.com",
                       birth_date=date(1950, 3, 2), elderly=True, preferred_channel=ContactChannel.phone),
        {"product_line": "motor", "policy_number": "P-778899", "amount_claimed": Decimal("12800.50"),
         "description": "Rear-ended at a junction; bumper and tail light"},
    ),
    (
        CaseKind.complaint,
        Channel.email,
        CustomerCreate(name="Wang Fang", email="wang.fang@example.com", language="en"),
        {"product_line": "motor", "description": "The assessor was late twice."},
    ),
    (
        CaseKind.inquiry,
        Channel.webhook,
        CustomerCreate(name="刘洋", email="liu.yang@example.com"),
        {"product_line": "health", "description": "Is physiotherapy covered?"},
    ),
)  # fmt: skip


def file_samples(engine: Engine, desk: Desk, *, now: datetime) -> list[Case]:
    """File the sample claim, a complaint about it, and an inquiry through intake."""
    filed: list[Case] = []
    for kind, channel, customer, fields in SAMPLES:
        extra: dict[str, Any] = {"related_case_number": filed[0].number} if kind == CaseKind.complaint and filed else {}
        with session_scope(engine) as session:
            data = CaseCreate(kind=kind, channel=channel, customer=customer, **fields, **extra)
            filed.append(intake(session, desk, data=data, actor="demo", now=now))
    return filed


class Player:
    """Plays the desk's people: answers a case's waiting run with a fresh approval code."""

    def __init__(self, engine: Engine, secrets: dict[str, str], give: Callable[[str, dict[str, Any]], None],
                 waiting: Callable[[str], tuple[str, str] | None], say: Callable[[str], None]) -> None:  # fmt: skip
        self.engine, self.secrets, self.give, self.waiting, self.say = engine, secrets, give, waiting, say
        self.used: dict[str, int] = {}

    def code(self, who: str) -> str:
        self.used[who] = counter = fresh_counter(self.used.get(who))
        return code_at(self.secrets[who], datetime.fromtimestamp(counter * 30, UTC))

    def handler(self, number: str) -> str:
        with Session(self.engine) as session:
            case = session.exec(select(Case).where(Case.number == number)).one()
            member = session.get(Staff, case.handler_id) if case.handler_id else None
        return member.username if member else "zhao.min"

    def decide(self, number: str, who: str, what: str, timeout: float = 120, **answer: Any) -> None:
        deadline = time.monotonic() + timeout
        while (waiting := self.waiting(number)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{number}: its run did not ask for a decision in {timeout:.0f} s")
            time.sleep(0.5)
        run_id, key = waiting
        with Session(self.engine) as session:
            case_id = session.exec(select(Case.id).where(Case.number == number)).one() or 0
            before = event_count(session, case_id)
        self.give(run_id, {"staff": who, "approval_code": self.code(who), **answer})
        while True:
            with Session(self.engine) as session:
                done = outcome(session, case_id, key=key, before=before)
            if done is not None:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{number}: the decision was not taken up in {timeout:.0f} s")
            time.sleep(0.5)
        if done.refused is not None:  # the sample desk's own answer: a refusal is a fault in the demo, said plainly
            raise DecisionRefused(f"{number}: {who}'s answer ({what}) was refused: {done.refused}")
        self.say(f"{number}: {who} — {what}")


def play(player: Player, cases: list[Case]) -> None:
    """The sample stories: the claim through to payment, the inquiry answered."""
    claim, _complaint, inquiry = cases
    handler = player.handler(claim.number)
    player.decide(claim.number, handler, "asks for the missing documents, once", decision="request_documents")
    player.decide(claim.number, "zhao.min", "records the documents that arrived",
                  documents=["claim form", "repair invoice", "bank account details"])  # fmt: skip
    player.decide(claim.number, handler, "approves 12,000.00", decision="approve", amount="12000.00")
    player.decide(claim.number, handler, "records the payment", amount="12000.00", reference="PAY-DEMO-1",
                  account_hint="6789")  # fmt: skip
    player.decide(inquiry.number, player.handler(inquiry.number), "answers the inquiry",
                  answer="Physiotherapy is covered up to 20 sessions a year.")  # fmt: skip
