"""The case as an operator reads it in the Prefect UI: the case run's markdown artifact and its run tags (pure).

The desk publishes each case's view to its flow run (``tasks.caseview``): an artifact keyed by the case, on the
run's Artifacts tab, and tags that make the Runs page's filters the handlers' worklists (``assignee:li.wei``,
``team:claims-motor``, ``waiting:claim-review``, ``due:2026-03-05``, ``sla:breached``). Everything here is a
function of a ``CaseSnapshot`` (values read from the database, no personal data beyond what the CLI shows masked),
the time and the office's zone and language: no database, no Prefect, no clock.

Text that comes from a customer or a source (a policy number, a document name, a reason) is put in code spans
(``literal``): Prefect's UI renders artifacts and forms as markdown, and such text must show as written, never as a
link, an image fetched from outside, or HTML.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from models.forms import choice_words
from models.lifecycle import lifecycle_for
from models.routing import triage_reason

TAG_PREFIXES = ("assignee:", "team:", "waiting:", "due:", "sla:", "queue:")
"""The tags the desk keeps current as a case moves; a run's other tags (kind, channel, priority, product) are
set when the run is created."""


@dataclass(frozen=True)
class StepLine:
    """An open (or paused) step."""

    name: str
    status: str
    assignee: str | None
    due_at: datetime | None
    rule: str | None
    breached_level: int = 0
    """The highest escalation level raised for it in its current round (0: none)."""


@dataclass(frozen=True)
class EventLine:
    at: datetime
    actor: str
    type: str
    summary: str = ""


@dataclass(frozen=True)
class CaseSnapshot:
    """What the case view shows, read in one transaction."""

    number: str
    kind: str
    status: str
    priority: str
    product_line: str | None
    policy_number: str | None
    customer: str
    """Masked, as ``claimflow case show`` prints it."""
    handler: str | None
    team: str | None
    steps: tuple[StepLine, ...] = ()
    waiting_form: str | None = None
    """The form the run is suspended on (``claim_review``, ``payment`` ...), if it waits for a person."""
    waiting_step: str | None = None
    may_decide: str | None = None
    """Who may decide the form, in words (``models.approval.who_may_decide``)."""
    last_refusal: str | None = None
    """The reason the last answer to the waiting form was refused, if it was."""
    missing_documents: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    """Related cases: ``CMP-2026-000002 (complaint)`` (not their state: a change to a related case does not
    publish this one again)."""
    events: tuple[EventLine, ...] = ()
    """The last events, newest first."""
    cli_command: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


LABELS: dict[str, dict[str, str]] = {
    "en": {
        "waiting": "Waiting for", "decides": "who may decide", "refused": "Last attempt refused", "kind": "Kind",
        "priority": "Priority", "product": "Product line", "policy": "Policy", "customer": "Customer",
        "handler": "Handler", "team": "Team", "steps": "Open steps", "step": "step", "status": "status",
        "assignee": "assignee", "due": "due", "when": "when", "rule": "rule", "documents": "Missing documents",
        "related": "Related cases", "events": "Last events", "who": "who", "what": "what",
        "cli": "The same decision from the command line", "nobody": "unassigned", "none": "none",
        "in": "in {}", "overdue": "overdue by {}", "breached": "escalated to level {}",
        "not_waiting": "Not waiting for anyone: the desk is working on it.", "closed": "Closed.",
        "day": "d", "hour": "h", "minute": "min", "times": "times in {}", "nodue": "no deadline",
    },
    "zh-CN": {
        "waiting": "等待处理", "decides": "可决定的人", "refused": "上一次提交被拒绝", "kind": "类型",
        "priority": "优先级", "product": "险种", "policy": "保单", "customer": "客户", "handler": "经办人",
        "team": "团队", "steps": "未完成的环节", "step": "环节", "status": "状态", "assignee": "负责人",
        "due": "截止", "when": "时间", "rule": "依据", "documents": "待补材料", "related": "关联案件",
        "events": "最近记录", "who": "操作人", "what": "事项", "cli": "命令行中的同一决定", "nobody": "未分配",
        "none": "无", "in": "还剩 {}", "overdue": "已超时 {}", "breached": "已升级至第 {} 级",
        "not_waiting": "当前不需要人工处理：系统正在处理。", "closed": "已结案。",
        "day": "天", "hour": "小时", "minute": "分钟", "times": "时间为 {}", "nodue": "无期限",
    },
}  # fmt: skip
WEEKDAYS = {"en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), "zh-CN": "一二三四五六日"}


CLI_OPTIONS: dict[str, str] = {
    "claim_review": "--decision approve|approve_partly|reject|request_documents|investigate [--amount AMOUNT] "
    "[--reasons TEXT] [--clause CLAUSE] [--documents 'A;B']",
    "documents": "--documents 'A;B'",
    "second_approval": "--decision approve|reject [--comment TEXT]",
    "payment": "--amount AMOUNT [--reference REFERENCE]",
    "complaint_decision": "--decision uphold|partly_uphold|not_uphold|mediate|refer_outside [--remedy TEXT] "
    "[--reasons TEXT]",
    "inquiry_answer": "--answer TEXT",
}
"""The ``claimflow decide`` options of each form (the same fields as the form in the UI)."""


CHOICES: dict[str, dict[str, dict[str, str]]] = {
    "claim_review": {
        "en": {
            "approve": "pay the amount; the customer is told the decision (from the second-approval threshold up, a "
            "supervisor approves it first)",
            "approve_partly": "pay part, with the reasons and the clause; the customer is told what is paid, why, "
            "and how to complain",
            "reject": "the customer is told the reasons, the policy clause relied on, and how to complain",
            "request_documents": "the customer is sent the one complete list of missing documents; the clock stops "
            "until they arrive",
            "investigate": "open an investigation before deciding",
        },
        "zh-CN": {
            "approve": "按金额赔付，并通知客户（达到二次审批金额的，须主管先审批）",
            "approve_partly": "部分赔付并说明理由；通知客户赔付金额、理由及投诉途径",
            "reject": "拒赔：通知客户理由、所依据的条款及投诉途径",
            "request_documents": "一次性通知客户需补充的全部材料；材料到齐前时限暂停",
            "investigate": "先立案调查再作决定",
        },
    },
    "complaint_decision": {
        "en": {
            "uphold": "the complaint is upheld and the remedy done; the customer is told the outcome",
            "partly_uphold": "upheld in part, with the remedy and the findings; the customer is told the outcome",
            "not_uphold": "not upheld, with the findings; the customer is told why and where to go next",
            "mediate": "offer mediation before a final answer",
            "refer_outside": "refer to the outside body (the jurisdiction's, or the one named)",
        },
        "zh-CN": {
            "uphold": "投诉成立并落实补救措施；通知客户处理结果",
            "partly_uphold": "投诉部分成立，说明补救措施与调查结论；通知客户处理结果",
            "not_uphold": "投诉不成立，说明调查结论；告知客户理由及后续途径",
            "mediate": "在最终答复前提供调解",
            "refer_outside": "转交外部机构处理（所属辖区的机构或指定机构）",
        },
    },
    "second_approval": {
        "en": {"approve": "the proposed decision takes effect and the customer is told",
               "reject": "the proposal goes back to the handler's review"},
        "zh-CN": {"approve": "拟定决定生效并通知客户", "reject": "退回经办人重新审核"},
    },
    "payment": {"en": {"": "record the payment of the approved amount; the customer is told it was paid"},
                "zh-CN": {"": "登记已支付核准金额；通知客户已付款"}},
    "documents": {"en": {"": "tick the documents that arrived; when the list is complete the clock runs again"},
                  "zh-CN": {"": "勾选已收到的材料；材料齐全后时限恢复计算"}},
    "inquiry_answer": {"en": {"": "the answer is sent to the customer on their channel, in their language"},
                       "zh-CN": {"": "答复将按客户的联系渠道和语言发送给客户"}},
    "escalation": {
        "en": {"extend": "a new deadline within the pack's extension rules, with the reason; the customer is told "
                         "the new date and why",
               "reassign": "the step goes to the handler named, who is told; the deadline stays",
               "take_over": "you become the case's handler; the deadline stays"},
        "zh-CN": {"extend": "按规则延长期限并说明理由；通知客户新的日期及原因",
                  "reassign": "改由指定经办人处理并通知其本人；期限不变",
                  "take_over": "由您本人接手案件；期限不变"},
    },
}  # fmt: skip
"""What each choice of a form does, and what the customer is told, in the desk's languages."""


