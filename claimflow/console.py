"""What every CLI command shares: the console (markup off, so customer-supplied text such as "[bold]" prints
as written; wide tables when the output goes to a file or a pipe) and the parsing of ``--set KEY=VALUE``."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from typing import Any

from rich.console import Console

from models.errors import InvalidInput

out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(highlight=False, soft_wrap=True, markup=False, stderr=True)


def fit_to_output() -> None:
    """Size the consoles for where the output goes: the terminal's width, else ``$COLUMNS`` or 160."""
    for console in (out, err):
        stream = sys.stderr if console is err else sys.stdout
        if stream.isatty():
            console.width = os.get_terminal_size(stream.fileno()).columns
        else:
            console.width = int(os.environ.get("COLUMNS", "160"))


def parse_sets(values: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` options as a mapping; ``documents`` takes a ``;``-separated list."""
    data: dict[str, Any] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--set: {item!r} is not KEY=VALUE")
        data[key.strip()] = [v.strip() for v in value.split(";")] if key.strip() == "documents" else value
    return data


def parse_now(value: str, option: str = "--now") -> datetime:
    """An ``--now`` option: an ISO 8601 date-time with its offset (``2026-12-01T10:00:00+08:00``).

    Raises:
        InvalidInput: not ISO 8601, or no offset (a time without a zone is ambiguous across offices).
    """
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{option}: {value!r} is not an ISO 8601 date-time (e.g. 2026-12-01T10:00:00+08:00)"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"{option}: {value!r} has no offset (e.g. 2026-12-01T10:00:00+08:00)")
    return parsed
