"""Mail as real mailers and attackers send it: each is filed, appended, skipped or rejected on its own, and no
mail stops the poll or blocks the mail behind it. On both databases (PostgreSQL refuses NUL in text and JSON)."""

from __future__ import annotations

import base64

import pytest
from sqlmodel import Session, col, select

import tasks.mail as mail_tasks
from claimflow.db import session_scope
from models.enums import CaseKind
from models.tables import Attachment, Case, Customer, Event, MailMessage
from tasks.mail import FILED, REJECTED, SKIPPED, poll, take_mail
from tests.imap import Dovecot, mail_desk


def _b64(text: str, charset: str) -> str:
    return base64.b64encode(text.encode(charset)).decode()


def _mail(headers: bytes, body: bytes = b"hello\r\n") -> bytes:
    return headers + b"To: service@insurer.example\r\n\r\n" + body


# name, the mail, then what the desk must make of it: (disposition, customer's address, customer's name, kind)
CORPUS: list[tuple[str, bytes, tuple[str, str | None, str | None, CaseKind | None]]] = [
    ("nul-everywhere", _mail(
        b"From: =?UTF-8?B?" + base64.b64encode("张\x00三".encode()) + b"?= <nul@example.com>\r\n"
        b"Subject: car claim\x00 accident\r\nMessage-ID: <nul\x00-1@example.com>\r\n",
        b"my car\x00 was hit\r\n"), (FILED, "nul@example.com", "张三", CaseKind.claim)),
    ("gbk-name-under-gb2312-label", _mail(
        f"From: =?GB2312?B?{_b64('張三堃', 'gbk')}?= <kun@example.com>\r\n"
        f"Subject: =?GB2312?B?{_b64('理赔申请', 'gbk')}?=\r\nMessage-ID: <gbk-1@example.com>\r\n".encode()),
        (FILED, "kun@example.com", "張三堃", CaseKind.claim)),
    ("raw-8bit-gbk-headers", _mail(
        "From: 王五 <wang.wu@example.com>\r\nSubject: 我要投诉理赔太慢\r\nMessage-ID: <raw-1@example.com>\r\n"
        "Content-Type: text/plain; charset=gbk\r\n".encode("gbk"), "等了一个月了\r\n".encode("gbk")),
        (FILED, "wang.wu@example.com", "王五", CaseKind.complaint)),
    ("8bit-body-no-charset", _mail(
        b"From: zhao@example.com\r\nSubject: hello\r\nMessage-ID: <nocs-1@example.com>\r\n",
        "我的车被撞了，需要理赔，请尽快处理\r\n".encode("gbk")), (FILED, "zhao@example.com", None, CaseKind.claim)),
    ("web-form-no-reply-from", _mail(
        b"From: Website <no-reply@insurer.example>\r\nReply-To: Chen Liu <chen.liu@example.com>\r\n"
        b"Subject: Contact form: question about my policy\r\nMessage-ID: <form-1@insurer.example>\r\n"),
        (FILED, "chen.liu@example.com", "Chen Liu", CaseKind.inquiry)),
    ("no-from-but-reply-to", _mail(
        b"Reply-To: sun@example.com\r\nSubject: question\r\nMessage-ID: <rt-1@example.com>\r\n"),
        (FILED, "sun@example.com", None, CaseKind.inquiry)),
    ("raw-gbk-attachment-name", _mail(
        b"From: zhou@example.com\r\nSubject: claim documents\r\nMessage-ID: <att-1@example.com>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=XX\r\n",
        b"--XX\r\nContent-Type: text/plain; charset=gbk\r\n\r\n" + "附件是驾驶证".encode("gbk") + b"\r\n"
        b"--XX\r\nContent-Type: image/jpeg\r\nContent-Disposition: attachment; filename=\"" + "驾驶证.jpg".encode("gbk")
        + b"\"\r\nContent-Transfer-Encoding: base64\r\n\r\n/9j/4AAQ\r\n--XX--\r\n"),
        (FILED, "zhou@example.com", None, CaseKind.claim)),
    ("no-sender-at-all", _mail(b"Subject: anonymous\r\nMessage-ID: <anon-1@example.com>\r\n"),
     (REJECTED, None, None, None)),
    ("big5-traditional-complaint", _mail(
        f"From: =?Big5?B?{_b64('陳大文', 'big5')}?= <chan@example.com.hk>\r\n"
        f"Subject: =?Big5?B?{_b64('對理賠結果不滿', 'big5')}?=\r\nMessage-ID: <big5-1@example.com.hk>\r\n"
        "Content-Type: text/plain; charset=big5\r\n".encode(), "我要投訴，車禍理賠拖了兩個月\r\n".encode("big5")),
        (FILED, "chan@example.com.hk", "陳大文", CaseKind.complaint)),
    ("out-of-office-without-headers", _mail(
        b"From: boss@example.com\r\nSubject: Out of Office: Re: your claim\r\nMessage-ID: <ooo-1@example.com>\r\n",
        b"I am currently out of the office until 20 March.\r\n"), (SKIPPED, None, None, None)),
    ("forwarded-as-attachment", _mail(
        b"From: Alice <alice@example.com>\r\nSubject: Fwd: my problem\r\nMessage-ID: <fwd-1@example.com>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="o"\r\n',
        b"--o\r\nContent-Type: message/rfc822\r\n\r\nFrom: Alice <alice@example.com>\r\nSubject: =?UTF-8?B?"
        + _b64("投诉：理赔拖延", "utf-8").encode() + b"?=\r\nContent-Type: text/plain; charset=gb18030\r\n\r\n"
        + "我的车险理赔已经拖了两个月，我要投诉。\r\n".encode("gb18030") + b"--o--\r\n"),
        (FILED, "alice@example.com", "Alice", CaseKind.complaint)),
    ("boundary-not-the-declared-one", _mail(
        b"From: Carol <carol@example.com>\r\nSubject: claim\r\nMessage-ID: <brk-1@example.com>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="declared"\r\n',
        b"--used\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe basement flooded last night.\r\n--used\r\n"
        b'Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="photos.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n--used--\r\n"),
        (FILED, "carol@example.com", "Carol", CaseKind.claim)),
    ("multipart-without-any-boundary", _mail(
        b"From: dave@example.com\r\nSubject: claim for my roof\r\nMessage-ID: <nob-1@example.com>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n", b"My roof leaks since the storm.\r\n"),
        (FILED, "dave@example.com", "dave", CaseKind.claim)),
    ("qq-webmail-html-only-gbk", _mail(
        f"From: =?gbk?B?{_b64('刘洋', 'gbk')}?= <12345678@qq.com>\r\nSubject: =?gbk?B?{_b64('住院费用报销', 'gbk')}?=\r\n"
        "Message-ID: <qq-1@qq.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=gbk\r\n"
        "Content-Transfer-Encoding: base64\r\n".encode(),
        base64.encodebytes("<div><font size=3>我上周住院，<b>医疗费用</b>想申请理赔。</font></div><div><br></div>".encode(
            "gbk"))), (FILED, "12345678@qq.com", "刘洋", CaseKind.claim)),
    ("outlook-html-with-quoted-history", _mail(
        b"From: \"Smith, John\" <john.smith@corp.example>\r\nSubject: Complaint about my claim handling\r\n"
        b"Message-ID: <outlook-1@corp.example>\r\nX-Mailer: Microsoft Outlook 16.0\r\nThread-Index: AdkXyz==\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"_000_\"\r\n",
        b"--_000_\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<html xmlns:o=\"urn:schemas-microsoft-com:office:office\">"
        b"<body><p class=MsoNormal>Nobody called me back for three weeks.<o:p></o:p></p>"
        b"<div style='border:none;border-top:solid #E1E1E1 1.0pt'><p><b>From:</b> Claims Desk</p></div></body></html>\r\n"
        b"--_000_--\r\n"), (FILED, "john.smith@corp.example", "Smith, John", CaseKind.complaint)),
    ("chinese-autoreply-without-headers", _mail(
        f"From: =?UTF-8?B?{_b64('周经理', 'utf-8')}?= <zhou@example.cn>\r\nSubject: =?UTF-8?B?"
        f"{_b64('自动回复：关于理赔', 'utf-8')}?=\r\nMessage-ID: <zh-ooo-1@example.cn>\r\n".encode(),
        "您好，我目前不在办公室，将于下周一回复。\r\n".encode()), (SKIPPED, None, None, None)),
    ("bounce-delivery-status", _mail(
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\nSubject: Undelivered Mail\r\n"
        b"Message-ID: <bounce-9@mx.example.com>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\r\n",
        b"--r\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n--r\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.com\r\n\r\nAction: failed\r\nStatus: 5.1.1\r\n--r--\r\n"),
        (SKIPPED, None, None, None)),
    ("many-attachments", _mail(
        b"From: erin@example.com\r\nSubject: claim: photos of the flood damage\r\nMessage-ID: <many-1@example.com>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n",
        b"--m\r\nContent-Type: text/plain\r\n\r\nThe ground floor flooded; 25 photos attached.\r\n" + b"".join(
            b"--m\r\nContent-Type: image/jpeg\r\nContent-Disposition: attachment; filename=\"IMG_%04d.jpg\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n%s\r\n" % (n, base64.b64encode(b"\xff\xd8\xff" + bytes([n])))
            for n in range(25)) + b"--m--\r\n"), (FILED, "erin@example.com", "erin", CaseKind.claim)),
    ("newsletter-from-a-stranger", _mail(
        b"From: news@shop.example\r\nSubject: Offers\r\nMessage-ID: <news-1@shop.example>\r\n"
        b"List-Id: <offers.shop.example>\r\nList-Unsubscribe: <mailto:u@shop.example>\r\n"),
        (SKIPPED, None, None, None)),
]  # fmt: skip
# what the case's description must hold for mails whose text is not in their first part
DESCRIBED = {
    "fwd-1@": "我的车险理赔已经拖了两个月",
    "brk-1@": "The basement flooded",
    "nob-1@": "My roof leaks",
    "qq-1@": "我上周住院，医疗费用想申请理赔",
    "outlook-1@": "Nobody called me back for three weeks",
}


def _customer(session: Session, case_id: int) -> Customer:
    case = session.get(Case, case_id)
    assert case is not None
    customer = session.get(Customer, case.customer_id)
    assert customer is not None
    return customer


@pytest.mark.parametrize(("raw", "expected"), [pytest.param(raw, want, id=name) for name, raw, want in CORPUS])
def test_each_mail_of_the_corpus_gets_what_the_desk_owes_it(world, raw: bytes, expected: tuple) -> None:
    disposition, address, name, kind = expected
    outcome = take_mail(world.engine, world.desk, raw=raw, mailbox="test/INBOX", uid=1, now=world.now)
    assert outcome.disposition == disposition, outcome.reason
    if disposition != FILED:
        return
    with Session(world.engine) as session:
        customer = _customer(session, outcome.case_id)
        case = session.get(Case, outcome.case_id)
        assert customer.email == address
        if name is not None:
            assert customer.name == name
        assert case.kind == kind
        assert "\x00" not in (case.description or "") and "\ufffd" not in (case.description or "")
        names = [a.filename for a in session.exec(select(Attachment).where(Attachment.case_id == case.id))]
    assert "\ufffd" not in "".join(names)
    if "att-1@" in outcome.message_id:
        assert "驾驶证.jpg" in names
    if "brk-1@" in outcome.message_id:
        assert "photos.pdf" in names
    if "many-1@" in outcome.message_id:  # the first 20 kept, the other five named on the case's log
        assert len(names) == 21 and "IMG_0019.jpg" in names and "IMG_0020.jpg" not in names
        with Session(world.engine) as session:
            received = session.exec(select(Event).where(Event.case_id == case.id, Event.type == "mail_received")).one()
        assert [d["name"] for d in received.data["skipped_attachments"]] == [f"IMG_{n:04d}.jpg" for n in range(20, 25)]
    for marker, text in DESCRIBED.items():
        if marker in outcome.message_id:
            assert text in (case.description or ""), case.description


@pytest.mark.parametrize("at_once", [1, 32])
def test_one_mail_that_fails_in_intake_is_recorded_and_the_poll_goes_on(
    world, dovecot: Dovecot, imap_user: str, monkeypatch: pytest.MonkeyPatch, at_once: int
) -> None:
    """The whole corpus in one mailbox, with a mail that trips a fault in the middle (an injected bug): every
    other mail is taken, the faulty one is rejected with the kind of fault and no values, all are flagged seen,
    and a second poll finds nothing left. Each mail in a transaction of its own, and new mails filed in groups
    (the faulty one's group fails, and its mails are taken one by one)."""
    faulty = _mail(b"From: bug@example.com\r\nSubject: trips a bug\r\nMessage-ID: <bug-1@example.com>\r\n")
    dovecot.deliver(imap_user, *(raw for _, raw, _ in CORPUS[:4]), faulty, *(raw for _, raw, _ in CORPUS[4:]))
    real, real_many = mail_tasks.file_mail, mail_tasks.file_new_mails

    def trip(session, message_ids) -> None:
        if "<bug-1@example.com>" in message_ids:
            session.add(Attachment(case_id=10**9, filename="x", content_type="x", size=0, sha256="x",
                                   storage_path="x", source="email", received_at=world.now))  # fmt: skip
            session.flush()  # a foreign key the database refuses: a fault of this mail only

    def buggy(session, desk, **kwargs):
        trip(session, [kwargs["mail"].message_id])
        return real(session, desk, **kwargs)

    def buggy_many(session, desk, mails, **kwargs):  # the group it is filed with fails, then each is taken alone
        trip(session, [f.mail.message_id for f in mails])
        return real_many(session, desk, mails, **kwargs)

    monkeypatch.setattr(mail_tasks, "file_mail", buggy)
    monkeypatch.setattr(mail_tasks, "file_new_mails", buggy_many)
    desk = mail_desk(world, dovecot, imap_user, mail_file_at_once=at_once)
    report = poll(world.engine, desk, now=lambda: world.now)
    wanted = [want[0] for _, _, want in CORPUS]
    assert [o.disposition for o in report.outcomes] == [*wanted[:4], REJECTED, *wanted[4:]]
    assert all(dovecot.flags(imap_user).values())
    with Session(world.engine) as session:
        row = session.exec(select(MailMessage).where(MailMessage.message_id == "<bug-1@example.com>")).one()
        filed = session.exec(select(Case).order_by(col(Case.id))).all()
    assert row.disposition == REJECTED
    assert row.reason.startswith("failed in intake: the database refused it: ") and "bug@" not in row.reason
    assert len(filed) == wanted.count(FILED)
    assert poll(world.engine, desk, now=lambda: world.now).outcomes == []


# --- any bytes at all -------------------------------------------------------------------------------------------


def _spliced(draw, base: bytes) -> bytes:
    """A corpus mail with arbitrary bytes put in at arbitrary places (headers, boundaries, bodies)."""
    from hypothesis import strategies as st

    raw = bytearray(base)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(raw)))
        raw[at:at] = draw(st.binary(min_size=1, max_size=6) | st.sampled_from([b"\x00", b"\xff\xfe", b"\r\n", b"=?"]))
    return bytes(raw)


