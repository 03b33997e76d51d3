"""Kill -9 the intake API in the middle of a load, restart it, and count what the database holds.

    python bench/crash_intake.py                      # 3,000 posts at concurrency 32, two kills
    python bench/crash_intake.py --count 20000 --kills 3
    python bench/crash_intake.py --layout filer       # the filing process killed with the API

Every post carries an attachment and its own ``Idempotency-Key``. A client whose request fails (connection
reset by the kill, refused while the API is down, a 5xx) sends the same body again under the same key, with a
fresh signature, until it gets its 202. The API process is killed with SIGKILL each time another share of the
posts has been answered, and started again a second later. At the end it checks, on PostgreSQL:

- every request that got a 202 names a case that is in the database exactly once;
- every key got the same case number on every 202 (a retry never files a second case);
- after the load, every accepted request sent once more under its key replays the same answer;
- there are as many cases, idempotency records and attachment rows as keys that got a 202 (no duplicate,
  nothing lost), and it counts the attachment files left by transactions the kill cut short (orphans, which
  no row points to).

Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
from sqlalchemy import func
from sqlmodel import Session, col, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.intake import DEFAULT_POSTGRES, LAYOUTS, PATHS, ApiProcess, free_port, payload, signed, throwaway_database
from claimflow.db import create_db_engine
from models.tables import Attachment, Case, IntakeRequest
from tasks.intake import orphan_files


class Tally:
    def __init__(self) -> None:
        self.numbers: dict[str, set[str]] = {}
        self.accepted = 0
        self.replayed = 0
        self.retried_keys: set[str] = set()
        self.failures: Counter[str] = Counter()
        self.refused: Counter[int] = Counter()
        self.sent: dict[str, tuple[str, bytes]] = {}
        self.resent_replayed = 0
        self.resent_other: Counter[str] = Counter()


async def one(client: httpx.AsyncClient, index: int, tally: Tally, deadline: float) -> None:
    key = uuid.uuid4().hex
    body = json.dumps(payload(index, attachment=True)).encode()
    while time.monotonic() < deadline:
        try:
            response = await client.post(PATHS[index % 3], content=body, headers=signed(body, key, PATHS[index % 3]))
        except httpx.HTTPError as exc:
            tally.failures[type(exc).__name__] += 1
            tally.retried_keys.add(key)
            await asyncio.sleep(0.2)
            continue
        if response.status_code >= 500:
            tally.failures[f"HTTP {response.status_code}"] += 1
            tally.retried_keys.add(key)
            await asyncio.sleep(0.2)
            continue
        if response.status_code != 202:
            tally.refused[response.status_code] += 1
            return
        tally.accepted += 1
        tally.sent[key] = (PATHS[index % 3], body)
        tally.numbers.setdefault(key, set()).add(response.json()["case_number"])
        if response.headers.get("idempotent-replayed") == "true":
            tally.replayed += 1
        return
    tally.failures["gave up"] += 1


async def run(api: ApiProcess, *, count: int, concurrency: int, kills: int) -> Tally:
    tally = Tally()
    indexes = iter(range(count))
    deadline = time.monotonic() + 3600

    async def worker(client: httpx.AsyncClient) -> None:
        for index in indexes:
            await one(client, index, tally, deadline)

    async def killer() -> None:
        for round_ in range(1, kills + 1):
            while tally.accepted < count * round_ // (kills + 1):
                await asyncio.sleep(0.05)
            api.kill()
            print(f"kill -9 after {tally.accepted} answers; restarting", flush=True)
            await asyncio.sleep(1)
            await asyncio.to_thread(api.start)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=api.url, limits=limits, timeout=30) as client:
        await asyncio.gather(killer(), *(worker(client) for _ in range(concurrency)))
        await resend_all(client, tally, concurrency)
    return tally


async def resend_all(client: httpx.AsyncClient, tally: Tally, concurrency: int) -> None:
    """Every client sends its accepted request once more under its key (a retry after a lost answer)."""
    items = iter(list(tally.sent.items()))

    async def worker() -> None:
        for key, (path, body) in items:
            for _attempt in range(20):  # a pooled connection may still point at a killed server: retry
                try:
                    response = await client.post(path, content=body, headers=signed(body, key, path))
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.2)
            else:
                tally.resent_other["no answer"] += 1
                continue
            if response.status_code == 202 and response.headers.get("idempotent-replayed") == "true":
                tally.resent_replayed += 1
                tally.numbers[key].add(response.json()["case_number"])
            else:
                tally.resent_other[str(response.status_code)] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="thread",
                        help="where the filings are written: the API's writer thread, or a filing process of its own "
                        "(killed with the API: they share its process group)")  # fmt: skip
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()

    with throwaway_database(args.postgres_url, "claimflow_bench_crash") as url, tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        api = ApiProcess(url, data_dir, port=free_port(), layout=args.layout)
        api.start()
        started = time.perf_counter()
        try:
            tally = asyncio.run(run(api, count=args.count, concurrency=args.concurrency, kills=args.kills))
        finally:
            api.stop()
        elapsed = time.perf_counter() - started
        engine = create_db_engine(url, pool=False)
        with Session(engine) as session:
            cases = session.exec(select(func.count()).select_from(Case)).one()
            records = session.exec(select(func.count()).select_from(IntakeRequest)).one()
            attachments = session.exec(select(func.count()).select_from(Attachment)).one()
            answered = {n for numbers in tally.numbers.values() for n in numbers}
            stored = Counter(session.exec(select(Case.number).where(col(Case.number).in_(answered))).all())
            orphans = len(orphan_files(session, data_dir=data_dir))
        engine.dispose()

    split_keys = sum(1 for numbers in tally.numbers.values() if len(numbers) > 1)
    missing = sum(1 for n in answered if stored[n] == 0)
    twice = sum(1 for n in answered if stored[n] > 1)
    keys = len(tally.numbers)
    print(f"{args.count} posts, {args.kills} kill -9 of the API ({LAYOUTS[args.layout]}), {elapsed:.1f} s")
    print(
        f"  requests answered 202: {tally.accepted} (keys: {keys}); of them after a failed attempt: "
        f"{len(tally.retried_keys & set(tally.numbers))}, replayed from the idempotency record: {tally.replayed}"
    )
    print(f"  all {len(tally.sent)} accepted requests sent again with their key: {tally.resent_replayed} replayed "
          f"the stored answer, other answers: {dict(tally.resent_other)}")  # fmt: skip
    print(f"  failed attempts seen by clients: {dict(tally.failures)}; other answers: {dict(tally.refused)}")
    print(f"  database: {cases} cases, {records} idempotency records, {attachments} attachment rows, "
          f"{orphans} orphan attachment file(s)")  # fmt: skip
    print(
        f"  202 case numbers missing from the database: {missing}; stored more than once: {twice}; keys that "
        f"got two different case numbers: {split_keys}; cases beyond the keys answered: {cases - keys}"
    )
    if missing or twice or split_keys or tally.resent_other or cases != keys or records != keys or attachments != keys:
        raise SystemExit(1)
    print("  OK: every 202 is in the database exactly once; retries with their key filed no duplicate")


if __name__ == "__main__":
    main()
