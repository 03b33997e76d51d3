"""E-mail intake: read the desk's mailbox over IMAP, file new cases, add replies to their cases.

A mail's case (or its addition to a case), its attachments, the ticked documents and its ``mail_message`` row
commit together, each mail in a transaction of its own, except the mails that open new cases read one after the
other, which are filed together (``take_new_mails``); only then is the mail flagged ``\\Seen`` on the server.
A process that dies in between leaves the mail unseen: the next poll reads it again, finds its
Message-ID recorded and only flags it. Mails are never deleted or moved: the mailbox keeps every original.

Database functions take the session first and leave the commit to the caller; the functions that take an engine
(``take_mail``, ``take_parsed``, ``take_new_mails``, ``parse``, ``reject``, ``poll``) are the ones that commit.

Dispositions recorded in ``mail_message``:

| disposition | meaning |
|---|---|
| ``filed`` | a new case was filed from the mail |
| ``appended`` | the mail answers a case and was added to it |
| ``skipped`` | an automatic mail (auto-reply, bounce, bulk mail from nobody the desk knows): logged, nothing filed |
| ``rejected`` | unusable (unparseable, too big, no sender, refused by intake), with the reason |
| ``duplicate`` | another copy (another UID) of a mail already taken: delivered through a second alias, sent twice |

A mail whose key is already recorded is a duplicate: flagged seen, nothing else. The key is the Message-ID, the
sender and a digest of the content (``models.mail.mail_key``): a Message-ID another sender already used is a new
mail; the same mail delivered through two of the desk's aliases is one.

Mail through a mailing list or sent as bulk (``Precedence: list``, ``List-Id``) is skipped unless it comes from a
customer on file or names one of the desk's cases: a customer writing through a list gateway is heard.
"""

from __future__ import annotations

import hashlib
import imaplib
import logging
import os
import re
import ssl
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from itertools import zip_longest
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError
from sqlalchemy import Engine, func
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from claimflow.db import describe_failure, session_scope
from claimflow.settings import Settings
from models.enums import Channel, ContactChannel
from models.errors import ClaimflowError, DatabaseUnavailable, InvalidInput, NotFound, describe_validation_error
from models.lifecycle import lifecycle_for
from models.mail import (
    MailAttachment,
    MailLimits,
    MailRejected,
    ParsedMail,
    classify,
    document_type_for,
    find_case_number,
    header_message_id,
    infer_product_line,
    legacy_key,
    mail_key,
    parse_message,
    reply_text,
    size_words,
    trim_text,
    unread_key,
    without_parts,
)
from models.tables import Attachment, Case, CaseCreate, Customer, CustomerCreate, DocumentRequirement, MailMessage
from tasks.cases import append_event, get_case
from tasks.feedback import record as record_feedback
from tasks.filing import Also, intake_many
from tasks.outbox import enqueue
from tasks.workflow import Desk, intake

log = logging.getLogger(__name__)
T = TypeVar("T")
GROUP_BYTES = 64 * 1024 * 1024
"""A group of new mails is filed once it holds this many bytes of mail, whatever its count: each waits in memory
with its decoded attachments (32 mails of 25 MB would be over a gigabyte)."""

ACTOR = "mail-intake"
SOURCE = "email"
FILED, APPENDED, SKIPPED, REJECTED, DUPLICATE = "filed", "appended", "skipped", "rejected", "duplicate"
FAILED = "failed"
"""Counted, never recorded: a mail whose rejection the database refused too (it stays unseen)."""


class MailboxUnavailable(ClaimflowError):
    """The IMAP server cannot be reached, refused the login, or has no such folder."""

    exit_code = 5


@dataclass(frozen=True)
class MailOutcome:
    """What became of one mail."""

    disposition: str
    message_id: str
    case_id: int | None = None
    case_number: str | None = None
    reason: str | None = None
    documents: tuple[str, ...] = ()
    """Requirements ticked off by this mail's attachments."""
    key: str = ""
    """The key it is recorded under (``models.mail.mail_key``); a duplicate's is the mail recorded first."""


def limits_from(settings: Settings) -> MailLimits:
    return MailLimits(
        max_message_bytes=settings.mail_max_message_bytes,
        max_attachment_bytes=settings.mail_max_attachment_bytes,
        max_attachments=settings.mail_max_attachments,
        max_description_chars=settings.mail_max_description_chars,
    )


# --- the database ------------------------------------------------------------------------------------------


def already_read(session: Session, *, key: str, message_id: str | None = None) -> MailMessage | None:
    """The mail recorded under ``key`` or, for a mail read before keys existed, under its Message-ID's key."""
    keys = [key] if message_id is None else [key, legacy_key(message_id)]
    return session.exec(select(MailMessage).where(col(MailMessage.dedup_key).in_(keys))).first()


