"""Figure: first sync of a 10,000-file / 200 MB project, runctl's sync vs `rsync -a`, side by
side over the same loopback sshd, each to a fresh directory; median of 3 runs each.

Goal (issue 5): runctl within 1.5x of rsync.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from sync_fixture import make_project, start_sshd

from app.sync import sync_project

RUNS = 3


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    server = start_sshd(tmp)
    try:
        project = tmp / "proj"
        size = make_project(project)
        rsync_ssh = f"ssh -F {server.ssh_config} -o BatchMode=yes"
        ours, theirs, sent = [], [], []
        for run in range(RUNS):
            dest = server.remote_home / f"rsync{run}"
            os.sync()  # flush earlier writes so neither side pays for the other's write-back
            start = time.perf_counter()
            subprocess.run(
                ["rsync", "-a", "-e", rsync_ssh, f"{project}/", f"{server.alias}:{dest}/"],
                check=True,
            )
            theirs.append(time.perf_counter() - start)
            shutil.rmtree(dest)

            transport = server.transport()
            remote_dir = f"{server.remote_home}/ours{run}"
            os.sync()
            start = time.perf_counter()
            result = sync_project(transport, project, remote_dir)  # a cold connection, no cache
            ours.append(time.perf_counter() - start)
            sent.append(result.bytes_sent)
            assert len(result.plan.upload) == 10_001, len(result.plan.upload)
            transport.close()
            shutil.rmtree(remote_dir)
        mine, rsync = statistics.median(ours), statistics.median(theirs)
        print(f"project: 10,001 files, {size / 1e6:.0f} MB")
        print(f"rsync -a:     median {rsync:.2f} s  runs {[round(t, 2) for t in theirs]}")
        print(f"runctl sync:  median {mine:.2f} s  runs {[round(t, 2) for t in ours]}")
        print(f"runctl sent:  {statistics.median(sent) / 1e6:.1f} MB (gzip level 1)")
        print(f"ratio runctl/rsync: {mine / rsync:.2f}x (goal <= 1.5x)")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
