"""Worklists and the desk summary as markdown (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from models.worklists import (
    SHOWN,
    DeskCounts,
    EscalationRow,
    WaitingRow,
    artifact_key,
    render_breached,
    render_summary,
    render_worklist,
)

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 6, 2, 0, tzinfo=UTC)


def _row(number: str, due: datetime | None, level: int = 0) -> WaitingRow:
    return WaitingRow(number, "claim", "under_review", "normal", "review", "claim_review", "li.wei", "claims-motor",
                      due, level, f"http://ui/runs/flow-run/{number}")  # fmt: skip


def test_a_worklist_lists_waiting_cases_with_links_and_marks_the_breached() -> None:
    text = render_worklist("Waiting for li.wei", [_row("CLM-1", NOW - timedelta(hours=1)), _row("CLM-2", NOW + timedelta(days=1))],
                           now=NOW, tz=TZ, language="en")  # fmt: skip
    assert "2 waiting · times in Asia/Shanghai" in text
    assert (
        "| [CLM-1](http://ui/runs/flow-run/CLM-1) | claim | normal | review | claim_review | li.wei | 2026-03-06 Fri 09:00 | **breached** |"
        in text
    )
    assert "| [CLM-2](http://ui/runs/flow-run/CLM-2) |" in text and text.count("**breached**") == 1
    assert "Nothing waits." in render_worklist("x", [], now=NOW, tz=TZ, language="en")


def test_a_long_list_is_cut_and_counted() -> None:
    rows = [_row(f"CLM-{i}", NOW) for i in range(SHOWN + 5)]
    assert render_worklist("x", rows, now=NOW, tz=TZ, language="en").endswith("... and 5 more\n")


def test_the_breached_list_gives_each_escalation_its_age() -> None:
    escalation = EscalationRow(
        "CLM-1-escalation-1", "review", 1, "supervisor", NOW - timedelta(hours=27), "http://ui/x"
    )
    text = render_breached([_row("CLM-1", NOW - timedelta(hours=27), 1)], [escalation], now=NOW, tz=TZ, language="en")
    assert "| [CLM-1-escalation-1](http://ui/x) | review | 1 | supervisor | 2026-03-05 Thu 07:00 | 1 d 3 h |" in text
    assert "## Breached steps (1)" in text and "level 1" in text


def test_the_summary_counts_the_desk() -> None:
    counts = DeskCounts({"under_review": 3, "investigating": 1}, {"claims-motor": 4}, 2, ("CLM-1", NOW), 1, 5, 3)
    text = render_summary(counts, now=NOW, tz=TZ, language="en")
    assert "| open cases | 4 |" in text and "| breached now | 2 |" in text
    assert "| oldest waiting | CLM-1 since 2026-03-06 Fri 10:00 |" in text
    assert "| claims-motor | 4 |" in text and "| messages dead-lettered today | 1 |" in text
    assert "| mails rejected today (claimflow mail list --status rejected) | 3 |" in text


def test_keys_are_what_prefect_takes() -> None:
    assert artifact_key("worklist", "Li.Wei") == "worklist-li-wei"
    assert artifact_key("team", "claims_motor") == "team-claims-motor"


def test_the_lists_speak_the_desks_language() -> None:
    text = render_worklist("李伟 的待办", [_row("CLM-1", NOW - timedelta(hours=1))], now=NOW, tz=TZ, language="zh-CN")
    assert "待办 1 件 · 时间为 Asia/Shanghai" in text and "| 案件 | 类型 | 优先级 | 环节 |" in text
    assert "2026-03-06 周五 09:00 | **已超时** |" in text
    counts = DeskCounts({"under_review": 1}, {"claims-motor": 1}, 0, None, 0, 1, 0)
    summary = render_summary(counts, now=NOW, tz=TZ, language="zh-CN")
    assert summary.startswith("# 服务台概览") and "| 未结案件 | 1 |" in summary and "## 按团队的积压" in summary
