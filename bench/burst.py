"""Figures: 1,000,000 lines appended as fast as possible: lines/s into the view, key-press
latency while the burst is in flight, and memory growth.

A separate process appends the lines; the headless dashboard follows the log. Keys are sent
the way a terminal's keys arrive, from a thread of their own, one every ~20 ms during the burst
(bench/dashboard_fixture.py: KeySender), to a benchmark-only binding whose action records the
time it ran; latency = that time minus the moment the key was sent.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time

from textual.binding import Binding

from app.tui import RunctlApp
from dashboard_fixture import app_following_a_log, keys_during, temp_dir

TOTAL = 1_000_000
WRITER = """
import sys
path, total = sys.argv[1], int(sys.argv[2])
with open(path, "a") as out:
    block = 10_000
    for start in range(0, total, block):
        out.write("".join(
            f"Epoch {1 + i * 5 // total}/5 step {i}/{total} loss={1 / (1 + i / 1000):.4f} lr=3e-4\\n"
            for i in range(start, start + block)))
        out.flush()
"""


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * 4096 / 1e6


async def measure() -> dict[str, float]:
    pressed: list[float] = []

    class BenchApp(RunctlApp):
        BINDINGS = [*RunctlApp.BINDINGS, Binding("z", "bench_ping", "ping", show=False)]

        def action_bench_ping(self) -> None:
            pressed.append(time.perf_counter())

    with temp_dir() as tmp:
        app, log = app_following_a_log(tmp, app_class=BenchApp)
        async with app.run_test(size=(120, 36)) as pilot:
            while app.selected_run_id is None:
                await pilot.pause(0.01)
            await pilot.pause(0.5)
            base_rss = peak_rss = rss_mb()
            start = time.perf_counter()
            writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(TOTAL)])

            async def burst_shown() -> None:
                nonlocal peak_rss
                while app.log_view.line_count < TOTAL:
                    peak_rss = max(peak_rss, rss_mb())
                    await asyncio.sleep(0.01)
                    if time.perf_counter() - start > 120:
                        raise RuntimeError(f"only {app.log_view.line_count} lines after 120 s")

            latencies = await keys_during(app, pressed, burst_shown)
            elapsed = time.perf_counter() - start
            writer.wait()
            # The strip's parser reads each batch in a thread after the view has it: give the
            # last batch a moment, so the step printed is where parsing ended, not mid-batch.
            deadline = time.perf_counter() + 5
            while time.perf_counter() < deadline:
                summary = app.run_metrics.summary(time.time())
                if summary is not None and summary.step == TOTAL - 1:
                    break
                await asyncio.sleep(0.05)
    return {
        "lines_per_s": TOTAL / elapsed,
        "elapsed_s": elapsed,
        "key_median_ms": statistics.median(latencies) * 1000,
        "key_max_ms": max(latencies) * 1000,
        "key_samples": len(latencies),
        "rss_growth_mb": peak_rss - base_rss,
        "last_step": summary.step if summary else None,
    }


def main() -> None:
    r = asyncio.run(measure())
    print(
        f"burst: {TOTAL:,} lines in {r['elapsed_s']:.2f} s = {r['lines_per_s']:,.0f} lines/s "
        f"into the view (goal >= 250,000); metrics parsed up to step {r['last_step']}"
    )
    print(
        f"key press handled while bursting: median {r['key_median_ms']:.1f} ms, "
        f"max {r['key_max_ms']:.1f} ms over {r['key_samples']} presses (goal <= 100 ms)"
    )
    print(f"memory growth during the burst: {r['rss_growth_mb']:.0f} MB (goal <= 100 MB)")


if __name__ == "__main__":
    main()