def record_mail(
    session: Session,
    *,
    key: str,
    message_id: str,
    mailbox: str,
    uid: int | None,
    disposition: str,
    now: datetime,
    case_id: int | None = None,
    reason: str | None = None,
    flush: bool = True,
) -> MailMessage:
    """Record a mail and what became of it (its unique ``key`` is the de-duplication); ``flush=False`` leaves the
    insert to the caller's next flush (many recorded at once)."""
    row = MailMessage(dedup_key=key, message_id=message_id, mailbox=mailbox[:200], uid=uid, case_id=case_id,
                      disposition=disposition, reason=reason, received_at=now)  # fmt: skip
    session.add(row)
    if flush:
        session.flush()
    return row


def case_for_reply(session: Session, *, mail: ParsedMail) -> Case | None:
    """The case a mail answers, locked for update: the case number in its subject first, then its
    In-Reply-To/References against earlier mails recorded for a case (the desk's own outgoing Message-IDs are
    not known in advance, so the subject's number is the main key)."""
    number = find_case_number(mail.subject)
    if number is not None:
        try:
            return get_case(session, number, for_update=True)
        except NotFound:
            pass  # a number that is no case of ours: try the threading headers, else file a new case
    if mail.replied_to:
        earlier = session.exec(
            select(MailMessage)
            .where(col(MailMessage.message_id).in_(mail.replied_to), col(MailMessage.case_id).is_not(None))
            .order_by(col(MailMessage.id).desc())
        ).first()
        if earlier is not None and earlier.case_id is not None:
            return session.get(Case, earlier.case_id, with_for_update=True)
    return None


