"""The Lineage screen: a tree from values back to the pipeline inputs they came from."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from runtime.lineage import final_values
from runtime.stores.metadata import MetadataStore, ValueRecord
from tui.flow import LineageItem, lineage_trees, value_item
from tui.format import size, value_view
from tui.screens.base import LiveScreen


def node_label(item: LineageItem) -> Text:
    """``output_001_faces_array  57 B  step 001``, coloured by kind."""
    value = item.value
    if value.producer == "pipeline":
        style, origin = "bold green", "pipeline input"
    elif value.value_id.startswith("output_"):
        style, origin = "cyan", f"step {value.producer} output"
    else:
        style, origin = "", f"step {value.producer} input"
    label = Text.assemble((value.value_id, style), (f"  {size(value.size)}  {origin}", "dim"))
    if value.uri:
        label.append("  by reference", style="dim italic")
    if item.repeat:
        label.append("  ↑ expanded above", style="dim italic")
    if item.cut:
        label.append(f"  … {item.cut} more not shown", style="yellow")
    return label


def load(
    store: MetadataStore, run_id: str, roots: list[str] | None
) -> tuple[dict[str, ValueRecord], list[str]]:
    """The run's values, and the roots: the given ones, else the run's final values."""
    values = {v.value_id: v for v in store.list_values(run_id)}
    return values, roots if roots is not None else final_values(store, run_id)


class LineageScreen(LiveScreen):
    """Where values came from; the tree is read once when the screen opens."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back"),
        Binding("s", "open_step", "Open step"),
        Binding("c", "copy", "Copy value ID"),
        Binding("plus", "expand", "Expand all", key_display="+"),
        Binding("minus", "collapse", "Collapse", key_display="-"),
    ]

    def __init__(self, run_id: str, roots: list[str] | None = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.roots = roots
        what = roots[0] if roots and len(roots) == 1 else f"run {run_id[-8:]}"
        self.crumbs = (f"lineage of {what}",)

    def compose_body(self) -> ComposeResult:
        what = self.roots[0] if self.roots and len(self.roots) == 1 else "final values"
        tree: Tree[LineageItem] = Tree(f"lineage of {what} · run {self.run_id}", id="lineage")
        tree.show_root = True
        tree.guide_depth = 3
        yield tree
        with VerticalScroll(id="lineage-box"):
            yield Static(Text("loading…", style="dim"), id="lineage-detail")

    def on_mount(self) -> None:
        self.query_one(Tree).focus()
        self.load_tree()

    @work(exclusive=True, group="lineage")
    async def load_tree(self) -> None:
        """Read the values and build the tree."""
        detail = self.query_one("#lineage-detail", Static)
        try:
            values, roots = await self.dash.io.with_store(
                lambda s: load(s, self.run_id, self.roots)
            )
        except Exception as exc:  # shown in place; the banner covers lasting store errors
            detail.update(Text(f"cannot read values: {exc}", style="red"))
            return
        tree = self.query_one("#lineage", Tree)
        tree.clear()
        trees = lineage_trees(values, roots)
        if not trees:
            missing = ", ".join(roots) or "no values"
            detail.update(Text(f"run {self.run_id}: {missing} not recorded", style="yellow"))
            return

        def add(parent: TreeNode[LineageItem], item: LineageItem) -> None:
            if item.sources:
                node = parent.add(node_label(item), data=item, expand=True)
                for source in item.sources:
                    add(node, source)
            else:
                parent.add_leaf(node_label(item), data=item)

        for item in trees:
            add(tree.root, item)
        tree.root.expand()
        first = tree.root.children[0]
        self.call_after_refresh(tree.move_cursor, first)
        self._show(first)

    def _show(self, node: TreeNode[LineageItem] | None) -> None:
        detail = self.query_one("#lineage-detail", Static)
        if node is None or node.data is None:
            detail.update(Text("a value's lineage: where its data came from", style="dim"))
        else:
            detail.update(value_view(node.data.value))

    @on(Tree.NodeHighlighted)
    def _highlighted(self, event: Tree.NodeHighlighted[LineageItem]) -> None:
        self._show(event.node)

    def current(self) -> ValueRecord | None:
        """The value under the cursor."""
        node = self.query_one("#lineage", Tree).cursor_node
        return node.data.value if node is not None and node.data is not None else None

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_copy(self) -> None:
        value = self.current()
        if value is not None:
            self.copy(value.value_id, "value ID")

    def action_open_step(self) -> None:
        value = self.current()
        if value is None or value.producer == "pipeline":
            self.notify("a pipeline input has no step", severity="warning")
            return
        self.dash.open_step(self.run_id, value.producer, value_item(value.value_id))

    def action_expand(self) -> None:
        self.query_one("#lineage", Tree).root.expand_all()

    def action_collapse(self) -> None:
        tree = self.query_one("#lineage", Tree)
        for child in tree.root.children:
            child.collapse_all()
