"""Figure: one changed file in a 10,000-file project, re-synced over the loopback sshd: which
files went, and the bytes on the wire against the file's size. Median of 5 edits.

Goal (issue 5): only that file shipped; bytes <= 2x its size plus the manifest change.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from sync_fixture import make_project, start_sshd

from app.sync import MANIFEST, sync_project

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
        sync_project(transport, project, remote_dir, cache_path=cache)
        manifest_size = os.path.getsize(f"{remote_dir}/{MANIFEST}")
        target = project / "pkg42" / "sub0" / "file00042.py"
        times, sent = [], []
        whole_manifest = Path(remote_dir, MANIFEST).read_bytes()
        for i in range(RUNS):
            target.write_bytes(os.urandom(16 * 1024) + f"# edit {i}\n".encode())
            start = time.perf_counter()
            result = sync_project(transport, project, remote_dir, cache_path=cache)
            times.append(time.perf_counter() - start)
            assert [e.path for e in result.plan.upload] == ["pkg42/sub0/file00042.py"]
            sent.append(result.bytes_sent)
        size = target.stat().st_size
        lines = Path(remote_dir, MANIFEST).read_bytes().splitlines()
        assert len(lines) == len(whole_manifest.splitlines()), "the manifest lost or gained rows"
        print(f"project: {len(result.plan.tree.files):,} files; changed file: {size:,} bytes")
        print(f"shipped: {[e.path for e in result.plan.upload]}")
        print(
            f"bytes on the wire: median {statistics.median(sent):,.0f} "
            f"= {statistics.median(sent) / size:.2f}x the file "
            f"(file + tar headers + control lists + its manifest row; the host's whole "
            f"manifest, {manifest_size:,} bytes, is not resent)"
        )
        print(f"time: median {statistics.median(times):.3f} s")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
