"""``claimflow template`` and ``claimflow outbox`` at a terminal."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from claimflow.cli.messages import outbox_app, template_app
from claimflow.db import session_scope
from claimflow.settings import get_settings
from models.enums import CaseKind, Channel, OutboxStatus
from models.errors import InvalidInput, NotFound
from models.messages import CATALOGUE
from models.tables import CaseCreate, CustomerCreate, Outbox
from tasks.cases import file_case
from tasks.outbox import enqueue

NOW = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as on a wide terminal, so that a test can read whole cells."""
    from rich.console import Console

    import claimflow.cli.messages as cli_messages

    monkeypatch.setattr(cli_messages, "out", Console(width=250, highlight=False, soft_wrap=True))


@pytest.fixture
def database(database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("CLAIMFLOW_DATABASE_URL", database_url)
    get_settings.cache_clear()
    return engine


def _case(engine: Engine) -> str:
    with session_scope(engine) as session:
        case = file_case(
            session,
            data=CaseCreate(
                kind=CaseKind.claim,
                channel=Channel.phone,
                amount_claimed=Decimal("12800.50"),
                customer=CustomerCreate(name="张三丰", email="zhang@example.com"),
            ),
            actor="intake",
            now=NOW,
        )
        return case.number


def test_template_list_names_every_message() -> None:
    result = runner.invoke(template_app, ["list"])
    assert result.exit_code == 0
    for name in CATALOGUE:
        assert name in result.output


def test_template_render_with_sample_values_says_so() -> None:
    result = runner.invoke(template_app, ["render", "decision", "--lang", "en"])
    assert result.exit_code == 0, result.output
    assert "Subject: Your claim is partly approved (CLM-2026-000123)" in result.output
    assert "sample values (not from a case): case_number" in result.output
    assert "wording check: passed" in result.output


def test_template_render_takes_what_it_can_from_the_case_and_masks_the_name(database: Engine) -> None:
    number = _case(database)
    result = runner.invoke(template_app, ["render", "acknowledgement_claim", "--case", number.lower()])
    assert result.exit_code == 0, result.output
    assert f"理赔申请已受理：{number}" in result.output
    assert "您通过电话提交的理赔申请" in result.output
    assert "尊敬的张**：" in result.output and "张三丰" not in result.output
    assert "sample values (not from a case): due_at" in result.output


def test_template_render_reports_a_wording_failure_and_exits_non_zero() -> None:
    result = runner.invoke(template_app, ["render", "extension_notice", "--set", "reason=本产品保本保息"])
    assert result.exit_code == 1
    assert "wording check failed: no-promised-returns" in result.output


def test_template_render_html_escapes_values() -> None:
    result = runner.invoke(
        template_app,
        ["render", "extension_notice", "--lang", "en", "--part", "html", "--set", "reason=<b>x</b>"],
    )
    assert "&lt;b&gt;x&lt;/b&gt;" in result.output


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        pytest.param(["render", "nope"], NotFound, "no message template named 'nope'", id="unknown-template"),
        pytest.param(["render", "decision", "--lang", "fr"], InvalidInput, "--lang", id="unknown-language"),
        pytest.param(["render", "decision", "--set", "oops"], InvalidInput, "KEY=VALUE", id="bad-set"),
        pytest.param(["render", "decision", "--set", "amount=lots"], InvalidInput, "not an amount", id="bad-amount"),
    ],
)
def test_template_render_refuses_bad_input(args: list[str], error: type[Exception], message: str) -> None:
    result = runner.invoke(template_app, args)
    assert isinstance(result.exception, error) and message in str(result.exception)


def test_an_unknown_case_is_not_found(database: Engine) -> None:
    result = runner.invoke(template_app, ["render", "decision", "--case", "CLM-2026-999999"])
    assert isinstance(result.exception, NotFound)


def test_outbox_list_deliver_and_retry(database: Engine) -> None:
    number = _case(database)
    with session_scope(database) as session:
        from tasks.cases import get_case

        case = get_case(session, number)
        context = {**CATALOGUE["acknowledgement_claim"].sample, "case_number": number}
        queued = enqueue(
            session,
            template="acknowledgement_claim",
            recipient=f"customer:{case.customer_id}",
            context=context,
            idempotency_key="ack",
            now=NOW,
            case=case,
        )
        assert queued.outbox is not None
        outbox_id = queued.outbox.id

    listed = runner.invoke(outbox_app, ["list", "--status", "pending"])
    assert listed.exit_code == 0 and "acknowledgement_claim" in listed.output
    assert f"customer:{case.customer_id}" in listed.output and "zhang@example.com" not in listed.output

    # no e-mail server configured: a permanent failure, dead at once (and an alert queued, undeliverable too)
    import signal

    before = signal.getsignal(signal.SIGTERM)
    delivered = runner.invoke(outbox_app, ["deliver"])
    assert delivered.exit_code == 0, delivered.output
    assert "dead 2" in delivered.output
    assert signal.getsignal(signal.SIGTERM) is before  # SIGTERM stops it as Ctrl-C does only while it runs
    with Session(database) as session:
        row = session.exec(select(Outbox).where(Outbox.id == outbox_id)).one()
    assert row.status == OutboxStatus.dead and "CLAIMFLOW_CUSTOMER_EMAIL_URL" in (row.last_error or "")

    dead = runner.invoke(outbox_app, ["list", "--status", "dead"])
    assert "staff_dead_letter" in dead.output

    again = runner.invoke(outbox_app, ["retry", str(outbox_id)])
    assert again.exit_code == 0 and f"outbox #{outbox_id} queued again" in again.output
    assert isinstance(runner.invoke(outbox_app, ["retry", str(outbox_id)]).exception, InvalidInput)
    assert isinstance(runner.invoke(outbox_app, ["retry", "999"]).exception, NotFound)
    assert isinstance(runner.invoke(outbox_app, ["list", "--status", "lost"]).exception, InvalidInput)
