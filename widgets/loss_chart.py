"""The loss over the whole run: a smoothed line (EMA) over a faint band of the raw values, and the
validation loss as a second line when the log has one.

Why a widget of ours and not textual-plotext: the chart must redraw for every batch of a live
log and for every block of a gigabyte being scanned, from up to millions of points. Here the
points arrive already cut into at most a few thousand buckets (`app/log_history.BucketSeries`),
so a redraw is a pass over a few thousand numbers and a braille canvas of the widget's size —
well under a millisecond of work per row. Plotext builds its whole figure as strings from every
point it is given on each draw, textual-plotext (1.0.1, 2024) predates the Textual 8 we run,
and neither draws a raw band behind a smoothed line. Braille gives 2x4 dots per cell for the
lines; the raw band is a cell background, so it stays faint behind them.

The chart renders state it is given (`show(*histories)`), each history an object with
`train_records`, `nonfinite`, `train.columns(width, x_total, x_offset)` and the same for
`validation` — a `LossHistory`. Several histories are drawn one after the other on the x axis:
the whole-file scan, then the live points that arrived after it.
"""

from __future__ import annotations

import math
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

# Braille dot bits by (row 0..3, column 0..1) inside a cell.
BRAILLE_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
LABEL_WIDTH = 8
SMOOTHING = 0.6  # TensorBoard's default weight, over the columns on screen


def smooth(values: list[float | None], weight: float = SMOOTHING) -> list[float | None]:
    """Exponential moving average with debiasing (the start is not pulled towards zero);
    gaps stay gaps."""
    result: list[float | None] = []
    average = 0.0
    steps = 0
    for value in values:
        if value is None:
            result.append(None)
            continue
        average = weight * average + (1 - weight) * value
        steps += 1
        result.append(average / (1 - weight**steps))
    return result


def combined_columns(histories: tuple[Any, ...], width: int) -> tuple[list, list, int]:
    """Train and validation columns of all histories laid end to end, and the x extent."""
    x_total = sum(max(1, h.train_records) for h in histories)
    train: list = [None] * width
    validation: list = [None] * width
    offset = 0
    for history in histories:
        for target, series in ((train, history.train), (validation, history.validation)):
            for column, entry in enumerate(series.columns(width, x_total, offset)):
                old = target[column]
                if old is None:
                    target[column] = entry
                elif entry is not None:  # two histories meet in this column
                    target[column] = (
                        old[0] + entry[0],
                        old[1] + entry[1],
                        min(old[2], entry[2]),
                        max(old[3], entry[3]),
                    )
        offset += max(1, history.train_records)
    return train, validation, x_total