def choice_lines(form: str, language: str) -> list[str]:
    """Markdown lines, one per choice of the form, as the form offers it and with the CLI's code:
    ``- **Approve in full** (`approve`): pay the amount; ...``."""
    effects = CHOICES.get(form, {})
    words = effects.get(language) or effects.get("en") or {}
    offered = choice_words(form, language)
    return [f"- **{offered.get(choice, choice)}** (`{choice}`): {text}" if choice else f"- {text}"
            for choice, text in words.items()]  # fmt: skip


FORM_WORDS = {
    "en": {"due": "Due", "decides": "Who may decide", "sign": "Give your staff username and the current code of "
           "your authenticator app.", "choices": "What each choice does", "priority": "priority",
           "product": "Product line", "policy": "policy", "claimed": "Amount claimed", "proposed": "Proposed",
           "by": "by", "refused": "Last attempt refused", "breached": "step **{}** breached", "level": "level {} ({})",
           "due_was": "Was due", "handler": "Handler", "extensions": "extensions so far", "none": "none",
           "escalation": "The case's handler cannot decide an escalation of their own case; a manager decides from "
           "level 2."},
    "zh-CN": {"due": "截止", "decides": "可决定的人", "sign": "请填写您的员工用户名及身份验证器当前显示的动态码。",
              "choices": "各选项的处理方式", "priority": "优先级", "product": "险种", "policy": "保单",
              "claimed": "索赔金额", "proposed": "拟定", "by": "提出人", "refused": "上一次提交被拒绝",
              "breached": "环节 **{}** 已超时", "level": "第 {} 级（{}）", "due_was": "原截止", "handler": "经办人",
              "extensions": "已延期", "none": "无",
              "escalation": "经办人不能决定本人案件的升级；第 2 级起由经理决定。"},
}  # fmt: skip


