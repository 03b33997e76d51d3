"""The published service standards (``/standards``), built from what the desk runs on, pure.

Every promise on the page is read from the policy packs in force (the house pack and each jurisdiction's
regulators' packs), the document lists of ``models.routing`` and the settings (the desk's phone and address, the
outside bodies, the second-approval threshold): change a pack and the page changes with it, nothing is written
twice. Only the fixed sentences (what costs nothing, how personal data is used) are page text, in ``TEXT``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from models.clock import Unit
from models.enums import CaseKind, Channel
from models.outside import OutsideBodies, outside_body_name
from models.sla import Amount, Pack, StepName, StepRule

LANGUAGES = ("zh-CN", "en")

UNIT_WORDS: dict[str, dict[Unit, tuple[str, str]]] = {  # (one, several)
    "en": {Unit.HOURS: ("hour", "hours"), Unit.BUSINESS_HOURS: ("business hour", "business hours"),
           Unit.CALENDAR_DAYS: ("calendar day", "calendar days"), Unit.WORKING_DAYS: ("working day", "working days")},
    "zh-CN": {Unit.HOURS: ("小时", "小时"), Unit.BUSINESS_HOURS: ("个工作小时", "个工作小时"),
              Unit.CALENDAR_DAYS: ("个自然日", "个自然日"), Unit.WORKING_DAYS: ("个工作日", "个工作日")},
}  # fmt: skip

CHANNEL_WORDS: dict[str, dict[Channel, str]] = {
    "en": {Channel.phone: "Phone", Channel.email: "E-mail", Channel.webhook: "Our partners' apps and websites",
           Channel.app: "Our app", Channel.counter: "At our counters", Channel.letter: "Letter"},
    "zh-CN": {Channel.phone: "电话", Channel.email: "电子邮件", Channel.webhook: "合作方的应用和网站",
              Channel.app: "我们的应用", Channel.counter: "柜面", Channel.letter: "信函"},
}  # fmt: skip

STEP_WORDS: dict[str, dict[tuple[CaseKind, StepName], str]] = {
    "en": {
        (CaseKind.inquiry, StepName.ANSWER): "We answer your question",
        (CaseKind.inquiry, StepName.FOLLOW_UP): "A supervisor calls you back if you were not satisfied",
        (CaseKind.claim, StepName.INTAKE): "We check your claim's documents and ask once, for everything missing",
        (CaseKind.claim, StepName.REVIEW): "We decide on your claim",
        (CaseKind.claim, StepName.RESOLUTION): "If we cannot pay, we write to you with the reasons",
        (CaseKind.claim, StepName.PAYMENT): "We pay once the amount is agreed",
        (CaseKind.claim, StepName.ADVANCE_PAYMENT): "While the amount is not fixed, we pay what is already certain",
        (CaseKind.claim, StepName.FOLLOW_UP): "A supervisor calls you back if you were not satisfied",
        (CaseKind.complaint, StepName.INTAKE): "We confirm that we received your complaint",
        (CaseKind.complaint, StepName.REVIEW): "We look into your complaint",
        (CaseKind.complaint, StepName.RESOLUTION): "We investigate your complaint and send you our answer",
        (CaseKind.complaint, StepName.FEEDBACK): "We ask whether our answer resolved your complaint",
        (CaseKind.complaint, StepName.COMPLAINT_REVIEW): "If our answer did not satisfy you, an independent "
        "supervisor reviews it and calls you",
    },
    "zh-CN": {
        (CaseKind.inquiry, StepName.ANSWER): "答复您的咨询",
        (CaseKind.inquiry, StepName.FOLLOW_UP): "如您不满意，主管回电跟进",
        (CaseKind.claim, StepName.INTAKE): "审查理赔材料，如有缺失一次性告知您需补充的全部材料",
        (CaseKind.claim, StepName.REVIEW): "对您的理赔作出核定",
        (CaseKind.claim, StepName.RESOLUTION): "如不予赔付，书面通知您并说明理由",
        (CaseKind.claim, StepName.PAYMENT): "达成赔付协议后支付赔款",
        (CaseKind.claim, StepName.ADVANCE_PAYMENT): "赔付金额尚未确定时，先行支付已可确定的部分",
        (CaseKind.claim, StepName.FOLLOW_UP): "如您不满意，主管回电跟进",
        (CaseKind.complaint, StepName.INTAKE): "确认收到您的投诉",
        (CaseKind.complaint, StepName.REVIEW): "调查您的投诉",
        (CaseKind.complaint, StepName.RESOLUTION): "调查您的投诉并给您书面答复",
        (CaseKind.complaint, StepName.FEEDBACK): "询问您对处理结果是否满意",
        (CaseKind.complaint, StepName.COMPLAINT_REVIEW): "如您对答复不满意，由独立的主管复核并回电",
    },
}

ROLE_WORDS = {
    "en": {"supervisor": "a supervisor", "manager": "a manager", "handler": "your handler"},
    "zh-CN": {"supervisor": "主管", "manager": "经理", "handler": "您的经办人"},
}

PRODUCT_WORDS = {
    "en": {"motor": "Motor", "health": "Health", "property": "Property", "travel": "Travel", "life": "Life",
           "": "Any other insurance"},
    "zh-CN": {"motor": "车险", "health": "健康险", "property": "财产险", "travel": "旅行险", "life": "寿险",
              "": "其他险种"},
}  # fmt: skip

DOCUMENT_WORDS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "claim form": "理赔申请书", "driving licence": "驾驶证", "vehicle licence": "行驶证",
        "police or accident report": "交警或事故证明", "repair invoice": "维修发票", "photos of the damage": "损失照片",
        "bank account details": "银行账户信息", "identity document": "身份证件", "medical records": "病历",
        "itemised hospital invoice": "医院费用明细发票", "discharge summary": "出院小结",
        "proof of ownership": "财产所有权证明", "repair quote or invoice": "维修报价或发票",
        "police report for theft": "盗抢报案证明", "supporting evidence": "其他证明材料",
    },
}  # fmt: skip

JURISDICTION_WORDS = {
    "en": {"CN": "Mainland China", "GB": "United Kingdom", "AU": "Australia", "US-CA": "California, USA"},
    "zh-CN": {"CN": "中国大陆", "GB": "英国", "AU": "澳大利亚", "US-CA": "美国加利福尼亚州"},
}

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Our service standards",
        "intro": "What we promise when you ask us something, make a claim or complain: the times we keep, the "
        "documents we need, who decides and where you can go if you disagree. These are the rules our "
        "desk runs on; each promise names where it comes from.",
        "reach": "How to reach us, and how fast we answer",
        "channel": "Channel",
        "answer_within": "We answer within",
        "phone": "Phone",
        "email": "E-mail",
        "no_phone": "the number on your policy documents",
        "online": "Online",
        "online_claim": "make a claim",
        "online_complaint": "make a complaint",
        "claims": "Claims: what happens and when",
        "claims_intro": "Every claim gets a case number and an acknowledgement at once. While we wait for documents "
        "from you, the time we have stops and starts again when they arrive.",
        "step": "What we do",
        "within": "Within",
        "source": "Rule",
        "documents": "Documents each kind of claim needs",
        "product": "Insurance",
        "full_list": "Documents",
        "simplified": "If you are 70 or older, or need help",
        "large_claims": "A decision on a claim of {amount} or more is approved by a second person.",
        "complaints": "Complaints",
        "complaints_intro": "A complaint is handled by a team independent of the one you complain about. You are told "
        "in writing what we found, what we will do and why.",
        "who_decides": "Who decides when a time limit is missed",
        "ladder_breach": "When a time limit is missed, {role} decides at once what happens next.",
        "ladder_after": "If {previous} has not decided within {amount}, {role} decides.",
        "where": "Where you are, the rules that apply, and where to go next",
        "jurisdiction": "Where",
        "rules": "The law's time limits",
        "outside_body": "If you disagree with our answer",
        "none": "—",
        "extension": "If more time is needed (for instance for an expert's report), it can be extended by {by}, "
        "at most {times} time(s); you are told the new date and the reason before the first date passes.",
        "free": "What costs nothing",
        "free_text": "Asking us, making a claim, complaining, asking where your case stands, sending documents and "
        "taking a complaint to the outside body named above cost you nothing.",
        "privacy": "How we use your personal data",
        "privacy_text": "We use your name, contact details and the documents you send only to handle your case and "
        "to tell you about it, on the channel you chose. Our staff see your details masked; when "
        "someone needs to see them in full, that look is recorded. Every step of your case is kept "
        "in a record that cannot be altered afterwards. Answering our satisfaction survey is "
        "voluntary.",
        "large_on": "Larger text",
        "large_off": "Normal text",
        "other_language": "中文",
        "rules_from": "The rules in force: {packs}.",
    },
    "zh-CN": {
        "title": "服务标准",
        "intro": "您向我们咨询、申请理赔或投诉时，我们承诺的办理时限、所需材料、由谁决定，以及您不同意时可以去哪里。"
        "以下均为我们实际执行的规则，每一项都注明出处。",
        "reach": "联系方式与答复时限",
        "channel": "渠道",
        "answer_within": "答复时限",
        "phone": "电话",
        "email": "电子邮件",
        "no_phone": "保单上的客服电话",
        "online": "在线",
        "online_claim": "报案理赔",
        "online_complaint": "投诉",
        "claims": "理赔流程与时限",
        "claims_intro": "每一笔理赔都会立即生成案件编号并向您发送受理通知。"
        "等待您补充材料期间，时限暂停计算，收到材料后继续计算。",
        "step": "办理事项",
        "within": "时限",
        "source": "依据",
        "documents": "各险种理赔所需材料",
        "product": "险种",
        "full_list": "所需材料",
        "simplified": "70岁以上或需要帮助的客户",
        "large_claims": "金额在 {amount} 及以上的理赔决定，须由第二人审批。",
        "complaints": "投诉",
        "complaints_intro": "投诉由独立于被投诉部门的团队处理。我们会书面告知您调查结果、处理措施及理由。",
        "who_decides": "超过时限时由谁决定",
        "ladder_breach": "一旦超过时限，由{role}立即决定后续处理。",
        "ladder_after": "如{previous}在{amount}内未作决定，由{role}决定。",
        "where": "适用地区、法定时限及外部投诉渠道",
        "jurisdiction": "地区",
        "rules": "法定时限",
        "outside_body": "如您不同意我们的答复",
        "none": "—",
        "extension": "如需更多时间（例如等待鉴定报告），可延长{by}，最多{times}次；"
        "我们会在原定日期之前告知您新的日期和原因。",
        "free": "免费事项",
        "free_text": "咨询、申请理赔、投诉、查询案件进度、提交材料，以及向上述外部机构投诉，均不收取任何费用。",
        "privacy": "我们如何使用您的个人信息",
        "privacy_text": "您的姓名、联系方式和提交的材料仅用于办理您的案件并通过您选择的渠道告知您进展。"
        "我们的员工看到的是脱敏后的信息；如需查看完整信息，每次查看都会被记录。"
        "案件的每一步都保存在事后无法篡改的记录中。满意度调查由您自愿参加。",
        "large_on": "大字模式",
        "large_off": "标准字号",
        "other_language": "English",
        "rules_from": "现行规则：{packs}。",
    },
}


@dataclass(frozen=True)
class Promise:
    """One step with its time limit, in words, and where the limit comes from."""

    what: str
    within: str
    source: str
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Documents:
    product: str
    full: tuple[str, ...]
    simplified: tuple[str, ...]


@dataclass(frozen=True)
class Region:
    """A jurisdiction the desk serves: the law's limits on top of the house standard, and the outside body."""

    code: str
    name: str
    promises: tuple[Promise, ...]
    outside_body: str


