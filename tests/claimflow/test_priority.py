"""Background work lowers its CPU priority (``claimflow.priority``). Each case runs in a process of its own: a nice
value cannot be raised back without privilege, and the test process must keep its own."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    from claimflow.priority import lower_priority, nice_of

    stop = threading.Event()
    before = threading.Thread(target=stop.wait)  # a thread that exists already (Prefect starts some on import)
    before.start()
    got = lower_priority(int(sys.argv[1]))
    after = threading.Thread(target=stop.wait)  # one started later takes its creator's value
    after.start()
    again = lower_priority(0)
    print(json.dumps({"got": got, "again": again, "threads": sorted(set(nice_of().values())),
                      "count": len(nice_of())}))
    stop.set()
    """
)


def lowered(increment: int) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(increment)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize(("increment", "expected"), [(5, 5), (0, 0), (50, 19), (-3, 0)])
def test_every_thread_of_the_process_takes_the_lowered_priority(increment: int, expected: int) -> None:
    """Threads started before and after alike; 0 (or a negative value) leaves it, and 19 is as low as it goes."""
    assert lowered(increment) == {"got": expected, "again": expected, "threads": [expected], "count": 3}
