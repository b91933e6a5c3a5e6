"""The Plugins screen: installed plugin versions, their digests and ports."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from runtime.stores.metadata import PluginRecord
from tui.format import clock, short_digest, size
from tui.screens.base import LiveScreen
from tui.widgets import LiveTable, Row

REFRESH_SECONDS = 5.0
COLUMNS = [
    ("name", "NAME"),
    ("version", "VERSION"),
    ("digest", "DIGEST"),
    ("ports", "PORTS"),
    ("size", "SIZE"),
    ("installed", "INSTALLED"),
]


def port_type(port: dict[str, Any]) -> str:
    """A port's JSON Schema type in a few characters: ``string``, ``array<object>``, ``any``."""
    schema = port.get("schema") or {}
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items") or {}
        return f"array<{items.get('type', 'any')}>"
    if "enum" in schema:
        return "|".join(map(str, schema["enum"]))
    return str(kind) if kind else "any"


def optional(port: dict[str, Any]) -> bool:
    """Whether a port may be left out (it has a default or is not required)."""
    return "default" in port or port.get("required") is False


def plugin_row(plugin: PluginRecord) -> Row:
    """The cells of one plugin version."""
    return (
        Text(plugin.name, style="bold"),
        plugin.version,
        short_digest(plugin.digest),
        f"{len(plugin.inputs)} in → {len(plugin.outputs)} out",
        size(plugin.size),
        clock(plugin.installed_at),
    )


def ports_table(plugin: PluginRecord) -> Table:
    """Every port of a plugin: direction, name, type, default, description."""
    table = Table(box=None, padding=(0, 2, 0, 0), show_edge=False, expand=False)
    for column in ("", "PORT", "TYPE", "DEFAULT", "DESCRIPTION"):
        table.add_column(column, style="dim" if column == "" else None, overflow="fold")
    for direction, ports in (("in", plugin.inputs), ("out", plugin.outputs)):
        for name, port in ports.items():
            port = port if isinstance(port, dict) else {}
            default = (
                repr(port["default"])
                if "default" in port
                else ("optional" if optional(port) else "required" if direction == "in" else "")
            )
            table.add_row(direction, name, port_type(port), default, port.get("description", ""))
    return table


def plugin_detail(plugin: PluginRecord) -> Table:
    """A plugin version's identity and ports."""
    grid = Table.grid(padding=(0, 1))
    grid.add_row(
        Text.assemble(
            (f"{plugin.name}@{plugin.version}", "bold"),
            (f"  {plugin.source}  {size(plugin.size)}", "dim"),
        )
    )
    grid.add_row(Text.assemble(("digest ", "dim"), plugin.digest))
    description = plugin.manifest.get("description") if plugin.manifest else None
    if description:
        grid.add_row(Text(str(description).strip()))
    grid.add_row(ports_table(plugin))
    return grid


class PluginsScreen(LiveScreen):
    """Installed plugins; re-read every few seconds while shown."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("c", "copy", "Copy ref")]

    def __init__(self) -> None:
        super().__init__()
        self.plugins: dict[str, PluginRecord] = {}

    def compose_body(self) -> ComposeResult:
        yield LiveTable(COLUMNS, id="plugins")
        with VerticalScroll(id="plugin-box"):
            yield Static(Text("loading plugins…", style="dim"), id="plugin-detail")

    def on_mount(self) -> None:
        self.query_one(LiveTable).focus()
        self.set_interval(REFRESH_SECONDS, self._tick)

    def _tick(self) -> None:
        if self.is_current:
            self.load()

    def refresh_data(self, full: bool = False) -> None:
        self.sync_banner()
        if full:
            self.load()

    @work(exclusive=True, group="plugins")
    async def load(self) -> None:
        """Read the installed plugins."""
        try:
            plugins = await self.dash.io.with_store(lambda s: s.list_plugins())
        except Exception:  # the poll loop's banner reports store errors
            return
        self.plugins = {p.ref: p for p in plugins}
        order = {p.ref: n for n, p in enumerate(plugins)}
        table = self.query_one("#plugins", LiveTable)
        table.sync({p.ref: plugin_row(p) for p in plugins}, order.__getitem__)
        if not plugins:
            self.query_one("#plugin-detail", Static).update(
                Text.assemble(
                    ("no plugins installed\n", "bold"),
                    ("install one with wtm plugin install PATH, or run wtm demo", "dim"),
                )
            )
        else:
            self._show()

    def _show(self) -> None:
        key = self.query_one("#plugins", LiveTable).current_key
        plugin = self.plugins.get(key) if key else None
        if plugin is not None:
            self.query_one("#plugin-detail", Static).update(plugin_detail(plugin))

    @on(DataTable.RowHighlighted, "#plugins")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show()

    def action_copy(self) -> None:
        key = self.query_one("#plugins", LiveTable).current_key
        if key:
            self.copy(key, "plugin")
