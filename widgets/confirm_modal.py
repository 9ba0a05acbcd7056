"""The one confirmation dialog for every destructive action.

It names exactly what will happen, answers to y / n / escape, and starts with the focus on
Cancel, so a stray Enter never destroys anything.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class ConfirmModal(ModalScreen[bool]):
    DEFAULT_CSS = """
    ConfirmModal {
        align: center middle;
    }
    ConfirmModal > Vertical {
        width: 84;
        max-width: 90%;
        height: auto;
        border: thick $error 80%;
        background: $surface;
        padding: 1 2;
    }
    ConfirmModal #confirm-title {
        text-style: bold;
        color: $error;
        margin-bottom: 1;
    }
    ConfirmModal #confirm-scroll {
        height: auto;
        max-height: 24;
        margin-bottom: 1;
    }
    ConfirmModal Horizontal {
        height: auto;
        align: right middle;
    }
    ConfirmModal Button {
        margin-left: 2;
    }
    """

    # Cancel has the focus from the moment the dialog is composed, before it can be drawn:
    # `focus()` in on_mount is deferred, and until it ran the body's scroll area had it.
    AUTO_FOCUS = "#cancel"

    BINDINGS = [
        Binding("y", "confirm_key", "Yes", id="confirm.yes"),
        Binding("n", "cancel_key", "No", id="confirm.no"),
        Binding("escape", "cancel", "Cancel", id="confirm.cancel"),
    ]

    def __init__(
        self,
        title: str,
        body: str,
        confirm_label: str = "Yes, do it",
        require_typing: str | None = None,
    ) -> None:
        """`require_typing`: the confirm button stays disabled until exactly this text (an
        instance id, say) is typed — for what cannot be undone."""
        super().__init__()
        self.title_text = title
        self.body_text = body
        self.confirm_label = confirm_label
        self.require_typing = require_typing

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, id="confirm-title")
            with VerticalScroll(id="confirm-scroll"):  # a cleanup can list many files
                yield Static(self.body_text, id="confirm-body", markup=False)
            if self.require_typing:
                yield Label(f"Type {self.require_typing} to confirm:", id="confirm-prompt")
                yield Input(placeholder=self.require_typing, id="confirm-typed")
            with Horizontal():
                label = self.confirm_label if self.require_typing else f"{self.confirm_label} (y)"
                yield Button(
                    label, variant="error", id="confirm", disabled=bool(self.require_typing)
                )
                yield Button("Cancel (n)", variant="primary", id="cancel")

    @on(Input.Changed, "#confirm-typed")
    def typed(self, event: Input.Changed) -> None:
        self.query_one("#confirm", Button).disabled = event.value != self.require_typing

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_confirm(self) -> None:
        if self.query_one("#confirm", Button).disabled:
            return  # y alone is not enough where typing the id is required
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)

    def action_confirm_key(self) -> None:
        self.action_confirm()

    def action_cancel_key(self) -> None:
        self.action_cancel()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While the id is being typed, y and n are letters, not answers.
        typing = isinstance(self.focused, Input)
        return not (typing and action in ("confirm_key", "cancel_key"))