def form_words(language: str) -> dict[str, str]:
    """The words of the text above a form, in ``language`` (English where the desk has no such language)."""
    return FORM_WORDS.get(language, FORM_WORDS["en"])


WAITING_STATES = ("Suspended", "Paused")
"""The state names of a run that waits for a person (a case run suspends; a paused run is the same to a person)."""
LOOKBACK_SECONDS = 366 * 86400
"""How far back a worklist link looks: the UI shows the past 7 days unless a link says otherwise."""


def runs_url(ui: str, *, tags: Sequence[str] = (), waiting: bool = True, search: str | None = None) -> str:
    """A bookmarkable Runs page of the Prefect UI (the one served at the root, where a suspended run's Resume
    button is in plain sight): runs carrying every one of ``tags``, waiting for a person unless ``waiting`` is
    false, whose name holds ``search``; a year back (the page's own default is the past 7 days).

    Args:
        ui: the UI's address, e.g. ``http://127.0.0.1:4200``.
        tags: tags a run must all carry (``assignee:li.wei``, ``sla:breached``).
        waiting: only runs suspended or paused (waiting for a person).
        search: part of the run's name (a case number).

    Returns:
        The URL.
    """
    query = [("tag", t) for t in tags] + ([("state", s) for s in WAITING_STATES] if waiting else [])
    query += [("flow-run-search", search)] if search else []
    query += [("type", "span"), ("seconds", f"-{LOOKBACK_SECONDS}")]
    return f"{ui}/runs?{urlencode(query)}"


def case_url(ui: str, number: str) -> str:
    """The link to a case's runs, by its number: stays right when the reconciler replaces the run."""
    return runs_url(ui, waiting=False, search=number)