def _store_file(directory: Path, name: str, data: bytes) -> Path:
    """Write ``data`` under a name prefixed by its digest (the same bytes land on the same file, so a rolled
    back and repeated intake rewrites nothing); atomic, never a half-written file. A file reused is touched:
    its age is that of the filing now using it, which the orphan sweep's grace period protects."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)  # the customers' documents: owner only
    path = directory / f"{hashlib.sha256(data).hexdigest()[:16]}-{name}"
    if path.exists():
        path.touch()
    else:
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return path


def store_attachments(
    session: Session,
    *,
    case: Case,
    files: Sequence[MailAttachment],
    data_dir: Path,
    now: datetime,
    requested: list[str] | None = None,
    subject: str = "",
    source: str = SOURCE,
    flush: bool = True,
) -> list[Attachment]:
    """Store the files under ``<data dir>/attachments/<case number>/`` and record them on the case; ``flush=False``
    leaves the insert to the caller's next flush (many cases' files at once).

    ``storage_path`` is relative to the data directory. Each file's ``document_type`` is guessed from its
    name (else the mail's subject) among the documents ``requested`` of the case (``document_type_for``).
    """
    assert case.id is not None
    directory = data_dir / "attachments" / case.number
    rows = []
    for file in files:
        path = _store_file(directory, file.filename, file.data)
        guessed = document_type_for(file.filename, requested, subject=subject) if requested else None
        row = Attachment(
            case_id=case.id,
            filename=_stored_name(file),
            content_type=file.content_type[:100],
            size=len(file.data),
            sha256=file.sha256,
            storage_path=str(path.relative_to(data_dir))[:500],
            source=source,
            document_type=guessed[:64] if guessed else None,
            received_at=now,
        )
        session.add(row)
        rows.append(row)
    if flush:
        session.flush()
    return rows


def _stored_name(file: MailAttachment) -> str:
    return file.filename[:255]


def _requirements(session: Session, case: Case) -> list[DocumentRequirement]:
    return list(
        session.exec(
            select(DocumentRequirement)
            .where(DocumentRequirement.case_id == case.id)
            .order_by(col(DocumentRequirement.id))
        )
    )


def _original(mail: ParsedMail, raw: bytes) -> MailAttachment:
    """The mail as received, kept beside its attachments (the reply's text lives there, not in the audit log);
    an attachment that was not accepted is replaced by a note with its name, size and digest
    (``models.mail.without_parts``): what the desk refused to take is not kept in a copy either."""
    return MailAttachment("message.eml", "message/rfc822", without_parts(raw, mail.dropped) if mail.dropped else raw)


def _not_accepted(mail: ParsedMail) -> list[dict[str, object]]:
    """The dropped attachments as the customer's messages name them (``not_accepted`` in the templates)."""
    return [{"name": d.filename, "too_big": d.too_big, "limit": d.limit, "limit_size": size_words(d.limit)}
            for d in mail.dropped]  # fmt: skip


def heard_from_list(session: Session, *, mail: ParsedMail) -> bool:
    """A mail through a list or sent as bulk that a person the desk serves wrote: a customer on file, or one
    that names a case of the desk's."""
    known = session.exec(
        select(Customer.id).where(func.lower(Customer.email) == mail.from_address.casefold()).limit(1)
    ).first()
    if known is not None:
        return True
    number = find_case_number(f"{mail.subject}\n{mail.text}")
    return number is not None and session.exec(select(Case.id).where(Case.number == number)).first() is not None


def file_mail(
    session: Session, desk: Desk, *, mail: ParsedMail, raw: bytes, mailbox: str, uid: int | None, now: datetime
) -> MailOutcome:
    """Take one parsed mail: skip it (duplicate, automatic), add it to the case it answers, or file a new case.

    The caller commits. Raises ``ValidationError`` or a ``ClaimflowError`` when intake refuses the case (the
    caller records the mail as rejected in a transaction of its own).
    """
    if (first := already_read(session, key=mail.key, message_id=mail.message_id)) is not None:
        return duplicate(session, first=first, message_id=mail.message_id, mailbox=mailbox, uid=uid, now=now)
    if mail.automatic is not None and not (mail.mailing_list and heard_from_list(session, mail=mail)):
        record_mail(
            session,
            key=mail.key,
            message_id=mail.message_id,
            mailbox=mailbox,
            uid=uid,
            disposition=SKIPPED,
            reason=mail.automatic,
            now=now,
        )
        return MailOutcome(SKIPPED, mail.message_id, reason=mail.automatic, key=mail.key)
    case = case_for_reply(session, mail=mail)
    if case is not None:
        return _append(session, desk, case=case, mail=mail, raw=raw, mailbox=mailbox, uid=uid, now=now)
    return _file_new(session, desk, mail=mail, raw=raw, mailbox=mailbox, uid=uid, now=now)


def _file_new(
    session: Session, desk: Desk, *, mail: ParsedMail, raw: bytes, mailbox: str, uid: int | None, now: datetime
) -> MailOutcome:
    data, rule = _new_case(desk, mail)
    case = intake(session, desk, data=data, actor=ACTOR, now=now, acknowledgement=_acknowledgement(mail))
    assert case.id is not None
    store_attachments(session, case=case, files=_kept(mail, raw), data_dir=desk.settings.data_dir, now=now)
    append_event(session, case=case, actor=ACTOR, type="mail_received", data=_received(mail, rule), now=now)
    record_mail(session, key=mail.key, message_id=mail.message_id, mailbox=mailbox, uid=uid, disposition=FILED,
                case_id=case.id, now=now)  # fmt: skip
    return MailOutcome(FILED, mail.message_id, case_id=case.id, case_number=case.number, key=mail.key)


def _new_case(desk: Desk, mail: ParsedMail) -> tuple[CaseCreate, str]:
    """The case a new mail opens, and the classifier's rule that chose its kind.

    Raises:
        ValidationError: intake refuses what the mail gives (the caller records the mail as rejected).
    """
    classification = classify(mail.subject, mail.text)
    description = trim_text(f"{mail.subject}\n\n{mail.text}", desk.settings.mail_max_description_chars)
    data = CaseCreate(
        kind=classification.kind,
        channel=Channel.email,
        description=description or None,
        product_line=infer_product_line(mail.subject, mail.text),
        customer=CustomerCreate(
            name=mail.from_name[:200],
            email=mail.from_address,
            language=mail.language,
            preferred_channel=ContactChannel.email,
        ),
    )
    return data, classification.rule


def _acknowledgement(mail: ParsedMail) -> dict[str, Any]:
    return {"not_accepted": _not_accepted(mail)}


def _kept(mail: ParsedMail, raw: bytes) -> list[MailAttachment]:
    """What a new case keeps of its mail: the mail as received, then its attachments."""
    return [_original(mail, raw), *mail.attachments]


def _received(mail: ParsedMail, rule: str) -> dict[str, Any]:
    """The ``mail_received`` event of a mail that opened a case."""
    return {
        "message_id": mail.message_id,
        "classified_by": rule,
        "attachments": [_stored_name(a) for a in mail.attachments],
        "skipped_attachments": [d.record() for d in mail.dropped],
    }


# --- mails that open new cases, filed at once -------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    """A mail downloaded and parsed, not taken yet."""

    uid: int | None
    raw: bytes
    mail: ParsedMail
    key: str
    """``mail.key``, computed once."""

    @classmethod
    def of(cls, uid: int | None, raw: bytes, mail: ParsedMail) -> Fetched:
        return cls(uid, raw, mail, mail.key)


def opens_a_case(mail: ParsedMail) -> bool:
    """Whether a mail opens a new case by itself: not automatic, no case number in its subject, answering no
    earlier mail. Only these are filed at once (``take_new_mails``); what becomes of the others depends on the
    cases and mails on file, so they are taken one at a time, after the mails read before them. A mail this check
    fails on (a bug) is not one: taken alone, its fault is recorded on it."""
    try:
        return mail.automatic is None and find_case_number(mail.subject) is None and not mail.replied_to
    except Exception:
        return False


def file_new_mails(
    session: Session, desk: Desk, mails: Sequence[Fetched], *, mailbox: str, now: datetime
) -> list[MailOutcome]:
    """File at once mails that each open a new case (``opens_a_case``, none read before), each as ``file_mail``
    files it: the case through ``tasks.filing.intake_many``, the mail and its attachments kept, its
    ``mail_received`` event, its record. The caller commits.

    Raises:
        ValidationError: intake refuses what a mail gives (nothing is written then: take each on its own).
    """
    built = [_new_case(desk, f.mail) for f in mails]
    also = [Also(_acknowledgement(f.mail), [(ACTOR, "mail_received", _received(f.mail, rule))])
            for f, (_, rule) in zip(mails, built, strict=True)]  # fmt: skip
    cases = intake_many(session, desk, cases=[(data, ACTOR) for data, _ in built], now=now, also=also)
    data_dir = desk.settings.data_dir
    for fetched, case in zip(mails, cases, strict=True):
        store_attachments(session, case=case, files=_kept(fetched.mail, fetched.raw), data_dir=data_dir, now=now,
                          flush=False)  # fmt: skip
        record_mail(session, key=fetched.key, message_id=fetched.mail.message_id, mailbox=mailbox, uid=fetched.uid,
                    disposition=FILED, case_id=case.id, now=now, flush=False)  # fmt: skip
    session.flush()  # one insert for the kept files, one for the mails
    return [MailOutcome(FILED, f.mail.message_id, case_id=c.id, case_number=c.number, key=f.key)
            for f, c in zip(mails, cases, strict=True)]  # fmt: skip


def take_new_mails(
    engine: Engine, desk: Desk, mails: Sequence[Fetched], *, mailbox: str, now: datetime
) -> list[MailOutcome | None]:
    """File in one committed transaction the mails of ``mails`` that open new cases (``opens_a_case``), in their
    order; what became of each, or None for a mail to take on its own with ``take_parsed`` afterwards: one read
    before (a duplicate), a second copy of one in the batch, one intake refuses.

    Should the transaction fail (a value the database refuses, another poller recording one of the mails first,
    a bug), nothing of it stays and every mail is left to be taken on its own, where a fault stays with its mail.
    Raises only what ``take_parsed`` raises too: the database unreachable or failing (``DatabaseUnavailable``,
    ``OperationalError``), when the poll stops with the group unseen.
    """
    chosen: list[int] = []
    keys: set[str] = set()
    for index, fetched in enumerate(mails):
        if opens_a_case(fetched.mail) and fetched.key not in keys and _acceptable(desk, fetched.mail):
            chosen.append(index)
            keys.add(fetched.key)
    results: list[MailOutcome | None] = [None] * len(mails)
    if not chosen:
        return results
    try:
        with session_scope(engine) as session:
            # read before: recorded under its key, or (read before keys existed) under its Message-ID's
            wanted = {i: (mails[i].key, legacy_key(mails[i].mail.message_id)) for i in chosen}
            asked = [key for pair in wanted.values() for key in pair]
            read = set(session.exec(select(MailMessage.dedup_key).where(col(MailMessage.dedup_key).in_(asked))))
            chosen = [i for i in chosen if read.isdisjoint(wanted[i])]
            filed = file_new_mails(session, desk, [mails[i] for i in chosen], mailbox=mailbox, now=now)
    except (DatabaseUnavailable, OperationalError):
        raise
    except Exception as failed:
        log.warning("%d new mails could not be filed at once (%s): each is taken on its own", len(chosen),
                    describe_failure(failed))  # fmt: skip
        return results
    for index, outcome in zip(chosen, filed, strict=True):
        results[index] = outcome
    return results


def _acceptable(desk: Desk, mail: ParsedMail) -> bool:
    """Whether intake takes the case the mail opens (else ``take_parsed`` records why not)."""
    try:
        _new_case(desk, mail)
    except Exception:  # refused by intake, or a bug: taken alone, where what went wrong is recorded on the mail
        return False
    return True


def _append(
    session: Session,
    desk: Desk,
    *,
    case: Case,
    mail: ParsedMail,
    raw: bytes,
    mailbox: str,
    uid: int | None,
    now: datetime,
) -> MailOutcome:
    assert case.id is not None
    customer = session.get(Customer, case.customer_id)
    from_customer = bool(customer and customer.email and customer.email.casefold() == mail.from_address.casefold())
    requirements = _requirements(session, case)
    data_dir = desk.settings.data_dir
    store_attachments(session, case=case, files=[_original(mail, raw)], data_dir=data_dir, now=now)
    documents = store_attachments(
        session,
        case=case,
        files=list(mail.attachments),
        data_dir=data_dir,
        now=now,
        requested=[r.document_type for r in requirements],
        subject=mail.subject,
    )
    append_event(
        session,
        case=case,
        actor=ACTOR,
        type="mail_received",
        data={
            "message_id": mail.message_id,
            "from_customer": from_customer,
            "attachments": [a.filename for a in documents],
            "skipped_attachments": [d.record() for d in mail.dropped],
        },
        now=now,
    )
    ticked: list[str] = []
    # Only the customer's own mail ticks documents off: anyone can write a case number in a subject.
    if from_customer:
        arrived = {row.document_type for row in documents if row.document_type}
        for requirement in requirements:
            if requirement.received_at is None and requirement.document_type in arrived:
                requirement.received_at = now
                session.add(requirement)
                ticked.append(requirement.document_type)
    if ticked:
        outstanding = [r.document_type for r in requirements if r.received_at is None]
        append_event(
            session,
            case=case,
            actor=ACTOR,
            type="documents_arrived",
            data={"message_id": mail.message_id, "documents": ticked, "still_missing": outstanding},
            now=now,
        )
    # A customer who writes about a case that is finished (or waiting for their feedback) is giving feedback.
    if from_customer and (case.status == "feedback" or lifecycle_for(case.kind).is_closed(case.status)):
        text = trim_text(reply_text(mail.text), desk.settings.mail_max_description_chars) or mail.subject
        record_feedback(session, desk, case=case, channel="email", text=text, source=mail.message_id[:200],
                        actor=ACTOR, now=now)  # fmt: skip
    if from_customer and mail.dropped and customer is not None:  # told which attachments we do not have, and why
        enqueue(session, template="attachments_not_accepted", recipient=f"customer:{customer.id}",
                context={"case_number": case.number, "not_accepted": _not_accepted(mail)},
                idempotency_key=f"not-accepted:{mail.key}", now=now, case=case, actor=ACTOR)  # fmt: skip
    case.updated_at = now
    session.add(case)
    record_mail(session, key=mail.key, message_id=mail.message_id, mailbox=mailbox, uid=uid, disposition=APPENDED,
                case_id=case.id, now=now)  # fmt: skip
    return MailOutcome(APPENDED, mail.message_id, case_id=case.id, case_number=case.number, documents=tuple(ticked),
                       key=mail.key)  # fmt: skip


def duplicate(
    session: Session, *, first: MailMessage, message_id: str, mailbox: str, uid: int | None, now: datetime
) -> MailOutcome:
    """The same mail as ``first``. Another copy of it in the mailbox (another UID: delivered through a second alias,
    sent twice) is recorded as a ``duplicate`` of it, once, for ``claimflow mail list --status duplicate``; the
    same message read again (the poll stopped before flagging it seen) is not a copy and records nothing."""
    if uid is None or (first.mailbox, first.uid) == (mailbox[:200], uid):
        return MailOutcome(DUPLICATE, message_id, case_id=first.case_id, key=first.dedup_key)
    key = mail_key(f"copy {mailbox} {uid}", "", first.dedup_key)
    if already_read(session, key=key) is None:
        record_mail(session, key=key, message_id=message_id, mailbox=mailbox, uid=uid, disposition=DUPLICATE,
                    case_id=first.case_id, reason=f"the same mail as mail {first.id} ({first.disposition})",
                    now=now)  # fmt: skip
    return MailOutcome(DUPLICATE, message_id, case_id=first.case_id, reason=f"the same mail as mail {first.id}",
                       key=first.dedup_key)  # fmt: skip


def reject_mail(
    session: Session, *, key: str, message_id: str, reason: str, mailbox: str, uid: int | None, now: datetime
) -> MailOutcome:
    """Record an unusable mail with the reason (once: a mail read again is a duplicate)."""
    if (first := already_read(session, key=key, message_id=message_id)) is not None:
        return duplicate(session, first=first, message_id=message_id, mailbox=mailbox, uid=uid, now=now)
    record_mail(session, key=key, message_id=message_id, mailbox=mailbox, uid=uid, disposition=REJECTED,
                reason=reason[:2000], now=now)  # fmt: skip
    return MailOutcome(REJECTED, message_id, reason=reason, key=key)


def take_mail(engine: Engine, desk: Desk, *, raw: bytes, mailbox: str, uid: int | None, now: datetime) -> MailOutcome:
    """Parse and take one mail in one committed transaction; a mail intake cannot use is recorded as rejected.

    Raises only when the database itself fails (the mail then stays unseen and is read again next time).
    """
    read = parse(engine, desk, raw=raw, mailbox=mailbox, uid=uid, now=now)
    return read if isinstance(read, MailOutcome) else take_parsed(engine, desk, read, mailbox=mailbox, now=now)


def parse(
    engine: Engine, desk: Desk, *, raw: bytes, mailbox: str, uid: int | None, now: datetime
) -> Fetched | MailOutcome:
    """The mail parsed, or recorded as rejected (in a committed transaction) when it cannot be read."""
    try:
        return Fetched.of(uid, raw, parse_message(raw, limits_from(desk.settings)))
    except MailRejected as rejected:
        return reject(engine, key=rejected.key, message_id=rejected.message_id, reason=rejected.reason,
                      mailbox=mailbox, uid=uid, now=now)  # fmt: skip


def take_parsed(engine: Engine, desk: Desk, fetched: Fetched, *, mailbox: str, now: datetime) -> MailOutcome:
    """``take_mail`` for a mail already parsed."""
    mail, raw, uid = fetched.mail, fetched.raw, fetched.uid
    try:
        with session_scope(engine) as session:
            return file_mail(session, desk, mail=mail, raw=raw, mailbox=mailbox, uid=uid, now=now)
    except IntegrityError:
        # Another poller recorded the same mail first (the unique key decided): a duplicate.
        with session_scope(engine) as session:
            if (first := already_read(session, key=mail.key)) is not None:
                return duplicate(session, first=first, message_id=mail.message_id, mailbox=mailbox, uid=uid, now=now)
        raise
    except ValidationError as exc:
        reason = f"refused by intake: {describe_validation_error(exc)}"
    except DatabaseUnavailable:
        raise
    except ClaimflowError as exc:
        reason = f"refused by intake: {exc}"
    return reject(engine, key=mail.key, message_id=mail.message_id, reason=reason, mailbox=mailbox, uid=uid, now=now)


def reject(
    engine: Engine, *, key: str, message_id: str, reason: str, mailbox: str, uid: int | None, now: datetime
) -> MailOutcome:
    with session_scope(engine) as session:
        return reject_mail(session, key=key, message_id=message_id, reason=reason, mailbox=mailbox, uid=uid, now=now)


def reject_unread(engine: Engine, *, header: bytes, reason: str, mailbox: str, uid: int, now: datetime) -> MailOutcome:
    """Record a mail by its header alone (too big to download, or it failed in intake)."""
    message_id = header_message_id(header)
    return reject(engine, key=unread_key(message_id, header), message_id=message_id, reason=reason,
                  mailbox=mailbox, uid=uid, now=now)  # fmt: skip


# --- the mailbox -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImapConfig:
    host: str
    port: int
    security: str
    user: str
    password: str = field(repr=False)
    mailbox: str = "INBOX"
    ca_file: Path | None = None
    timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ImapConfig:
        missing = [
            f"CLAIMFLOW_{name.upper()}"
            for name in ("mail_imap_host", "mail_imap_user", "mail_imap_password")
            if not getattr(settings, name)
        ]
        if missing:
            raise InvalidInput(f"e-mail intake is not configured: set {', '.join(missing)}")
        assert settings.mail_imap_host and settings.mail_imap_user and settings.mail_imap_password
        security = settings.mail_imap_security
        return cls(
            host=settings.mail_imap_host,
            port=settings.mail_imap_port or (993 if security == "tls" else 143),
            security=security,
            user=settings.mail_imap_user,
            password=settings.mail_imap_password.get_secret_value(),
            mailbox=settings.mail_imap_mailbox,
            ca_file=settings.mail_imap_ca_file,
            timeout=settings.mail_imap_timeout_seconds,
        )

    @property
    def name(self) -> str:
        """How the mailbox is named in ``mail_message.mailbox`` (no login, no password)."""
        return f"{self.host}:{self.port}/{self.mailbox}"


class MailSource(Protocol):
    name: str

    def unseen(self, limit: int) -> list[int]: ...
    def size(self, uid: int) -> int: ...
    def header(self, uid: int) -> bytes: ...
    def fetch(self, uid: int) -> bytes: ...
    def mark_seen(self, uid: int) -> None: ...
    def mark_unseen(self, uid: int) -> None: ...


_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


class ImapMailbox:
    """One IMAP connection to the intake folder; reads with ``BODY.PEEK`` so nothing is flagged seen until
    ``mark_seen``. Every failure is a ``MailboxUnavailable``."""

    def __init__(self, config: ImapConfig) -> None:
        self.config = config
        self.name = config.name
        self._imap: imaplib.IMAP4 | None = None

    def __enter__(self) -> ImapMailbox:
        config = self.config
        try:
            context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
            if config.security == "tls":
                imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    config.host, config.port, ssl_context=context, timeout=config.timeout
                )
            else:
                imap = imaplib.IMAP4(config.host, config.port, timeout=config.timeout)
                if config.security == "starttls":
                    imap.starttls(ssl_context=context)
            self._imap = imap
            imap.login(config.user, config.password)
            folder = f'"{config.mailbox}"' if " " in config.mailbox else config.mailbox
            status, detail = imap.select(folder)
            if status != "OK":
                raise MailboxUnavailable(f"{self.name}: cannot open the folder: {_text(detail)}")
        except (imaplib.IMAP4.error, OSError) as exc:
            self.__exit__(None, None, None)
            raise MailboxUnavailable(f"{self.name} ({config.security}): {type(exc).__name__}: {exc}") from exc
        except MailboxUnavailable:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        imap, self._imap = self._imap, None
        if imap is None:
            return
        try:
            if imap.state == "SELECTED":
                imap.close()
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            pass  # the connection is going away either way

    def _command(self, *args: str) -> list[object]:
        assert self._imap is not None, "use the mailbox in a with block"
        try:
            status, data = self._imap.uid(*args)
        except (imaplib.IMAP4.error, OSError) as exc:
            raise MailboxUnavailable(f"{self.name}: {args[0]} failed: {exc}") from exc
        if status != "OK":
            raise MailboxUnavailable(f"{self.name}: {args[0]} refused: {_text(data)}")
        return list(data)

    def unseen(self, limit: int) -> list[int]:
        """UIDs of unseen mails, oldest first, at most ``limit``."""
        data = self._command("SEARCH", "UNSEEN")
        found = b" ".join(d for d in data if isinstance(d, bytes)).split()
        return sorted(int(u) for u in found)[:limit]

    def size(self, uid: int) -> int:
        match = _SIZE.search(b" ".join(_flatten(self._command("FETCH", str(uid), "(RFC822.SIZE)"))))
        if match is None:
            raise MailboxUnavailable(f"{self.name}: no size for UID {uid}")
        return int(match.group(1))

    def _literal(self, uid: int, item: str) -> bytes:
        for entry in self._command("FETCH", str(uid), f"({item})"):
            if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], bytes):
                return entry[1]
        raise MailboxUnavailable(f"{self.name}: UID {uid} has no {item} (deleted meanwhile?)")

    def header(self, uid: int) -> bytes:
        return self._literal(uid, "BODY.PEEK[HEADER]")

    def fetch(self, uid: int) -> bytes:
        return self._literal(uid, "BODY.PEEK[]")

    def mark_seen(self, uid: int) -> None:
        self._command("STORE", str(uid), "+FLAGS.SILENT", "(\\Seen)")

    def mark_unseen(self, uid: int) -> None:
        self._command("STORE", str(uid), "-FLAGS.SILENT", "(\\Seen)")


