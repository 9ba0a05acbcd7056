"""A run that prints faster than anyone reads (a burst: one batch over BURST_BYTES): every line
reaches the log view, every loss the chart (a line cut between two bursts too), the strip shows the last step, and the chart,
drawn at most every BURST_CHART_EVERY_S meanwhile, is drawn once more after the last batch."""

from __future__ import annotations

import time
from pathlib import Path

from app.tui import BURST_BYTES
from tests.test_checkpoints_pane import finished_run
from tests.test_dashboard_pilot import make_app, until

LINES = 30_000


def burst(lines: int) -> bytes:
    return "".join(
        f"Epoch {1 + i * 3 // lines}/3 step {i}/{lines} loss={1 / (1 + i / 100):.4f}\n"
        for i in range(lines)
    ).encode()


async def test_a_burst_reaches_the_view_the_chart_and_the_strip(project: Path) -> None:
    app = make_app(project)
    run = finished_run(app, project, "20261124-000000-burst0")
    log = Path(run.log_path)
    log.write_bytes(b"")  # the burst is all it will hold
    data = burst(LINES)
    assert len(data) > 4 * BURST_BYTES
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.selected_run_id == run.id)
        await pilot.pause(0.3)
        # Two bursts, the first cut in the middle of a line: the line is read whole.
        middle = data.index(b"loss=", len(data) // 2) + 3
        with log.open("ab") as out:
            out.write(data[:middle])
        await until(pilot, lambda: app.log_view.line_count >= data.count(b"\n", 0, middle))
        await pilot.pause(0.3)
        with log.open("ab") as out:
            out.write(data[middle:])
        await until(pilot, lambda: app.log_view.line_count >= LINES)
        chart = app.loss_chart
        await until(pilot, lambda: sum(h.train_records for h in chart.histories) == LINES)
        await until(pilot, lambda: app._chart_timer is None)  # the last draw was not dropped
        summary = app.run_metrics.summary(time.time())
        assert summary is not None and summary.step == LINES - 1
        assert f"step {LINES - 1}/{LINES}" in str(
            app.metrics_strip.query_one("#metrics-text").render()
        )
