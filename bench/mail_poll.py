"""E-mail intake benchmark: poll a Dovecot mailbox of N mails into the desk, against plain imaplib in the same run.

    python bench/mail_poll.py                      # 1,000 mails, SQLite file in a temporary folder
    python bench/mail_poll.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_mail
    python bench/mail_poll.py --count 300 --batch 100 --seed 7
    CLAIMFLOW_MAIL_FILE_AT_ONCE=1 python bench/mail_poll.py   # every mail in a transaction of its own (before)

It starts a throwaway Dovecot (``tests/imap.py``: ``dovecot -F`` on free ports, maildir in a temporary folder) and
appends N mails made with a fixed seed, a mix like real intake: new claims, complaints and inquiries in zh-CN
(UTF-8, GB18030, GBK, Big5) and en (plain or HTML), some with a small attachment, replies to earlier mails
(In-Reply-To), auto-replies, the same mail delivered twice, and a few without any sender. The baseline reads the
same mails with plain imaplib (UID SEARCH UNSEEN; per mail FETCH RFC822.SIZE, FETCH BODY.PEEK[], STORE \\Seen:
the poller's commands) and parses each with ``email.message_from_bytes``, no database; the flags are then reset.
Then ``tasks.mail.poll_mailbox`` takes them in batches (one connection per batch, as ``poll`` does) into a migrated
database with the sample staff (capacity raised: hundreds of cases are filed), until no mail is unseen. It prints
the count per disposition (against what the corpus should give), mails/s and ms/mail of both, and the ratio.
A PostgreSQL database must exist (``createdb -h 127.0.0.1 -U postgres bench_mail``) and be disposable: the bench
creates the schema and truncates the tables the intake writes. A SQLite URL must name a new file.
"""

from __future__ import annotations

import argparse
import base64
import email
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("CLAIMFLOW_DESK_PHONE", "95500")  # a configured desk: acknowledgements queued, not held

from claimflow.db import create_db_engine, session_scope
from claimflow.demo import sample_directory
from claimflow.migrate import upgrade
from claimflow.settings import Settings
from tasks.mail import APPENDED, DUPLICATE, FAILED, FILED, REJECTED, SKIPPED, ImapConfig, ImapMailbox, poll_mailbox
from tasks.staff import import_directory
from tasks.workflow import Desk
from tests.imap import Dovecot, run_dovecot

TABLES = 'mail_message, attachment, event, step, document_requirement, feedback, outbox, "case", customer, case_counter'
ZH = [("【理赔】我的车子被撞了", "我的车在京沪高速上被追尾，后保险杠和尾灯都坏了，请尽快安排定损。"),
      ("住院医疗费用理赔申请", "我上个月住院五天，发票和出院小结随后补上，请帮忙办理理赔。"),
      ("投诉：理赔太慢", "三个星期了还没有任何消息，电话也打不通，我要投诉。"),
      ("咨询：理疗是否在保障范围内", "请问我的医疗险是否包括理疗？每年最多可以报销几次？")]  # fmt: skip
BIG5 = [("對理賠結果不滿", "我要投訴，車禍理賠拖了兩個月還沒有結果。"),
        ("理賠申請：房屋漏水", "樓上漏水把天花板泡壞了，請派人來查勘。")]  # fmt: skip
EN = [("Car accident claim", "I was rear-ended at a traffic light; the bumper and a tail light are broken."),
      ("Complaint about the assessor", "The assessor was late twice and nobody called me back."),
      ("Question about my policy", "Is physiotherapy covered by my health policy, and how often?"),
      ("Water damage claim", "A pipe burst in the kitchen and flooded the floor of two rooms.")]  # fmt: skip
