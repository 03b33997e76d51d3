"""The case as the operations UI shows it: the run's artifact and its tags (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from models.caseview import (
    CaseSnapshot,
    EventLine,
    StepLine,
    cli_command,
    dynamic_tags,
    literal,
    merge_tags,
    render_case,
    span,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)  # Wednesday 10:00 in Shanghai
DUE = datetime(2026, 3, 5, 16, 0, tzinfo=UTC)  # Friday 00:00 in Shanghai


def _case(**changes: object) -> CaseSnapshot:
    fields: dict[str, object] = dict(
        number="CLM-2026-000001", kind="claim", status="under_review", priority="high", product_line="motor",
        policy_number="P-778899", customer="张**", handler="li.wei", team="claims-motor",
        steps=(StepLine("review", "open", "li.wei", DUE, "service-standard claim.review: 3 working days"),),
        waiting_form="claim_review", waiting_step="review", may_decide="li.wei (the handler), or a manager or supervisor",
        missing_documents=("repair invoice",), related=("CMP-2026-000002 (complaint, investigating)",),
        events=(EventLine(NOW - timedelta(hours=1), "system", "step_opened", "step=review"),),
        cli_command=cli_command("CLM-2026-000001", "claim_review"),
    )  # fmt: skip
    fields.update(changes)
    return CaseSnapshot(**fields)  # type: ignore[arg-type]


def test_the_artifact_says_first_what_the_run_waits_for_and_who_may_decide() -> None:
    text = render_case(_case(), now=NOW, tz=SHANGHAI, language="en")
    first = text.splitlines()
    assert first[0] == "# CLM-2026-000001 · claim · under_review"
    assert first[2] == ("**Waiting for:** `claim_review` (review) · who may decide: li.wei (the handler), or a manager "
                        "or supervisor")  # fmt: skip
    assert "times in Asia/Shanghai" in text
    # the due time in the office's zone, and how far away
    assert "| review | open | li.wei | 2026-03-06 Fri 00:00 | in 1 d 14 h |" in text
    assert "- `repair invoice`" in text and "CMP-2026-000002 (complaint, investigating)" in text
    assert "claimflow decide CLM-2026-000001 --staff USERNAME --code CODE --decision approve|" in text


def test_a_refused_answer_is_the_first_thing_on_the_page() -> None:
    text = render_case(_case(last_refusal="zhao.min: the approval code is wrong or has expired"), now=NOW, tz=SHANGHAI,
                       language="en")  # fmt: skip
    assert text.splitlines()[2] == "> **⚠ Last attempt refused:** `zhao.min: the approval code is wrong or has expired`"


def test_an_overdue_step_says_by_how_much_and_the_escalation() -> None:
    late = _case(steps=(StepLine("review", "open", "li.wei", DUE, "rule", breached_level=1),))
    text = render_case(late, now=DUE + timedelta(hours=5, minutes=10), tz=SHANGHAI, language="en")
    assert "overdue by 5 h 10 min · escalated to level 1" in text


def test_the_desks_language_is_used() -> None:
    text = render_case(_case(), now=NOW, tz=SHANGHAI, language="zh-CN")
    assert "**等待处理:**" in text and "2026-03-06 周五 00:00" in text and "还剩 1天 14小时" in text


@pytest.mark.parametrize(
    "hostile",
    ["[click](https://evil.example/phish)", "![x](https://evil.example/pixel.png)", "<img src=x onerror=alert(1)>",
     "https://evil.example", "a | b", "``tick`` and `more`", "**bold** _it_ # head"],
)  # fmt: skip
def test_text_from_outside_shows_as_written(hostile: str) -> None:
    """A policy number or a document name is put in a code span: no link, no image from outside, no HTML."""
    text = render_case(_case(policy_number=hostile, missing_documents=(hostile,)), now=NOW, tz=SHANGHAI, language="en")
    shown = literal(hostile)
    assert f"- {shown}" in text and f"| {shown.replace('|', chr(92) + '|')} |" in text
    fence = shown[: len(shown) - len(shown.lstrip("`"))]
    assert shown.startswith(fence) and shown.endswith(fence) and "`" * len(fence) not in shown[len(fence) : -len(fence)]


def test_the_tags_say_who_which_team_what_and_when() -> None:
    assert dynamic_tags(_case(), now=NOW, tz=SHANGHAI) == [
        "assignee:li.wei", "due:2026-03-06", "team:claims-motor", "waiting:claim-review",
    ]  # fmt: skip
    assert "sla:breached" in dynamic_tags(_case(), now=DUE + timedelta(minutes=1), tz=SHANGHAI)
    done = _case(steps=(), waiting_form=None, handler=None, team=None, status="closed")
    assert dynamic_tags(done, now=NOW, tz=SHANGHAI) == []
    # nobody holds it: a claim of no known product line waits in triage, any other case for a handler with room
    assert "queue:triage" in dynamic_tags(_case(handler=None, team=None, product_line=None), now=NOW, tz=SHANGHAI)
    unrouted = _case(handler=None, team=None, product_line="motor")
    assert [t for t in dynamic_tags(unrouted, now=NOW, tz=SHANGHAI) if t.startswith("queue:")] == ["queue:unassigned"]


def test_the_desks_tags_replace_their_earlier_values_and_keep_the_others() -> None:
    current = ["kind:claim", "priority:high", "assignee:wang.fang", "waiting:documents", "sla:breached"]
    assert merge_tags(current, ["assignee:li.wei", "waiting:claim-review"]) == [
        "assignee:li.wei", "kind:claim", "priority:high", "waiting:claim-review",
    ]  # fmt: skip


def test_spans_in_words() -> None:
    assert span(timedelta(days=2, hours=3, minutes=5), language="en") == "2 d 3 h"
    assert span(timedelta(hours=5, minutes=10), language="en") == "5 h 10 min"
    assert span(timedelta(seconds=20), language="en") == "0 min"


def test_worklist_links_filter_the_runs_page_by_tags_and_waiting_states_a_year_back() -> None:
    from models.caseview import case_url, runs_url, staff_links

    ui = "http://127.0.0.1:4200"
    assert runs_url(ui, tags=["assignee:li.wei"]) == (
        "http://127.0.0.1:4200/runs?tag=assignee%3Ali.wei&state=Suspended&state=Paused&type=span&seconds=-31622400"
    )
    assert case_url(ui, "CLM-2026-000001") == (
        "http://127.0.0.1:4200/runs?flow-run-search=CLM-2026-000001&type=span&seconds=-31622400"
    )
    handler = dict(staff_links(ui, username="li.wei", team="claims-motor", role="handler"))
    assert list(handler) == [
        "my cases waiting for me",
        "my breached cases",
        "all my cases",
        "team claims-motor: cases waiting",
        "my worklist (artifact)",
        "team claims-motor: worklist (artifact)",
    ]
    assert handler["my worklist (artifact)"] == "http://127.0.0.1:4200/artifacts/key/worklist-li-wei"
    assert "tag=assignee%3Ali.wei&tag=sla%3Abreached" in handler["my breached cases"]  # both tags: AND
    manager = dict(staff_links(ui, username="zhou.qiang", team=None, role="manager"))
    assert "tag=escalation%3Alevel-2&state=Suspended" in manager["escalations waiting (level-2)"]
