"""The help screen (every key, generated from the live bindings) and the Events view."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Header, Static

from widgets.events_table import EventsTable

PANE_KEYS = [
    ("/ or ctrl+f (log)", "search the log: enter / n next, N previous, ctrl+r regex"),
    ("i (log)", "only the lines that matter (errors, warnings, nan); enter jumps there"),
    ("end (log)", "follow the log again"),
    ("o (checkpoints)", "change the sort order (or click a column header)"),
    ("enter (checkpoints)", "every scalar of the selected checkpoint"),
    ("tab / shift+tab", "move between panes"),
    ("↑ ↓ / page up / page down", "move in a table or scroll the log"),
    ("ctrl+p", "command palette: every action by name"),
    ("y / n / escape", "answer a confirmation (Cancel has the focus)"),
]


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 104; max-width: 95%; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    """
    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss", "Close", id="help.close"),
    ]

    def __init__(self, bindings: list[tuple[str, str]], read_only: bool) -> None:
        super().__init__()
        self.key_rows = bindings
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        lines = ["[b]runctl-tui keys[/b]", ""]
        for key, description in [*self.key_rows, *PANE_KEYS]:
            lines.append(f"  [b cyan]{key:<26}[/]{description}")
        if self.read_only:
            lines += ["", "[yellow]read-only mode: stop, delete and terminate are disabled[/]"]
        lines += ["", "[dim]↑ ↓ / page up / page down scroll · escape closes this help[/]"]
        # Scrolls: the keys outgrow a small terminal, and none may be cut off unseen.
        with VerticalScroll():
            yield Static("\n".join(lines))


class EventsScreen(Screen[None]):
    """Recent operations and their outcome: what is it doing, and what failed?"""

    BINDINGS = [Binding("escape,e,q", "app.pop_screen", "Back", id="events.back")]

    def __init__(self, operations_source) -> None:
        super().__init__()
        self.operations_source = operations_source

    def compose(self) -> ComposeResult:
        yield Header()
        yield EventsTable(id="events")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(EventsTable).border_title = "Operations (newest first)"
        self.refresh_events()
        # In-memory read, no I/O: a plain interval is fine here.
        self.set_interval(1.0, self.refresh_events)

    def refresh_events(self) -> None:
        self.query_one(EventsTable).show_operations(self.operations_source())
