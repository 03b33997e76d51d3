"""E-mail intake in the database (both backends) and end to end against a real IMAP server (Dovecot).

The Dovecot tests start ``dovecot -F -c <throwaway config>`` on free ports with a maildir in a temporary
folder (Debian package ``dovecot-imapd``). Where Dovecot is not installed they are skipped with the reason,
unless ``CLAIMFLOW_REQUIRE_IMAP=1`` (as in CI), where that is a failure.
"""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage
from uuid import uuid4

import pytest
from pydantic import SecretStr
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from claimflow.db import session_scope
from claimflow.settings import get_settings
from models.enums import CaseKind, Channel
from models.tables import (
    Attachment,
    Case,
    Customer,
    DocumentRequirement,
    Event,
    Feedback,
    MailMessage,
    Outbox,
    Staff,
)
from tasks import mail as mail_tasks
from tasks.mail import (
    APPENDED,
    DUPLICATE,
    FILED,
    REJECTED,
    SKIPPED,
    ImapConfig,
    MailboxUnavailable,
    poll,
    take_mail,
)
from tasks.workflow import Desk
from tests.imap import Dovecot, mail_desk
from tests.ports import free_port

# --- real messages ----------------------------------------------------------------------------------------


def message(
    subject: str,
    body: str = "",
    *,
    sender: str = "Alice Smith <alice@example.com>",
    message_id: str | None = None,
    html: str | None = None,
    files: tuple[tuple[str, str, bytes], ...] = (),
    headers: dict[str, str] | None = None,
) -> bytes:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = "service@insurer.example"
    mail["Subject"] = subject
    mail["Message-ID"] = message_id or f"<{uuid4().hex}@example.com>"
    for name, value in (headers or {}).items():
        mail[name] = value
    if html is not None and not body:
        mail.set_content(html, subtype="html")
    else:
        mail.set_content(body)
    for name, content_type, data in files:
        maintype, subtype = content_type.split("/")
        mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return mail.as_bytes()


