"""Figure: re-sync of an unchanged 10,000-file project over the loopback sshd (warm connection,
warm hash cache): seconds and file bytes shipped. Median of 5.

Goal (issue 5): <= 0.5 s and 0 bytes shipped.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

from sync_fixture import make_project, start_sshd

from app.sync import sync_project

RUNS = 5


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    server = start_sshd(tmp)
    try:
        project = tmp / "proj"
        make_project(project, total_bytes=40 * 1024 * 1024)
        transport = server.transport()
        remote_dir = f"{server.remote_home}/proj"
        cache = tmp / "cache.json"
        first = sync_project(transport, project, remote_dir, cache_path=cache)
        times, shipped = [], []
        for _ in range(RUNS):
            start = time.perf_counter()
            result = sync_project(transport, project, remote_dir, cache_path=cache)
            times.append(time.perf_counter() - start)
            shipped.append(result.bytes_sent)
            assert result.plan.nothing_to_do
        print(f"project: {len(first.plan.tree.files):,} files")
        print(
            f"no-change resync: median {statistics.median(times):.3f} s "
            f"(runs {[round(t, 3) for t in times]}), bytes shipped {max(shipped)} "
            "(goal <= 0.5 s, 0 bytes)"
        )
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
