"""E-mail over pooled SMTP connections (tasks.mailpool), against a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import time
from collections.abc import Iterator
from email import policy as email_policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tasks.mailpool import MailPool, SendError, _send_with_apprise
from tasks.outbox import OUTBOX_ID_HEADER, Outgoing, add_query
from tests.ports import free_port


class Server:
    """aiosmtpd that keeps each message with the connection it came on, and refuses the addresses in
    ``refuse``."""

    def __init__(self, **smtp: Any) -> None:
        self.port = free_port()
        self.messages: list[tuple[int, EmailMessage]] = []
        self.connections = 0
        self.refuse: set[str] = set()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **smtp)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.connections += 1
        session.number = self.connections
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email_policy.default)
        self.messages.append((session.number, parsed))  # type: ignore[arg-type]
        return "250 OK"

    def url(self, to: str, outbox_id: int) -> str:
        base = f"mailto://127.0.0.1:{self.port}?mode=insecure&from=desk@insurer.example"
        return add_query(base, to=to, **{f"+{OUTBOX_ID_HEADER}": str(outbox_id)})


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    running.controller.start()
    yield running
    running.controller.stop()


def outgoing(server: Server, number: int, to: str = "zhang.san@example.com") -> Outgoing:
    return Outgoing(
        outbox_id=number,
        attempt=1,
        channel="email",
        recipient="customer:1",
        subject=f"理赔申请已受理：CLM-2026-{number:06d}",
        text=f"尊敬的张三：\n案件号为 CLM-2026-{number:06d}。",
        html=f"<p>尊敬的张三：</p><p>案件号为 CLM-2026-{number:06d}。</p>",
        urls=(server.url(to, number),),
    )


def test_many_messages_share_a_few_connections_and_each_arrives_once(server: Server) -> None:
    with MailPool(max_per_connection=100) as pool:
        for number in range(1, 251):
            pool.send(outgoing(server, number))

    assert pool.connections_opened == 3 == server.connections  # 100 + 100 + 50
    ids = [int(message[OUTBOX_ID_HEADER]) for _, message in server.messages]
    assert sorted(ids) == list(range(1, 251))
    assert [sum(1 for n, _ in server.messages if n == c) for c in (1, 2, 3)] == [100, 100, 50]


def test_a_pooled_message_is_the_message_apprise_itself_sends(server: Server) -> None:
    item = outgoing(server, 7)
    _send_with_apprise(item.urls[0], item)  # apprise.notify, a connection of its own
    with MailPool() as pool:
        pool.send(item)

    (_, by_apprise), (_, pooled) = server.messages
    skip = {"Message-ID", "Date", "Content-Type"}  # a message's own id, time and MIME boundary
    assert [(k, v) for k, v in pooled.items() if k not in skip] == [
        (k, v) for k, v in by_apprise.items() if k not in skip
    ]
    assert pooled.get_content_type() == by_apprise.get_content_type() == "multipart/alternative"
    assert pooled["Subject"] == "理赔申请已受理：CLM-2026-000007" and pooled[OUTBOX_ID_HEADER] == "7"
    assert pooled["Message-ID"] != by_apprise["Message-ID"]
    for kind in ("plain", "html"):
        mine, theirs = pooled.get_body((kind,)), by_apprise.get_body((kind,))
        assert mine is not None and theirs is not None
        assert mine.get_content() == theirs.get_content()
    html = pooled.get_body(("html",))
    assert html is not None and "尊敬的张三" in html.get_content()


def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_failure() -> None:
    server = Server(timeout=0.3)  # the server hangs up on a connection idle for 0.3 s
    server.controller.start()
    try:
        with MailPool() as pool:
            pool.send(outgoing(server, 1))
            time.sleep(1.0)
            pool.send(outgoing(server, 2))
    finally:
        server.controller.stop()
    assert [(n, int(m[OUTBOX_ID_HEADER])) for n, m in server.messages] == [(1, 1), (2, 2)]
    assert pool.connections_opened == 2


def test_a_refused_recipient_fails_that_message_only_and_the_connection_goes_on(server: Server) -> None:
    server.refuse = {"gone@example.com"}
    with MailPool() as pool:
        pool.send(outgoing(server, 1))
        with pytest.raises(SendError) as refused:
            pool.send(outgoing(server, 2, to="gone@example.com"))
        pool.send(outgoing(server, 3))

    assert not refused.value.permanent
    assert "550" in str(refused.value) and "mailbox unavailable" in str(refused.value)
    assert [int(m[OUTBOX_ID_HEADER]) for _, m in server.messages] == [1, 3]
    assert pool.connections_opened == 1


def test_no_server_is_a_failure_that_says_so_and_a_bad_url_a_permanent_one() -> None:
    nobody = Server()  # never started: nothing listens on its port
    with MailPool() as pool:
        with pytest.raises(SendError) as down:
            pool.send(outgoing(nobody, 1))
        broken = Outgoing(**{**outgoing(nobody, 2).__dict__, "urls": ("nosuchscheme://x",)})
        with pytest.raises(SendError) as invalid:
            pool.send(broken)
        with pytest.raises(SendError) as nobody_to:
            pool.send(outgoing(nobody, 3, to="not an address"))
    assert "could not connect to the SMTP server 127.0.0.1" in str(down.value) and not down.value.permanent
    assert invalid.value.permanent and "not a valid apprise URL" in str(invalid.value)
    assert nobody_to.value.permanent and "names no recipient" in str(nobody_to.value)
