"""Shared by the sync benchmarks: a generated 10,000-file project and a real sshd on loopback
(the same fixture the tests use, with its own keys and config in a temp dir)."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.sshd_server import SshdServer, make_sshd  # noqa: E402

FILES = 10_000
WORDS = [b"tensor", b"loss", b"epoch", b"def", b"return", b"self", b"import", b"model", b"0.5"]


def make_project(root: Path, files: int = FILES, total_bytes: int = 200 * 1024 * 1024) -> int:
    """`files` files in 100 directories, `total_bytes` in all, shaped like an ML project: 90%
    of the files are code/config text of about 2 KB, 10% are data/weights (random bytes,
    incompressible) holding the rest of the bytes. Returns the bytes written."""
    rng = random.Random(5)
    data_files = files // 10
    text_size = 2048
    data_size = (total_bytes - (files - data_files) * text_size) // data_files
    written = 0
    (root / ".git").mkdir(parents=True, exist_ok=True)
    (root / ".gitignore").write_text("*.log\n__pycache__/\n")
    for i in range(files):
        directory = root / f"pkg{i % 100:02}" / f"sub{i % 7}"
        directory.mkdir(parents=True, exist_ok=True)
        if i % 10 == 0:
            name, data = f"data{i:05}.npy", os.urandom(data_size)
        else:
            words = b" ".join(rng.choice(WORDS) for _ in range(text_size // 5))
            name, data = f"file{i:05}.py", (words + b"\n" * text_size)[:text_size]
        (directory / name).write_bytes(data)
        written += len(data)
    return written


def start_sshd(tmp: Path) -> SshdServer:
    return make_sshd(tmp / "sshd")
