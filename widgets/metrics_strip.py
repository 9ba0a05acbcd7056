"""The metrics strip above the log: epoch progress, step, loss and its trend, val loss, rate,
ETA and a loss sparkline — rendered from a progress summary the app computes."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, Sparkline, Static

from widgets.formatting import duration, number

TREND_ARROWS = {"down": ("↓", "green"), "up": ("↑", "red"), "flat": ("→", "yellow")}


class MetricsStrip(Vertical):
    DEFAULT_CSS = """
    MetricsStrip {
        height: 4;
        padding: 0 1;
        border: round $primary 50%;
    }
    MetricsStrip > Horizontal { height: 1; }
    MetricsStrip #epoch-label { width: 16; }
    MetricsStrip ProgressBar { width: 1fr; }
    MetricsStrip ProgressBar Bar { width: 1fr; }
    MetricsStrip #eta-text { width: 26; margin-left: 1; text-align: right; }
    MetricsStrip #metrics-text { width: 1fr; }
    MetricsStrip Sparkline { width: 16; height: 1; margin-left: 1; }
    MetricsStrip.-warning { border: round $error; }
    """

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Static("Epoch —", id="epoch-label")
            yield ProgressBar(total=None, show_eta=False, id="epoch-bar")
            yield Static("", id="eta-text")
        with Horizontal():
            yield Static("no run selected", id="metrics-text")
            yield Sparkline([], id="loss-spark")

    def show(self, summary: Any | None, now: float | None = None) -> None:
        """`summary` has epoch, total_epochs, step, total_steps, loss, loss_trend, val_loss,
        rate_steps_per_s, eta_seconds, finish_at, eta_reason, nonfinite_loss, loss_history."""
        label = self.query_one("#epoch-label", Static)
        bar = self.query_one("#epoch-bar", ProgressBar)
        text = self.query_one("#metrics-text", Static)
        eta_text = self.query_one("#eta-text", Static)
        spark = self.query_one("#loss-spark", Sparkline)
        if summary is None:
            label.update("Epoch —")
            bar.update(total=None, progress=0)
            text.update("waiting for metrics in the log…")
            eta_text.update("")
            spark.data = []
            self.set_class(False, "-warning")
            return
        epoch = summary.epoch
        total = summary.total_epochs
        label.update(
            f"Epoch {number(epoch, 3) if epoch is not None else '—'}"
            + (f"/{total}" if total else "")
        )
        if summary.total_steps and summary.step is not None:
            bar.update(total=summary.total_steps, progress=summary.step)
        elif total and epoch is not None:
            bar.update(total=total, progress=epoch)
        else:
            bar.update(total=None)
        line = Text()
        if summary.step is not None:
            line.append("step ", style="dim")
            line.append(
                f"{summary.step}" + (f"/{summary.total_steps}" if summary.total_steps else "")
            )
            line.append("  ")
        line.append("loss ", style="dim")
        line.append(number(summary.loss), style="bold")
        arrow = TREND_ARROWS.get(summary.loss_trend or "")
        if arrow:
            line.append(f" {arrow[0]}", style=arrow[1])
        if summary.val_loss is not None:
            line.append("  val ", style="dim")
            line.append(number(summary.val_loss))
        if summary.rate_steps_per_s:
            line.append("  ")
            line.append(f"{summary.rate_steps_per_s:.3g} it/s", style="dim")
        line.append("  ETA ", style="dim")
        if summary.eta_seconds is not None:
            line.append(duration(summary.eta_seconds), style="bold cyan")
            if summary.finish_at:
                line.append(
                    time.strftime(" (%H:%M)", time.localtime(summary.finish_at)), style="dim"
                )
        else:
            line.append(summary.eta_reason or "unknown", style="dim italic")
        if summary.nonfinite_loss:
            line.append("  ⚠ loss is nan/inf", style="bold red")
        self.set_class(bool(summary.nonfinite_loss), "-warning")
        text.update(line)
        history = [v for v in summary.loss_history if math.isfinite(v)]
        spark.data = history[-120:]
