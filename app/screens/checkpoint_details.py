"""Everything one checkpoint says about itself: every scalar found, what it is ranked by, the
framework's notes, and for an unsafe or corrupt file the reason it was not read."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from widgets.formatting import number, size


def describe_checkpoint(info: Any, is_best: bool) -> Text:
    text = Text()

    def row(label: str, value: str, style: str = "") -> None:
        text.append(f"{label:<14}", style="dim")
        text.append(f"{value}\n", style=style)

    text.append(f"{info.name}{' ★ best' if is_best else ''}\n", style="bold")
    row("path", info.path)
    row("kind", info.kind)
    if info.status != "ok":
        row("status", f"{info.status}: {info.error}", "bold red")
        if info.status == "unsafe":
            text.append(
                "Its pickle would import or call code outside the allow-list; it was never "
                "executed. Load it only if you trust where it came from.\n",
                style="red",
            )
    row("size", size(info.size_bytes + getattr(info, "sidecar_bytes", 0)))
    row("modified", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.mtime)))
    row("epoch", number(info.epoch, 6))
    row("step", "—" if info.step is None else str(info.step))
    row("loss", number(info.loss, 6))
    if getattr(info, "monitor", None):
        row("ranked by", f"{info.monitor} ({info.mode or 'min'}) = {number(info.monitor_value, 6)}")
    if getattr(info, "sidecar", None):
        row("sidecar", info.sidecar)
    if info.metrics:
        text.append("\nscalars\n", style="bold")
        for name in sorted(info.metrics):
            value = info.metrics[name]
            style = "bold red" if isinstance(value, float) and not math.isfinite(value) else ""
            row(f"  {name}", number(value, 6), style)
    details = getattr(info, "details", None) or {}
    if details:
        text.append("\nnotes\n", style="bold")
        for name in sorted(details):
            row(f"  {name}", str(details[name]))
    return text


class CheckpointDetailsScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    CheckpointDetailsScreen { align: center middle; }
    CheckpointDetailsScreen > VerticalScroll {
        width: 90; max-width: 95%; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    """
    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close", id="checkpoint_details.close")]

    def __init__(self, checkpoint: Any, is_best: bool) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.is_best = is_best

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(describe_checkpoint(self.checkpoint, self.is_best))
            yield Static("[dim]escape closes · r on the pane resumes from a checkpoint[/]")
