"""AfterFirstFrame: the side panel's deferred mount. Quitting before the first frame must not
end in a traceback (Textual's own Lazy raised MountError then); otherwise the widget appears."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from widgets.after_first_frame import AfterFirstFrame


class PanelApp(App):
    def __init__(self, quit_at_once: bool) -> None:
        super().__init__()
        self.quit_at_once = quit_at_once

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Static("log", id="log")
            yield AfterFirstFrame(Static("side panel", id="side"))

    def on_mount(self) -> None:
        if self.quit_at_once:
            self.exit(0)


async def test_quitting_before_the_deferred_mount_is_not_an_error() -> None:
    app = PanelApp(quit_at_once=True)
    async with app.run_test():
        pass
    assert app._exception is None and app.return_code == 0


async def test_the_widget_is_mounted_after_the_first_frame() -> None:
    app = PanelApp(quit_at_once=False)
    async with app.run_test() as pilot:
        await pilot.pause()
        assert str(app.query_one("#side", Static).render()) == "side panel"
        assert not app.query(AfterFirstFrame)  # the placeholder is gone
