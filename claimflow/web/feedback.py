"""The customer's survey page and the feedback webhook, served by the intake web app (``claimflow.web.app``).

``GET /survey/{token}`` shows the form (``?lang=zh-CN|en``, ``?large=1`` for large text); ``POST`` takes the
answer once. A forged, unknown, used or expired link gets a page that says so in the customer's language
(403, 404, 410, 410), never a stack trace; a form with a missing or wrong field is shown again with what
was wrong (422) and nothing stored.

``POST /v1/feedback`` (signed like every webhook, see ``claimflow.web.intake``) records feedback that arrived on
another channel: ``{"case_number": "CLM-2026-000001", "text": "...", "score": 4, "solved": true}``; without a
``case_number`` it is feedback about the desk in general (``tasks.feedback.record_general``), with an optional
``customer`` (``name`` and a ``phone`` or an ``email``) to answer. With an
``Idempotency-Key`` a retried post answers the first answer again instead of recording twice.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from claimflow.db import lock_name, session_scope
from claimflow.secrets import survey_key
from claimflow.web.http import (
    OUTAGE,
    PAGE_HEADERS,
    REFUSAL_STATUS,
    ApiProblem,
    check_idempotency_key,
    invalid,
    is_json,
    json_object,
    pages,
    read_body,
    validation_errors,
)
from claimflow.web.intake import Intake
from models.errors import InvalidInput, NotFound
from models.messages import format_deadline
from models.survey import (
    LANGUAGES,
    MAX_COMMENT_CHARS,
    PAGE_TEXT,
    Refusal,
    SurveyAnswer,
    SurveyLinkRefused,
    page_language,
    parse_answer,
    read_token,
)
from models.tables import Case, CustomerCreate, Feedback, SurveyInvitation
from tasks.cases import get_case
from tasks.feedback import (
    FeedbackOutcome,
    answer_survey,
    consequences,
    follow_up_step_name,
    record,
    record_general,
)
from tasks.intake import IdempotencyConflict, body_digest, filed_by
from tasks.survey import open_invitation

FEEDBACK_TAG = "Feedback"
"""The reference's group for feedback recorded from another channel."""

logger = logging.getLogger("claimflow.api")


def render_page(
    *,
    state: str,
    lang: str,
    large: bool,
    phone: str,
    status_code: int = 200,
    **values: Any,
) -> HTMLResponse:
    """The survey page in one of its states: ``form``, ``thanks`` or ``error`` (``reason`` names the refusal)."""
    other = next(language for language in LANGUAGES if language != lang)
    values.setdefault("values", {"score": None, "solved": None, "comment": ""})
    values.setdefault("problem", None)
    html = (
        pages()
        .get_template("survey.html.j2")
        .render(
            state=state,
            lang=lang,
            other_lang=other,
            large=large,
            t=PAGE_TEXT[lang],
            phone=phone,
            max_comment=MAX_COMMENT_CHARS,
            **values,
        )
    )
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


