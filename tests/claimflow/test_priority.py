"""Background work lowers its CPU priority (``claimflow.priority``). Each case runs in a process of its own: a nice
value cannot be raised back without privilege, and the test process must keep its own."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from claimflow.priority import parse_autogroup, session_group_nice

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    from claimflow.priority import lower_priority, nice_of, session_group_nice

    stop = threading.Event()
    before = threading.Thread(target=stop.wait)  # a thread that exists already (Prefect starts some on import)
    before.start()
    got = lower_priority(int(sys.argv[1]))
    after = threading.Thread(target=stop.wait)  # one started later takes its creator's value
    after.start()
    again = lower_priority(0)
    print(json.dumps({"got": got, "again": again, "threads": sorted(set(nice_of().values())),
                      "count": len(nice_of()), "group": session_group_nice()}))
    stop.set()
    """
)


def lowered(increment: int, *, own_session: bool = False) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(increment)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True, start_new_session=own_session)  # fmt: skip
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize(("increment", "expected"), [(5, 5), (0, 0), (50, 19), (-3, 0)])
def test_every_thread_of_the_process_takes_the_lowered_priority(increment: int, expected: int) -> None:
    """Threads started before and after alike; 0 (or a negative value) leaves it, and 19 is as low as it goes. The
    session's CPU group is the test's own and stays as it was: None where the session is in the root group (Linux
    then shows an empty ``/proc/self/autogroup``, as under CI's harness)."""
    own_group = session_group_nice()
    assert lowered(increment) == {"got": expected, "again": expected, "threads": [expected], "count": 3,
                                  "group": own_group}  # fmt: skip


@pytest.mark.parametrize(("increment", "expected"), [(5, 5), (0, 0)])
def test_a_process_that_leads_its_own_session_lowers_the_sessions_cpu_group_too(increment: int, expected: int) -> None:
    """Linux shares the CPU between sessions first (autogroup): there a nice value alone changed nothing against a
    process of another session. This machine type groups by session; the test asserts it does."""
    assert Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    assert lowered(increment, own_session=True) == {"got": expected, "again": expected, "threads": [expected],
                                                    "count": 3, "group": expected}  # fmt: skip


@pytest.mark.parametrize("argv", [["--nice"], ["--nice", "x"], ["--nice", "-5"]])
def test_the_embedded_server_refuses_a_nice_value_that_is_not_a_whole_number(argv: list[str]) -> None:
    from claimflow.prefect_server import main

    with pytest.raises(SystemExit, match="--nice takes a whole number from 0 to 19"):
        main([*argv, "--host", "127.0.0.1"])


@pytest.mark.parametrize(
    ("text", "nice"),
    [
        ("/autogroup-85 nice 0\n", 0),
        ("/autogroup-7 nice 10\n", 10),
        ("", None),
        ("\n", None),
        ("/autogroup-7 weight 10", None),
        ("/autogroup-7 nice x", None),
    ],
)
def test_the_session_group_reads_as_none_where_linux_shows_no_group(text: str, nice: int | None) -> None:
    """A session in the root group shows an empty file (CI's harness does): that is no group, not an error."""
    assert parse_autogroup(text) == nice


def test_a_process_that_is_gone_has_no_session_group() -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert session_group_nice(int(done.stdout)) is None
