"""``claimflow db ...`` (create or upgrade the schema) and ``claimflow config ...`` (the settings in force)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

import claimflow.cli.common as common
from claimflow.console import out
from claimflow.settings import get_settings

db_app = typer.Typer(help="Create or upgrade the database schema.", no_args_is_help=True)
config_app = typer.Typer(help="Show the settings in force.", no_args_is_help=True)

# --- db ---------------------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Create the schema, or upgrade it to the newest revision (SQLite and PostgreSQL)."""
    from claimflow.migrate import upgrade

    engine = common.engine()
    before, after = upgrade(engine, revision)
    where = engine.url.render_as_string(hide_password=True)
    if before == after:
        out.print(f"database {where} already at revision {after}")
    else:
        out.print(f"database {where} upgraded from {before or 'empty'} to {after}")


@db_app.command("status")
def db_status() -> None:
    """Show the schema revision of the database and the newest one this version knows."""
    from claimflow.migrate import current_revision, head_revision

    engine = common.engine()
    current, head = current_revision(engine), head_revision(engine)
    out.print(f"database: {engine.url.render_as_string(hide_password=True)}")
    out.print(f"revision: {current or 'empty'} (newest: {head})")
    if current != head:
        out.print("run 'claimflow db upgrade' to bring it up to date")


# --- config -----------------------------------------------------------------------------------------------


@config_app.command("show")
def config_show() -> None:
    """Every setting, its value (secrets hidden) and what it does."""
    table = Table("variable", "value", "meaning")
    for name, value, description in get_settings().described():
        table.add_row(name, value, description)
    out.print(table)


@config_app.command("new-key")
def config_new_key() -> None:
    """Print a new key for CLAIMFLOW_SECRET_KEY (encrypts enrolled approval secrets)."""
    from cryptography.fernet import Fernet

    out.print(Fernet.generate_key().decode())
