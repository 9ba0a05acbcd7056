"""`runctl-tui checkpoints PATH [--json]`: the metadata of one checkpoint or of every
checkpoint in a directory, as a table or as JSON."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence

from app.checkpoints import (
    STATUS_OK,
    CheckpointInfo,
    is_hf_checkpoint_dir,
    list_checkpoints,
    pick_best,
    read_checkpoint,
)
from widgets.formatting import age, number, size

EXIT_MISSING = 2


def default_globs() -> list[str]:
    from app.settings import CheckpointSettings

    return list(CheckpointSettings().globs)


def collect(path: str, globs: Sequence[str]) -> list[CheckpointInfo]:
    """One row for a file or a HF `checkpoint-N/` directory; the matching checkpoints of any
    other directory."""
    if os.path.isdir(path) and not is_hf_checkpoint_dir(path):
        return list_checkpoints(path, globs, cache=None)
    return [read_checkpoint(path)]


def checkpoints_main(path: str, as_json: bool, globs: Sequence[str] | None = None) -> int:
    if not os.path.exists(path):
        print(
            f"runctl-tui: {path}: no such file or directory. Give a checkpoint file or the "
            "directory that holds them (a run's checkpoints/ directory).",
            file=sys.stderr,
        )
        return EXIT_MISSING
    patterns = list(globs) if globs is not None else default_globs()
    infos = collect(path, patterns)
    if as_json:
        print(json.dumps([info.to_json() for info in infos], indent=2, allow_nan=False))
        return 0
    if not infos:
        print(f"No checkpoints in {path} matching {', '.join(patterns)}.")
        return 0
    print(format_table(infos, time.time()))
    return 0


def format_table(infos: Sequence[CheckpointInfo], now: float) -> str:
    best = pick_best(infos)
    rows = [("", "NAME", "KIND", "EPOCH", "STEP", "LOSS", "SIZE", "AGE", "STATUS")]
    for info in infos:
        rows.append(
            (
                "*" if best is not None and info.path == best.path else "",
                info.name + ("/" if info.is_dir else ""),
                info.kind,
                number(info.epoch, 6),
                "—" if info.step is None else str(info.step),
                number(info.loss, 6),
                size(info.size_bytes),
                age(now - info.mtime),
                info.status,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {3, 4, 5, 6, 7}
    lines = [
        "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    if best is not None:
        basis = (
            f"{best.monitor} ({best.mode})"
            if best.monitor and best.monitor_value is not None
            else "lowest loss"
        )
        lines.append(f"\n* best by {basis}: {best.path}")
    problems = [info for info in infos if info.status != STATUS_OK]
    for info in problems:
        lines.append(f"{info.status.upper()}: {info.path}: {info.error}")
    return "\n".join(lines)