class FeedbackContact(BaseModel):
    """Who gave general feedback, to answer them (a phone number or an e-mail address at least)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=40, pattern=r"^\+?[0-9][0-9 ()-]{4,38}$")
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    language: str = Field(default="zh-CN", max_length=16, pattern=r"^[a-z]{2}(-[A-Z]{2})?$")


class FeedbackIn(BaseModel):
    """Feedback from another channel, posted by a signed source: about a case (``case_number``), or about the desk
    in general with no case (a hotline, a web form, social media), then with the ``customer`` to answer if known."""

    model_config = ConfigDict(extra="forbid")

    case_number: str | None = Field(default=None, min_length=1, max_length=32)
    customer: FeedbackContact | None = None
    text: str | None = Field(default=None, max_length=20_000)
    score: int | None = Field(default=None, ge=1, le=5)
    solved: bool | None = None
    channel: str = Field(default="webhook", pattern=r"^(webhook|app|phone|email|counter|letter)$")


def _outcome_body(outcome: FeedbackOutcome, number: str) -> dict[str, Any]:
    return {
        "feedback_id": outcome.feedback.id,
        "case_number": number,
        "classification": outcome.kind.value,
        "follow_up": outcome.follow_up.name if outcome.follow_up else None,
        "complaint_case_number": outcome.complaint_case.number if outcome.complaint_case else None,
    }


def _general_body(feedback: Feedback, complaint: Case | None) -> dict[str, Any]:
    return {
        "feedback_id": feedback.id,
        "case_number": None,
        "classification": feedback.classification,
        "follow_up": None,
        "complaint_case_number": complaint.number if complaint else None,
    }


def _replayed_body(session: Session, earlier: Feedback, case: Case) -> dict[str, Any]:
    """The first answer to a post again, from the feedback it stored (what ``record`` did with it)."""
    complaint = session.get(Case, earlier.complaint_case_id) if earlier.complaint_case_id else None
    followed, _ = consequences(case, earlier)
    return {
        "feedback_id": earlier.id,
        "case_number": case.number,
        "classification": earlier.classification,
        "follow_up": follow_up_step_name(case) if followed else None,
        "complaint_case_number": complaint.number if complaint else None,
    }


def same_origin(request: Request) -> bool:
    """A browser's POST comes from this site. Browsers say where a request comes from in ``Sec-Fetch-Site``
    (``cross-site`` is refused); where they do not, the ``Origin`` (else the ``Referer``) must name the host the
    request was sent to. ``Origin: null`` is what our own page sends (its referrer policy is ``no-referrer``, so the
    link's token never leaks) and passes; so does a request with none of them (not a browser). The signed link is
    what authorises an answer; this stops another site's page from posting one in the customer's browser."""
    fetched_from = request.headers.get("sec-fetch-site")
    if fetched_from is not None:
        return fetched_from.lower() != "cross-site"
    sent_from = request.headers.get("origin") or request.headers.get("referer")
    if sent_from is None or sent_from == "null":
        return True
    return urlsplit(sent_from).netloc.lower() == (request.headers.get("host") or request.url.netloc).lower()


def add_feedback_routes(app: FastAPI, intake: Intake) -> None:
    """Mount the survey page and the feedback webhook on the intake app."""
    settings = intake.settings
    phone = settings.desk_phone or settings.desk_email  # no survey link is sent before the phone is set (held)

    def page_for(
        token: str, lang: str | None, large: bool, *, problem: str | None = None, values: dict[str, Any] | None = None
    ) -> HTMLResponse:
        """The form for a link that may be answered (with what was wrong, 422), else the refusal page."""
        try:
            with Session(intake.engine) as session:
                opened = open_invitation(session, settings, token=token, now=intake.clock())
                language = page_language(lang, opened.invitation.language)
                expires = format_deadline(opened.invitation.expires_at, language, settings.office_timezone)
                shown = {"score": None, "solved": None, "comment": "", **(values or {})}
                wrong = PAGE_TEXT[language]["invalid"].format(problems=problem) if problem else None
                return render_page(state="form", lang=language, large=large, phone=phone, problem=wrong,
                                   case_number=opened.case.number, expires=expires, values=shown,
                                   status_code=422 if problem else 200)  # fmt: skip
        except SurveyLinkRefused as refused:
            return refusal(refused.reason.value, lang, large, customer_language(token, refused.reason))

    def customer_language(token: str, reason: Refusal) -> str | None:
        """The language of the invitation behind a used or expired link (the others name no invitation)."""
        if reason not in (Refusal.used, Refusal.expired):
            return None
        try:
            claim = read_token(survey_key(settings), token)
            with Session(intake.engine) as session:
                invitation = session.get(SurveyInvitation, claim.invitation_id)
        except (SurveyLinkRefused, OperationalError):
            return None
        return invitation.language if invitation is not None else None

    def refusal(reason: str, lang: str | None, large: bool, customer: str | None = None) -> HTMLResponse:
        """The page that refuses a link: in the language asked for, else the customer's (when known)."""
        language = page_language(lang, customer or settings.default_language)
        code = REFUSAL_STATUS.get(Refusal(reason), 503) if reason in Refusal.__members__ else 503
        return render_page(state="error", lang=language, large=large, phone=phone, reason=reason, status_code=code)

    @app.get("/survey/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def survey_form(
        token: str, lang: Annotated[str | None, Query(max_length=16)] = None, large: str | None = None
    ) -> HTMLResponse:
        try:
            return await run_in_threadpool(page_for, token, lang, large == "1")
        except OperationalError as exc:
            OUTAGE.refuse("survey page", exc)
            return refusal("unavailable", lang, large == "1")

    def take(token: str, answer: SurveyAnswer) -> tuple[FeedbackOutcome, str]:
        """Take the answer; with the language of the invitation it answers."""
        with session_scope(intake.engine) as session:
            outcome = answer_survey(session, intake.desk, token=token, answer=answer, now=intake.clock())
            invitation = session.get(SurveyInvitation, outcome.feedback.invitation_id)
            return outcome, invitation.language if invitation is not None else settings.default_language

    @app.post("/survey/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def survey_answer(
        request: Request,
        token: str,
        score: Annotated[str | None, Form()] = None,
        solved: Annotated[str | None, Form()] = None,
        comment: Annotated[str | None, Form()] = None,
        lang: Annotated[str | None, Form()] = None,
        large: Annotated[str | None, Form()] = None,
    ) -> HTMLResponse:
        # the customer sees a page, never a JSON problem: a language code too long for one is no language, and a
        # comment too long is said next to the form (parse_answer)
        big, lang = large == "1", (lang if lang is not None and len(lang) <= 16 else None)
        if not same_origin(request):  # a form posted from another site (a forged request): refused, not recorded
            return refusal(Refusal.forged.value, lang, big)
        try:
            answer = parse_answer(score, solved, comment)
        except InvalidInput as exc:
            wrong = str(exc)
            values = {"score": score, "solved": solved, "comment": (comment or "")[:MAX_COMMENT_CHARS]}
            return await run_in_threadpool(lambda: page_for(token, lang, big, problem=wrong, values=values))
        try:
            outcome, customer = await run_in_threadpool(take, token, answer)
        except SurveyLinkRefused as refused:
            known = await run_in_threadpool(customer_language, token, refused.reason)
            return refusal(refused.reason.value, lang, big, known)
        except IntegrityError:  # the same link answered at the same moment in another request
            known = await run_in_threadpool(customer_language, token, Refusal.used)
            return refusal(Refusal.used.value, lang, big, known)
        except OperationalError as exc:
            OUTAGE.refuse("survey answer", exc)
            return refusal("unavailable", lang, big)
        if outcome.complaint_case is not None and intake.launcher is not None:
            intake.launcher.submit(outcome.complaint_case.id or 0)
        logger.info("survey answered for %s: %s", outcome.feedback.case_id, outcome.kind.value)
        language = page_language(lang, customer)
        called = outcome.follow_up is not None
        return render_page(state="thanks", lang=language, large=big, phone=phone, call_back=called)

    def record_posted(source: str, posted: FeedbackIn, key: str | None, digest: str) -> tuple[dict[str, Any], bool]:
        # a key is stored as its digest beside the body's (a long key was cut to the column and two keys with the
        # same start were one); the same key with another body is a conflict, not the first answer again
        keyed = f"webhook {source} key:{hashlib.sha256(key.encode()).hexdigest()[:32]}" if key else None
        origin = f"{keyed} body:{digest[:32]}" if keyed else f"webhook {source}"
        if posted.case_number is None:
            return record_general_posted(source, posted, keyed, origin)
        if posted.customer is not None:
            raise InvalidInput("customer: only for feedback with no case_number (a case's customer is on file)")
        with session_scope(intake.engine) as session:
            # the case's row is held until the commit: a retry racing under the same key waits and then finds
            # the first one's feedback, and the events of concurrent posts chain one after the other. Only a case
            # this source filed: another source's case answers as a case that does not exist (no probing)
            case = filed_by(session, number=posted.case_number.strip().upper(), source=source, for_update=True)
            if keyed is not None:
                earlier = session.exec(
                    select(Feedback).where(Feedback.case_id == case.id, col(Feedback.source).startswith(keyed))
                ).first()
                if earlier is not None and earlier.source != origin:
                    raise IdempotencyConflict("this Idempotency-Key was used with another body")
                if earlier is not None:
                    return _replayed_body(session, earlier, case), True
            outcome = record(session, intake.desk, case=case, channel=posted.channel, text=posted.text,
                             score=posted.score, solved=posted.solved, source=origin, actor=source,
                             now=intake.clock())  # fmt: skip
            return _outcome_body(outcome, case.number), False

    def record_general_posted(source: str, posted: FeedbackIn, keyed: str | None,
                              origin: str) -> tuple[dict[str, Any], bool]:  # fmt: skip
        with session_scope(intake.engine) as session:
            if keyed is not None:
                lock_name(session, keyed)  # a retry racing under the same key waits for the first, then finds it
                earlier = session.exec(
                    select(Feedback).where(col(Feedback.case_id).is_(None), col(Feedback.source).startswith(keyed))
                ).first()
                if earlier is not None and earlier.source != origin:
                    raise IdempotencyConflict("this Idempotency-Key was used with another body")
                if earlier is not None:
                    complaint = session.get(Case, earlier.complaint_case_id) if earlier.complaint_case_id else None
                    return _general_body(earlier, complaint), True
            contact = CustomerCreate(**posted.customer.model_dump()) if posted.customer else None
            outcome = record_general(session, intake.desk, channel=posted.channel, text=posted.text,
                                     score=posted.score, solved=posted.solved, contact=contact, source=origin,
                                     actor=source, now=intake.clock())  # fmt: skip
            return _general_body(outcome.feedback, outcome.complaint_case), False

    @app.post(
        "/v1/feedback",
        status_code=202,
        summary="Record feedback about a case from another channel",
        tags=[FEEDBACK_TAG],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FeedbackIn"}}},
            },
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "Same key and body: the first answer again (200); same key, other body: 409.",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                },
            ],
        },
    )
    async def post_feedback(request: Request) -> JSONResponse:
        body = await read_body(request, settings.api_max_body_bytes)
        source = intake.authenticate(request, body=body)
        if not is_json(request.headers.get("content-type")):
            raise ApiProblem(415, "unsupported-media-type", "Unsupported media type", "send application/json")
        key = request.headers.get("idempotency-key")
        check_idempotency_key(key)
        try:
            posted = FeedbackIn.model_validate(json_object(body))
        except ValidationError as exc:
            raise invalid(validation_errors(exc)) from None
        try:
            answer, replayed = await run_in_threadpool(record_posted, source, posted, key, body_digest(body))
        except IdempotencyConflict as exc:
            raise ApiProblem(409, "idempotency-conflict", "Idempotency conflict", str(exc)) from None
        except NotFound as exc:
            raise invalid([{"field": "case_number", "message": str(exc)}]) from None
        except InvalidInput as exc:
            raise invalid([{"field": "body", "message": str(exc)}]) from None
        except OperationalError as exc:
            OUTAGE.refuse(f"feedback from {source}", exc)
            raise ApiProblem(503, "unavailable", "Service unavailable", "the case database cannot be reached; retry",
                             headers={"Retry-After": "5"}) from None  # fmt: skip
        number = answer.get("complaint_case_number")
        if number and intake.launcher is not None and not replayed:
            with Session(intake.engine) as session:
                intake.launcher.submit(get_case(session, number).id or 0)
        return JSONResponse(answer, status_code=200 if replayed else 202,
                            headers={"Idempotent-Replayed": "true"} if replayed else {})  # fmt: skip
