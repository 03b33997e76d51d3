"""E-mail intake rules: classification, case numbers, automatic mail, parsing, documents."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from models.enums import CaseKind
from models.mail import (
    MailLimits,
    MailRejected,
    automatic_reason,
    classify,
    document_type_for,
    find_case_number,
    guess_language,
    header_message_id,
    html_to_text,
    parse_message,
    safe_filename,
    synthetic_message_id,
    trim_text,
)

# --- classification ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "body", "kind", "rule"),
    [
        pytest.param("[投诉] 理赔太慢", "", CaseKind.complaint, "subject tag [投诉]", id="zh-complaint-tag-beats-claim-word"),
        pytest.param("【理赔】车辆事故", "", CaseKind.claim, "subject tag [理赔]", id="zh-fullwidth-claim-tag"),
        pytest.param("[Claim] rear-ended on the ring road", "", CaseKind.claim, "subject tag [Claim]", id="en-claim-tag"),
        pytest.param("[咨询] 投诉流程", "", CaseKind.inquiry, "subject tag [咨询]", id="inquiry-tag-wins-over-keyword"),
        pytest.param("[URGENT] complaint about my claim", "", CaseKind.complaint, "subject keyword 'complaint'",
                     id="unknown-tag-ignored-complaint-before-claim"),
        pytest.param("Car accident claim", "", CaseKind.claim, "subject keyword 'claim'", id="en-claim-word"),
        pytest.param("I want to complain", "", CaseKind.complaint, "subject keyword 'complain'", id="en-complain-verb"),
        pytest.param("关于理赔进度", "", CaseKind.claim, "subject keyword '理赔'", id="zh-claim-word"),
        pytest.param("Hello", "我要投诉你们的客服", CaseKind.complaint, "body keyword '投诉'", id="zh-complaint-in-body"),
        pytest.param("Question", "How do I file a claim?", CaseKind.claim, "body keyword 'claim'", id="claim-word-in-body"),
        pytest.param("Reclaimed wood", "", CaseKind.inquiry, "no claim or complaint keyword",
                     id="claim-inside-a-word-is-not-a-claim"),
        pytest.param("Opening hours?", "", CaseKind.inquiry, "no claim or complaint keyword", id="nothing-is-an-inquiry"),
    ],
)  # fmt: skip
def test_classify(subject: str, body: str, kind: CaseKind, rule: str) -> None:
    result = classify(subject, body)
    assert (result.kind, result.rule) == (kind, rule)


def test_classify_reads_only_the_start_of_the_body() -> None:
    quoted = "x" * 2500 + "\n> 我要投诉"
    assert classify("Hello", quoted).kind == CaseKind.inquiry


@pytest.mark.parametrize(
    ("subject", "number"),
    [
        pytest.param("Re: Your claim CLM-2026-000123 was received", "CLM-2026-000123", id="claim-number"),
        pytest.param("回复：您的投诉 cmp-2026-000045 已受理", "CMP-2026-000045", id="lower-case-zh"),
        pytest.param("Fwd: INQ-2027-1234567", "INQ-2027-1234567", id="seven-digits"),
        pytest.param("[CLM-2026-000001]", "CLM-2026-000001", id="in-brackets"),
        pytest.param("XCLM-2026-000001", None, id="glued-to-a-word"),
        pytest.param("CLM-2026-00012", None, id="too-few-digits"),
        pytest.param("Policy P-778899", None, id="no-case"),
    ],
)
def test_find_case_number(subject: str, number: str | None) -> None:
    assert find_case_number(subject) == number


@pytest.mark.parametrize(
    ("text", "language"),
    [("我的车被撞了", "zh-CN"), ("My car, 车牌 ABC", "zh-CN"), ("My car was hit", "en"), ("", "en")],
)
def test_guess_language(text: str, language: str) -> None:
    assert guess_language(text) == language


# --- automatic mail ------------------------------------------------------------------------------------------


def _message(headers: str, body: str = "hi") -> EmailMessage:
    raw = f"From: someone@example.com\r\nSubject: x\r\n{headers}\r\n\r\n{body}\r\n".encode()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        pytest.param("Auto-Submitted: auto-replied", "Auto-Submitted: auto-replied", id="auto-replied"),
        pytest.param("Auto-Submitted: auto-generated; owner-email=x@y", "Auto-Submitted: auto-generated",
                     id="auto-generated-with-params"),
        pytest.param("Auto-Submitted: no", None, id="auto-submitted-no-is-a-person"),
        pytest.param('Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
                     "delivery status report (bounce)", id="dsn"),
        pytest.param('Content-Type: multipart/report; report-type=disposition-notification; boundary="b"', None,
                     id="read-receipt-is-not-a-bounce"),
        pytest.param("X-Autoreply: yes", "x-autoreply header", id="x-autoreply"),
        pytest.param("X-Auto-Response-Suppress: OOF", "X-Auto-Response-Suppress header", id="exchange-oof"),
        pytest.param("Precedence: bulk", "Precedence: bulk", id="bulk"),
        pytest.param("Precedence: first-class", None, id="other-precedence"),
        pytest.param("", None, id="a-person"),
    ],
)  # fmt: skip
def test_automatic_reason(headers: str, reason: str | None) -> None:
    assert automatic_reason(_message(headers)) == reason


def test_mailer_daemon_sender_is_automatic() -> None:
    raw = b"From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\nSubject: Undelivered\r\n\r\nsorry\r\n"
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert automatic_reason(message) == "sent by a mailer daemon"


# --- parsing ------------------------------------------------------------------------------------------------

CHINESE_SUBJECT = (
    b"From: =?UTF-8?B?5byg5LiJ?= <zhang.san@example.com>\r\n"
    b"To: service@insurer.example\r\n"
    b"Subject: =?GB2312?B?ob7A7cXiob/O0rXEs7XX0w==?= =?UTF-8?Q?_=E8=A2=AB=E6=92=9E?=\r\n"
    b"Message-ID: <abc-1@example.com>\r\n"
    b"In-Reply-To: <ack-9@insurer.example>\r\n"
    b"References: <first@insurer.example> <ack-9@insurer.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"5oiR55qE6L2m5Zyo5Lqs5rKq6auY6YCf5LiK6KKr6L+95bC+\r\n"
)


def test_rfc2047_chinese_subject_sender_and_threading() -> None:
    mail = parse_message(CHINESE_SUBJECT)
    assert mail.subject == "【理赔】我的车子 被撞"  # GB2312 and UTF-8 encoded words, joined
    assert (mail.from_address, mail.from_name) == ("zhang.san@example.com", "张三")
    assert mail.message_id == "<abc-1@example.com>"
    assert mail.text == "我的车在京沪高速上被追尾"
    assert mail.language == "zh-CN"
    assert mail.replied_to == ("<ack-9@insurer.example>", "<first@insurer.example>")
    assert mail.automatic is None
    assert classify(mail.subject, mail.text).kind == CaseKind.claim


def multipart_with_attachments(*files: tuple[str, str, bytes], body: str = "Please find attached.") -> bytes:
    message = EmailMessage()
    message["From"] = "Alice Smith <alice@example.com>"
    message["To"] = "service@insurer.example"
    message["Subject"] = "Documents"
    message["Message-ID"] = "<docs-1@example.com>"
    message.set_content(body)
    message.add_alternative(f"<p>{body}</p>", subtype="html")
    for name, content_type, data in files:
        maintype, subtype = content_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes()


def test_multipart_with_attachments_within_limits() -> None:
    raw = multipart_with_attachments(
        ("repair_invoice.pdf", "application/pdf", b"%PDF-1.4 invoice"),
        ("维修照片.jpg", "image/jpeg", b"\xff\xd8\xff" + b"x" * 5000),
        ("../../etc/passwd", "text/plain", b"root:x:0:0"),
    )
    mail = parse_message(raw, MailLimits(max_attachment_bytes=1000))
    assert mail.text == "Please find attached."  # the plain alternative, not the HTML one
    assert [(a.filename, a.content_type, a.data) for a in mail.attachments] == [
        ("repair_invoice.pdf", "application/pdf", b"%PDF-1.4 invoice"),
        ("passwd", "text/plain", b"root:x:0:0"),  # no folders from the sender
    ]
    assert mail.skipped_attachments == ("维修照片.jpg: 5003 bytes, limit 1000",)
    assert mail.language == "en"


def test_too_many_attachments_are_skipped_not_fatal() -> None:
    raw = multipart_with_attachments(*[(f"f{i}.txt", "text/plain", b"x") for i in range(3)])
    mail = parse_message(raw, MailLimits(max_attachments=2))
    assert [a.filename for a in mail.attachments] == ["f0.txt", "f1.txt"]
    assert mail.skipped_attachments == ("f2.txt: more than 2 attachments",)


HTML_ONLY = (
    b"From: bob@example.com\r\n"
    b"Subject: Opening hours\r\n"
    b"Message-ID: <html-1@example.com>\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<html><head><title>t</title><style>p{color:red}</style></head><body>"
    b"<p>When are you open?</p><script>alert(1)</script><ul><li>Saturday</li><li>Sunday &amp; holidays</li></ul>"
    b"</body></html>\r\n"
)


def test_html_only_mail_becomes_text() -> None:
    mail = parse_message(HTML_ONLY)
    assert mail.text == "When are you open?\n\n- Saturday\n\n- Sunday & holidays"
    assert mail.from_name == "bob"  # no display name: the address's local part


def test_html_to_text_drops_scripts_and_keeps_blocks() -> None:
    assert html_to_text("<div>a<br>b</div><script>x</script>c &lt;d&gt;") == "a\nb\nc <d>"


def test_missing_message_id_gets_a_stable_synthetic_one() -> None:
    raw = b"From: bob@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
    assert parse_message(raw).message_id == parse_message(raw).message_id == synthetic_message_id(raw)
    assert parse_message(raw + b"!").message_id != synthetic_message_id(raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b"Subject: hi\r\nMessage-ID: <n@x>\r\n\r\nbody\r\n", "no usable From address", id="no-from"),
        pytest.param(b"From: undisclosed\r\nMessage-ID: <n@x>\r\n\r\nbody\r\n", "no usable From address",
                     id="from-without-address"),
    ],
)  # fmt: skip
def test_rejected_mail_keeps_its_message_id(raw: bytes, reason: str) -> None:
    with pytest.raises(MailRejected) as rejected:
        parse_message(raw)
    assert rejected.value.reason == reason
    assert rejected.value.message_id == "<n@x>"


def test_too_big_mail_is_rejected_before_parsing() -> None:
    raw = b"From: a@example.com\r\nMessage-ID: <big@x>\r\n\r\n" + b"x" * 2000
    with pytest.raises(MailRejected, match="message too big: 2044 bytes, limit 1000") as rejected:
        parse_message(raw, MailLimits(max_message_bytes=1000))
    assert rejected.value.message_id == "<big@x>"


def test_garbage_bytes_never_raise_anything_but_a_rejection() -> None:
    for raw in (b"", b"\x00\xff\xfe", b"From: <>\r\n\r\n", b"Content-Type: multipart/mixed\r\n\r\n--"):
        with pytest.raises(MailRejected):
            parse_message(raw)


def test_unknown_charset_is_read_as_far_as_possible() -> None:
    raw = b"From: a@example.com\r\nContent-Type: text/plain; charset=x-no-such\r\n\r\nplain ascii\r\n"
    assert parse_message(raw).text == "plain ascii"


def test_header_message_id() -> None:
    assert header_message_id(b"Message-ID: <a@b>\r\nSubject: x\r\n\r\n") == "<a@b>"
    assert header_message_id(b"Subject: x\r\n\r\n").endswith("@claimflow.invalid>")


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\a\\invoice.pdf", "invoice.pdf"),
        (".htaccess", "htaccess"),
        ("a\x00b<c>.pdf", "a_b_c_.pdf"),
        ("   ", "attachment"),
        ("x" * 300 + ".pdf", "x" * 146 + ".pdf"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


def test_trim_text_collapses_blank_lines_and_caps() -> None:
    assert trim_text("  a  \r\n\r\n\r\n\r\nb\n", 100) == "a\n\nb"
    assert trim_text("x" * 50, 20) == "x" * 14 + "\n[...]"


# --- documents ----------------------------------------------------------------------------------------------

MOTOR = (
    "claim form", "driving licence", "vehicle licence", "police or accident report", "repair invoice",
    "photos of the damage", "bank account details",
)  # fmt: skip


@pytest.mark.parametrize(
    ("filename", "subject", "expected"),
    [
        pytest.param("repair_invoice.pdf", "", "repair invoice", id="phrase-in-file-name"),
        pytest.param("Repair-Invoice-2026.PDF", "", "repair invoice", id="case-and-dashes-ignored"),
        pytest.param("damage-photos-2.jpg", "", "photos of the damage", id="all-words-any-order"),
        pytest.param("驾驶证.jpg", "", "driving licence", id="chinese-alias"),
        pytest.param("accident_report.pdf", "", "police or accident report", id="english-alias"),
        pytest.param("scan001.pdf", "Re: CLM-2026-000001 my driving licence", "driving licence",
                     id="subject-names-one-type"),
        pytest.param("scan001.pdf", "driving licence and repair invoice", None, id="subject-names-two-types"),
        pytest.param("licence.jpg", "", None, id="ambiguous-word-matches-nothing"),
        pytest.param("invoice.pdf", "", None, id="half-a-type-is-not-a-match"),
    ],
)  # fmt: skip
def test_document_type_for(filename: str, subject: str, expected: str | None) -> None:
    assert document_type_for(filename, MOTOR, subject=subject) == expected


def test_document_type_is_one_that_was_requested() -> None:
    assert document_type_for("repair_invoice.pdf", ("claim form",)) is None
    assert document_type_for("Claim_Form.pdf", ("Claim Form",)) == "Claim Form"


@pytest.mark.parametrize(
    ("subject", "body", "kind"),
    [
        pytest.param("【理賠】車禍", "", CaseKind.claim, id="traditional-claim-tag"),
        pytest.param("[投訴] 服務態度差", "", CaseKind.complaint, id="traditional-complaint-tag"),
        pytest.param("對理賠結果不滿", "", CaseKind.complaint, id="traditional-dissatisfied-before-claim"),
        pytest.param("［咨询］ 保单", "", CaseKind.inquiry, id="full-width-brackets"),
        pytest.param("〔投訴〕", "", CaseKind.complaint, id="tortoise-shell-brackets"),
        pytest.param("Question", "I do not want to complain, just ask about my policy", CaseKind.inquiry,
                     id="negated-complain"),
        pytest.param("您好", "这不是投诉，只是想问问保单", CaseKind.inquiry, id="negated-zh"),
        pytest.param("Hi", "No complaint, but I want to claim for my car", CaseKind.claim, id="negated-then-claim"),
        pytest.param("Hello", "I complain: nobody called me back", CaseKind.complaint, id="plain-complaint-stays"),
    ],
)  # fmt: skip
def test_classify_reads_traditional_chinese_full_width_brackets_and_negation(subject: str, body: str, kind) -> None:
    assert classify(subject, body).kind == kind


@pytest.mark.parametrize(
    ("subject", "body", "line"),
    [("我的车被撞了", "", "motor"), ("車禍理賠", "", "motor"), ("Claim", "rear-ended at a junction", "motor"),
     ("住院费用报销", "", "health"), ("Flight cancelled", "my luggage is lost", "travel"), ("家里漏水", "", "property"),
     ("身故理赔", "", "life"), ("我对理赔结果不满", "", None), ("hello", "", None)],
)  # fmt: skip
def test_the_product_line_is_read_from_the_words(subject: str, body: str, line: str | None) -> None:
    from models.mail import infer_product_line

    assert infer_product_line(subject, body) == line


@pytest.mark.parametrize(
    ("subject", "body", "automatic"),
    [("Automatic reply: your claim", "", True), ("Out of Office: Re: CLM-2026-000001", "", True),
     ("自动回复：您的来信已收到", "", True), ("Re: CLM-2026-000001", "I am currently out of the office until Monday", True),
     ("回复：理赔", "我目前不在办公室，将于下周回来", True), ("外出旅行时手机被盗", "", False),
     ("Car stolen", "I am on holiday and my car was stolen", False), ("Re: claim", "Thanks, documents attached", False)],
)  # fmt: skip
def test_an_out_of_office_without_its_headers_is_recognised_by_its_words(
    subject: str, body: str, automatic: bool
) -> None:
    from models.mail import automatic_by_text

    assert (automatic_by_text(subject, body) is not None) == automatic