# An RFC 2047 subject in GB2312 ("【理赔】我的车子被撞了"), written as a Chinese mail client sends it.
CHINESE_CLAIM = (
    b"From: =?UTF-8?B?5byg5LiJ?= <zhang.san@example.com>\r\n"
    b"To: service@insurer.example\r\n"
    b"Subject: =?GB2312?B?ob7A7cXiob/O0rXEs7XX07G717LByw==?=\r\n"
    b"Message-ID: <zh-claim-1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"5oiR55qE6L2m5Zyo5Lqs5rKq6auY6YCf5LiK6KKr6L+95bC+\r\n"
    b"--b1\r\n"
    b"Content-Type: image/jpeg\r\n"
    b"Content-Disposition: attachment; filename*=UTF-8''%E7%8E%B0%E5%9C%BA%E7%85%A7%E7%89%87.jpg\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"/9j/4AAQSkZJRgABAQ==\r\n"
    b"--b1--\r\n"
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01"

AUTO_REPLY = message(
    "Automatic reply: out of office", "I am away until Monday.", headers={"Auto-Submitted": "auto-replied"}
)
BOUNCE = (
    b"From: Mail Delivery Subsystem <mailer-daemon@mx.example.com>\r\n"
    b"To: service@insurer.example\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\n"
    b"Message-ID: <bounce-1@mx.example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n'
    b"\r\n"
    b"--r\r\n"
    b"Content-Type: text/plain\r\n\r\n"
    b"Your message could not be delivered.\r\n"
    b"--r\r\n"
    b"Content-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; mx.example.com\r\n\r\n"
    b"Final-Recipient: rfc822; nobody@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    b"--r--\r\n"
)
NO_FROM = b"To: service@insurer.example\r\nSubject: who am I\r\nMessage-ID: <nofrom-1@example.com>\r\n\r\nhello\r\n"


def take(world, raw: bytes, *, desk: Desk | None = None, uid: int | None = None):
    return take_mail(world.engine, desk or world.desk, raw=raw, mailbox="test/INBOX", uid=uid, now=world.now)


def events(world, case_id: int) -> list[Event]:
    with Session(world.engine) as session:
        return list(session.exec(select(Event).where(Event.case_id == case_id).order_by(col(Event.sequence))))


def attachments(world, case_id: int) -> list[Attachment]:
    with Session(world.engine) as session:
        return list(session.exec(select(Attachment).where(Attachment.case_id == case_id).order_by(col(Attachment.id))))


def mail_rows(world) -> list[MailMessage]:
    with Session(world.engine) as session:
        return list(session.exec(select(MailMessage).order_by(col(MailMessage.id))))


# --- in the database -------------------------------------------------------------------------------------------


def test_a_chinese_claim_mail_files_a_case_with_its_customer_and_attachment(world) -> None:
    outcome = take(world, CHINESE_CLAIM, uid=7)
    assert outcome.disposition == FILED and outcome.case_number.startswith("CLM-2026-")
    with Session(world.engine) as session:
        case = session.get(Case, outcome.case_id)
        customer = session.get(Customer, case.customer_id)
        acknowledgement = session.exec(select(Outbox).where(Outbox.case_id == case.id)).all()
    assert (case.kind, case.channel, case.status) == (CaseKind.claim, Channel.email, "under_review")
    assert case.description == "【理赔】我的车子被撞了\n\n我的车在京沪高速上被追尾"
    assert (customer.name, customer.email, customer.language) == ("张三", "zhang.san@example.com", "zh-CN")
    assert "acknowledgement_claim" in [o.template for o in acknowledgement]
    assert [e.type for e in events(world, case.id)][-1] == "mail_received"
    assert events(world, case.id)[-1].data["classified_by"] == "subject tag [理赔]"

    stored = attachments(world, case.id)
    assert [(a.filename, a.content_type, a.source) for a in stored] == [
        ("message.eml", "message/rfc822", "email"),
        ("现场照片.jpg", "image/jpeg", "email"),
    ]
    data_dir = get_settings().data_dir
    photo = data_dir / stored[1].storage_path
    assert photo.parent == data_dir / "attachments" / case.number
    assert photo.read_bytes() == JPEG and stored[1].size == len(JPEG)
    assert (data_dir / stored[0].storage_path).read_bytes() == CHINESE_CLAIM  # the original, as received

    [row] = mail_rows(world)
    assert (row.message_id, row.disposition, row.case_id, row.uid) == ("<zh-claim-1@example.com>", FILED, case.id, 7)


def test_an_html_only_mail_without_keywords_is_an_inquiry_in_english(world) -> None:
    outcome = take(world, message("Opening hours", html="<p>When are you open on <b>Saturday</b>?</p>"))
    with Session(world.engine) as session:
        case = session.get(Case, outcome.case_id)
        customer = session.get(Customer, case.customer_id)
    assert case.kind == CaseKind.inquiry
    assert case.description == "Opening hours\n\nWhen are you open on Saturday?"
    assert (customer.name, customer.language) == ("Alice Smith", "en")


def test_a_complaint_mail_is_a_complaint(world) -> None:
    outcome = take(world, message("投诉：理赔太慢", "三个星期了还没有消息"))
    with Session(world.engine) as session:
        assert session.get(Case, outcome.case_id).kind == CaseKind.complaint


def test_a_reply_naming_the_case_number_is_added_to_that_case(world) -> None:
    first = take(world, message("Car accident claim", "Rear-ended."))
    reply = take(world, message(f"Re: Your claim {first.case_number} was received", "Here is more."))
    assert (reply.disposition, reply.case_id) == (APPENDED, first.case_id)
    with Session(world.engine) as session:
        assert len(session.exec(select(Case)).all()) == 1
    last = events(world, first.case_id)[-1]
    assert (last.type, last.actor, last.data["from_customer"]) == ("mail_received", "mail-intake", True)
    assert [a.filename for a in attachments(world, first.case_id)] == ["message.eml", "message.eml"]


def test_a_customers_reply_about_a_closed_case_is_feedback_and_a_complaint_in_it_becomes_a_case(world) -> None:
    first = take(world, message("Question about my policy", "Is physiotherapy covered?"))
    with session_scope(world.engine) as session:
        case = session.get(Case, first.case_id)
        case.status, case.closed_at = "closed", world.now
        session.add(case)
    quoted = "\n\nOn Mon, 2 Mar 2026, Desk <service@insurer.example> wrote:\n> Thank you, it is covered."
    take(world, message(f"Re: {first.case_number}", "Thanks, very helpful answer!" + quoted))
    take(world, message(f"Re: {first.case_number}", "I want to complain: nobody called me back." + quoted))
    take(world, message(f"Re: {first.case_number}", "I complain too", sender="Mallory <m@example.com>"))
    with Session(world.engine) as session:
        rows = session.exec(select(Feedback).order_by(col(Feedback.id))).all()
        complaints = session.exec(select(Case).where(Case.kind == "complaint")).all()
    assert [(f.channel, f.classification) for f in rows] == [("email", "praise"), ("email", "complaint")]
    assert rows[0].comment == "Thanks, very helpful answer!"  # the quoted mail is not part of the feedback
    assert len(complaints) == 1 and complaints[0].related_case_id == first.case_id
    assert rows[1].complaint_case_id == complaints[0].id  # someone else's mail is kept but is not their feedback


def test_a_reply_found_by_its_references_to_an_earlier_mail_of_the_case(world) -> None:
    first = take(world, message("Car accident claim", "Rear-ended.", message_id="<orig-1@example.com>"))
    reply = take(
        world,
        message("Re: Car accident", "Photos follow.", headers={"References": "<orig-1@example.com> <x@desk>"}),
    )
    assert (reply.disposition, reply.case_id) == (APPENDED, first.case_id)


def test_an_unknown_case_number_files_a_new_case(world) -> None:
    outcome = take(world, message("Re: CLM-2020-999999 claim", "?"))
    assert outcome.disposition == FILED and outcome.case_number != "CLM-2020-999999"


def _awaiting_documents(world) -> Case:
    case = world.file(product_line="motor", customer=None)  # customer zhang.san@example.com
    with Session(world.engine) as session:
        who = session.get(Staff, world.case(case).handler_id).username
    assert world.decide(case, who, decision="request_documents").applied
    assert world.case(case).status == "awaiting_documents"
    return case


def test_documents_arriving_by_mail_tick_off_the_missing_list(world) -> None:
    case = _awaiting_documents(world)
    world.now += timedelta(days=2)
    raw = message(
        f"Re: {case.number} documents",
        "As requested.",
        sender="张三 <Zhang.San@example.com>",  # the customer's address, in other letters' case
        files=(
            ("Repair_Invoice.pdf", "application/pdf", b"%PDF-1.4 invoice"),
            ("驾驶证.jpg", "image/jpeg", JPEG),
            ("holiday.jpg", "image/jpeg", JPEG + b"2"),
        ),
    )
    outcome = take(world, raw)
    assert outcome.disposition == APPENDED
    assert outcome.documents == ("driving licence", "repair invoice")  # in the order they were asked for
    with Session(world.engine) as session:
        received = {
            r.document_type: r.received_at
            for r in session.exec(select(DocumentRequirement).where(DocumentRequirement.case_id == case.id))
        }
    assert received["repair invoice"] == received["driving licence"] == world.now
    assert received["claim form"] is None and received["bank account details"] is None
    last = events(world, case.id)[-1]
    assert last.type == "documents_arrived"
    assert last.data["documents"] == ["driving licence", "repair invoice"]
    assert "claim form" in last.data["still_missing"] and "repair invoice" not in last.data["still_missing"]
    assert [(a.filename, a.document_type) for a in attachments(world, case.id)] == [
        ("message.eml", None),
        ("Repair_Invoice.pdf", "repair invoice"),
        ("驾驶证.jpg", "driving licence"),
        ("holiday.jpg", None),
    ]
    assert world.case(case).status == "awaiting_documents"  # the staff confirm through the documents form


def test_documents_from_someone_else_are_kept_but_tick_nothing(world) -> None:
    case = _awaiting_documents(world)
    raw = message(
        f"Re: {case.number}",
        "",
        sender="mallory@example.net",
        files=(("repair_invoice.pdf", "application/pdf", b"%PDF"),),
    )
    outcome = take(world, raw)
    assert outcome.disposition == APPENDED and outcome.documents == ()
    with Session(world.engine) as session:
        assert all(
            r.received_at is None
            for r in session.exec(select(DocumentRequirement).where(DocumentRequirement.case_id == case.id))
        )
    last = events(world, case.id)[-1]
    assert (last.type, last.data["from_customer"]) == ("mail_received", False)


def test_the_same_mail_twice_is_taken_once_and_a_reused_message_id_is_another_mail(world) -> None:
    """The key is Message-ID, sender and content: the same mail through two of the desk's aliases is filed once; a
    web form's fixed Message-ID sent by a second customer, or reused by the same sender for other text, is heard."""
    raw = message("Car accident claim", "Rear-ended.", message_id="<dup-1@example.com>")
    assert take(world, raw).disposition == FILED
    # the same mail again, delivered through another alias: other envelope headers, the same mail
    aliased = (
        b"Delivered-To: claims@insurer.example\r\nReceived: from mx2 by mx1; Sun, 6 Dec 2026 10:00:00 +0000\r\n" + raw
    )
    assert take(world, aliased).disposition == DUPLICATE
    # a copy under another UID (the second alias's delivery) is listed as a duplicate of the first, once
    assert take(world, aliased, uid=7).reason == "the same mail as mail 1"
    assert take(world, aliased, uid=7).disposition == DUPLICATE
    [copy] = [row for row in mail_rows(world) if row.disposition == DUPLICATE]
    assert (copy.uid, copy.reason, copy.case_id) == (7, "the same mail as mail 1 (filed)", mail_rows(world)[0].case_id)
    other_sender = message("Car accident claim", "Rear-ended.", message_id="<dup-1@example.com>",
                           sender="Bob Lee <bob@example.org>")  # fmt: skip
    assert take(world, other_sender).disposition == FILED
    other_text = message("Car accident claim (resent)", "Rear-ended!", message_id="<dup-1@example.com>")
    assert take(world, other_text).disposition == FILED
    with Session(world.engine) as session:
        assert len(session.exec(select(Case)).all()) == 3
    assert len(mail_rows(world)) == 4  # three mails and the copy
    # a mail with no Message-ID at all, delivered twice: its content and sender make it one
    bare = message("Flood damage", "The basement flooded.").replace(b"Message-ID:", b"X-Old-Id:")
    assert take(world, bare).disposition == FILED
    assert take(world, b"Delivered-To: claims@insurer.example\r\n" + bare).disposition == DUPLICATE


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(AUTO_REPLY, "Auto-Submitted: auto-replied", id="auto-reply"),
        pytest.param(BOUNCE, "delivery status report (bounce)", id="bounce"),
    ],
)
def test_automatic_mail_is_logged_and_skipped(world, raw: bytes, reason: str) -> None:
    outcome = take(world, raw)
    assert (outcome.disposition, outcome.reason) == (SKIPPED, reason)
    with Session(world.engine) as session:
        assert session.exec(select(Case)).all() == []
    [row] = mail_rows(world)
    assert (row.disposition, row.reason, row.case_id) == (SKIPPED, reason, None)