class LossChart(Widget):
    """Loss of the whole run; `show(*histories, progress=)` redraws it."""

    COMPONENT_CLASSES = {
        "loss-chart--smoothed",
        "loss-chart--raw",
        "loss-chart--validation",
        "loss-chart--axis",
        "loss-chart--warning",
    }

    DEFAULT_CSS = """
    LossChart {
        height: 10;
        border: round $primary 50%;
        border-title-color: $text-muted;
        text-wrap: nowrap;
        text-overflow: clip;
    }
    LossChart > .loss-chart--smoothed { color: $primary-lighten-2; }
    LossChart > .loss-chart--raw { background: $primary 25%; }
    LossChart > .loss-chart--validation { color: $accent; }
    LossChart > .loss-chart--axis { color: $text-muted; }
    LossChart > .loss-chart--warning { color: $error; text-style: bold; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.histories: tuple[Any, ...] = ()
        self.progress: float | None = None
        self.border_title = "loss"

    def show(self, *histories: Any, progress: float | None = None) -> None:
        """Draw these histories end to end; `progress` (0..1) while the log is still being
        read from its start, None when it is done."""
        self.histories = tuple(h for h in histories if h is not None)
        self.progress = progress
        self.refresh()

    def clear(self) -> None:
        self.show()

    def render(self) -> Text:
        width, height = self.content_region.size
        if width <= LABEL_WIDTH + 2 or height < 2:
            return Text("")
        records = sum(h.train_records for h in self.histories)
        validation_points = sum(h.validation.points for h in self.histories)
        if not records and not validation_points:
            waiting = "reading the log…" if self.progress is not None else "no loss in the log yet"
            return Text(waiting, style=self.get_component_rich_style("loss-chart--axis"))
        return self._draw(width - LABEL_WIDTH, height - 1, records)

    def _draw(self, cells_wide: int, cells_high: int, records: int) -> Text:
        dots_wide, dots_high = cells_wide * 2, cells_high * 4
        train, validation, x_total = combined_columns(self.histories, dots_wide)
        means = [c[1] / c[0] if c else None for c in train]
        smoothed = smooth(means)
        validation_means = [c[1] / c[0] if c else None for c in validation]
        # The y range follows the smoothed and validation lines (the raw band is clipped to it),
        # so one early spike does not flatten the whole run.
        shown = [v for v in smoothed + validation_means if v is not None]
        if not shown:
            shown = [c[2] for c in train if c] + [c[3] for c in train if c]
        low, high = min(shown), max(shown)
        if high - low < 1e-12:
            low, high = low - 0.5, high + 0.5
        pad = (high - low) * 0.05
        low, high = low - pad, high + pad

        def row_of(value: float) -> int:
            position = (high - value) / (high - low) * (dots_high - 1)
            return max(0, min(dots_high - 1, round(position)))

        line_bits = [[0] * cells_wide for _ in range(cells_high)]
        validation_bits = [[0] * cells_wide for _ in range(cells_high)]
        band = [[False] * cells_wide for _ in range(cells_high)]
        for column, entry in enumerate(train):
            if entry is None:
                continue
            top, bottom = row_of(entry[3]) // 4, row_of(entry[2]) // 4
            for cell_row in range(top, bottom + 1):
                band[cell_row][column // 2] = True
        self._plot(line_bits, smoothed, row_of)
        self._plot(validation_bits, validation_means, row_of)

        smoothed_style = self.get_component_rich_style("loss-chart--smoothed")
        validation_style = self.get_component_rich_style("loss-chart--validation")
        raw_style = Style(bgcolor=self.get_component_rich_style("loss-chart--raw").bgcolor)
        axis_style = self.get_component_rich_style("loss-chart--axis")
        text = Text(no_wrap=True, end="")
        for cell_row in range(cells_high):
            if cell_row == 0:
                label = _number(high - pad)
            elif cell_row == cells_high - 1:
                label = _number(low + pad)
            else:
                label = ""
            text.append(f"{label:>{LABEL_WIDTH - 1}}┤", style=axis_style)
            for cell in range(cells_wide):
                train_dots = line_bits[cell_row][cell]
                validation_dots = validation_bits[cell_row][cell]
                dots = train_dots | validation_dots
                # The training line is the one people read: it wins a shared cell.
                style = smoothed_style if train_dots or not validation_dots else validation_style
                if band[cell_row][cell]:
                    style = style + raw_style
                text.append(chr(0x2800 + dots) if dots else " ", style=style)
            text.append("\n")
        text.append(self._footer(cells_wide, records, x_total))
        return text

    @staticmethod
    def _plot(bits: list[list[int]], values: list[float | None], row_of) -> None:
        """Dots for each column's value, joined to the previous value by a vertical run."""
        previous_row: int | None = None
        previous_column: int | None = None
        for column, value in enumerate(values):
            if value is None:
                continue
            row = row_of(value)
            if previous_row is not None and previous_column is not None:
                # Across a gap, join the two points by a straight line.
                span = column - previous_column
                for step in range(1, span + 1):
                    between = previous_row + (row - previous_row) * step / span
                    start_row = round(previous_row + (row - previous_row) * (step - 1) / span)
                    end_row = round(between)
                    x = previous_column + step
                    for dot_row in range(min(start_row, end_row), max(start_row, end_row) + 1):
                        bits[dot_row // 4][x // 2] |= BRAILLE_DOTS[dot_row % 4][x % 2]
            else:
                bits[row // 4][column // 2] |= BRAILLE_DOTS[row % 4][column % 2]
            previous_row, previous_column = row, column

    def _footer(self, cells_wide: int, records: int, x_total: int) -> Text:
        axis_style = self.get_component_rich_style("loss-chart--axis")
        footer = Text(" " * LABEL_WIDTH + "0", style=axis_style, no_wrap=True, end="")
        legend = Text(no_wrap=True, end="")
        legend.append("  ━ loss (EMA)", style=self.get_component_rich_style("loss-chart--smoothed"))
        if any(h.validation.points for h in self.histories):
            legend.append(
                "  ━ val loss", style=self.get_component_rich_style("loss-chart--validation")
            )
        nonfinite = sum(h.nonfinite for h in self.histories)
        if nonfinite:
            legend.append(
                f"  ⚠ {nonfinite:,} nan/inf skipped",
                style=self.get_component_rich_style("loss-chart--warning"),
            )
        if self.progress is not None:
            legend.append(f"  reading {self.progress:.0%}", style=axis_style)
        footer.append(legend)
        end_label = f"{records:,} records"
        padding = LABEL_WIDTH + cells_wide - footer.cell_len - len(end_label)
        if padding > 0:
            footer.append(" " * padding + end_label, style=axis_style)
        return footer


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.2e}"