NAMES = {"zh": ["张伟", "王芳", "李娜", "刘洋", "陈静"], "big5": ["陳大文", "黃美玲"], "en": ["Alice Smith", "Bob Li"]}
FILES = ["现场照片.jpg", "驾驶证.jpg", "invoice.pdf", "出院小结.pdf", "photo.jpg"]


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def compose(sender: tuple[str, str] | None, subject: str, body: str, charset: str, message_id: str, *,
            extra: tuple[str, ...] = (), html: bool = False, attachment: tuple[str, bytes] | None = None
            ) -> bytes:  # fmt: skip
    """A mail as a mail client writes it: RFC 2047 headers and a base64 body in ``charset``, maybe a file."""

    def word(value: str) -> str:
        return value if value.isascii() else f"=?{charset}?B?{base64.b64encode(value.encode(charset)).decode()}?="

    head = [f"From: {word(sender[0])} <{sender[1]}>"] if sender else []
    head += ["To: service@insurer.example", f"Subject: {word(subject)}", f"Message-ID: {message_id}",
             f"Date: {formatdate(1_772_415_000, usegmt=True)}", "MIME-Version: 1.0", *extra]  # fmt: skip
    content = f"<html><body><p>{body}</p><p>--<br>{sender[0] if sender else ''}</p></body></html>" if html else body
    part = (f"Content-Type: text/{'html' if html else 'plain'}; charset={charset}\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n").encode() + _b64(content.encode(charset))  # fmt: skip
    if attachment is None:
        return ("\r\n".join(head) + "\r\n").encode() + part
    name, data = attachment
    kind = "application/pdf" if name.endswith(".pdf") else "image/jpeg"
    head.append('Content-Type: multipart/mixed; boundary="=-part-="')
    return (("\r\n".join(head) + "\r\n\r\n--=-part-=\r\n").encode() + part + (
        f"--=-part-=\r\nContent-Type: {kind}\r\nContent-Disposition: attachment; filename*=UTF-8''{quote(name)}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n").encode() + _b64(data) + b"--=-part-=--\r\n")  # fmt: skip


def corpus(count: int, seed: int) -> tuple[list[bytes], Counter[str]]:
    """``count`` mails and the disposition each should get."""
    rng = random.Random(seed)
    mails: list[bytes] = []
    expected: Counter[str] = Counter()
    threads: list[tuple[str, tuple[str, str], str, str]] = []  # filed mails: Message-ID, sender, subject, charset
    for index in range(count):
        roll, message_id = rng.random(), f"<bench-{seed}-{index}@mail.example.com>"
        lang = rng.choices(["zh", "big5", "en"], weights=[6, 1, 3])[0]
        charset = {"zh": rng.choice(["utf-8", "gb18030", "gbk"]), "big5": "big5", "en": "utf-8"}[lang]
        sender = (rng.choice(NAMES[lang]), f"customer{rng.randrange(400)}@example.com")
        files = (rng.choice(FILES), b"\xff\xd8\xff\xe0" + rng.randbytes(rng.randrange(2_000, 30_000)))
        attachment = files if rng.random() < 0.3 else None
        if roll < 0.04 and mails:  # the same mail delivered twice (two aliases of the desk)
            mails.append(rng.choice(mails))
            expected[DUPLICATE] += 1
        elif roll < 0.19 and threads:  # the customer answers (with the documents, say)
            ref, sender, subject, charset = rng.choice(threads)
            body = {"utf-8": "Documents attached.", "big5": "補充材料見附件。"}.get(charset, "补充材料见附件。")
            mails.append(compose(sender, f"Re: {subject}", body, charset, message_id, attachment=attachment,
                                 extra=(f"In-Reply-To: {ref}", f"References: {ref}")))  # fmt: skip
            expected[APPENDED] += 1
        elif roll < 0.25:  # an out-of-office answering the desk's acknowledgement
            mails.append(compose(sender, "Automatic reply: your claim", "I am away until Monday.", "utf-8",
                                 message_id, extra=("Auto-Submitted: auto-replied",)))  # fmt: skip
            expected[SKIPPED] += 1
        elif roll < 0.26:  # nobody to answer
            mails.append(compose(None, "hello", "no sender at all", "utf-8", message_id))
            expected[REJECTED] += 1
        else:
            subject, body = rng.choice({"zh": ZH, "big5": BIG5, "en": EN}[lang])
            html = lang == "en" and rng.random() < 0.4
            mails.append(compose(sender, subject, body, charset, message_id, html=html, attachment=attachment))
            threads.append((message_id, sender, subject, charset))
            expected[FILED] += 1
    return mails, expected