def staff_links(ui: str, *, username: str, team: str | None, role: str) -> list[tuple[str, str]]:
    """A person's bookmarks: their waiting cases, all their cases, their breached cases, their team's queue, and
    for supervisors and managers the desk's breached cases and the escalations their level decides.

    Args:
        ui: the UI's address.
        username: the staff member.
        team: their department's code (the ``team:`` tag), if any.
        role: handler, supervisor or manager.

    Returns:
        (what the link shows, URL) pairs.
    """
    mine = f"assignee:{username}"
    links = [("my cases waiting for me", runs_url(ui, tags=[mine])),
             ("my breached cases", runs_url(ui, tags=[mine, "sla:breached"], waiting=False)),
             ("all my cases", runs_url(ui, tags=[mine], waiting=False))]  # fmt: skip
    if team:
        links.append((f"team {team}: cases waiting", runs_url(ui, tags=[f"team:{team}"])))
    links.append(("my worklist (artifact)", f"{ui}/artifacts/key/worklist-{_key_part(username)}"))
    if team:
        links.append((f"team {team}: worklist (artifact)", f"{ui}/artifacts/key/team-{_key_part(team)}"))
    if role in ("supervisor", "manager"):
        links.append(("breached steps and undecided escalations (artifact)", f"{ui}/artifacts/key/desk-breached"))
        links.append(("the desk at a glance (artifact)", f"{ui}/artifacts/key/desk-summary"))
        links.append(("cases nobody holds (artifact)", f"{ui}/artifacts/key/desk-unassigned"))
        links.append(("breached cases, every team", runs_url(ui, tags=["sla:breached"], waiting=False)))
        links.append(("claims to sort (triage: product line not known)", runs_url(ui, tags=["queue:triage"],
                                                                                  waiting=False)))  # fmt: skip
        links.append(("cases nobody could take yet", runs_url(ui, tags=["queue:unassigned"], waiting=False)))
        level = "level-2" if role == "manager" else "level-1"
        links.append((f"escalations waiting ({level})", runs_url(ui, tags=[f"escalation:{level}"])))
    return links


def _key_part(name: str) -> str:
    """A name as part of an artifact key (lower-case letters, digits, dashes), as ``models.worklists`` keys it."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")


def cli_command(number: str, form: str) -> str:
    """The ``claimflow decide`` line that gives the same decision as the form."""
    return f"claimflow decide {number} --staff USERNAME --code CODE {CLI_OPTIONS.get(form, '')}".rstrip()


def labels(language: str) -> dict[str, str]:
    return LABELS.get(language, LABELS["en"])


_BACKTICKS = re.compile(r"`+")


def literal(value: object) -> str:
    """A value from outside as markdown that shows it as written: a code span (no link, no image, no HTML, no
    emphasis), on one line, with a fence longer than any run of backticks inside.

    Args:
        value: any value; None and "" show as "-".

    Returns:
        Markdown.
    """
    text = " ".join(str(value if value is not None else "").split()) or "-"
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(value: object) -> str:
    """A table cell from outside: a ``literal`` with the table's pipe escaped."""
    return literal(value).replace("|", "\\|")


def office_time(at: datetime, *, tz: ZoneInfo, language: str) -> str:
    """``2026-03-05 Thu 16:00`` (``2026-03-05 周四 16:00``) in the office's zone."""
    local = at.astimezone(tz)
    day = WEEKDAYS.get(language, WEEKDAYS["en"])[local.weekday()]
    day = f"周{day}" if language == "zh-CN" else day
    return f"{local:%Y-%m-%d} {day} {local:%H:%M}"


