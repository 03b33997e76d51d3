"""Background work yields the CPU to intake while both want it.

A surge measured on two shared cores (``bench/surge.py``): the intake API got a third of the CPU while the desk
runner (case runs and its delivery loop), the delivery processes and the Prefect server took the rest, and the
filing rate fell from about 250 to 100 claims/s. Nothing waits for those (a case's deadlines, acknowledgement and
worklist are committed with it); a partner waits for its 202. So the desk runner, ``claimflow outbox deliver
--loop`` and the embedded Prefect server lower their own scheduling priority (their nice value) when they start.
It only matters while the cores are contended: on an idle machine a niced process runs as fast as any.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

NICE_MAX = 19  # the lowest priority a Unix process can take


def nice_of(pid: int | str = "self") -> dict[int, int]:
    """The nice value of each thread of process ``pid`` (Linux; empty where ``/proc`` does not say)."""
    values = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        values[int(stat.parent.name)] = int(fields[16])  # field 19 of stat(5), counted after the command name
    return values


def lower_priority(increment: int) -> int | None:
    """Raise this process's nice value by ``increment`` (0 leaves it); returns the new value, or None where the
    system does not allow it (no ``os.nice``: not Unix).

    On Linux a nice value belongs to each thread and a new thread takes its creator's, so every thread that exists
    already is lowered too (Prefect and database drivers start some on import)."""
    if not hasattr(os, "nice"):
        return None
    current = os.nice(0)
    target = min(current + max(increment, 0), NICE_MAX)
    if target == current:
        return current
    os.nice(target - current)
    for thread, value in nice_of().items():
        if thread != threading.get_native_id() and value < target:
            try:
                os.setpriority(os.PRIO_PROCESS, thread, target)
            except OSError:  # it ended meanwhile; raising a value needs no privilege, so nothing else refuses
                continue
    lower_session_group(target)
    return target


AUTOGROUP = Path("/proc/self/autogroup")


def session_group_nice(pid: int | str = "self") -> int | None:
    """The nice value of the CPU group of process ``pid``'s session: None without autogroup, and for a session
    in the root group (Linux then shows an empty ``/proc/<pid>/autogroup``: seen under CI's harness, whose session
    predates any group)."""
    try:
        return parse_autogroup(Path(f"/proc/{pid}/autogroup").read_text())
    except OSError:
        return None


def parse_autogroup(text: str) -> int | None:
    """``/autogroup-85 nice 3`` → 3; anything else (an empty file) → None."""
    fields = text.split()
    if len(fields) != 3 or fields[1] != "nice":
        return None
    try:
        return int(fields[2])
    except ValueError:
        return None


def lower_session_group(nice: int) -> bool:
    """Where Linux groups the CPU by session (``kernel.sched_autogroup_enabled``), a process's nice value only
    ranks it among its own session's processes: each session gets an equal share first. A desk process started
    in a session of its own (``claimflow up``'s Prefect server, a service, ``setsid``) would keep its full share
    whatever its nice value (measured: two busy loops in two sessions on one core, one niced 10, ran at the same
    speed). So a session leader lowers its session's group too; a process in someone else's session (a shell's)
    leaves that group alone: its nice value already ranks it there. True if the group was lowered."""
    if os.getsid(0) != os.getpid() or not AUTOGROUP.exists():
        return False
    try:
        AUTOGROUP.write_text(str(nice))
    except OSError:  # a value below the group's own needs privilege; autogroup compiled out
        return False
    return True
