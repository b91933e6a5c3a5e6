"""Console helpers shared by the commands."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

from rich.console import Console
from rich.text import Text

# Markup and emoji codes off: strings printed are shown as they are, so user data like
# "[/x]" or ":smile:" is never read as markup (issue 13); styles are given as Text.
console = Console(highlight=False, markup=False, emoji=False)
errors = Console(stderr=True, highlight=False, markup=False, emoji=False)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr as one line and exit with ``code``."""
    errors.print(
        Text.assemble(("error:", "red"), " ", " ".join(str(message).split())), soft_wrap=True
    )
    sys.exit(code)


def print_json(data: Any) -> None:
    """Plain JSON on stdout (no colour, no wrapping) for scripts."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
