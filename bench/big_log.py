"""Figures for a 1 GB training log: time until its tail is on screen in the LogView, time until
the whole loss chart is complete, and the peak memory of the process doing both.

A child process writes the log (about 14 million lines of mixed formats: a hand-written loop with
loss and lr, validation lines, Hugging Face dicts, warnings, a tqdm bar, one nan) into a temp
dir, so its memory does not count. This process then runs a headless app that hosts a
`LogView` and a `LossChart` wired the way the dashboard should wire them: the view opens a
`LogIndex` over the file (tail first, the rest indexed backwards in a worker) while another
worker runs `scan_loss_history_parallel` (one scan process per core, parts joined in order)
and redraws the chart after each part. The log was just written and synced, so it is in the
page cache: these are warm-cache figures. Three measurements, each in a fresh process, and
their median; the machine is shared, so the load average is printed with each. The temp dir
is deleted after.

Goals (issue 3): tail <= 1 s, whole chart <= 10 s, peak memory <= 300 MB.
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET_BYTES = 1 << 30


def write_log(path: Path, target_bytes: int = TARGET_BYTES) -> int:
    """About `target_bytes` of a training log; returns the number of lines written."""
    rng = random.Random(42)
    noise = [rng.random() for _ in range(4096)]
    total_steps = 14_000_000
    lines = 0
    written = 0
    step = 0
    with open(path, "w", buffering=1 << 22) as out:
        while written < target_bytes:
            batch: list[str] = []
            for _ in range(10_000):
                step += 1
                epoch = step // 700_000 + 1
                loss = 2.5 * math.exp(-step / 3_000_000) + 0.3 + 0.4 * noise[step & 4095]
                if step % 500 == 0:
                    batch.append(
                        f"Epoch {epoch}/20 val_loss={loss + 0.1:.4f} val_acc=0.{step % 97:02d}"
                    )
                elif step % 1000 == 1:
                    batch.append(
                        f"{{'loss': {loss:.4f}, 'grad_norm': 1.2, 'learning_rate': 5e-05, "
                        f"'epoch': {step / 700_000:.2f}}}"
                    )
                elif step % 2000 == 7:
                    batch.append("[W 2026-11-23 10:00:00] WARNING dataloader worker slow: 1.2s")
                elif step % 5000 == 3:
                    batch.append(
                        "\r".join(
                            f"{p}%|{'#' * (p // 10)}| {p}/100 [00:01<00:02]"
                            for p in range(0, 101, 20)
                        )
                    )
                elif step == 9_000_001:
                    batch.append(f"Epoch {epoch}/20 step {step}/{total_steps} loss=nan lr=3.00e-04")
                else:
                    batch.append(
                        f"Epoch {epoch}/20 step {step}/{total_steps} loss={loss:.4f} "
                        f"lr=3.00e-04 grad_norm={noise[(step * 7) & 4095] * 3:.3f}"
                    )
            text = "\n".join(batch) + "\n"
            out.write(text)
            written += len(text)
            lines += len(batch)
        out.flush()
        os.fsync(out.fileno())  # measure reading a log, not competing with its write-back
    return lines


def peak_memory_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(path: Path) -> dict[str, float]:
    import asyncio

    from textual.app import App, ComposeResult
    from textual.worker import get_current_worker

    from app.log_history import scan_loss_history_parallel
    from app.log_index import FileSource, LogIndex
    from widgets.log_view import LogView
    from widgets.loss_chart import LossChart

    figures: dict[str, float] = {}

    class BigLogApp(App[None]):
        def compose(self) -> ComposeResult:
            yield LossChart()
            yield LogView()

        def on_log_view_indexed(self, message: LogView.Indexed) -> None:
            figures["index_s"] = time.perf_counter() - self.started
            figures["lines"] = message.line_count

        def open_log(self) -> None:
            self.started = time.perf_counter()
            self.query_one(LogView).open_index(LogIndex(FileSource(path)))
            self.scan_history()

        def scan_history(self) -> None:
            def run() -> None:
                worker = get_current_worker()
                chart = self.query_one(LossChart)
                for progress in scan_loss_history_parallel(
                    str(path), cancelled=lambda: worker.is_cancelled
                ):
                    done = progress.scanned_bytes >= progress.total_bytes
                    fraction = None if done else progress.fraction
                    self.call_from_thread(chart.show, progress.history, progress=fraction)
                figures["chart_s"] = time.perf_counter() - self.started
                figures["records"] = progress.history.train_records

            self.run_worker(run, thread=True, group="loss-history", exit_on_error=False)

    last_line = subprocess.run(["tail", "-n", "1", str(path)], capture_output=True, text=True)
    expected_tail = last_line.stdout.rstrip("\n").rsplit("\r", 1)[-1]

    async def run_app() -> None:
        app = BigLogApp()
        async with app.run_test(size=(120, 40)) as pilot:
            view = app.query_one(LogView)
            app.open_log()
            while True:
                rows = [view.lines.render_line(y).text for y in range(view.lines.size.height)]
                if any(row.rstrip() == expected_tail for row in rows):
                    break
                await asyncio.sleep(0.001)
            figures["tail_s"] = time.perf_counter() - app.started
            while "chart_s" not in figures or "index_s" not in figures:
                await pilot.pause(0.05)
            chart_plain = app.query_one(LossChart).render().plain
            figures["chart_ok"] = float("records" in chart_plain and "reading" not in chart_plain)

    asyncio.run(run_app())
    figures["peak_mb"] = peak_memory_mb()
    figures["child_peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    figures["load"] = os.getloadavg()[0]
    return figures


RUNS = 3


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        print(write_log(Path(sys.argv[2])))
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":  # one measurement, as JSON
        print(json.dumps(measure(Path(sys.argv[2]))))
        return
    with tempfile.TemporaryDirectory(prefix="runctl-big-log-") as tmp:
        path = Path(tmp) / "output.log"
        started = time.perf_counter()
        written = subprocess.run(
            [sys.executable, __file__, "--write", str(path)],
            check=True,
            capture_output=True,
            text=True,
        )
        size = os.path.getsize(path)
        print(
            f"log: {size / 1e9:.2f} GB, {int(written.stdout):,} lines "
            f"(written in {time.perf_counter() - started:.1f} s by a child process)"
        )
        runs = []
        for _ in range(RUNS):  # each in a fresh process: its own imports, its own peak memory
            measured = subprocess.run(
                [sys.executable, __file__, "--measure", str(path)],
                check=True,
                capture_output=True,
                text=True,
            )
            runs.append(json.loads(measured.stdout.strip().splitlines()[-1]))
            print(
                "  run: tail {tail_s:.3f} s, chart {chart_s:.1f} s, index {index_s:.1f} s, "
                "peak {peak_mb:.0f} MB (+ scan processes <= {child_peak_mb:.0f} MB each), "
                "load {load:.1f}".format(**runs[-1])
            )

    def median(name: str) -> float:
        return statistics.median(run[name] for run in runs)

    last = runs[-1]
    print(f"median of {RUNS} runs (warm page cache, {os.cpu_count()} cores shared with others):")
    print(f"  tail on screen:        {median('tail_s'):.3f} s   (goal <= 1 s)")
    print(
        f"  whole loss chart:      {median('chart_s'):.1f} s   (goal <= 10 s; "
        f"{int(last['records']):,} training losses)"
    )
    print(f"  line index complete:   {median('index_s'):.1f} s   ({int(last['lines']):,} lines)")
    print(
        f"  peak memory (VmHWM):   {max(run['peak_mb'] for run in runs):.0f} MB  (goal <= 300 MB; "
        f"each scan process at most {max(run['child_peak_mb'] for run in runs):.0f} MB)"
    )
    print(f"  chart drawn complete:  {'yes' if all(run['chart_ok'] for run in runs) else 'NO'}")


if __name__ == "__main__":
    main()
