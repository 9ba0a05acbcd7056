"""Which checkpoints of an instance's runs exist only on that instance: neither in the run's
S3 prefix nor downloaded to this machine, with the same names and sizes.

The terminate dialog says so before anything is destroyed ("terminating destroys 3
checkpoints, 1.2 GB, not copied anywhere"), and the Checkpoints pane marks the rows already in
S3, both with `present_in`. A checkpoint counts as copied when a copy holds all of it: a file
with its size, a Hugging Face `checkpoint-N/` directory with as many bytes under its name as
the directory has. The checkpoints are listed through the host's transport (one `find` per
run plus the metadata reads of `list_checkpoints`): call it from a thread, bounded in time by
the caller. No textual, no boto3 (the S3 listing is handed in).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.checkpoints import CheckpointInfo
from app.remote_sources import TransportCheckpointSource, list_remote_checkpoints
from providers.base import Transport


@dataclass(frozen=True, slots=True)
class HostCheckpoint:
    run_id: str
    name: str  # relative to the run's checkpoint dir
    size: int


@dataclass(slots=True)
class Census:
    """The checkpoints found on one instance and those that exist nowhere else."""

    instance_id: str
    runs_checked: int = 0
    checkpoints: int = 0
    uncopied: list[HostCheckpoint] = field(default_factory=list)
    s3_checked: bool = True

    @property
    def uncopied_bytes(self) -> int:
        return sum(c.size for c in self.uncopied)

    def sentence(self, verb: str = "terminating") -> str:
        """One line for a dialog: what `verb` would destroy."""
        from widgets.formatting import size  # plain formatting, no textual

        if not self.runs_checked:
            return (
                f"No run of this store ran on {self.instance_id}: no checkpoints of ours to "
                "lose there (other files on its disks were not checked)."
            )
        where = "S3 or this machine" if self.s3_checked else "this machine (S3 not checked)"
        if not self.uncopied:
            return (
                f"All {self.checkpoints} checkpoint(s) of its {self.runs_checked} run(s) are "
                f"copied to {where}."
            )
        count = len(self.uncopied)
        return (
            f"{verb} destroys {count} checkpoint{'s' if count != 1 else ''}, "
            f"{size(self.uncopied_bytes)}, not copied anywhere (checked: {where})."
        )

    def listing(self, limit: int = 8) -> list[str]:
        from widgets.formatting import size

        lines = [f"  {c.run_id}/{c.name}  {size(c.size)}" for c in self.uncopied[:limit]]
        if len(self.uncopied) > limit:
            lines.append(f"  … and {len(self.uncopied) - limit} more")
        return lines


def relative_name(info: CheckpointInfo, base_dir: str) -> str:
    """The checkpoint's path relative to the directory it was listed in (POSIX)."""
    base = base_dir.rstrip("/") + "/"
    return info.path[len(base) :] if info.path.startswith(base) else info.name


def present_in(infos: Iterable[CheckpointInfo], base_dir: str, sizes: dict[str, int]) -> set[str]:
    """Paths of `infos` (listed under `base_dir`) that `sizes` ({relative path: size}, e.g. an
    S3 listing of the run's prefix) holds whole."""
    held: set[str] = set()
    for info in infos:
        name = relative_name(info, base_dir)
        if info.is_dir:
            below = [size for key, size in sizes.items() if key.startswith(name + "/")]
            if below and sum(below) == info.size_bytes:
                held.add(info.path)
        elif sizes.get(name) == info.size_bytes:
            held.add(info.path)
    return held


def local_copies(directory: Path) -> dict[str, int]:
    """{relative path: size} of the files downloaded into `directory` (hidden temp files of a
    download in progress are not copies)."""
    found: dict[str, int] = {}
    if not directory.is_dir():
        return found
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = Path(root, name)
            found[path.relative_to(directory).as_posix()] = path.stat().st_size
    return found


def find_uncopied(
    transport: Transport,
    instance_id: str,
    runs: Sequence[Any],
    *,
    globs: Sequence[str],
    downloads_root: Path,
    s3_sizes: Callable[[str], dict[str, int]] | None = None,
) -> Census:
    """The census of `runs` (store runs on the instance: id, host, checkpoint_dir). Local
    copies are looked for in `downloads_root/<host>/<run id>/`, where the dashboard's download
    puts them; `s3_sizes(run_id)` lists the run's S3 prefix (None: no bucket configured).
    Raises what the transport raises when the host cannot be reached."""
    census = Census(instance_id, s3_checked=s3_sizes is not None)
    source = TransportCheckpointSource(transport)
    for run in runs:
        infos = list_remote_checkpoints(source, run.checkpoint_dir, globs, cache=None)
        census.runs_checked += 1
        census.checkpoints += len(infos)
        if not infos:
            continue
        copied = present_in(
            infos, run.checkpoint_dir, local_copies(downloads_root / run.host / run.id)
        )
        if s3_sizes is not None:
            copied |= present_in(infos, run.checkpoint_dir, s3_sizes(run.id))
        census.uncopied.extend(
            HostCheckpoint(run.id, relative_name(info, run.checkpoint_dir), info.size_bytes)
            for info in infos
            if info.path not in copied
        )
    return census
