"""What every dashboard screen shares: header, error banner, footer, live refresh."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

from tui.widgets import Banner, TopBar

if TYPE_CHECKING:
    from tui.app import DashboardApp


class LiveScreen(Screen[None]):
    """A screen fed by the app's poll loop: :meth:`refresh_data` runs after each poll.

    Only the visible screen is refreshed each poll; a screen brought back to
    the front refreshes in full (tables still only write the cells that differ).
    """

    @property
    def dash(self) -> DashboardApp:
        """The app, typed."""
        return cast("DashboardApp", self.app)

    crumbs: tuple[str, ...] = ()
    """Where this screen is, for the top bar (empty for the three views)."""

    def compose(self) -> ComposeResult:
        yield TopBar()
        yield Banner()
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        """The widgets between the banner and the footer."""
        yield from ()

    def refresh_data(self, full: bool = False) -> None:
        """Show the app's latest data; ``full`` after a change of filter or on resume."""

    def sync_banner(self) -> None:
        """Show or hide the store error banner as the app's state says; update the top bar."""
        crumbs = [
            c
            for screen in self.app.screen_stack
            if isinstance(screen, LiveScreen)
            for c in screen.crumbs
        ]
        store = self.dash.io.described.removeprefix("sqlite:///") or "store not open yet"
        self.query_one(TopBar).show(self.app.current_mode, crumbs, store)
        banner = self.query_one(Banner)
        if self.dash.store_error:
            banner.show(self.dash.store_error)
        else:
            banner.hide()

    def on_mount(self) -> None:
        self.sync_banner()

    def on_screen_resume(self) -> None:
        self.sync_banner()
        if self.dash.loaded:
            self.refresh_data(full=True)

    def copy(self, text: str, what: str) -> None:
        """Put ``text`` on the clipboard and say so."""
        self.app.copy_to_clipboard(text)
        self.notify(f"copied {what} {text}", timeout=3)
