"""What every CLI command shares: the console (markup off, so customer-supplied text such as "[bold]" prints
as written; wide tables when the output goes to a file or a pipe) and the parsing of ``--set KEY=VALUE``."""

from __future__ import annotations

import os
import re
import sys
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.text import Text

from models.errors import InvalidInput

# Control characters a terminal acts on (C0 but tab and newline, DEL, C1 including the one-byte CSI) and the
# direction marks and overrides that make text read other than it is stored ("Trojan Source")
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """Text as a terminal must show it: every control character that a terminal would act on (an escape sequence
    that clears the screen, moves the cursor or retitles the window) or that reverses the reading order is
    shown as U+FFFD, so a customer's or a source's text prints as text."""
    return _UNPRINTABLE.sub("\ufffd", text)


class TextConsole(Console):
    """Rich's console for text that comes from outside: every string it renders (``print``'s arguments, table
    cells) is made ``printable`` first. Rich's own styling is untouched (it is not part of the strings)."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(printable(text), **kwargs)


out = TextConsole(highlight=False, soft_wrap=True, markup=False)
err = TextConsole(highlight=False, soft_wrap=True, markup=False, stderr=True)


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


def office(value: datetime | None) -> str:
    """A time as the desk reads it: in the office's zone (``CLAIMFLOW_OFFICE_TIMEZONE``), with the weekday,
    to the minute (``2026-03-06 Fri 00:00``); empty for none."""
    if value is None:
        return ""
    from zoneinfo import ZoneInfo

    from claimflow.settings import get_settings
    from models.caseview import office_time

    return office_time(value, tz=ZoneInfo(get_settings().office_timezone), language="en")


def office_zone() -> str:
    """The office's zone name, for a table's heading (``due (Asia/Shanghai)``)."""
    from claimflow.settings import get_settings

    return get_settings().office_timezone
