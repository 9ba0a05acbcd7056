"""Parse throughput: lines per second of the log parser over a generated 2,000,000-line log in
which every line carries metrics, in the formats the parser knows, mixed; printed beside the
floor measured in the same run (splitting the same blocks into lines and iterating them with no
parsing). Not a test; run it: `python bench/parse_throughput.py [LINES] [RUNS]`.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.logparse import LogParser

BLOCK = 1 << 20
BAR = "█▏▎▍▌▋▊▉"


def bar(fraction: float, width: int = 10) -> str:
    full = int(fraction * width)
    partial = int((fraction * width - full) * 8)
    text = "█" * full + (BAR[partial] if full < width and partial else "")
    return text.ljust(width)


def make_line(rng: random.Random, i: int) -> str:
    epoch, step, total = i // 1000 + 1, i % 1000 + 1, 1000
    loss = rng.uniform(0.01, 3.0)
    kind = i % 8
    if kind == 0:
        return f"Epoch {epoch}/10 step {step}/{total} loss={loss:.4f} acc={rng.random():.3f} lr={rng.uniform(1e-5, 1e-3):.2e}"
    if kind == 1:
        pct = step * 100 // total
        return (
            f"\rEpoch {epoch - 1}: {pct:3d}%|{bar(step / total)}| {step}/{total} "
            f"[00:{step % 60:02d}<00:{(total - step) % 60:02d}, {rng.uniform(5, 50):.2f}it/s, "
            f"v_num=0, train_loss={loss:.3f}]"
        )
    if kind == 2:
        return f"{{'loss': '{loss:.4f}', 'grad_norm': '{rng.uniform(0, 5):.4f}', 'learning_rate': '{rng.uniform(1e-5, 1e-3):.3e}', 'epoch': '{epoch + step / total:.2f}'}}"
    if kind == 3:
        return f"{step}/{total} - 0s - {rng.randint(1, 999)}ms/step - accuracy: {rng.random():.4f} - loss: {loss:.4f} - val_loss: {loss * 1.1:.4f}"
    if kind == 4:
        return f"iter {i}: loss {loss:.4f}, time {rng.uniform(10, 99):.2f}ms, mfu {rng.uniform(10, 60):.2f}%"
    if kind == 5:
        return f'{{"epoch": {epoch}, "step": {i}, "loss": {loss}, "lr": {rng.uniform(1e-5, 1e-3)}}}'
    if kind == 6:
        pct = step * 100 // total
        return f"\r{pct:3d}%|{bar(step / total)}| {step}/{total} [00:{step % 60:02d}<00:{(total - step) % 60:02d}, {rng.uniform(1, 9):.2f}it/s, loss={loss:.3g}]"
    return f"Epoch [{epoch}/10] [Batch {step}/{total}] Loss {loss:.4f} val_loss: {loss * 1.2:.4f}"


QUIET = [
    "INFO:root:saving checkpoint to /runs/ckpt/model_{i}.pt",
    "  warnings.warn(  # deprecated argument; see https://example.org/docs#{i}",
    "Downloading shard {i} of the dataset from the cache",
    "[rank0]: NCCL INFO Channel {i} : 0[0] -> 1[1] via P2P/IPC",
]


def generate_quiet(lines: int) -> bytes:
    """Lines that carry no metrics: what the parser should skip for almost nothing."""
    return "\n".join(QUIET[i % 4].format(i=i) for i in range(lines)).encode() + b"\n"


def generate(lines: int) -> bytes:
    rng = random.Random(7)
    return "\n".join(make_line(rng, i) for i in range(lines)).encode() + b"\n"


def blocks_of(data: bytes) -> list[bytes]:
    return [data[i : i + BLOCK] for i in range(0, len(data), BLOCK)]


def floor(blocks: list[bytes]) -> tuple[float, int]:
    """Split the same blocks into lines and iterate them, no parsing."""
    start = time.perf_counter()
    count = 0
    pending = b""
    for block in blocks:
        pieces = (pending + block).split(b"\n")
        pending = pieces.pop()
        for _line in pieces:
            count += 1
    return time.perf_counter() - start, count


def parse(blocks: list[bytes], as_text: bool) -> tuple[float, int, int]:
    parser = LogParser()
    start = time.perf_counter()
    points = 0
    for block in blocks:
        points += len(parser.feed(block.decode("utf-8", "replace") if as_text else block))
    points += len(parser.flush())
    return time.perf_counter() - start, points, parser.lines_seen


def best_of(runs: int, measure):
    """The fastest of a few runs: the machine is shared, and load only ever slows a run down."""
    return min((measure() for _ in range(runs)), key=lambda result: result[0])


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    data = generate(lines)
    blocks = blocks_of(data)
    print(f"log: {lines:,} lines, {len(data) / 1e6:.1f} MB, every line carries metrics (8 formats)")
    floor_s, counted = best_of(runs, lambda: floor(blocks))
    print(f"best of {runs} runs each")
    print(
        f"floor (split + iterate, no parsing): {counted / floor_s:>12,.0f} lines/s  ({floor_s:.2f} s)"
    )
    for as_text in (False, True):
        seconds, points, seen = best_of(runs, lambda as_text=as_text: parse(blocks, as_text))
        label = "parser, str blocks (decode + parse)" if as_text else "parser, bytes blocks"
        print(
            f"{label:<36}: {seen / seconds:>12,.0f} lines/s  ({seconds:.2f} s, {points:,} points)"
        )
    quiet = blocks_of(generate_quiet(lines))
    floor_s, counted = best_of(runs, lambda: floor(quiet))
    seconds, points, seen = best_of(runs, lambda: parse(quiet, as_text=False))
    print(
        f"{lines:,} lines without metrics: floor {counted / floor_s:,.0f} lines/s, "
        f"parser {seen / seconds:,.0f} lines/s ({points} points)"
    )


if __name__ == "__main__":
    main()