def _flatten(data: list[object]) -> list[bytes]:
    flat: list[bytes] = []
    for entry in data:
        if isinstance(entry, bytes):
            flat.append(entry)
        elif isinstance(entry, tuple):
            flat.extend(e for e in entry if isinstance(e, bytes))
    return flat


def _text(data: object) -> str:
    if isinstance(data, list):
        return b" ".join(_flatten(data)).decode("utf-8", errors="replace") if data else ""
    return str(data)


# --- a poll ---------------------------------------------------------------------------------------------------


@dataclass
class PollReport:
    """What one poll did; counts and case ids only (no addresses, no subjects): safe to log."""

    counts: dict[str, int] = field(
        default_factory=lambda: {FILED: 0, APPENDED: 0, SKIPPED: 0, REJECTED: 0, DUPLICATE: 0}
    )
    new_case_ids: list[int] = field(default_factory=list)
    outcomes: list[MailOutcome] = field(default_factory=list)

    def add(self, outcome: MailOutcome) -> None:
        self.counts[outcome.disposition] = self.counts.get(outcome.disposition, 0) + 1
        self.outcomes.append(outcome)
        if outcome.disposition == FILED and outcome.case_id is not None:
            self.new_case_ids.append(outcome.case_id)

    def summary(self) -> str:
        return ", ".join(f"{key} {value}" for key, value in self.counts.items())