@dataclass(frozen=True)
class Standards:
    language: str
    text: Mapping[str, str]
    phone: str
    email: str
    channels: tuple[tuple[str, str], ...]  # (channel, answered within)
    claims: tuple[Promise, ...]
    documents: tuple[Documents, ...]
    second_approval: str
    complaints: tuple[Promise, ...]
    ladder: tuple[str, ...]
    regions: tuple[Region, ...]
    packs: tuple[str, ...] = field(default=())


def amount_words(amount: Amount, language: str) -> str:
    """``3 working days`` / ``3个工作日``."""
    number = int(amount.value) if float(amount.value).is_integer() else amount.value
    one, several = UNIT_WORDS[language][amount.unit]
    if language == "en":
        return f"{number} {one if number == 1 else several}"
    return f"{number}{several}"


def document_words(name: str, language: str) -> str:
    return DOCUMENT_WORDS.get(language, {}).get(name, name)


def step_words(kind: CaseKind, step: StepName, rule: StepRule, language: str) -> str:
    return STEP_WORDS[language].get((kind, step), rule.description)


def _promises(pack: Pack, kind: CaseKind, language: str) -> tuple[Promise, ...]:
    found: list[Promise] = []
    for step, rule in pack.steps.get(kind, {}).items():
        if rule.limit is None or rule.limit.window:  # duty-only steps and option windows promise no date
            continue
        extensions = tuple(TEXT[language]["extension"].format(by=amount_words(e.by, language), times=e.times)
                           for e in rule.extensions if e.by is not None)  # fmt: skip
        found.append(Promise(step_words(kind, step, rule, language), amount_words(rule.limit, language),
                             rule.limit.source, extensions))  # fmt: skip
    return tuple(found)


