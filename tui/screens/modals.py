"""Modal screens: a yes/no confirmation, and the help listing every key."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class ConfirmScreen(ModalScreen[bool]):
    """Ask a yes/no question; dismisses with True for yes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, question: str, detail: str = "") -> None:
        super().__init__()
        self.question = question
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Static(Text(self.question, style="bold"))
            if self.detail:
                yield Static(Text(self.detail, style="dim"), id="confirm-detail")
            yield Static(Text.assemble(("y", "bold"), " yes   ", ("n", "bold"), "/esc no"))

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


KEY_NAMES = {"escape": "esc", "question_mark": "?", "slash": "/", "plus": "+", "minus": "-"}
KeyGroup = tuple[str, Iterable[BindingType]]

NAVIGATION = [
    ("↑ ↓  k j", "move the cursor"),
    ("PgUp PgDn", "move by a page"),
    ("g G  Home End", "first / last row"),
    ("tab / shift+tab", "next / previous pane"),
]


def _rows(bindings: Iterable[BindingType]) -> list[tuple[str, str]]:
    rows = []
    for binding in bindings:
        if not isinstance(binding, Binding) or not binding.description:
            continue
        keys = (binding.key_display or binding.key).split(",")
        shown = " / ".join(KEY_NAMES.get(k, k) for k in keys)
        rows.append((shown, binding.description))
    return rows


def help_table(groups: Iterable[KeyGroup]) -> Table:
    """A table of keys, one section per screen."""
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0), expand=False)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for title, bindings in groups:
        table.add_row(Text(title, style="bold underline"), "")
        for key, description in _rows(bindings):
            table.add_row(key, description)
        table.add_row("", "")
    table.add_row(Text("Tables", style="bold underline"), "")
    for key, description in NAVIGATION:
        table.add_row(key, description)
    return table


class HelpScreen(ModalScreen[None]):
    """Every key of every screen, generated from their bindings."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(self, groups: list[KeyGroup]) -> None:
        super().__init__()
        self.groups = groups

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Text("wtm dashboard: keys", style="bold"))
            yield Static(help_table(self.groups))
            yield Static(Text("esc, ? or q closes this", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