def poll_mailbox(
    engine: Engine,
    desk: Desk,
    *,
    source: MailSource,
    now: Callable[[], datetime],
    limit: int,
    at_once: int | None = None,
) -> PollReport:
    """Take up to ``limit`` unseen mails from ``source``, flagging each seen only after what became of it was
    committed. Mails that open new cases (``opens_a_case``), read one after the other, are filed together, up to
    ``at_once`` (default ``CLAIMFLOW_MAIL_FILE_AT_ONCE``) in one transaction (``take_new_mails``); every other mail
    in a transaction of its own, after the mails read before it.

    One mail never stops the poll: whatever fails while one mail is taken (a value the database refuses, a bug)
    is rolled back and the mail is recorded as rejected with the kind of fault (no values: the reason is
    listed and logged), flagged seen, and the poll goes on; ``claimflow mail list --status rejected`` shows it
    and ``claimflow mail retry`` takes it again after a fix. Should a group of new mails fail together, each is
    taken on its own, where the fault stays with its mail. Only the mailbox or the database being unreachable
    stops the poll, with the current mail still unseen (every mail after it would fail the same way). A mail
    whose rejection cannot be recorded either stays unseen, is counted as ``failed``, and the poll goes on.
    """
    report = PollReport()
    group = desk.settings.mail_file_at_once if at_once is None else at_once
    waiting: list[Fetched] = []  # mails that open new cases, read one after the other: filed at once

    def done(uid: int, outcome: MailOutcome | None) -> None:
        if outcome is None:
            report.counts[FAILED] = report.counts.get(FAILED, 0) + 1
            return
        source.mark_seen(uid)
        log.info(
            "mail uid %s: %s%s", uid, outcome.disposition, f" ({outcome.case_number})" if outcome.case_number else ""
        )
        report.add(outcome)

    def take(fetched: Fetched) -> None:
        assert fetched.uid is not None
        work = partial(take_parsed, engine, desk, fetched, mailbox=source.name, now=now())
        done(fetched.uid, _guarded(engine, source=source, uid=fetched.uid, now=now, work=work))

    def file_waiting() -> None:
        filed = take_new_mails(engine, desk, waiting, mailbox=source.name, now=now()) if len(waiting) > 1 else []
        for fetched, outcome in zip_longest(waiting, filed):
            if outcome is None:
                take(fetched)
            else:
                done(fetched.uid or 0, outcome)
        waiting.clear()

    for uid in source.unseen(limit):
        read = _guarded(engine, source=source, uid=uid, now=now, work=partial(_read_uid, engine, desk, source=source,
                                                                             uid=uid, now=now()))  # fmt: skip
        if isinstance(read, Fetched) and group > 1 and opens_a_case(read.mail):
            waiting.append(read)
            if len(waiting) >= group or sum(len(f.raw) for f in waiting) >= GROUP_BYTES:
                file_waiting()
            continue
        file_waiting()  # the mails read before this one first: what becomes of it may depend on them
        if isinstance(read, Fetched):
            take(read)
        else:  # recorded as rejected when it was read (too big, unreadable, failed), or not even that
            done(uid, read)
    file_waiting()
    return report