def test_unusable_mail_is_recorded_as_rejected_with_its_reason(world) -> None:
    small = Desk(
        rules=world.desk.rules, settings=world.desk.settings.model_copy(update={"mail_max_message_bytes": 2048})
    )
    assert take(world, NO_FROM).disposition == REJECTED
    big = message("Car accident claim", "x" * 5000, message_id="<big-1@example.com>")
    assert take(world, big, desk=small).disposition == REJECTED
    assert take(world, b"\x00\xff garbage").disposition == REJECTED
    assert take(world, NO_FROM).disposition == DUPLICATE  # read again: recognised, not recorded twice
    rows = mail_rows(world)
    assert [(r.message_id, r.disposition) for r in rows[:2]] == [
        ("<nofrom-1@example.com>", REJECTED),
        ("<big-1@example.com>", REJECTED),
    ]
    assert rows[0].reason == "no usable From address"
    assert rows[1].reason.startswith("message too big: ")
    assert rows[2].message_id.endswith("@claimflow.invalid>") and rows[2].reason == "no usable From address"
    with Session(world.engine) as session:
        assert session.exec(select(Case)).all() == []


# --- a real IMAP server (tests/imap.py) ------------------------------------------------------------------


def test_poll_takes_every_kind_of_mail_from_a_real_imap_server(world, dovecot: Dovecot, imap_user: str) -> None:
    too_big = message("Car accident claim", "x" * 300_000, message_id="<big-2@example.com>")
    duplicate = message("Car accident claim", "Rear-ended.", message_id="<same@example.com>")
    dovecot.deliver(
        imap_user,
        CHINESE_CLAIM,  # uid 1: RFC 2047 subject, multipart with an attachment
        message("Opening hours", html="<p>When are you open?</p>"),  # 2: HTML only
        AUTO_REPLY,  # 3
        BOUNCE,  # 4
        duplicate,  # 5
        duplicate,  # 6: the same Message-ID again
        too_big,  # 7: over the limit, never downloaded
        NO_FROM,  # 8
        message("[投诉] 服务态度差", "客服挂我电话", sender="李四 <li.si@example.com>"),  # 9
    )
    desk = mail_desk(world, dovecot, imap_user, mail_max_message_bytes=200_000, mail_batch_size=50)
    report = poll(world.engine, desk, now=lambda: world.now)

    assert [o.disposition for o in report.outcomes] == [
        FILED, FILED, SKIPPED, SKIPPED, FILED, DUPLICATE, REJECTED, REJECTED, FILED,
    ]  # fmt: skip
    assert report.counts == {FILED: 4, APPENDED: 0, SKIPPED: 2, REJECTED: 2, DUPLICATE: 1}
    assert dovecot.flags(imap_user) == dict.fromkeys(range(1, 10), True)  # every mail flagged seen
    with Session(world.engine) as session:
        kinds = [(c.kind, c.channel) for c in session.exec(select(Case).order_by(col(Case.id)))]
        rejected = session.exec(select(MailMessage).where(MailMessage.message_id == "<big-2@example.com>")).one()
    assert kinds == [
        (CaseKind.claim, Channel.email),
        (CaseKind.inquiry, Channel.email),
        (CaseKind.claim, Channel.email),
        (CaseKind.complaint, Channel.email),
    ]
    assert rejected.disposition == REJECTED and rejected.reason.startswith("message too big: ")
    assert rejected.mailbox == f"127.0.0.1:{dovecot.plain_port}/INBOX" and rejected.uid == 7
    assert set(report.new_case_ids) == {o.case_id for o in report.outcomes if o.disposition == FILED}

    # the customer answers the acknowledgement: once naming the case, once only threading on her first mail
    claim = report.outcomes[0]
    dovecot.deliver(
        imap_user,
        message(
            f"回复：您的理赔 {claim.case_number} 已受理",
            "补充材料",
            sender="zhang.san@example.com",
            files=(("现场照片2.jpg", "image/jpeg", JPEG),),
        ),
        message(
            "Re: 理赔", "还有一张", sender="zhang.san@example.com", headers={"In-Reply-To": "<zh-claim-1@example.com>"}
        ),
        message("Car accident claim", "Rear-ended.", message_id="<same@example.com>"),  # delivered a third time
    )
    again = poll(world.engine, desk, now=lambda: world.now)
    assert [(o.disposition, o.case_number) for o in again.outcomes] == [
        (APPENDED, claim.case_number),
        (APPENDED, claim.case_number),
        (DUPLICATE, None),
    ]
    assert again.new_case_ids == []
    assert all(dovecot.flags(imap_user).values())
    assert poll(world.engine, desk, now=lambda: world.now).outcomes == []  # nothing unseen is left


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_poll_over_tls_verifies_the_server_certificate(world, dovecot: Dovecot, imap_user: str, security: str) -> None:
    dovecot.deliver(imap_user, message("Car accident claim", "Rear-ended."))
    desk = mail_desk(world, dovecot, imap_user, security)
    assert [o.disposition for o in poll(world.engine, desk, now=lambda: world.now).outcomes] == [FILED]

    untrusted = mail_desk(world, dovecot, imap_user, security, mail_imap_ca_file=None)
    with pytest.raises(MailboxUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        poll(world.engine, untrusted, now=lambda: world.now)


def test_a_mail_stays_unseen_until_its_case_is_committed(
    world, dovecot: Dovecot, imap_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot.deliver(imap_user, message("Car accident claim", "first"), message("Car accident claim", "second"))
    desk = mail_desk(world, dovecot, imap_user, mail_file_at_once=1)  # each mail in a transaction of its own
    real = mail_tasks.file_mail
    calls = []

    def failing_on_the_second(session, desk, **kwargs):
        calls.append(kwargs["uid"])
        if len(calls) == 2:
            raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))
        return real(session, desk, **kwargs)

    monkeypatch.setattr(mail_tasks, "file_mail", failing_on_the_second)
    with pytest.raises(OperationalError):
        poll(world.engine, desk, now=lambda: world.now)
    assert dovecot.flags(imap_user) == {1: True, 2: False}
    with Session(world.engine) as session:
        assert len(session.exec(select(Case)).all()) == 1  # the second one's transaction was rolled back

    monkeypatch.setattr(mail_tasks, "file_mail", real)
    assert [o.disposition for o in poll(world.engine, desk, now=lambda: world.now).outcomes] == [FILED]
    assert dovecot.flags(imap_user) == {1: True, 2: True}


