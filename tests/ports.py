"""Free TCP ports on 127.0.0.1 for the servers the tests start (Prefect, the web app, SMTP, HTTP, Dovecot)."""

from __future__ import annotations

import socket
from contextlib import ExitStack


def free_ports(count: int) -> list[int]:
    """``count`` different ports that were free a moment ago; all are held while they are chosen, so two servers
    started side by side (Dovecot's plain and TLS listeners, say) never get the same one."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def free_port() -> int:
    [port] = free_ports(1)
    return port
