"""Figure: a line appended to output.log until it is in the log view, median over 200 lines.

The dashboard runs headless in this process, following a run's log exactly as it does on
screen (watchfiles wake-up, read from offset, batch, parse in a thread, write to `Log`). Each
line is appended after the previous one arrived and a short pause, so every sample measures
a cold wake-up, the slow path.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from dashboard_fixture import app_following_a_log, temp_dir

LINES = 200


def last_line(app) -> str | None:
    index = app.log_view.index
    if index is None or index.line_count == 0:
        return None
    lines = [line for line in index.read_lines(index.line_count - 2, 2) if line]
    return lines[-1] if lines else None


async def measure() -> list[float]:
    with temp_dir() as tmp:
        app, log = app_following_a_log(tmp)
        samples: list[float] = []
        async with app.run_test(size=(120, 36)) as pilot:
            while app.selected_run_id is None:
                await pilot.pause(0.01)
            await pilot.pause(0.3)  # the follower is waiting on its watcher
            with open(log, "a", buffering=1) as out:
                for i in range(LINES):
                    marker = f"Epoch 1/5 step {i}/200 loss=0.{i:04d} marker-{i}"
                    start = time.perf_counter()
                    out.write(marker + "\n")
                    out.flush()
                    while last_line(app) != marker:
                        await asyncio.sleep(0.0005)
                    samples.append(time.perf_counter() - start)
                    await asyncio.sleep(0.12)  # past the batch window: the next line is cold
    return samples


def main() -> None:
    samples = asyncio.run(measure())
    ms = sorted(s * 1000 for s in samples)
    print(
        f"follow latency over {len(ms)} lines: median {statistics.median(ms):.1f} ms, "
        f"p90 {ms[int(len(ms) * 0.9)]:.1f} ms, max {ms[-1]:.1f} ms (goal: median <= 50 ms)"
    )


if __name__ == "__main__":
    main()
