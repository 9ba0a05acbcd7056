"""Figure (issue 6): key-press latency while an Instances refresh is in flight, in the real
dashboard (headless `RunctlApp`), against moto with 1,500 managed EC2 instances in one region.

moto runs in its own process and is seeded by bench/aws_refresh.py. The app's own scheduled
refreshes are pushed an hour away; the benchmark starts each refresh itself with the app's
`refresh_instances` worker (what `g` and the timer start), so the whole path counts: the
worker's DescribeInstances pages, prices and cost tracking, then the Instances and Costs panes
filled on the main thread, and the frames after that paint the new rows.

Keys are sent the way a terminal's keys arrive, from a thread of their own, one every ~20 ms
(bench/dashboard_fixture.py: KeySender), to a benchmark-only binding whose action records when
it ran; latency = that time minus the moment the key was sent.

Side by side, alternating, in the same run:
  refresh   keys from the start of a refresh until its rows are in the Instances table, and
            TAIL_S more (the table measures and paints new rows on the next idle ticks)
  baseline  keys for as long as the preceding refresh took, with no refresh running
  bare      the bare paginated boto3 DescribeInstances calls alone (bench/aws_refresh.py),
            for the other figure of issue 6: a refresh end to end, rows in the table,
            within 1.3x of them
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import aws_refresh  # the moto server and its 1,500 instances
from textual.binding import Binding

from dashboard_fixture import keys_during, temp_dir

REFRESHES = 8
TAIL_S = 0.3
GOAL_MS = 50.0
AN_HOUR = 3600


async def measure() -> dict[str, list[float]]:
    from app.settings import load_settings
    from app.tui import RunctlApp

    handled: list[float] = []
    shown: list[float] = []  # when a refresh's AWS rows were handed to the Instances table

    class BenchApp(RunctlApp):
        BINDINGS = [*RunctlApp.BINDINGS, Binding("z", "bench_ping", "ping", show=False)]

        def action_bench_ping(self) -> None:
            handled.append(time.perf_counter())

        def _show_instances(self, instances, *args) -> None:
            super()._show_instances(instances, *args)
            if len(instances) >= aws_refresh.COUNT:
                shown.append(time.perf_counter())

        def tables_settled(self) -> bool:
            return not (self.instances_table.applying or self.costs_pane.table.applying)

    import boto3
    from botocore.config import Config

    bare_client = boto3.client(
        "ec2", region_name=aws_refresh.REGION, config=Config(retries={"mode": "standard"})
    )
    aws_refresh.bare_describe(bare_client)  # warm, as the app's start-up refresh warms it

    figures: dict[str, list[float]] = {"refresh": [], "baseline": [], "duration": [], "bare": []}
    with temp_dir() as tmp:
        os.environ["RUNCTL_HOME"] = os.path.join(tmp, "home")
        project = Path(tmp) / "proj"
        (project / ".git").mkdir(parents=True)
        (project / "runctl.toml").write_text(
            f'[aws]\nregions = ["{aws_refresh.REGION}"]\nrefresh_s = {AN_HOUR}\n'
            f"[ssh]\nrefresh_s = {AN_HOUR}\n"
        )
        app = BenchApp(load_settings(project), project)
        async with app.run_test(size=(120, 36)) as pilot:

            async def rows_in_tables(refreshes_before: int, start: float) -> float:
                """When the refresh after `refreshes_before` has all its rows in both tables
                (the tables apply big updates a slice per frame)."""
                while len(shown) == refreshes_before or not app.tables_settled():
                    if time.perf_counter() - start > 60:
                        raise RuntimeError("a refresh took over 60 s")
                    await asyncio.sleep(0.005)
                return time.perf_counter()

            # The start-up refresh (boto3 imported, GPU facts and spot prices fetched): cold.
            await rows_in_tables(0, time.perf_counter())
            await pilot.pause(1.0)

            async def one_refresh() -> None:
                before, start = len(shown), time.perf_counter()
                app.refresh_instances()
                figures["duration"].append(await rows_in_tables(before, start) - start)
                await asyncio.sleep(TAIL_S)

            for _ in range(REFRESHES):
                idle_s = figures["duration"][-1] + TAIL_S if figures["duration"] else 1.5
                figures["baseline"] += await keys_during(
                    app, handled, lambda s=idle_s: asyncio.sleep(s)
                )
                figures["refresh"] += await keys_during(app, handled, one_refresh)
                start = time.perf_counter()
                listed = await asyncio.to_thread(aws_refresh.bare_describe, bare_client)
                figures["bare"].append(time.perf_counter() - start)
                assert listed == aws_refresh.COUNT
                assert len(app.instances_table.rows) >= aws_refresh.COUNT
    return figures


def describe(latencies: list[float]) -> str:
    ms = sorted(t * 1000 for t in latencies)
    p90 = statistics.quantiles(ms, n=10)[8]
    return (
        f"median {statistics.median(ms):5.1f} ms  p90 {p90:5.1f} ms  max {ms[-1]:6.1f} ms  "
        f"({len(ms)} presses)"
    )


def main() -> None:
    server = aws_refresh.start_moto()
    try:
        started = time.perf_counter()
        aws_refresh.create_instances(aws_refresh.COUNT)
        print(
            f"setup: {aws_refresh.COUNT:,} managed instances in {aws_refresh.REGION} "
            f"in {time.perf_counter() - started:.1f} s"
        )
        figures = asyncio.run(measure())
    finally:
        server.terminate()
        server.wait(timeout=10)
    durations = figures["duration"]
    print(
        f"refreshes: {len(durations)}, start to rows in the table: median "
        f"{statistics.median(durations):.2f} s ({', '.join(f'{d:.2f}' for d in durations)})"
    )
    bare = statistics.median(figures["bare"])
    ratio = statistics.median(durations) / bare
    print(
        f"bare paginated boto3 calls: median {bare:.2f} s; refresh to rows in the table / bare: "
        f"{ratio:.2f}x (goal <= 1.3x)"
    )
    print(f"key press, no refresh (baseline): {describe(figures['baseline'])}")
    print(f"key press, refresh in flight:     {describe(figures['refresh'])}")
    worst = max(figures["refresh"]) * 1000
    print(
        f"goal: <= {GOAL_MS:.0f} ms while a refresh is in flight: "
        f"{'met' if worst <= GOAL_MS else 'missed'} (max {worst:.1f} ms)"
    )


if __name__ == "__main__":
    main()