def more_unseen(counts: dict[str, int], *, limit: int) -> bool:
    """Whether a poll that took up to ``limit`` mails with these ``counts`` may have left unseen mail to take
    now: it took a full chunk, and made progress (a chunk of mails that all failed and stay unseen would be
    read again: that waits for the next scheduled run)."""
    taken = sum(counts.values())
    return taken >= limit and taken - counts.get(FAILED, 0) > 0


def _guarded(
    engine: Engine, *, source: MailSource, uid: int, now: Callable[[], datetime], work: Callable[[], T]
) -> T | MailOutcome | None:
    """``work`` for one mail; whatever fails in it (not the mailbox or the database) is recorded as the mail's
    rejection with the kind of fault. None: that could not be recorded either (the mail stays unseen)."""
    try:
        return work()
    except (MailboxUnavailable, DatabaseUnavailable, OperationalError):
        raise
    except Exception as failed:
        reason = f"failed in intake: {describe_failure(failed)}"
        log.error("mail uid %s: %s; recorded as rejected", uid, reason)
        try:
            return reject_unread(engine, header=source.header(uid), reason=reason, mailbox=source.name, uid=uid,
                                 now=now())  # fmt: skip
        except (MailboxUnavailable, DatabaseUnavailable, OperationalError):
            raise
        except Exception as unrecorded:
            log.error("mail uid %s: left unseen, its rejection could not be recorded either (%s)", uid,
                      describe_failure(unrecorded))  # fmt: skip
            return None


