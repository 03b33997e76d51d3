"""The desk's CLI end to end, through a temporary database on each backend."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from claimflow.cli import main
from claimflow.settings import get_settings

STAFF_YAML = """
departments:
  - {code: claims-motor, name: Motor claims}
  - {code: complaints, name: Complaints (independent)}
staff:
  - {username: li.wei, name: Li Wei, role: handler, department: claims-motor, skills: [motor], languages: [zh-CN, en]}
  - {username: zhao.min, name: Zhao Min, role: supervisor, department: claims-motor}
  - {username: chen.jing, name: Chen Jing, role: handler, department: complaints, capacity: 12}
"""


class Desk:
    """Runs ``claimflow`` in-process against one database, as a person at a terminal would."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str, code: int = 0) -> str:
        get_settings.cache_clear()
        result = main(list(argv))
        captured = self.capsys.readouterr()
        assert result == code, f"exit {result}: {captured.out}{captured.err}"
        return captured.out if code == 0 else captured.err


@pytest.fixture
def desk(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_prefect: None
) -> Desk:
    monkeypatch.setenv("CLAIMFLOW_DATABASE_URL", database_url)
    monkeypatch.setenv("COLUMNS", "200")
    return Desk(capsys)


def test_a_claim_from_phone_call_to_closure(desk: Desk, tmp_path: Path) -> None:
    staff = tmp_path / "staff.yaml"
    staff.write_text(STAFF_YAML, encoding="utf-8")
    assert "already at revision" in desk("db", "upgrade")
    assert desk("staff", "import", str(staff)) == ("departments: 2 created, 0 updated; staff: 3 created, 0 updated\n")
    assert "staff: 0 created, 3 updated" in desk("staff", "import", str(staff))
    assert "chen.jing" in desk("staff", "list")

    number = desk(
        "--actor",
        "li.wei",
        "case",
        "new",
        "--kind",
        "claim",
        "--channel",
        "phone",
        "--name",
        "张三丰",
        "--phone",
        "13812345678",
        "--id-number",
        "110101195003021234",
        "--birth-date",
        "1950-03-02",
        "--elderly",
        "--policy",
        "P-778899",
        "--product-line",
        "motor",
        "--amount",
        "12,800.50",
        "--incident-date",
        "2026-02-27",
        "--description",
        "Rear-ended at a junction",
    ).strip()
    assert re.fullmatch(r"CLM-\d{4}-000001", number)

    shown = desk("case", "show", number)
    assert "张**" in shown and "138****5678" in shown and "1101**********1234" in shown
    assert "张三丰" not in shown and "13812345678" not in shown
    assert "[elderly]" in shown and "12800.50 CNY" in shown
    # filed through intake: routed to a motor handler, in review with its deadline
    assert "status: under_review" in shown and re.search(r"handler: (li\.wei|wang\.fang)", shown)
    assert "next moves: request_documents, start_investigation, approve, approve_partly, reject, withdraw" in shown
    assert re.search(r"│ review +│ open +│", shown)

    desk(
        "--actor",
        "li.wei",
        "case",
        "move",
        number,
        "request_documents",
        "--set",
        "documents=police report; repair invoice",
    )
    desk("--actor", "customer", "case", "move", number, "documents_received")
    out = desk("--actor", "li.wei", "case", "move", number, "approve", "--set", "amount=12000")
    assert out.strip() == f"{number}: under_review -> approved (event #10)"  # the care plan's two, the advance
    desk("--actor", "li.wei", "case", "move", number, "record_payment", "--set", "amount=12000")
    desk("--actor", "li.wei", "case", "move", number, "close")

    verified = desk("audit", "verify")  # 13: with the advance payment step opened, and met by the approval
    assert "audit log intact: 1 case(s), 13 event(s); checkpoint 1 signed" in verified
    assert number in desk("case", "list", "--status", "closed")
    assert "0 case(s)" in desk("case", "list", "--status", "received")

    revealed = desk("--actor", "zhao.min", "case", "show", number, "--reveal")
    assert "张三丰" in revealed and "13812345678" in revealed
    assert "personal_data_viewed" in desk("case", "show", number)  # the look itself is on the record
    assert "14 event(s)" in desk("audit", "verify", number)


