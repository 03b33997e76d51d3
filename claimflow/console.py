"""The CLI's console: markup off (customer-supplied text such as "[bold]" prints as written), and wide
tables when the output goes to a file or a pipe instead of being cut to 80 columns."""

from __future__ import annotations

import os
import sys

from rich.console import Console

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
