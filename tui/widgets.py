"""Widgets shared by the screens: a table updated in place, and the store error banner."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Static
from textual.widgets.data_table import CellDoesNotExist, RowKey

Cell = str | Text
CRUMB = "\u203a"
"""The single right angle quote between crumbs."""
MODE_LABELS = {"runs": "Runs", "workers": "Workers", "plugins": "Plugins"}
Row = tuple[Cell, ...]


def plain(cell: object) -> str:
    """The text of a cell, without styles."""
    return cell.plain if isinstance(cell, Text) else str(cell)


class LiveTable(DataTable[Cell]):
    """A row-cursor table kept equal to a mapping of rows by :meth:`sync`, cell by cell.

    Rows that disappeared are removed, new rows added, and only cells whose
    content changed are updated: a poll that changes one step's state touches
    one or two cells, never the whole table. Rows are kept in the order of a
    sort key, and the cursor stays on the row it was on.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g,home", "scroll_top", "First row", show=False),
        Binding("G,end", "scroll_bottom", "Last row", show=False),
    ]

    def __init__(self, columns: Sequence[tuple[str, str]], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._column_spec = list(columns)
        self._shown: dict[str, Row] = {}
        self._rank: dict[str, Any] = {}
        self.last_written = 0
        """Cells the last :meth:`upsert` wrote (a quiet poll writes none)."""

    def on_mount(self) -> None:
        for key, label in self._column_spec:
            self.add_column(label, key=key)

    @property
    def keys(self) -> list[str]:
        """Row keys in display order."""
        return sorted(self._shown, key=self._rank.__getitem__)

    @property
    def row_keys(self) -> list[str]:
        """Row keys, in no particular order."""
        return list(self._shown)

    @property
    def current_key(self) -> str | None:
        """The key of the row under the cursor, or None on an empty table."""
        if not self._shown or self.cursor_row < 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return key.value

    def row_cells(self, key: str) -> Row | None:
        """What the row ``key`` shows."""
        return self._shown.get(key)

    def sync(self, rows: Mapping[str, Row], rank: Callable[[str], Any] | None = None) -> int:
        """Show exactly ``rows`` (by key) in ``rank`` order; returns how many cells were written."""
        self.discard([k for k in self._shown if k not in rows])
        return self.upsert(rows, rank)

    def discard(self, keys: Iterable[str]) -> None:
        """Remove the rows ``keys`` that are shown."""
        for key in keys:
            if key in self._shown:
                self.remove_row(key)
                del self._shown[key]
                self._rank.pop(key, None)

    def upsert(self, rows: Mapping[str, Row], rank: Callable[[str], Any] | None = None) -> int:
        """Add or update ``rows``, writing only cells that changed; returns cells written."""
        keep = self.current_key
        written = 0
        moved = False
        self.last_written = 0
        for key, cells in rows.items():
            old = self._shown.get(key)
            if old is None:
                self.add_row(*map(as_text, cells), key=key)
                written += len(cells)
                moved = True
            elif old != cells:
                for (column, _), before, after in zip(self._column_spec, old, cells, strict=True):
                    if before != after:
                        self.update_cell(key, column, as_text(after), update_width=True)
                        written += 1
            self._shown[key] = cells
            new_rank = rank(key) if rank else self._rank.get(key, len(self._rank))
            moved = moved or self._rank.get(key, new_rank) != new_rank
            self._rank[key] = new_rank
        if moved and rank is not None:
            self._reorder(keep)
        self.last_written = written
        return written

    def reset(self) -> None:
        """Remove every row (after a change of layout, never per poll)."""
        self.clear()
        self._shown.clear()
        self._rank.clear()

    def _reorder(self, keep: str | None) -> None:
        """Sort rows by rank, keeping the cursor on row ``keep``."""
        by_text = {tuple(map(plain, self._shown[k])): self._rank[k] for k in self._shown}
        self.sort(key=lambda cells: by_text[tuple(map(plain, cells))])
        if keep is not None and keep in self._shown:
            self.move_cursor(row=self.get_row_index(RowKey(keep)), animate=False)


class Banner(Static):
    """A one-line banner across the top: store errors, and how long until the next try."""

    DEFAULT_CSS = """
    Banner {
        display: none;
        height: auto;
        padding: 0 1;
        background: $error;
        color: $text;
        text-style: bold;
    }
    Banner.-shown { display: block; }
    """

    def show(self, message: str) -> None:
        """Show ``message`` (as it is: never markup)."""
        self.update(Text(message))
        self.add_class("-shown")

    def hide(self) -> None:
        """Hide the banner."""
        self.remove_class("-shown")


def as_text(cell: Any) -> Any:
    """A text cell as :class:`Text`: a ``str`` cell would be read as markup, and user data
    like ``[/x]`` (a run input, an error) would break the table (issue 13)."""
    return Text(cell) if isinstance(cell, str) else cell


class TopBar(Horizontal):
    """The top line: the three views (1 2 3) with the current one lit, where you are, the store.

    ``crumbs`` is the path of drilled-down screens, like ``run 58f613af > step 001``.
    """

    DEFAULT_CSS = """
    TopBar {
        height: 1;
        background: $panel;
    }
    TopBar > #where { width: 1fr; }
    TopBar > #store { width: auto; color: $text-muted; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="where")
        yield Static(id="store")

    def show(self, mode: str, crumbs: Sequence[str], store: str) -> None:
        """Light ``mode``, then the crumbs; the store URL and the help key on the right."""
        text = Text.assemble((" wtm ", "bold reverse"), " ")
        for number, (name, label) in enumerate(MODE_LABELS.items(), 1):
            style = "bold reverse" if name == mode else "dim"
            text.append(f" {number} {label} ", style=style)
        for crumb in crumbs:
            text.append(f" {CRUMB} ", style="dim")
            text.append(crumb, style="bold")
        text.no_wrap = True
        text.overflow = "ellipsis"
        room = self.app.size.width - text.cell_len - len("  ? help") - 4
        if room < 12:
            store = ""
        elif len(store) > room:
            store = "…" + store[-(room - 1) :]
        self.query_one("#where", Static).update(text)
        self.query_one("#store", Static).update(Text.assemble((store, "dim"), ("  ? help", "bold")))