def baseline(dovecot: Dovecot, user: str) -> tuple[int, float]:
    """Plain imaplib, one connection: what the poller does at the protocol level, and a parse; then unseen again."""
    imap = dovecot.connect(user)
    try:
        imap.select("INBOX")
        started = time.perf_counter()
        _, found = imap.uid("SEARCH", "UNSEEN")
        uids = [uid.decode() for uid in found[0].split()]
        for uid in uids:
            imap.uid("FETCH", uid, "(RFC822.SIZE)")
            _, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
            email.message_from_bytes(data[0][1])
            imap.uid("STORE", uid, "+FLAGS.SILENT", "(\\Seen)")
        elapsed = time.perf_counter() - started
        imap.uid("STORE", "1:*", "-FLAGS.SILENT", "(\\Seen)")
    finally:
        imap.logout()
    return len(uids), elapsed


def prepare_database(url: str) -> Engine:
    engine = create_db_engine(url)
    upgrade(engine)
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("SET LOCAL session_replication_role = replica"))  # past the log's TRUNCATE guard
            connection.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    with session_scope(engine) as session:
        import_directory(session, directory=sample_directory())
        session.execute(text("UPDATE staff SET capacity = 1000000"))  # hundreds of open cases by design
    return engine


@contextmanager
def server() -> Iterator[Dovecot]:
    """Dovecot from the tests' helper, stopped on the way out (error, Ctrl-C or SIGTERM alike)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a finally runs on SIGTERM too
    try:
        with contextmanager(run_dovecot)() as dovecot:
            yield dovecot
    except pytest.skip.Exception as exc:  # the helper skips a test where Dovecot is missing or does not start
        raise SystemExit(f"no IMAP server: {exc}") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--batch", type=int, default=None, help="mails per poll (default: the desk's setting)")
    parser.add_argument("--seed", type=int, default=20260302)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="claimflow-bench-") as tmp, server() as dovecot:
        os.environ["CLAIMFLOW_DATA_DIR"] = tmp  # attachments (and anything else the desk writes) go there
        user = "benchdesk"
        mails, expected = corpus(args.count, args.seed)
        started = time.perf_counter()
        dovecot.deliver(user, *mails)
        append_seconds = time.perf_counter() - started
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = prepare_database(url)
        extra = {"mail_batch_size": args.batch} if args.batch else {}
        settings = Settings().model_copy(update={"database_url": url, **dovecot.settings_for(user), **extra})
        desk, config = Desk.of(settings), ImapConfig.from_settings(settings)
        try:
            read, base_seconds = baseline(dovecot, user)
            totals: Counter[str] = Counter()
            polls, started = 0, time.perf_counter()
            while True:
                with ImapMailbox(config) as mailbox:
                    report = poll_mailbox(engine, desk, source=mailbox, now=lambda: datetime.now(UTC),
                                          limit=settings.mail_batch_size)  # fmt: skip
                polls += 1
                totals.update(report.counts)
                if not report.outcomes:
                    break
            poll_seconds = time.perf_counter() - started
        finally:
            engine.dispose()
        unseen = sum(not seen for seen in dovecot.flags(user).values())

    taken = sum(totals[d] for d in (FILED, APPENDED, SKIPPED, DUPLICATE, REJECTED))
    print(f"database: {engine.dialect.name}; mails: {args.count} ({sum(map(len, mails)) / 1e6:.1f} MB, appended in "
          f"{append_seconds:.1f} s); batch: {settings.mail_batch_size}; polls: {polls}; seed: {args.seed}")  # fmt: skip
    print("dispositions (expected): " + ", ".join(
        f"{d} {totals[d]} ({expected[d]})" for d in (FILED, APPENDED, SKIPPED, DUPLICATE, REJECTED)
    ) + f"; failed {totals[FAILED]}; left unseen {unseen}")  # fmt: skip
    poll_rate, base_rate = taken / poll_seconds, read / base_seconds
    print(f"poll_mailbox (parse + file + commit + flag): {poll_rate:8.1f} mails/s  "
          f"{1000 * poll_seconds / max(taken, 1):7.2f} ms/mail ({poll_seconds:.2f} s)")  # fmt: skip
    print(f"plain imaplib + message_from_bytes:          {base_rate:8.1f} mails/s  "
          f"{1000 * base_seconds / max(read, 1):7.2f} ms/mail ({base_seconds:.2f} s)")  # fmt: skip
    print(f"ratio poll/baseline: {poll_rate / base_rate:.3f} (baseline is {base_rate / poll_rate:.1f}x faster)")
    ok = taken == read == args.count and unseen == 0 and totals == expected
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Dovecot and the temporary folder are gone by now
        sys.exit(130)