def _read_uid(engine: Engine, desk: Desk, *, source: MailSource, uid: int, now: datetime) -> Fetched | MailOutcome:
    size = source.size(uid)
    max_bytes = desk.settings.mail_max_message_bytes
    if size > max_bytes:  # not downloaded: its header is enough to record it by its Message-ID
        return reject_unread(engine, header=source.header(uid), reason=f"message too big: {size} bytes, limit "
                             f"{max_bytes}", mailbox=source.name, uid=uid, now=now)  # fmt: skip
    return parse(engine, desk, raw=source.fetch(uid), mailbox=source.name, uid=uid, now=now)


RETRYABLE = (REJECTED, SKIPPED)


def mail_rows(
    session: Session, *, dispositions: list[str] | None = None, since: datetime | None = None, limit: int = 200
) -> list[MailMessage]:
    """The mails the intake has recorded, newest first: what became of each and why (no addresses, no subjects).
    A duplicate's row names the mail it is a copy of."""
    statement = select(MailMessage).order_by(col(MailMessage.id).desc()).limit(limit)
    if dispositions:
        statement = statement.where(col(MailMessage.disposition).in_(dispositions))
    if since is not None:
        statement = statement.where(col(MailMessage.received_at) >= since)
    return list(session.exec(statement))


def retry_mail(engine: Engine, *, mail_id: int, source: MailSource) -> MailMessage:
    """Let a rejected or skipped mail be taken again (after a fix): it is flagged unseen in the mailbox first, then
    its record is removed, so the next poll reads it as new. In that order: should the second step fail, the
    next poll finds the record, calls the mail a duplicate and flags it seen again; nothing is lost.

    Raises:
        NotFound: no such mail. InvalidInput: a mail filed or added to a case (it was taken), one read from another
            mailbox, or one recorded without its UID. MailboxUnavailable: the mailbox cannot be reached.
    """
    with Session(engine) as session:
        row = session.get(MailMessage, mail_id)
    if row is None:
        raise NotFound(f"no mail {mail_id} on record")
    if row.disposition not in RETRYABLE:
        raise InvalidInput(f"mail {mail_id} was {row.disposition}: only a rejected or skipped mail is taken again")
    if row.mailbox != source.name or row.uid is None:
        raise InvalidInput(f"mail {mail_id} was read from {row.mailbox} (UID {row.uid}), not from {source.name}")
    source.mark_unseen(row.uid)
    with session_scope(engine) as session:
        held = session.get(MailMessage, mail_id)
        if held is not None:
            session.delete(held)
    return row


@contextmanager
def open_mailbox(settings: Settings) -> Iterator[ImapMailbox]:
    """The configured intake mailbox, connected, logged in, folder selected."""
    with ImapMailbox(ImapConfig.from_settings(settings)) as mailbox:
        yield mailbox


def poll(engine: Engine, desk: Desk, *, now: Callable[[], datetime], limit: int | None = None) -> PollReport:
    """One poll of the configured mailbox (``CLAIMFLOW_MAIL_IMAP_*``)."""
    with open_mailbox(desk.settings) as mailbox:
        return poll_mailbox(engine, desk, source=mailbox, now=now, limit=limit or desk.settings.mail_batch_size)