def test_new_mails_filed_together_stay_unseen_until_their_transaction_is_committed(
    world, dovecot: Dovecot, imap_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot.deliver(imap_user, message("Car accident claim", "first"), message("Car accident claim", "second"))
    desk = mail_desk(world, dovecot, imap_user)
    real = mail_tasks.file_new_mails

    def connection_lost(*args, **kwargs):
        real(*args, **kwargs)  # everything written, then the database goes away before the commit
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(mail_tasks, "file_new_mails", connection_lost)
    with pytest.raises(OperationalError):
        poll(world.engine, desk, now=lambda: world.now)
    assert dovecot.flags(imap_user) == {1: False, 2: False}
    with Session(world.engine) as session:
        assert session.exec(select(Case)).all() == []

    monkeypatch.setattr(mail_tasks, "file_new_mails", real)
    assert [o.disposition for o in poll(world.engine, desk, now=lambda: world.now).outcomes] == [FILED, FILED]
    assert dovecot.flags(imap_user) == {1: True, 2: True}


def test_a_group_of_new_mails_that_fails_is_taken_mail_by_mail_and_the_fault_stays_with_its_mail(
    world, dovecot: Dovecot, imap_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault in the group's transaction (here: a bug on the third mail's case) rolls the group back; each of its
    mails is then taken on its own, so only the mail that causes it is recorded as rejected, and the poll goes on."""
    mails = [message("Car accident claim", f"mail {n}", sender=f"driver{n}@example.com") for n in range(5)]
    dovecot.deliver(imap_user, *mails)
    desk = mail_desk(world, dovecot, imap_user)
    real = mail_tasks.intake

    def failing_on_driver2(session, desk, *, data, **kwargs):
        if data.customer.email == "driver2@example.com":
            raise KeyError("a bug")
        return real(session, desk, data=data, **kwargs)

    real_many = mail_tasks.intake_many

    def many_failing_on_driver2(session, desk, *, cases, **kwargs):
        if any(data.customer.email == "driver2@example.com" for data, _ in cases):
            raise KeyError("a bug")
        return real_many(session, desk, cases=cases, **kwargs)

    monkeypatch.setattr(mail_tasks, "intake", failing_on_driver2)
    monkeypatch.setattr(mail_tasks, "intake_many", many_failing_on_driver2)
    report = poll(world.engine, desk, now=lambda: world.now)
    assert [o.disposition for o in report.outcomes] == [FILED, FILED, REJECTED, FILED, FILED]
    assert report.outcomes[2].reason == "failed in intake: KeyError"
    assert all(dovecot.flags(imap_user).values())
    with Session(world.engine) as session:
        numbers = [c.number for c in session.exec(select(Case).order_by(col(Case.id)))]
    assert numbers == sorted(numbers) and len(numbers) == 4
    assert [int(n.rsplit("-", 1)[1]) for n in numbers] == [1, 2, 3, 4]  # no number lost to the rolled-back group


def test_a_poll_files_new_mails_together_and_every_other_mail_after_the_mails_read_before_it(
    world, dovecot: Dovecot, imap_user: str
) -> None:
    """A reply to a new mail of the same poll finds that mail's case; a second copy within a group is a duplicate;
    what became of each mail is reported in the mailbox's order; the groups are one transaction each."""
    from sqlalchemy import event

    first = message("Car accident claim", "Rear-ended.", sender="zhang.san@example.com", message_id="<a-1@example.com>")
    complaint = message("[投诉] 服务态度差", "客服挂我电话", sender="李四 <li.si@example.com>")
    reply = message("Re: claim", "One more photo.", sender="zhang.san@example.com",
                    headers={"In-Reply-To": "<a-1@example.com>"})  # fmt: skip
    dovecot.deliver(
        imap_user,
        first,  # 1: a new claim
        message("Opening hours", html="<p>When are you open?</p>"),  # 2: a new inquiry, filed with 1
        reply,  # 3: answers 1
        AUTO_REPLY,  # 4
        complaint,  # 5: a new complaint
        complaint,  # 6: the same mail again, in the same group
        message("Car accident claim", "Hit a post.", sender="wang@example.com"),  # 7: a new claim, with 5
        NO_FROM,  # 8: rejected
    )
    desk = mail_desk(world, dovecot, imap_user)
    commits: list[int] = []

    def committed(connection) -> None:
        commits.append(1)

    event.listen(world.engine, "commit", committed)
    try:
        report = poll(world.engine, desk, now=lambda: world.now)
    finally:
        event.remove(world.engine, "commit", committed)

    assert [o.disposition for o in report.outcomes] == [
        FILED, FILED, APPENDED, SKIPPED, FILED, DUPLICATE, FILED, REJECTED,
    ]  # fmt: skip
    assert report.outcomes[2].case_id == report.outcomes[0].case_id
    assert report.outcomes[5].case_id == report.outcomes[4].case_id
    assert all(dovecot.flags(imap_user).values())
    with Session(world.engine) as session:
        filed = [c.id for c in session.exec(select(Case).order_by(col(Case.id)))]
    assert filed == [report.outcomes[i].case_id for i in (0, 1, 4, 6)]  # filed in the mailbox's order
    # 1+2 at once, 3, 4, 5+7 at once, 6, 8 (recorded when it was read): 6 transactions for 8 mails
    assert len(commits) == 6, len(commits)


def test_a_bug_on_one_mail_read_among_new_mails_is_recorded_on_it_and_the_poll_goes_on(
    world, dovecot: Dovecot, imap_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault in what decides whether a mail joins a group (here the classifier, on the third mail) must not
    escape the poll, or that mail, the oldest unseen, would stop every poll after it: it is taken alone and
    recorded as rejected with the kind of fault; the mails around it are filed."""
    mails = [message("Car accident claim", f"mail {n}", sender=f"driver{n}@example.com") for n in range(5)]
    dovecot.deliver(imap_user, *mails)
    real = mail_tasks.classify

    def classify(subject: str, text: str):
        if text.startswith("mail 2"):
            raise RuntimeError("a bug in this version")
        return real(subject, text)

    monkeypatch.setattr(mail_tasks, "classify", classify)
    report = poll(world.engine, mail_desk(world, dovecot, imap_user), now=lambda: world.now)
    assert [o.disposition for o in report.outcomes] == [FILED, FILED, REJECTED, FILED, FILED]
    assert report.outcomes[2].reason == "failed in intake: RuntimeError"
    assert all(dovecot.flags(imap_user).values())


def test_a_group_of_new_mails_is_filed_once_it_holds_its_bytes_whatever_its_count(
    world, dovecot: Dovecot, imap_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each mail of a group waits in memory with its attachments: past ``GROUP_BYTES`` the group is filed."""
    from sqlalchemy import event

    mails = [message("Car accident claim", f"mail {n}", sender=f"driver{n}@example.com") for n in range(4)]
    dovecot.deliver(imap_user, *mails)
    monkeypatch.setattr(mail_tasks, "GROUP_BYTES", 2 * min(len(m) for m in mails))  # two mails a group
    commits: list[int] = []

    def committed(connection) -> None:
        commits.append(1)

    event.listen(world.engine, "commit", committed)
    try:
        report = poll(world.engine, mail_desk(world, dovecot, imap_user), now=lambda: world.now)
    finally:
        event.remove(world.engine, "commit", committed)
    assert [o.disposition for o in report.outcomes] == [FILED] * 4
    assert len(commits) == 2, len(commits)


def test_a_wrong_password_or_a_closed_port_is_a_clear_error(world, dovecot: Dovecot, imap_user: str) -> None:
    wrong = mail_desk(world, dovecot, imap_user, mail_imap_password=SecretStr("nope"))
    with pytest.raises(MailboxUnavailable, match=r"AUTHENTICATIONFAILED|Authentication failed"):
        poll(world.engine, wrong, now=lambda: world.now)
    closed = mail_desk(world, dovecot, imap_user, mail_imap_port=free_port())
    with pytest.raises(MailboxUnavailable, match="ConnectionRefusedError"):
        poll(world.engine, closed, now=lambda: world.now)


def test_imap_settings_must_be_complete(world) -> None:
    from models.errors import InvalidInput

    with pytest.raises(InvalidInput, match="CLAIMFLOW_MAIL_IMAP_HOST, CLAIMFLOW_MAIL_IMAP_USER"):
        ImapConfig.from_settings(world.desk.settings)


def test_claimflow_mail_poll_prints_what_became_of_each_mail(
    world, dovecot: Dovecot, imap_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from claimflow.cli.mail import mail_app

    dovecot.deliver(imap_user, message("Car accident claim", "Rear-ended."), AUTO_REPLY)
    monkeypatch.setenv("CLAIMFLOW_DATABASE_URL", world.engine.url.render_as_string(hide_password=False))
    for name, value in dovecot.settings_for(imap_user, "starttls").items():
        secret = value.get_secret_value() if isinstance(value, SecretStr) else value
        monkeypatch.setenv(f"CLAIMFLOW_{name.upper()}", str(secret))
    get_settings.cache_clear()
    result = CliRunner().invoke(mail_app, ["poll"])
    assert result.exit_code == 0, result.output
    with Session(world.engine) as session:
        number = session.exec(select(Case)).one().number
    assert result.output.splitlines() == [
        f"filed     {number}",
        "skipped   (Auto-Submitted: auto-replied)",
        "filed 1, appended 0, skipped 1, rejected 0, duplicate 0",
    ]


def _letter(world, case_id: int, template: str) -> str:
    """The text of the message queued for the case under ``template``, as it will be sent."""
    from dataclasses import replace

    from models.tables import Outbox
    from tasks.outbox import Outgoing, default_config, prepare

    config = replace(default_config(), customer_email_url=SecretStr("mailto://desk:pw@127.0.0.1:25"))
    with Session(world.engine) as session:
        row = session.exec(select(Outbox).where(Outbox.case_id == case_id, Outbox.template == template)).one()
        rendered = prepare(session, row, config=config)  # as delivery renders it, the wording check included
    assert isinstance(rendered, Outgoing), rendered
    return rendered.text


def test_an_attachment_not_accepted_is_not_kept_and_the_customer_is_told_which_and_why(world) -> None:
    """Too big: the kept original has a note in the attachment's place (its name, size and digest are on the case's
    log), and the acknowledgement names it and why; a later mail's refused attachment gets a message of its own."""
    import base64
    import hashlib

    small = Desk(rules=world.desk.rules, settings=world.desk.settings.model_copy(update={
        "mail_max_attachment_bytes": 1000, "default_language": "en"}))  # fmt: skip
    video = bytes(range(256)) * 20  # 5,120 bytes
    raw = message("Car accident claim", "Video and the invoice attached.", sender="Alice Smith <alice@example.com>",
                  files=(("dashcam.mp4", "video/mp4", video), ("invoice.pdf", "application/pdf", b"%PDF-1.4 x")))  # fmt: skip
    filed = take(world, raw, desk=small)
    assert filed.disposition == FILED
    kept = attachments(world, filed.case_id)
    assert [a.filename for a in kept] == ["message.eml", "invoice.pdf"]
    original = (world.desk.settings.data_dir / kept[0].storage_path).read_bytes()
    assert base64.b64encode(video[:300])[:200] not in original.replace(b"\r\n", b"")
    assert b"not accepted and not kept: dashcam.mp4" in original and b"%PDF-1.4 x" in base64.b64decode(
        original.split(b"invoice.pdf")[-1].split(b"\r\n\r\n", 1)[1].split(b"--")[0])  # fmt: skip
    received = next(e for e in events(world, filed.case_id) if e.type == "mail_received")
    assert received.data["skipped_attachments"] == [{"name": "dashcam.mp4", "size": 5120, "why": "too_big",
                                                     "sha256": hashlib.sha256(video).hexdigest(), "limit": 1000}]  # fmt: skip
    letter = _letter(world, filed.case_id, "acknowledgement_claim")
    assert "- dashcam.mp4: too large (the limit is 1000 B per file)" in letter
    assert "invoice.pdf" not in letter

    later = message(f"Re: {filed.case_number}", "Here it is again.", sender="alice@example.com",
                    files=(("dashcam-2.mp4", "video/mp4", video + b"!"),))  # fmt: skip
    assert take(world, later, desk=small).disposition == APPENDED
    told = _letter(world, filed.case_id, "attachments_not_accepted")
    assert "dashcam-2.mp4: too large" in told and filed.case_number in told


def test_mail_through_a_list_is_heard_from_a_customer_on_file_or_about_a_case_and_skipped_otherwise(world) -> None:
    listed = {"Precedence": "list", "List-Id": "<claims.lists.example.org>", "List-Unsubscribe": "<mailto:u@x>"}
    stranger = message("Weekly newsletter", "Offers of the week.", sender="news@shop.example", headers=listed)
    outcome = take(world, stranger)
    assert (outcome.disposition, outcome.reason) == (SKIPPED, "Precedence: list")
    bulk = message("Newsletter", "Unsubscribe below.", sender="news@shop.example",
                   headers={"List-Id": "<n.shop.example>", "List-Unsubscribe": "<mailto:u@shop.example>"})  # fmt: skip
    outcome = take(world, bulk)
    assert (outcome.disposition, outcome.reason) == (SKIPPED, "mailing list (List-Id)")

    first = take(world, message("Car accident claim", "Rear-ended.", sender="Alice Smith <alice@example.com>"))
    assert first.disposition == FILED
    # the customer writes again through a list gateway (a club's claims list): she is on file, she is heard
    again = take(world, message("Water damage", "The kitchen flooded.", sender="ALICE@example.com", headers=listed))
    assert again.disposition == FILED and again.case_id != first.case_id
    # someone not on file, through a list, about one of our cases: heard too
    about = take(world, message("Question", f"About case {first.case_number}: who handles it?",
                                sender="bob@example.org", headers=listed))  # fmt: skip
    assert about.disposition == FILED
    # a number that is no case of ours does not open the door
    fake = take(world, message("Offer", "Ref CLM-2026-999999", sender="spam@example.net", headers=listed))
    assert fake.disposition == SKIPPED


def test_two_pollers_at_once_take_each_mail_once_and_neither_fails(world, dovecot: Dovecot, imap_user: str) -> None:
    """Two desk runners polling the same mailbox (a restart overlapping the old one): both read the same unseen
    mails; the database's unique key decides which files each, the other calls it a duplicate, nobody exits."""
    import threading

    mails = [message(f"Car accident claim {n}", f"Rear-ended, number {n}.", sender=f"driver{n}@example.com")
             for n in range(24)]  # fmt: skip
    dovecot.deliver(imap_user, *mails)
    desk = mail_desk(world, dovecot, imap_user, mail_batch_size=50)
    reports, failures = [], []
    start = threading.Barrier(2)

    def poller() -> None:
        start.wait()
        try:
            reports.append(poll(world.engine, desk, now=lambda: world.now))
        except Exception as exc:  # the test fails on it below, with what it was
            failures.append(repr(exc))

    threads = [threading.Thread(target=poller) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == [] and len(reports) == 2
    assert sum(r.counts[FILED] for r in reports) == len(mails)
    with Session(world.engine) as session:
        assert len(session.exec(select(Case)).all()) == len(mails)
        assert len(session.exec(select(MailMessage)).all()) == len(mails)  # the same UID read twice is no copy
    assert all(dovecot.flags(imap_user).values())


def test_a_mail_recorded_before_keys_existed_and_read_again_is_still_the_mail_already_taken(world) -> None:
    """Migration 0009 gave the mails read before it a key of their Message-ID (``legacy_key``): read again after the
    upgrade (not yet flagged seen, or a second alias's copy), such a mail files nothing new."""
    from models.mail import legacy_key

    raw = message("Car accident claim", "Rear-ended.", message_id="<old-1@example.com>")
    with session_scope(world.engine) as session:
        session.add(MailMessage(dedup_key=legacy_key("<old-1@example.com>"), message_id="<old-1@example.com>",
                                mailbox="test/INBOX", uid=3, disposition="filed", received_at=world.now))  # fmt: skip
    assert take(world, raw, uid=3).disposition == DUPLICATE
    with Session(world.engine) as session:
        assert session.exec(select(Case)).all() == []


# --- new mails filed at once ------------------------------------------------------------------------------------


def _new_mails() -> list[bytes]:
    """Mails that each open a case, of every shape the intake files: Chinese (RFC 2047, GB2312) with an attachment,
    HTML only, a complaint, English and Chinese senders, one with an attachment not accepted (named in the
    acknowledgement), two from the same sender."""
    video = bytes(range(256)) * 20  # over the 1,000-byte limit the comparison's desk sets
    return [
        CHINESE_CLAIM,
        message("Opening hours", html="<p>When are you open?</p>"),
        message("[投诉] 服务态度差", "客服挂我电话", sender="李四 <li.si@example.com>"),
        message("Car accident claim", "Video and the invoice attached.",
                files=(("dashcam.mp4", "video/mp4", video), ("invoice.pdf", "application/pdf", b"%PDF-1.4 x"))),
        message("住院医疗费用理赔申请", "发票随后补上", sender="王芳 <wang.fang@example.com>"),
        message("Is physiotherapy covered?", "How many sessions a year?", sender="bo@example.com"),
        message("Car accident claim", "Second car, same driver.", files=(("photo.jpg", "image/jpeg", JPEG),)),
    ]  # fmt: skip


@pytest.mark.parametrize("phone", ["95500", ""])
def test_new_mails_filed_at_once_write_row_for_row_what_one_by_one_writes(
    world, phone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``file_new_mails`` against ``file_mail`` for each, on the same database (each rolled back): customers, cases,
    steps, events with their hashes, messages, loads, counters (``tests.tasks.test_filing``), and the kept files'
    rows and the mails' records. Without the desk's phone the acknowledgements are held, each with an event
    before the mail's ``mail_received``."""
    from models.mail import parse_message
    from tasks.mail import Fetched, file_new_mails, limits_from, opens_a_case
    from tests.tasks.test_filing import _snapshot

    monkeypatch.setenv("CLAIMFLOW_DESK_PHONE", phone)  # the outbox reads the desk's details from the settings
    get_settings.cache_clear()
    desk = Desk(rules=world.desk.rules, settings=get_settings().model_copy(update={"mail_max_attachment_bytes": 1000}))
    fetched = [Fetched.of(uid, raw, parse_message(raw, limits_from(desk.settings)))
               for uid, raw in enumerate(_new_mails(), start=1)]  # fmt: skip
    assert all(opens_a_case(f.mail) for f in fetched)

    def rows(session: Session) -> dict[str, list[dict]]:
        snapshot = _snapshot(session)
        number = {c.id: c.number for c in session.exec(select(Case))}
        kept = [{**a.model_dump(exclude={"id", "case_id"}), "case": number[a.case_id]}
                for a in session.exec(select(Attachment).order_by(col(Attachment.id)))]  # fmt: skip
        mails = [{**m.model_dump(exclude={"id", "case_id"}), "case": number[m.case_id]}
                 for m in session.exec(select(MailMessage).order_by(col(MailMessage.id)))]  # fmt: skip
        return {**snapshot, "attachment": sorted(kept, key=lambda r: (r["case"], r["filename"])), "mail": mails}

    def one_by_one(session: Session) -> None:
        for f in fetched:
            outcome = mail_tasks.file_mail(session, desk, mail=f.mail, raw=f.raw, mailbox="test/INBOX", uid=f.uid,
                                           now=world.now)  # fmt: skip
            assert outcome.disposition == FILED

    def at_once(session: Session) -> None:
        outcomes = file_new_mails(session, desk, fetched, mailbox="test/INBOX", now=world.now)
        assert [o.disposition for o in outcomes] == [FILED] * len(fetched)

    expected = _with(world, one_by_one, rows)
    got = _with(world, at_once, rows)
    for table in expected:
        assert got[table] == expected[table], table
    assert {e["type"] for e in got["event"]} >= {"filed", "assigned", "mail_received", "step_opened"}
    acks = [o for o in got["outbox"] if o["template"].startswith("acknowledgement_")]
    assert len(acks) == len(fetched) and any(o["context"]["not_accepted"] for o in acks)
    assert len(got["attachment"]) == len(fetched) + 3  # each original, the photo, the invoice and the jpeg
    held = [e for e in got["event"] if e["type"] == "message_held"]
    assert len(held) == (0 if phone else len(fetched)), held


def _with(world, file, rows) -> dict[str, list[dict]]:
    with Session(world.engine) as session:
        file(session)
        session.flush()
        snapshot = rows(session)
        session.rollback()
    return snapshot
