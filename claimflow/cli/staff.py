"""``claimflow staff ...``: departments and staff, their worklist links, reassignment and approval codes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from pydantic import ValidationError
from rich.table import Table

import claimflow.cli.common as common
from claimflow.cli.common import CodeOption, SupervisorOption
from claimflow.console import out
from claimflow.settings import get_settings
from models.errors import InvalidInput, NotFound, describe_validation_error
from models.staff import StaffDirectory
from models.tables import Department, Staff

staff_app = typer.Typer(help="Departments and staff.", no_args_is_help=True)


@staff_app.command("import")
def staff_import(path: Annotated[Path, typer.Argument(help="Staff directory file (YAML).")]) -> None:
    """Create or update departments and staff from a YAML file (all or nothing)."""
    from tasks.staff import import_directory

    directory = _load_yaml(path, StaffDirectory)
    with common.session() as session:
        result = import_directory(session, directory=directory)
    out.print(
        f"departments: {result.departments_created} created, {result.departments_updated} updated; "
        f"staff: {result.staff_created} created, {result.staff_updated} updated"
    )


@staff_app.command("list")
def staff_list() -> None:
    """Staff with their role, department, skills and capacity."""
    from sqlmodel import col, select

    with common.session() as session:
        departments = {d.id: d.code for d in session.exec(select(Department))}
        rows = list(session.exec(select(Staff).order_by(col(Staff.username))))
        table = Table("username", "name", "role", "department", "skills", "languages", "capacity", "active",
                      "codes")  # fmt: skip
        for s in rows:
            table.add_row(
                s.username,
                s.name,
                s.role,
                departments.get(s.department_id, "-"),
                ", ".join(s.skills),
                ", ".join(s.languages),
                str(s.capacity),
                "yes" if s.active else "no",
                "enrolled" if s.totp_secret else "not enrolled",
            )
    out.print(table)


@staff_app.command("links")
def staff_links_command(
    username: Annotated[str, typer.Argument(help="Staff member whose worklists to link.")],
) -> None:
    """Bookmarkable Prefect UI links to a person's worklists: their waiting cases, their breached cases, all their
    cases, their team's queue; for supervisors and managers the breached cases of every team and the escalations
    of their level. The links open the UI whose run pages show Resume as a button (``CLAIMFLOW_UI_URL``)."""
    from sqlmodel import select

    from models.caseview import staff_links

    with common.session() as session:
        member = session.exec(select(Staff).where(Staff.username == username.strip())).first()
        if member is None:
            raise NotFound(f"no staff member '{username}'")
        department = session.get(Department, member.department_id) if member.department_id else None
        links = staff_links(get_settings().resolved_ui_url, username=member.username,
                            team=department.code if department else None, role=str(member.role))  # fmt: skip
    for label, url in links:
        out.print(f"{label}:")
        out.print(f"  {url}")


@staff_app.command("reassign")
def staff_reassign(
    from_username: Annotated[str, typer.Argument(help="Whose open cases (on leave, ill, overloaded).")],
    to: Annotated[str, typer.Option("--to", help="The handler who takes them.")],
    by: SupervisorOption,
    code: CodeOption,
    reason: Annotated[str, typer.Option(help="Why (recorded on each case; the new handler reads it).")],
    case: Annotated[str | None, typer.Option("--case", help="Only this case.")] = None,
) -> None:
    """Hand a person's open cases (or one of them) to another handler: each case moves on its own, a case the
    routing rules keep from the new handler stays and says why; the new handler is told of each case."""
    from tasks.reassign import reassign_cases
    from tasks.workflow import Desk

    with common.session() as session:
        done = reassign_cases(session, Desk.of(get_settings()), from_username=from_username, to_username=to, by=by,
                              code=code, reason=reason, now=common.now(), number=case)  # fmt: skip
    for number in done.moved:
        out.print(f"{number}: now {to.strip()}'s")
    for number, why in done.skipped:
        out.print(f"{number}: stays with {from_username.strip()}: {why}")
    out.print(f"{len(done.moved)} case(s) reassigned, {len(done.skipped)} left")


@staff_app.command("enroll")
def staff_enroll(
    username: Annotated[str, typer.Argument(help="Staff member to enrol.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing secret (a lost phone).")] = False,
) -> None:
    """Enrol a staff member for one-time approval codes (TOTP) and print the secret for their app."""
    from claimflow.secrets import encrypt
    from models.otp import new_secret, provisioning_uri
    from tasks.staff import enroll

    secret = new_secret()
    with common.session() as session:
        enroll(session, username=username, encrypted_secret=encrypt(get_settings(), secret), force=force)
    uri = provisioning_uri(secret, username=username)
    out.print(f"{username} enrolled. Scan this with their authenticator app, or type the secret (shown once, not "
              "stored in clear):")  # fmt: skip
    out.print(_qr(uri))
    out.print(f"  secret: {secret}")
    out.print(f"  uri:    {uri}")


@staff_app.command("code")
def staff_code(
    username: Annotated[str, typer.Argument(help="A sample staff member the demo enrolled.")],
) -> None:
    """Print the approval code a sample person's authenticator app shows now (demo desk only: the secrets
    'claimflow demo' made; anyone else's code comes from their own app). Waits up to 30 s when their current codes
    are used."""
    from claimflow.demo import demo_code

    out.print(demo_code(common.engine(), get_settings(), username))


def _qr(text: str) -> str:
    """A QR code of ``text`` in block characters (two rows of modules per line, no colour codes: it prints the
    same in any terminal and in a log)."""
    import io

    import segno

    drawn = io.StringIO()
    segno.make(text, error="m").terminal(out=drawn, compact=True)
    return drawn.getvalue().rstrip("\n")


def _load_yaml(path: Path, model: type[StaffDirectory]) -> StaffDirectory:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidInput(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise InvalidInput(f"{path}: expected a mapping with 'departments' and 'staff'")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc, source=str(path))) from None
