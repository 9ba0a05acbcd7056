"""Figures: metadata of a 2 GB sparse torch checkpoint on an SSH host, read through the
transport by byte range (time, commands, bytes transferred), beside the same read on the local
file; a remote log's tail opened by the log index over `TransportByteSource`; and a 256 MB
download in blocks beside one `ssh cat` stream of the same file.

Against the test sshd (tests/sshd_server.py) on 127.0.0.1; run `.venv/bin/python
bench/remote_checkpoints.py`. "cold" = a new source and a new connection's first listing;
"warm" = median of repeated listings with a fresh metadata cache over the shared connection.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.checkpoints import list_checkpoints  # noqa: E402
from app.log_index import LogIndex  # noqa: E402
from app.remote_sources import (  # noqa: E402
    TransportByteSource,
    TransportCheckpointSource,
    download_checkpoint,
    list_remote_checkpoints,
)
from app.settings import CheckpointSettings  # noqa: E402
from tests.fixtures.checkpoints.torch_zip import write_sparse_checkpoint  # noqa: E402
from tests.sshd_server import make_sshd  # noqa: E402

SIZE = 2 * 2**30
RUNS = 20
DOWNLOAD_MB = 256
GLOBS = CheckpointSettings().globs


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-remote-ckpt-") as scratch:
        server = make_sshd(Path(scratch) / "sshd")
        try:
            directory = server.remote_home / "checkpoints"
            directory.mkdir()
            size = write_sparse_checkpoint(directory / "epoch-12.pt", SIZE)
            transport = server.transport()
            transport.check()  # the connection itself is not what is measured

            source = TransportCheckpointSource(transport)
            start = time.perf_counter()
            [info] = list_remote_checkpoints(source, str(directory), GLOBS, cache=None)
            cold = time.perf_counter() - start
            assert (info.epoch, info.step, info.status) == (12, 120_000, "ok"), info
            cold_stats = source.stats

            warm = []
            for _ in range(RUNS):
                again = TransportCheckpointSource(transport)
                start = time.perf_counter()
                list_remote_checkpoints(again, str(directory), GLOBS, cache=None)
                warm.append(time.perf_counter() - start)

            local = []
            for _ in range(RUNS):
                start = time.perf_counter()
                list_checkpoints(str(directory), GLOBS, cache=None)
                local.append(time.perf_counter() - start)

            start = time.perf_counter()
            for _ in range(RUNS):
                transport.run(["true"])
            round_trip = (time.perf_counter() - start) / RUNS

            print(f"checkpoint: {size / 2**30:.2f} GB torch zip (sparse) on the host")
            print(f"one command over the shared connection: {ms(round_trip)}")
            print(
                f"remote metadata, first listing: {ms(cold)}, {cold_stats.requests} commands, "
                f"{cold_stats.bytes_read:,} bytes transferred "
                f"({cold_stats.bytes_read / size * 100:.5f}% of the file)"
            )
            print(f"remote metadata, median of {RUNS}: {ms(statistics.median(warm))}")
            print(
                f"local metadata of the same file, median of {RUNS}: {ms(statistics.median(local))}"
            )

            log = server.remote_home / "output.log"
            with log.open("wb") as handle:
                for block in range(200):
                    handle.write(
                        b"".join(
                            b"epoch %d step %d loss: 0.%04d\n" % (block, i, i)
                            for i in range(block * 5000, block * 5000 + 5000)
                        )
                    )
            byte_source = TransportByteSource(transport, str(log))
            index = LogIndex(byte_source)
            start = time.perf_counter()
            index.open(400)
            lines = index.read_lines(index.line_count - 60, 60)
            opened = time.perf_counter() - start
            assert lines[-1].startswith("epoch 199"), lines[-1]
            print(
                f"remote log {log.stat().st_size / 2**20:.0f} MB: tail opened and 60 lines read "
                f"in {ms(opened)}, {byte_source.stats.requests} commands, "
                f"{byte_source.stats.bytes_read:,} bytes"
            )
            requests = byte_source.stats.requests
            start = time.perf_counter()
            for first in range(index.line_count - 400, index.line_count - 60, 30):
                index.read_lines(first, 60)
            print(
                f"scrolling 12 pages within the tail: {ms(time.perf_counter() - start)}, "
                f"{byte_source.stats.requests - requests} more commands"
            )

            blob = server.remote_home / "weights.bin"
            with blob.open("wb") as handle:
                for _ in range(DOWNLOAD_MB // 16):
                    handle.write(os.urandom(16 << 20))
            calls = []
            start = time.perf_counter()
            result = download_checkpoint(
                transport,
                str(blob),
                Path(scratch) / "downloads",
                on_progress=lambda done, total: calls.append(done),
            )
            seconds = time.perf_counter() - start
            start = time.perf_counter()
            subprocess.run(
                [*transport.ssh_args(), f"cat {blob}"],
                stdout=subprocess.DEVNULL,
                check=True,
            )
            streamed = time.perf_counter() - start
            print(
                f"download of {DOWNLOAD_MB} MB: {seconds:.2f} s "
                f"({result.bytes / 2**20 / seconds:.0f} MB/s, {len(calls)} progress calls); "
                f"one `ssh cat` of the same file to /dev/null: {streamed:.2f} s "
                f"({DOWNLOAD_MB / streamed:.0f} MB/s)"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