def test_no_bytes_as_a_mail_escape_as_an_error_and_each_is_recorded_once(world) -> None:
    """Whatever bytes arrive as a mail (a corpus mail with bytes spliced in, or noise), taking it ends in an
    outcome recorded in the database (filed, appended, skipped, rejected, or a duplicate of one recorded): it
    never raises, so it can neither stop a poll nor stay unseen to block the mail behind it."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    mails = st.one_of(
        st.sampled_from([raw for _, raw, _ in CORPUS]).flatmap(lambda base: st.composite(_spliced)(base)),
        st.binary(max_size=400),
    )
    taken: list[str] = []

    # no deadline: each example is a database transaction on a shared machine (a timing is no finding here)
    @settings(max_examples=80, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
    @given(raw=mails)
    def take_any(raw: bytes) -> None:
        outcome = take_mail(world.engine, world.desk, raw=raw, mailbox="fuzz/INBOX", uid=None, now=world.now)
        taken.append(outcome.message_id)
        with Session(world.engine) as session:
            assert session.exec(select(MailMessage).where(MailMessage.dedup_key == outcome.key)).one()

    take_any()
    assert taken


def test_a_rejected_mail_is_listed_and_taken_again_after_the_fix(
    world, dovecot: Dovecot, imap_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.mail import ImapConfig, ImapMailbox, mail_rows, retry_mail

    dovecot.deliver(
        imap_user, _mail(b"From: again@example.com\r\nSubject: car claim\r\nMessage-ID: <again-1@example.com>\r\n")
    )
    real = mail_tasks.file_mail

    def broken(session, desk, **kwargs):
        raise RuntimeError("a bug in this version")

    monkeypatch.setattr(mail_tasks, "file_mail", broken)
    desk = mail_desk(world, dovecot, imap_user)
    assert [o.disposition for o in poll(world.engine, desk, now=lambda: world.now).outcomes] == [REJECTED]
    with Session(world.engine) as session:
        [row] = mail_rows(session, dispositions=[REJECTED])
    assert row.reason == "failed in intake: RuntimeError" and row.uid == 1

    monkeypatch.setattr(mail_tasks, "file_mail", real)  # the fix is deployed
    with ImapMailbox(ImapConfig.from_settings(desk.settings)) as mailbox:
        with pytest.raises(Exception, match="only a rejected or skipped mail"):
            _filed_row_retry(world, mailbox)
        retry_mail(world.engine, mail_id=row.id, source=mailbox)
    assert dovecot.flags(imap_user) == {1: False}
    again = poll(world.engine, desk, now=lambda: world.now)
    assert [o.disposition for o in again.outcomes] == [FILED]
    with Session(world.engine) as session:
        assert [r.disposition for r in mail_rows(session)] == [FILED]


def _filed_row_retry(world, mailbox) -> None:
    """Retrying a mail that was filed is refused (it was taken)."""
    from models.tables import MailMessage
    from tasks.mail import retry_mail

    with session_scope(world.engine) as session:
        row = MailMessage(
            dedup_key="f" * 64,
            message_id="<filed@x>",
            mailbox=mailbox.name,
            uid=99,
            disposition=FILED,
            received_at=world.now,
        )
        session.add(row)
        session.flush()
        row_id = row.id
    try:
        retry_mail(world.engine, mail_id=row_id, source=mailbox)
    finally:
        with session_scope(world.engine) as session:
            session.delete(session.get(MailMessage, row_id))