def span(delta: timedelta, *, language: str) -> str:
    """A duration in words, to the minute below a day: ``2 d 3 h``, ``5 h 10 min``, ``40 min``."""
    words = labels(language)
    minutes = int(abs(delta).total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    sep = "" if language == "zh-CN" else " "
    parts = [f"{days}{sep}{words['day']}" if days else "", f"{hours}{sep}{words['hour']}" if hours else "",
             f"{minutes}{sep}{words['minute']}" if minutes and not days else ""]  # fmt: skip
    return " ".join(p for p in parts if p) or f"0{sep}{words['minute']}"


def due_words(step: StepLine, *, now: datetime, language: str) -> str:
    """How far the step's deadline is, or how far past it."""
    words = labels(language)
    if step.due_at is None:
        return words["nodue"]
    if step.due_at >= now:
        when = words["in"].format(span(step.due_at - now, language=language))
    else:
        when = words["overdue"].format(span(now - step.due_at, language=language))
    return f"{when} · {words['breached'].format(step.breached_level)}" if step.breached_level else when


def breached(snapshot: CaseSnapshot, *, now: datetime) -> bool:
    """An open step is past its deadline, or the watcher has escalated it (its breach is on record)."""
    return any(
        s.status == "open" and (s.breached_level > 0 or (s.due_at is not None and s.due_at < now))
        for s in snapshot.steps
    )


def dynamic_tags(snapshot: CaseSnapshot, *, now: datetime, tz: ZoneInfo) -> list[str]:
    """The tags a case's run carries as it moves: who holds it, which team, what it waits for, the office date
    of its nearest deadline, and ``sla:breached`` while an open step is past its deadline.

    Args:
        snapshot: the case.
        now: the time of publishing.
        tz: the office's zone (the ``due:`` date is the office's date).

    Returns:
        Tags starting with ``TAG_PREFIXES``, sorted.
    """
    tags = []
    if snapshot.handler:
        tags.append(f"assignee:{snapshot.handler}")
    elif not lifecycle_for(snapshot.kind).is_closed(snapshot.status):  # nobody holds it: sorted, or routed later
        tags.append("queue:triage" if triage_reason(snapshot.kind, snapshot.product_line) else "queue:unassigned")
    if snapshot.team:
        tags.append(f"team:{snapshot.team}")
    if snapshot.waiting_form:
        tags.append(f"waiting:{snapshot.waiting_form.replace('_', '-')}")
    dues = [s.due_at for s in snapshot.steps if s.status == "open" and s.due_at is not None]
    if dues:
        tags.append(f"due:{min(dues).astimezone(tz):%Y-%m-%d}")
    if breached(snapshot, now=now):
        tags.append("sla:breached")
    return sorted(tags)


def merge_tags(current: Sequence[str], desk_tags: Sequence[str]) -> list[str]:
    """A run's tags with the desk's current ones in place of those it set before (other tags are kept)."""
    kept = [t for t in current if not t.startswith(TAG_PREFIXES)]
    return sorted(set(kept) | set(desk_tags))


def render_case(snapshot: CaseSnapshot, *, now: datetime, tz: ZoneInfo, language: str) -> str:
    """The case as its run's markdown artifact: first what the run waits for and who may decide (or why the last
    answer was refused), then the case, its open steps with their due times in the office's zone and how far
    away or overdue, the missing documents, related cases, the last events and the CLI command.

    Args:
        snapshot: the case.
        now: the time of publishing (for "in 2 d 3 h" / "overdue by 5 h").
        tz: the office's zone.
        language: ``zh-CN`` or ``en`` (the desk's default language).

    Returns:
        Markdown.
    """
    w = labels(language)
    lines = [f"# {snapshot.number} · {snapshot.kind} · {snapshot.status}", ""]
    if snapshot.last_refusal:
        lines += [f"> **⚠ {w['refused']}:** {literal(snapshot.last_refusal)}", ""]
    if snapshot.waiting_form:
        lines.append(f"**{w['waiting']}:** `{snapshot.waiting_form}` ({snapshot.waiting_step or '-'}) · "
                     f"{w['decides']}: {snapshot.may_decide or '-'}")  # fmt: skip
    else:
        lines.append(w["closed"] if snapshot.status == "closed" else w["not_waiting"])
    lines += ["", f"{w['times'].format(tz.key)}", ""]
    facts = [
        (w["kind"], snapshot.kind), (w["priority"], snapshot.priority), (w["product"], snapshot.product_line),
        (w["policy"], snapshot.policy_number), (w["customer"], snapshot.customer),
        (w["handler"], snapshot.handler or w["nobody"]), (w["team"], snapshot.team), *snapshot.extra.items(),
    ]  # fmt: skip
    lines += ["| | |", "|---|---|", *(f"| {name} | {_cell(value)} |" for name, value in facts), ""]
    lines += [f"## {w['steps']}", ""]
    if snapshot.steps:
        lines += [f"| {w['step']} | {w['status']} | {w['assignee']} | {w['due']} | | {w['rule']} |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for s in snapshot.steps:
            due = office_time(s.due_at, tz=tz, language=language) if s.due_at else "-"
            lines.append(f"| {s.name} | {s.status} | {s.assignee or w['nobody']} | {due} | "
                         f"{due_words(s, now=now, language=language)} | {_cell(s.rule)} |")  # fmt: skip
    else:
        lines.append(w["none"])
    lines += ["", f"## {w['documents']}", ""]
    lines += [f"- {literal(d)}" for d in snapshot.missing_documents] or [w["none"]]
    if snapshot.related:
        lines += ["", f"## {w['related']}", "", *(f"- {r}" for r in snapshot.related)]
    lines += ["", f"## {w['events']}", "", f"| {w['when']} | {w['who']} | {w['what']} |", "|---|---|---|"]
    for e in snapshot.events:
        what = f"{e.type} {_cell(e.summary)}" if e.summary else e.type
        lines.append(f"| {office_time(e.at, tz=tz, language=language)} | {_cell(e.actor)} | {what} |")
    if snapshot.cli_command:
        lines += ["", f"## {w['cli']}", "", "```", snapshot.cli_command, "```"]
    return "\n".join(lines) + "\n"
