"""Figure: metadata (epoch, step, loss, size) of a 2 GB torch checkpoint, goal <= 50 ms, beside
`torch.load(..., weights_only=True)` of the same file, measured in the same run.

With torch importable (run it with an interpreter that has torch and this project, e.g.
`/tmp/ckpt-venv/bin/python bench/checkpoint_metadata.py`), the file is a real `torch.save` of
2 GB of float32 weights plus epoch, global_step and a 0-dim loss tensor. Without torch it is
the same layout written by tests/fixtures/checkpoints/torch_zip.py (tensor data left as a
sparse hole) and only runctl's figure is printed.

"cold" = the file's pages were dropped from the page cache first (posix_fadvise DONTNEED on
this one file), so the bytes really come from the disk; "warm" = median of repeated reads.
"read" = bytes the process read (rchar in /proc/self/io) during one metadata read.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.checkpoints import read_checkpoint  # noqa: E402
from tests.fixtures.checkpoints.torch_zip import write_sparse_checkpoint  # noqa: E402

SIZE = 2 * 2**30
WARM_RUNS = 20
GOAL_MS = 50.0

try:
    import torch
except ImportError:
    torch = None


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def bytes_read_so_far() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def make_real_checkpoint(path: Path) -> None:
    """2 GB of float32 weights in 8 tensors, as a training loop would save them."""
    generator = torch.Generator().manual_seed(0)
    per_tensor = SIZE // 8 // 4
    model = {
        f"layers.{i}.weight": torch.empty(per_tensor // 4096, 4096).uniform_(generator=generator)
        for i in range(8)
    }
    torch.save(
        {
            "epoch": 12,
            "global_step": 120_000,
            "loss": torch.tensor(0.8125),
            "val_loss": torch.tensor(0.9375),
            "model": model,
        },
        path,
    )


def time_call(function, path: Path) -> tuple[float, float, int]:
    """(cold seconds, warm median seconds, bytes read cold)."""
    drop_from_page_cache(path)
    before = bytes_read_so_far()
    start = time.perf_counter()
    function(path)
    cold = time.perf_counter() - start
    read = bytes_read_so_far() - before
    warm = []
    for _ in range(WARM_RUNS):
        start = time.perf_counter()
        function(path)
        warm.append(time.perf_counter() - start)
    return cold, statistics.median(warm), read


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp:
        path = Path(tmp) / "model-2gb.pt"
        if torch is not None:
            made = time.perf_counter()
            make_real_checkpoint(path)
            how = f"torch.save {torch.__version__}, {time.perf_counter() - made:.1f} s to write"
        else:
            write_sparse_checkpoint(path, SIZE)
            how = "stdlib torch-zip writer, sparse tensor data (torch not importable here)"
        size = path.stat().st_size
        info = read_checkpoint(str(path))
        assert info.status == "ok", info.error
        print(f"checkpoint: {size / 2**30:.2f} GiB ({how})")
        print(f"metadata: kind={info.kind} epoch={info.epoch} step={info.step} loss={info.loss}")

        cold, warm, read = time_call(lambda p: read_checkpoint(str(p)), path)
        verdict = "meets" if cold * 1000 <= GOAL_MS and warm * 1000 <= GOAL_MS else "MISSES"
        print(
            f"runctl read_checkpoint: cold {cold * 1000:.1f} ms, warm median {warm * 1000:.2f} ms "
            f"({WARM_RUNS} runs), {read / 1024:.0f} KiB read cold — {verdict} the {GOAL_MS:.0f} ms goal"
        )
        if torch is None:
            print("torch.load: not measured (torch is not importable in this interpreter)")
            return 0
        runs = 3

        def load(p: Path) -> None:
            torch.load(p, weights_only=True)

        drop_from_page_cache(path)
        before = bytes_read_so_far()
        start = time.perf_counter()
        load(path)
        load_cold = time.perf_counter() - start
        load_read = bytes_read_so_far() - before
        load_warm = []
        for _ in range(runs):
            start = time.perf_counter()
            load(path)
            load_warm.append(time.perf_counter() - start)
        print(
            f"torch.load(weights_only=True): cold {load_cold:.2f} s, warm median "
            f"{statistics.median(load_warm):.2f} s ({runs} runs), {load_read / 2**20:.0f} MiB read cold"
        )
        print(
            f"runctl is {load_cold / cold:.0f}x faster cold, "
            f"{statistics.median(load_warm) / warm:.0f}x warm"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
