"""The metrics strip above the log: epoch and step progress, the latest loss with its trend, the
validation loss, the rate, other named metrics, and the ETA as time left and clock time — or
why it cannot be known. Rendered from a progress summary the app computes."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static

from widgets.formatting import duration, number

TREND_ARROWS = {"down": ("↓", "green"), "up": ("↑", "red"), "flat": ("→", "yellow")}
SHOWN_METRICS = 4  # other named metrics after loss/val (accuracy, lr, grad_norm, ...)
NOT_METRICS = {"val_loss", "eval_loss", "valid_loss", "validation_loss", "loss", "train_loss"}
# Names people watch. Anything else a line held ("regression: 3200 samples" in a banner) stays
# out of the strip; every value is still in `runctl-tui metrics` and the chart's history.
WATCHED = (
    "acc", "lr", "learning_rate", "grad_norm", "perplexity", "ppl", "f1", "auc", "mfu",
    "tokens_per_s", "samples_per_second", "throughput", "iou", "bleu", "dice", "recall",
    "precision", "reward", "score",
)  # fmt: skip


def shown_metric_names(metrics: dict[str, float]) -> list[str]:
    names = [name for name in metrics if name not in NOT_METRICS]
    watched = [n for n in names if any(word in n.lower() for word in WATCHED)]
    return watched[:SHOWN_METRICS]


class FractionBar(Widget):
    """Epoch or step progress: one line of bar and the percentage. (Textual's ProgressBar draws
    the same with three widgets, whose styling cost ~8 ms of the dashboard's first frame.)"""

    DEFAULT_CSS = """
    FractionBar { height: 1; }
    FractionBar > .fraction-bar--bar { color: $primary; background: $surface; }
    FractionBar > .fraction-bar--complete { color: $success; background: $surface; }
    """
    COMPONENT_CLASSES = {"fraction-bar--bar", "fraction-bar--complete"}

    fraction: reactive[float] = reactive(0.0)

    def set_progress(self, progress: float, total: float) -> None:
        self.fraction = min(max(progress / total, 0.0), 1.0) if total else 0.0

    def render(self) -> Text:
        percent = f"{round(100 * self.fraction):>5d}%"
        width = max(self.size.width - len(percent), 0)
        complete = self.fraction >= 1
        colors = self.get_component_rich_style(
            "fraction-bar--complete" if complete else "fraction-bar--bar"
        )
        done, todo = Style(color=colors.color), Style(color=colors.bgcolor)
        filled = width * self.fraction
        full = int(filled)
        bar = Text("━" * full, style=done)
        if full < width:
            half = filled - full >= 0.5  # a half cell, as Textual's bar draws it
            if half:
                bar.append("╸", style=done)
            bar.append("━" * (width - full - half), style=todo)
        bar.append(percent)
        return bar


class MetricsStrip(Vertical):
    DEFAULT_CSS = """
    MetricsStrip {
        height: 4;
        padding: 0 1;
        border: round $primary 50%;
    }
    MetricsStrip > Horizontal { height: 1; }
    MetricsStrip #epoch-label { width: auto; min-width: 14; padding-right: 1; }
    MetricsStrip FractionBar { width: 1fr; }
    MetricsStrip #eta-text { width: auto; margin-left: 2; }
    MetricsStrip #metrics-text { width: 1fr; }
    MetricsStrip.-warning { border: round $error; }
    """

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Static("Epoch —", id="epoch-label")
            yield FractionBar(id="epoch-bar")
            yield Static("", id="eta-text")
        with Horizontal():
            yield Static("no run selected", id="metrics-text")

    def show(self, summary: Any | None, now: float | None = None) -> None:
        """`summary` has epoch, total_epochs, step, total_steps, loss, loss_trend, val_loss,
        rate_steps_per_s, eta_seconds, finish_at, eta_reason, nonfinite_loss, and optionally
        progress, eta_source, metrics."""
        label = self.query_one("#epoch-label", Static)
        bar = self.query_one("#epoch-bar", FractionBar)
        text = self.query_one("#metrics-text", Static)
        eta_text = self.query_one("#eta-text", Static)
        if summary is None:
            label.update("Epoch —")
            bar.set_progress(0, 1)
            text.update(Text("waiting for metrics in the log…", style="dim"))
            eta_text.update("")
            self.set_class(False, "-warning")
            return
        epoch, total = summary.epoch, summary.total_epochs
        label.update(
            Text.assemble(
                ("Epoch ", "dim"),
                (number(epoch, 3) if epoch is not None else "—", "bold"),
                f"/{total}" if total else "",
            )
        )
        progress = getattr(summary, "progress", None)
        if progress is not None:
            bar.set_progress(progress, 1)
        elif summary.total_steps and summary.step is not None:
            bar.set_progress(summary.step, summary.total_steps)
        elif total and epoch is not None:
            bar.set_progress(epoch, total)
        else:
            bar.set_progress(0, 1)
        eta_text.update(self._eta(summary))
        text.update(self._line(summary))
        self.set_class(bool(summary.nonfinite_loss), "-warning")

    def _eta(self, summary: Any) -> Text:
        eta = Text("ETA ", style="dim")
        if summary.eta_seconds is not None:
            eta.append(duration(summary.eta_seconds), style="bold cyan")
            if summary.finish_at:
                eta.append(time.strftime(" → %H:%M", time.localtime(summary.finish_at)))
            source = getattr(summary, "eta_source", None)
            if source:
                eta.append(f" ({source})", style="dim")
        else:
            eta.append(summary.eta_reason or "unknown", style="dim italic")
        return eta

    def _line(self, summary: Any) -> Text:
        line = Text()
        if summary.step is not None:
            line.append("step ", style="dim")
            line.append(
                f"{summary.step}" + (f"/{summary.total_steps}" if summary.total_steps else "")
            )
            line.append("   ")
        line.append("loss ", style="dim")
        loss_style = "bold red" if summary.nonfinite_loss else "bold"
        line.append(number(summary.loss), style=loss_style)
        arrow = TREND_ARROWS.get(summary.loss_trend or "")
        if arrow:
            line.append(f" {arrow[0]}", style=arrow[1])
        if summary.val_loss is not None:
            line.append("   val ", style="dim")
            line.append(number(summary.val_loss))
        if summary.rate_steps_per_s:
            rate = summary.rate_steps_per_s
            line.append("   ")
            line.append(f"{rate:.3g} it/s" if rate >= 1 else f"{1 / rate:.3g} s/it", style="dim")
        others = getattr(summary, "metrics", None) or {}
        for name in shown_metric_names(others):
            value = others[name]
            line.append(f"   {name} ", style="dim")
            style = "bold red" if isinstance(value, float) and not math.isfinite(value) else ""
            line.append(number(value), style=style)
        if summary.nonfinite_loss:
            line.append("   ⚠ loss is nan/inf", style="bold red")
        return line