def _ladder(pack: Pack, language: str) -> tuple[str, ...]:
    rule = pack.rule(CaseKind.claim, StepName.REVIEW) or pack.rule(CaseKind.complaint, StepName.RESOLUTION)
    text, roles = TEXT[language], ROLE_WORDS[language]
    lines: list[str] = []
    previous = ""
    for rung in (rule.escalation if rule is not None else None) or pack.defaults.escalation or ():
        role = roles.get(rung.role, rung.role)
        if rung.at == "breach" or rung.after is None:
            lines.append(text["ladder_breach"].format(role=role))
        else:
            lines.append(text["ladder_after"].format(previous=previous or role, role=role,
                                                     amount=amount_words(rung.after, language)))  # fmt: skip
        previous = role
    return tuple(lines)


def build(
    *,
    house: Pack,
    regulators: Mapping[str, Sequence[Pack]],
    outside_bodies: OutsideBodies,
    documents: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]],
    default_documents: tuple[tuple[str, ...], tuple[str, ...]],
    second_approval: Decimal,
    phone: str,
    email: str,
    language: str,
) -> Standards:
    """The standards page's content in ``language`` (zh-CN or en), from the packs and settings in force."""
    language = language if language in LANGUAGES else "en"
    text = TEXT[language]
    answer = house.rule(CaseKind.inquiry, StepName.ANSWER)
    channels: list[tuple[str, str]] = []
    if answer is not None and answer.limit_by_channel:
        for channel, limit in answer.limit_by_channel.items():
            channels.append((CHANNEL_WORDS[language].get(channel, str(channel)), amount_words(limit, language)))
    elif answer is not None and answer.limit is not None:
        channels.append((text["channel"], amount_words(answer.limit, language)))
    products = [Documents(PRODUCT_WORDS[language].get(name, name),
                          tuple(document_words(d, language) for d in full),
                          tuple(document_words(d, language) for d in short))
                for name, (full, short) in documents.items()]  # fmt: skip
    full, short = default_documents
    products.append(Documents(PRODUCT_WORDS[language][""], tuple(document_words(d, language) for d in full),
                              tuple(document_words(d, language) for d in short)))  # fmt: skip
    bodies = {code.upper() for code in outside_bodies}
    regions = []
    for code in sorted(set(regulators) | bodies):
        promises = tuple(p for pack in regulators.get(code, ()) for kind in CaseKind for p in
                         _promises(pack, kind, language))  # fmt: skip
        body = outside_body_name(outside_bodies, code, language) if code.upper() in bodies else ""
        regions.append(Region(code, JURISDICTION_WORDS[language].get(code, code), promises, body))
    packs = (house.title, *dict.fromkeys(p.title for ps in regulators.values() for p in ps))
    return Standards(
        language=language, text=text, phone=phone, email=email, channels=tuple(channels),
        claims=_promises(house, CaseKind.claim, language), documents=tuple(products),
        second_approval=f"{second_approval:,.2f}", complaints=_promises(house, CaseKind.complaint, language),
        ladder=_ladder(house, language), regions=tuple(regions), packs=packs,
    )  # fmt: skip