@pytest.mark.parametrize(
    ("argv", "message", "code"),
    [
        pytest.param(["case", "new", "--kind", "claims", "--channel", "phone", "--name", "x"],
                     "Invalid value for '--kind'", 2, id="unknown-kind"),
        pytest.param(["case", "new", "--kind", "claim", "--channel", "fax", "--name", "x"],
                     "Invalid value for '--channel'", 2, id="unknown-channel"),
        pytest.param(["case", "list", "--status", "lost"], "unknown state 'lost'", 2, id="unknown-state"),
        pytest.param(["case", "new", "--kind", "claim", "--channel", "phone", "--name", "x",
                      "--birth-date", "1950-02-30"], "--birth-date: '1950-02-30' is not a date", 2,
                     id="malformed-date"),
        pytest.param(["case", "new", "--kind", "claim", "--channel", "phone", "--name", "x", "--amount", "lots"],
                     "--amount: 'lots' is not a number", 2, id="malformed-amount"),
        pytest.param(["case", "new", "--kind", "claim", "--channel", "phone", "--name", "x", "--email", "nope"],
                     "email: string should match pattern", 2, id="malformed-email"),
        pytest.param(["case", "show", "CLM-2026-999999"], "no case numbered 'CLM-2026-999999'", 3,
                     id="unknown-case"),
        pytest.param(["audit", "verify", "CMP-2026-000001"], "no case numbered", 3, id="unknown-case-audit"),
        pytest.param(["case", "move", "CLM-2026-999999", "close"], "no case numbered", 3, id="move-unknown-case"),
        pytest.param(["case", "move", "X", "close", "--set", "oops"], "'oops' is not KEY=VALUE", 2,
                     id="malformed-set"),
    ],
)  # fmt: skip
def test_bad_input_gets_one_line_and_a_non_zero_exit(desk: Desk, argv: list[str], message: str, code: int) -> None:
    err = desk(*argv, code=code)
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "0 case(s)" in desk("case", "list")  # nothing half-written


def test_an_illegal_move_names_the_allowed_ones_and_changes_nothing(desk: Desk) -> None:
    number = desk("case", "new", "--kind", "complaint", "--channel", "letter", "--name", "Wang Fang").strip()
    err = desk("case", "move", number, "close", code=4)
    assert err == (
        "error: complaint in state 'investigating' cannot 'close'; allowed from 'investigating': "
        "start_mediation, uphold, partly_uphold, not_uphold, refer_outside, withdraw\n"
    )
    assert "status: investigating" in desk("case", "show", number)


def test_a_bad_staff_file_names_the_entry_and_writes_nothing(desk: Desk, tmp_path: Path) -> None:
    bad = tmp_path / "staff.yaml"
    bad.write_text(STAFF_YAML.replace("role: supervisor", "role: boss"), encoding="utf-8")
    err = desk("staff", "import", str(bad), code=2)
    assert "staff[1].role" in err and "'boss'" in err
    bad.write_text(STAFF_YAML.replace("department: complaints", "department: legal"), encoding="utf-8")
    assert "staff[2].department: unknown department 'legal'" in desk("staff", "import", str(bad), code=2)
    bad.write_text("staff: [unclosed", encoding="utf-8")
    assert "not valid YAML at line 1" in desk("staff", "import", str(bad), code=2)
    assert "no such file" in desk("staff", "import", str(tmp_path / "missing.yaml"), code=2)
    assert "li.wei" not in desk("staff", "list")


