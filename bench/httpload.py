"""A light HTTP/1.1 load generator for the benches: requests written straight to keep-alive asyncio streams.

The load generator shares the two cores with the API and PostgreSQL, so what it costs is taken from them. httpx's
async client spent 10 ms of CPU a post at concurrency 64, more than the API it measured, and became the bound
(``bench/intake.py``). Here a post is one ``write`` of bytes built by hand and a read of the status line, the
headers and ``Content-Length`` bytes of body: about a tenth of that. A connection the server closed (or that broke)
is opened again and the request sent again: each request the caller builds is fresh (a new signature, the same
Idempotency-Key), so a post sent twice is answered with the first one's case.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field


@dataclass
class Outcome:
    """What the load got: each post's latency (s), the answers by status, the time it all took and the resends."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    elapsed: float = 0.0
    resent: int = 0


Request = tuple[str, bytes, dict[str, str]]
"""A POST: path, body and headers."""


def _encode(host: str, request: Request) -> bytes:
    path, body, headers = request
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> tuple[int, bool]:
    """Send one request; its status and whether the server keeps the connection open."""
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep = False
    await reader.readexactly(length)
    return status, keep


async def post_all(
    host: str,
    port: int,
    requests: Callable[[int], Request],
    *,
    count: int,
    concurrency: int,
    retries: int | None = 5,
    again: Collection[int] = (),
    pause: float = 0.5,
    on_answered: Callable[[int], None] | None = None,
) -> Outcome:
    """Post ``requests(0)`` .. ``requests(count - 1)``, ``concurrency`` at a time over keep-alive connections.

    A post whose connection failed, or that was answered with a status in ``again`` (a 503), is sent again after
    ``pause`` seconds (the first resend after a broken keep-alive connection at once), up to ``retries`` times
    (``None``: until it is answered otherwise, as a partner system would while the API restarts). ``on_answered``
    is called with the number of posts answered so far."""
    outcome = Outcome()
    numbers: Iterator[int] = iter(range(count))
    authority = f"{host}:{port}"

    async def worker() -> None:
        reader = writer = None
        for number in numbers:
            started = time.perf_counter()
            attempt = 0
            while True:
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(host, port)
                    assert reader is not None
                    status, keep = await _exchange(reader, writer, _encode(authority, requests(number)))
                    if status not in again:
                        break
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    if retries is not None and attempt >= retries:
                        raise
                if retries is not None and attempt >= retries:
                    break
                if attempt:
                    await asyncio.sleep(pause)
                attempt += 1
                outcome.resent += 1
            outcome.latencies.append(time.perf_counter() - started)
            outcome.statuses[status] = outcome.statuses.get(status, 0) + 1
            if on_answered is not None:
                on_answered(len(outcome.latencies))
            if not keep and writer is not None:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    outcome.elapsed = time.perf_counter() - started
    return outcome
