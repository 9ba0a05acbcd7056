"""Figure: listing a directory of 1,000 checkpoints with their metadata, goal <= 1 s.

The directory holds copies of the real fixtures (tests/fixtures/checkpoints, made by torch,
Lightning, transformers, safetensors, Keras and the example training) under 1,000 distinct
names, 50 of them Hugging Face `checkpoint-N/` directories, plus one unsafe and one truncated
file. Printed: a cold listing (the files dropped from the page cache, no metadata cache), the
warm median without the metadata cache, and a re-listing through the cache after one new
checkpoint appears (what the dashboard does when the watcher fires).
"""

from __future__ import annotations

import collections
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.checkpoints import MetadataCache, list_checkpoints  # noqa: E402
from app.settings import CheckpointSettings  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "checkpoints"
COUNT = 1000
HF_DIRS = 50
RUNS = 5
GOAL_S = 1.0
FILES = [
    ("torch/epoch-0003.pt", "epoch-{n:04d}.pt"),
    ("lightning/epoch=1-step=8.ckpt", "epoch={n}-step={n}0.ckpt"),
    ("example/epoch-0001.ckpt.json", "epoch-{n:04d}.ckpt.json"),
    ("safetensors/model-step4000.safetensors", "model-{n:04d}.safetensors"),
    ("keras/model-epoch01.keras", "model-epoch{n:04d}.keras"),
    ("torch/legacy-format.pt", "legacy-{n:04d}.pt"),
    ("torch/nanogpt-ckpt.pt", "ckpt-{n:04d}.pth"),
]


def build(directory: Path) -> None:
    for n in range(HF_DIRS):
        shutil.copytree(FIXTURES / "hf" / "checkpoint-8", directory / f"checkpoint-{n * 100}")
    shutil.copy(FIXTURES / "unsafe" / "malicious.pt", directory / "malicious.pt")
    content = (FIXTURES / "lightning" / "last.ckpt").read_bytes()
    (directory / "truncated.ckpt").write_bytes(content[: len(content) // 2])
    remaining = COUNT - HF_DIRS - 2
    for n in range(remaining):
        source, pattern = FILES[n % len(FILES)]
        shutil.copy(FIXTURES / source, directory / pattern.format(n=n))


def drop_from_page_cache(directory: Path) -> None:
    for root, _, files in os.walk(directory):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def main() -> int:
    globs = CheckpointSettings().globs
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-list-") as tmp:
        directory = Path(tmp)
        build(directory)
        os.sync()
        drop_from_page_cache(directory)

        start = time.perf_counter()
        infos = list_checkpoints(str(directory), globs, cache=None)
        cold = time.perf_counter() - start
        assert len(infos) == COUNT, len(infos)

        warm = []
        for _ in range(RUNS):
            start = time.perf_counter()
            list_checkpoints(str(directory), globs, cache=None)
            warm.append(time.perf_counter() - start)

        cache = MetadataCache()
        list_checkpoints(str(directory), globs, cache=cache)
        shutil.copy(FIXTURES / "torch" / "epoch-0003.pt", directory / "epoch-9999.pt")
        start = time.perf_counter()
        relisted = list_checkpoints(str(directory), globs, cache=cache)
        cached = time.perf_counter() - start
        assert len(relisted) == COUNT + 1

        kinds = collections.Counter(info.kind for info in infos)
        statuses = collections.Counter(info.status for info in infos)
        print(f"directory: {COUNT} checkpoints — {dict(sorted(kinds.items()))}")
        print(f"statuses: {dict(sorted(statuses.items()))}")
        verdict = "meets" if cold <= GOAL_S and statistics.median(warm) <= GOAL_S else "MISSES"
        print(
            f"list_checkpoints: cold {cold * 1000:.0f} ms, warm median "
            f"{statistics.median(warm) * 1000:.0f} ms ({RUNS} runs) — {verdict} the "
            f"{GOAL_S:.0f} s goal"
        )
        print(
            f"re-listing after one new checkpoint, with the metadata cache: {cached * 1000:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
