"""The README's walk through the CLI, line by line as printed, on a fresh demo desk (``claimflow up``, then
``claimflow demo``): a line that does not work as printed (a wrong option, a step the desk refuses, an exit status
other than the one its comment names) fails the test with its line. The lines are read from the README itself,
so the README cannot drift from what the commands do."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from tests.claimflow.conftest import running_up

ROOT = Path(__file__).resolve().parents[2]


def walk_lines() -> list[str]:
    """The walk's commands: the first ``sh`` block under "A walk through the CLI", continuation lines joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## A walk through the CLI", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    lines: list[str] = []
    pending = ""
    for raw in block.splitlines():
        pending += raw + "\n"
        if not raw.rstrip().endswith("\\"):
            lines.append(pending.rstrip("\n"))
            pending = ""
    assert not pending, "the walk ends in a continuation line"
    return lines


def expected_status(line: str) -> int:
    said = re.search(r"#.*\bexits (\d+)", line)
    return int(said.group(1)) if said else 0


def script(lines: list[str]) -> str:
    """One shell (the variables a line sets are there for the next), each line checked as it ran."""
    parts = ["set -u"]
    for number, line in enumerate(lines, 1):
        parts += [
            f"echo {shlex.quote(f'>>> {number}: {line.splitlines()[0]}')}",
            line,
            "rc=$?",
            f'if [ "$rc" -ne {expected_status(line)} ]; then echo "README walk line {number} exited $rc" >&2; exit 100; fi',
        ]
    return "\n".join(parts) + "\n"


def test_the_walk_parses_into_commands() -> None:
    lines = walk_lines()
    assert len(lines) >= 20
    assert all(line.startswith(("claimflow ", "CLAIM=", "TRIAGE=", "echo ")) for line in lines), lines
    assert [expected_status(line) for line in lines].count(6) == 1  # the refused decision, as the README says


def test_the_readme_walk_works_line_by_line(tmp_path: Path) -> None:
    with running_up(tmp_path) as journey:
        demo = journey.run("demo")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert re.search(r"li\.wei +│ [A-Z2-7]{32}", demo.stdout), demo.stdout  # the secrets the walk relies on
        done = subprocess.run(["bash", "-c", script(walk_lines())], env=journey.env, cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)  # fmt: skip
        told = done.stdout
        (tmp_path / "walk.log").write_text(told, encoding="utf-8")  # kept with the test's files
        assert done.returncode == 0, told[-6000:] + "\n--- claimflow up:\n" + journey.log.read_text()[-3000:]

    # what the comments promise, read from what each line printed
    def said(number: int) -> str:  # what line ``number`` printed (after its own echoed first line)
        return told.split(f">>> {number}: ", 1)[1].split("\n>>> ", 1)[0].split("\n", 1)[-1]

    lines = walk_lines()
    at = {line.split("#")[0].strip(): n for n, line in enumerate(lines, 1)}
    claim = re.search(r"CLM-\d{4}-\d{6}", said(at["echo $CLAIM"])).group(0)
    assert "enrolled" in said(at["claimflow staff list"]) and "not enrolled" not in said(at["claimflow staff list"])
    assert re.fullmatch(r"\d{6}", said(at["claimflow staff code li.wei"]).strip())
    shown = said(at["claimflow case show $CLAIM"])
    assert "li.wei" in shown and "13812345678" not in shown
    refused = next(n for n, line in enumerate(lines, 1) if expected_status(line) == 6)
    assert "refused: the approval code is wrong or has expired" in said(refused)
    assert re.search(
        rf"{claim} +│ claim +│ phone +│ closed +│ rejected", said(at["claimflow case list --status closed"])
    )
    triage = next(n for n, line in enumerate(lines, 1) if line.startswith("claimflow case triage"))
    assert "health, now liu.yang's" in said(triage)
    assert "audit log intact" in said(at["claimflow audit verify"])
    assert "13812345678" in said(at["claimflow case show $CLAIM --reveal"])