def test_config_show_lists_every_setting_and_hides_secrets(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAIMFLOW_SURVEY_LINK_KEY", "very-secret-value")
    monkeypatch.setenv("CLAIMFLOW_WEBHOOK_SECRETS", '{"webform": ["s3cr3t-new", "s3cr3t-old"]}')
    monkeypatch.setenv("CLAIMFLOW_DATABASE_URL", "postgresql+psycopg://desk:hunter2@db.internal/claims")
    out = desk("config", "show")
    for name in type(get_settings()).model_fields:
        assert f"CLAIMFLOW_{name.upper()}" in out
    assert "very-secret-value" not in out and "s3cr3t" not in out and "hunter2" not in out
    assert "webform: [2 secret(s)]" in out


def test_an_unreachable_database_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("CLAIMFLOW_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:9/none")
    err = Desk(capsys)("case", "list", code=5)
    assert err.startswith("error: cannot reach database postgresql+psycopg://nobody@127.0.0.1:9/none")
    assert err.count("\n") == 1


def test_a_setting_refused_names_its_variable_in_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("CLAIMFLOW_OUTBOX_POLL_SECONDS", "0.2")
    err = Desk(capsys)("outbox", "deliver", code=2)
    assert err.startswith("error: CLAIMFLOW_OUTBOX_POLL_SECONDS: Input should be a valid integer") and "'0.2'" in err
    assert err.count("\n") == 1


def test_an_unmigrated_database_says_what_to_run(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setenv("CLAIMFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    err = Desk(capsys)("case", "list", code=5)
    assert err == "error: the database has no claimflow schema yet: run 'claimflow db upgrade' first\n"


def test_the_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    exe = shutil.which("claimflow", path=str(Path(sys.executable).parent))
    assert exe, "the claimflow console script is installed with the package"
    env = {
        "PATH": str(Path(sys.executable).parent),
        "CLAIMFLOW_DATA_DIR": str(tmp_path),
        "HOME": str(tmp_path),
    }
    done = subprocess.run([exe, "case", "show", "CLM-2026-000001"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 5
    assert done.stderr == "error: the database has no claimflow schema yet: run 'claimflow db upgrade' first\n"
    assert (tmp_path / "claimflow.db").exists()  # the data directory was created on first use
    helped = subprocess.run([exe, "--help"], capture_output=True, text=True, env=env, timeout=60)
    for group in ("db", "staff", "case", "audit", "config"):
        assert re.search(rf"^\s+{group}\s", helped.stdout, re.MULTILINE)


def test_the_demo_without_a_server_files_the_cases_for_the_reconciler(desk: Desk) -> None:
    out = desk("demo")  # creates the schema itself
    assert re.search(r"filed: CLM-\d{4}-000001 \(claim\), CMP-\d{4}-000001 \(complaint\), INQ-\d{4}-000001", out)
    assert "no Prefect server answers at http://127.0.0.1:9/api: start 'claimflow up'" in out
    listed = desk("case", "list")
    assert "under_review" in listed and "investigating" in listed and "3 case(s)" in listed
    assert "zhou.qiang" in desk("staff", "list")
    assert "audit log intact: 3 case(s)" in desk("audit", "verify")


def test_sla_tick_shows_and_records_what_is_due(desk: Desk) -> None:
    desk("demo")
    number = re.search(r"CLM-\d{4}-\d{6}", desk("case", "list", "--kind", "claim")).group(0)
    later = (datetime.now(UTC) + timedelta(days=40)).isoformat()
    dry = desk("sla", "tick", "--now", later, "--dry-run")
    assert f"{number} review: breached, escalated to level 1 (supervisor)" in dry
    assert "dry run: nothing was recorded" in dry
    assert number not in desk("escalation", "list")  # nothing was raised
    done = desk("sla", "tick", "--now", later)
    assert "escalation(s)" in done and "started by the reconciler" in done
    assert number in desk("escalation", "list")
    assert "has no offset" in desk("sla", "tick", "--now", "2026-12-01T10:00", code=2)


def test_decide_without_a_waiting_run_says_so(desk: Desk) -> None:
    desk("demo")
    number = re.search(r"INQ-\d{4}-\d{6}", desk("case", "list", "--kind", "inquiry")).group(0)
    assert f"{number} has no run yet: is 'claimflow up' running?" in desk("decide", number, "--staff", "liu.yang", "--code", "1",
                                                              code=2)  # fmt: skip
    assert "no case numbered" in desk("decide", "INQ-2026-999999", "--staff", "x", "--code", "1", code=3)


def test_staff_code_gives_the_demo_staff_fresh_codes_and_nobody_else_any(desk: Desk, tmp_path: Path) -> None:
    """The README's walk types ``--code "$(claimflow staff code li.wei)"``: the code the sample person's app would
    show, from the secret the demo made; never for someone enrolled otherwise, nor after a re-enrolment."""
    from sqlmodel import Session, select

    from claimflow.db import create_db_engine
    from claimflow.secrets import decrypt
    from models.otp import verify_code
    from models.tables import Staff

    assert "was not enrolled by 'claimflow demo'" in desk("staff", "code", "li.wei", code=2)  # no demo yet
    desk("demo")
    code = desk("staff", "code", "li.wei").strip()
    assert re.fullmatch(r"\d{6}", code)
    engine = create_db_engine(get_settings().resolved_database_url)
    with Session(engine) as session:
        member = session.exec(select(Staff).where(Staff.username == "li.wei")).one()
        assert member.totp_secret is not None
        secret = decrypt(get_settings(), member.totp_secret)
        counter = verify_code(secret, code, now=datetime.now(UTC),
                              last_counter=member.totp_last_counter)  # fmt: skip
        member.totp_last_counter = counter  # the desk took that code: the next one asked for is a later one
        session.add(member)
        session.commit()
    following = desk("staff", "code", "li.wei").strip()
    assert following != code
    assert verify_code(secret, following, now=datetime.now(UTC),
                       last_counter=counter) > counter  # fmt: skip
    assert "was not enrolled by 'claimflow demo'" in desk("staff", "code", "nobody", code=2)
    desk("staff", "enroll", "li.wei", "--force")  # a lost phone: the demo's secret is no longer hers
    assert "enrolled again since 'claimflow demo'" in desk("staff", "code", "li.wei", code=2)
    secrets = get_settings().data_dir / "demo-secrets.json"
    assert secrets.stat().st_mode & 0o077 == 0  # the owner's only


def test_a_fresh_code_waits_when_this_window_and_the_next_are_used() -> None:
    from claimflow.demo import fresh_counter

    slept: list[float] = []
    now = [3000.0]  # time step 100

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    assert fresh_counter(None, sleep, lambda: now[0]) == 100
    assert fresh_counter(99, sleep, lambda: now[0]) == 100
    assert fresh_counter(100, sleep, lambda: now[0]) == 101 and not slept  # the next window is accepted too
    assert fresh_counter(101, sleep, lambda: now[0]) == 102 and sum(slept) == 30  # waited for step 101 to begin


def test_case_link_prints_a_status_link_and_revoke_withdraws_them(desk: Desk) -> None:
    desk("demo")
    number = re.search(r"CMP-\d{4}-\d{6}", desk("case", "list", "--kind", "complaint")).group(0)
    link = desk("case", "link", number).strip()
    assert re.fullmatch(r"http://127\.0\.0\.1:8000/status/[\w.\-]+", link), link
    assert "--revoke needs --by" in desk("case", "link", number, "--revoke", code=2)
    assert "no longer open" in desk("case", "link", number, "--revoke", "--by", "zhao.min")
    assert "status_links_revoked" in desk("case", "show", number)
    assert "no case numbered" in desk("case", "link", "CMP-2026-999999", code=3)


def test_enrolment_stores_the_secret_encrypted_and_refuses_a_second_time(desk: Desk, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from sqlmodel import Session, select

    from claimflow.db import create_db_engine
    from claimflow.secrets import decrypt
    from models.otp import code_at, verify_code
    from models.tables import Staff

    staff = tmp_path / "staff.yaml"
    staff.write_text(STAFF_YAML, encoding="utf-8")
    desk("staff", "import", str(staff))
    out = desk("staff", "enroll", "zhao.min")
    secret = re.search(r"secret: ([A-Z2-7]{32})", out).group(1)
    assert "otpauth://totp/claimflow:zhao.min" in out
    # a QR code of exactly the printed URI, in block characters, for the phone to scan
    import io

    import segno

    uri = re.search(r"uri: +(\S+)", out).group(1)
    drawn = io.StringIO()
    segno.make(uri, error="m").terminal(out=drawn, compact=True)
    assert drawn.getvalue().rstrip("\n") in out and "\x1b" not in out
    listed = {line.split("│")[1].strip(): line for line in desk("staff", "list").splitlines() if line.count("│") > 2}
    assert "not enrolled" not in listed["zhao.min"] and "enrolled" in listed["zhao.min"]
    assert "not enrolled" in listed["li.wei"]
    engine = create_db_engine(get_settings().resolved_database_url)
    with Session(engine) as session:
        stored = session.exec(select(Staff).where(Staff.username == "zhao.min")).one().totp_secret
    engine.dispose()
    assert stored and secret not in stored  # encrypted at rest
    assert decrypt(get_settings(), stored) == secret
    now = datetime.now(UTC)
    verify_code(secret, code_at(secret, now), now=now, last_counter=None)
    assert "already enrolled; use --force" in desk("staff", "enroll", "zhao.min", code=2)
    assert "secret:" in desk("staff", "enroll", "zhao.min", "--force")
    assert "no staff member 'nobody'" in desk("staff", "enroll", "nobody", code=3)
    assert (Path(get_settings().data_dir) / "secret.key").stat().st_mode & 0o777 == 0o600


def test_orphan_attachment_files_are_listed_and_only_the_old_ones_deleted(
    desk: Desk, world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from sqlmodel import Session

    from models.tables import Attachment

    monkeypatch.setenv("CLAIMFLOW_DATA_DIR", str(tmp_path))
    assert "no orphan attachment files" in desk("attachments", "orphans")
    case = world.file(product_line="motor")
    folder = tmp_path / "attachments" / case.number
    folder.mkdir(parents=True)
    kept, old, young = folder / "invoice.pdf", folder / "crashed.pdf", folder / "filing-now.pdf"
    for path in (kept, old, young):
        path.write_bytes(b"%PDF-1.4 " + path.name.encode())
    two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
    for path in (kept, old):
        os.utime(path, (two_hours_ago, two_hours_ago))
    with Session(world.engine) as session:
        session.add(Attachment(case_id=case.id, filename="invoice.pdf", content_type="application/pdf", size=1,
                               sha256="0" * 64, storage_path=str(kept.relative_to(tmp_path)), source="webhook",
                               received_at=datetime.now(UTC)))  # fmt: skip
        session.commit()
    listed = desk("attachments", "orphans")
    assert "crashed.pdf" in listed and "filing-now.pdf" in listed and "invoice.pdf" not in listed
    assert "2 orphan file(s); --delete removes the 1 older than 60 min" in listed
    assert kept.exists() and old.exists() and young.exists()  # listing deletes nothing
    assert "deleted 1 orphan file(s); kept 1 younger than 60 min" in desk("attachments", "orphans", "--delete")
    assert kept.exists() and not old.exists() and young.exists()
    refused = desk("attachments", "orphans", "--older-than", "0", "--delete", code=2)
    assert "--older-than" in refused and "greater than or equal to 1" in refused
    assert young.exists()


def test_the_sweep_keeps_an_orphan_a_filing_took_up_after_it_was_listed(world, tmp_path: Path) -> None:
    import os

    from sqlmodel import Session

    from models.tables import Attachment
    from tasks.intake import find_orphans, sweep_orphans

    case = world.file(product_line="motor")
    folder = tmp_path / "attachments" / case.number
    folder.mkdir(parents=True)
    committed, reused, gone = folder / "committed.pdf", folder / "reused.pdf", folder / "gone.pdf"
    old = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
    for path in (committed, reused, gone):
        path.write_bytes(b"%PDF-1.4")
        os.utime(path, (old, old))
    with Session(world.engine) as session:
        listed = find_orphans(session, data_dir=tmp_path, now=datetime.now(UTC), grace=timedelta(hours=1))
    assert sorted(o.path.name for o in listed if o.sweepable) == ["committed.pdf", "gone.pdf", "reused.pdf"]
    # meanwhile a filing commits a row for one file, and a mail intake reuses (touches) another
    with Session(world.engine) as session:
        session.add(Attachment(case_id=case.id, filename="committed.pdf", content_type="application/pdf", size=8,
                               sha256="0" * 64, storage_path=str(committed.relative_to(tmp_path)), source="email",
                               received_at=datetime.now(UTC)))  # fmt: skip
        session.commit()
    reused.touch()
    with Session(world.engine) as session:
        assert sweep_orphans(session, listed, data_dir=tmp_path) == [gone]
    assert committed.exists() and reused.exists() and not gone.exists()


def test_text_from_outside_prints_as_text_not_as_terminal_commands(desk: Desk, tmp_path: Path) -> None:
    """A webhook or a mail can put terminal escape sequences (clear the screen, move the cursor, fake a line) or
    direction overrides in any field; ``case show`` and ``case list`` print them as visible characters."""
    staff = tmp_path / "staff.yaml"
    staff.write_text(STAFF_YAML, encoding="utf-8")
    desk("staff", "import", str(staff))
    hostile = "\x1b[2J\x1b[Hstatus: closed\x9b31m\u202egnp.exe\x07"
    number = desk("--actor", "li.wei", "case", "new", "--kind", "claim", "--channel", "phone", "--name", "Mallory",
                  "--policy", "P-\x1b]0;owned\x07", "--description", hostile).strip()  # fmt: skip
    for shown in (desk("case", "show", number), desk("case", "list")):
        assert not set(shown) & {"\x1b", "\x9b", "\x07", "\u202e"}
    shown = desk("case", "show", number)
    assert "policy: P-\ufffd]0;owned\ufffd" in shown


def test_staff_links_prints_a_persons_bookmarks(desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    staff = tmp_path / "staff.yaml"
    staff.write_text(STAFF_YAML, encoding="utf-8")
    desk("staff", "import", str(staff))
    monkeypatch.setenv("CLAIMFLOW_UI_URL", "https://desk.insurer.example/")
    shown = desk("staff", "links", "li.wei")
    assert (
        "my cases waiting for me:\n  https://desk.insurer.example/runs?tag=assignee%3Ali.wei&state=Suspended" in shown
    )
    assert "team claims-motor: cases waiting:" in shown
    assert "no staff member 'nobody'" in desk("staff", "links", "nobody", code=3)


def test_mail_list_shows_what_became_of_each_mail_and_why(desk: Desk) -> None:
    from claimflow.db import create_db_engine, session_scope
    from models.tables import MailMessage

    desk("db", "upgrade")
    engine = create_db_engine(get_settings().resolved_database_url)
    with session_scope(engine) as session:
        for i, (disposition, reason) in enumerate([("rejected", "failed in intake: RuntimeError"),
                                                   ("skipped", "Auto-Submitted: auto-replied"), ("filed", None)]):  # fmt: skip
            session.add(MailMessage(dedup_key=f"{i:064}", message_id=f"<m{i}@x>", mailbox="imap/INBOX", uid=i + 1,
                                    disposition=disposition, reason=reason, received_at=datetime.now(UTC)))  # fmt: skip
    engine.dispose()
    shown = desk("mail", "list", "--status", "rejected", "--status", "skipped")
    assert "failed in intake: RuntimeError" in shown and "Auto-Submitted: auto-replied" in shown
    assert "2 mail(s)" in shown and "<m0@x>" not in shown  # no Message-IDs, addresses or subjects
    assert "is not one of appended, duplicate, filed, rejected, skipped" in desk("mail", "list", "--status", "seen",
                                                                               code=2)  # fmt: skip


def test_a_claim_filed_without_a_product_line_is_sorted_from_the_terminal(desk: Desk, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from models.otp import code_at

    staff = tmp_path / "staff.yaml"
    staff.write_text(STAFF_YAML, encoding="utf-8")
    desk("staff", "import", str(staff))
    secret = re.search(r"secret: ([A-Z2-7]{32})", desk("staff", "enroll", "zhao.min")).group(1)
    number = desk("--actor", "li.wei", "case", "new", "--kind", "claim", "--channel", "phone", "--name", "张三",
                  "--phone", "13812345678", "--description", "something broke").strip()  # fmt: skip
    assert "handler: -" in desk("case", "show", number)  # in triage, not at whoever had room
    refused = desk("case", "triage", number, "--product-line", "boats", "--by", "zhao.min", "--code", "000000", code=2)
    assert "none of motor, health, property, travel, life" in refused
    code = code_at(secret, datetime.now(UTC))
    sorted_ = desk("case", "triage", number, "--product-line", "motor", "--by", "zhao.min", "--code", code)
    assert sorted_.strip() == f"{number}: motor, now li.wei's"
    assert "handler: li.wei" in desk("case", "show", number)


def test_a_step_is_extended_before_its_deadline_from_the_terminal(desk: Desk, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from models.otp import code_at

    staff = tmp_path / "staff.yaml"
    staff.write_text(STAFF_YAML, encoding="utf-8")
    desk("staff", "import", str(staff))
    secrets = {who: re.search(r"secret: ([A-Z2-7]{32})", desk("staff", "enroll", who)).group(1)
               for who in ("zhao.min", "li.wei")}  # fmt: skip
    number = desk("--actor", "li.wei", "case", "new", "--kind", "claim", "--channel", "phone", "--name", "张三",
                  "--phone", "13812345678", "--product-line", "motor").strip()  # fmt: skip
    asked = desk("case", "extend", number, "--by", "li.wei", "--code", code_at(secrets["li.wei"], datetime.now(UTC)),
                 "--reason", "Report awaited", code=6)  # fmt: skip
    assert "ask a supervisor" in asked  # refused: exit 6, as a refused decision
    done = desk("case", "extend", number, "--by", "zhao.min", "--code", code_at(secrets["zhao.min"], datetime.now(UTC)),
                "--reason", "The assessor's report is due on Monday")  # fmt: skip
    assert re.search(rf"{number}: review extended \(supervisor-extension\) from .+ to .+; the customer is told", done)
    assert "step_extended" in desk("case", "show", number)


def test_the_cli_decides_without_loading_prefect() -> None:
    """``claimflow decide`` answers a waiting run through the server's REST API: loading Prefect's client costs
    about a second of the two a decision may take from the terminal. What it imports must not pull Prefect in."""
    import subprocess
    import sys

    code = ("import sys, claimflow.cli, claimflow.cli.desk, tasks.answers, tasks.workflow, models.forms; "
            "loaded = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.')); "
            "print(loaded[:5]); sys.exit(1 if loaded else 0)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("outcome", ["taken up", "refused"])
def test_decide_reports_the_answers_own_outcome_not_the_next_event_on_the_case(
    desk: Desk, database_url: str, outcome: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The outbox and the watcher write events on a case while its run takes an answer up (a dead-lettered
    message, a reminder): ``decide`` must wait for the answer's own traces, not report the first event it sees."""
    import threading
    import time

    from sqlmodel import Session, select

    from claimflow.cli.desk import _give_and_report
    from claimflow.db import create_db_engine
    from models.errors import DecisionRefused
    from models.tables import Case, Step
    from tasks.cases import append_event

    desk("demo")
    number = re.search(r"CMP-\d{4}-\d{6}", desk("case", "list", "--kind", "complaint")).group(0)
    engine = create_db_engine(database_url)
    key = "complaint-decision-test-0-1"
    with Session(engine) as session:
        case = session.exec(select(Case).where(Case.number == number)).one()
        step = session.exec(select(Step).where(Step.case_id == case.id, Step.status == "open")).first()
        assert step is not None
        step.waiting_key = key
        session.add(step)
        session.commit()
        case_id, step_id = case.id, step.id

    def write(type: str, data: dict[str, str], new_key: str | None = key) -> None:
        with Session(engine) as session:
            held = session.exec(select(Case).where(Case.id == case_id).with_for_update()).one()
            append_event(session, case=held, actor="system", type=type, data=data, now=datetime.now(UTC))
            step = session.get(Step, step_id)
            assert step is not None
            step.waiting_key = new_key
            session.add(step)
            session.commit()

    def run_takes_it_up() -> None:  # the run, a moment later
        time.sleep(1.0)
        if outcome == "refused":
            write("decision_refused", {"key": key, "reason": "the approval code is wrong"}, new_key=key[:-1] + "2")
        else:
            write("complaint_decided", {"decision": "uphold"}, new_key=None)

    def give() -> None:  # the answer goes to the run; meanwhile the outbox dead-letters a message on the case
        threading.Thread(target=run_takes_it_up).start()
        write("message_dead_lettered", {"template": "x"})

    capsys.readouterr()
    if outcome == "refused":
        with pytest.raises(DecisionRefused, match="refused: the approval code is wrong"):
            _give_and_report(engine, number, give, 10, key=key)
    else:
        _give_and_report(engine, number, give, 10, key=key)
        assert capsys.readouterr().out.strip().endswith("message_dead_lettered, complaint_decided; now investigating")
    engine.dispose()
