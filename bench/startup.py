"""Figure: `runctl-tui` start to the first painted dashboard, median of 10, beside the floor
`python -c "import textual.app"`, both measured here in the same run.

The dashboard runs in tmux (a real terminal); "painted" = capture-pane shows the Instances
pane with the local machine in it. capture-pane is polled every 5 ms, which adds at most a
few ms to each sample.

The app's bytecode is compiled first, as `pip install` does for an installed package: with
PYTHONDONTWRITEBYTECODE set (some shells and CI images set it) an editable checkout would
otherwise compile every module on every start, which no user's start-up pays twice.
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

RUNS = 10
BIN = Path(sys.executable).parent / "runctl-tui"


def time_floor() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import textual.app"], check=True)
    return time.perf_counter() - start


def time_dashboard(home: str, project: str) -> float:
    sock = f"bench-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", sock]
    start = time.perf_counter()
    subprocess.run(
        [
            *tmux,
            "new-session",
            "-d",
            "-s",
            "b",
            "-x",
            "120",
            "-y",
            "36",
            "-c",
            project,
            "env",
            f"RUNCTL_HOME={home}",
            # The app's first AWS refresh (0.5 s in) must not ask the EC2 metadata address.
            "AWS_EC2_METADATA_DISABLED=true",
            str(BIN),
        ],
        check=True,
    )
    try:
        while True:
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", "b"], capture_output=True, text=True
            ).stdout
            if "this machine" in screen:
                return time.perf_counter() - start
            if time.perf_counter() - start > 30:
                raise RuntimeError(f"dashboard did not paint:\n{screen}")
            time.sleep(0.005)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def compile_bytecode() -> None:
    root = Path(__file__).resolve().parent.parent
    for package in ("app", "widgets", "providers"):
        compileall.compile_dir(root / package, quiet=1)


def main() -> None:
    compile_bytecode()
    with tempfile.TemporaryDirectory() as tmp:
        project = os.path.join(tmp, "proj")
        os.makedirs(os.path.join(project, ".git"))
        time_dashboard(os.path.join(tmp, "home"), project)  # warm the file cache once
        floor, dash = [], []
        for _ in range(RUNS):  # interleaved, so machine noise hits both alike
            floor.append(time_floor())
            dash.append(time_dashboard(os.path.join(tmp, "home"), project))
    f, d = statistics.median(floor), statistics.median(dash)
    print(f"floor  python -c 'import textual.app': median {f * 1000:.0f} ms (of {RUNS})")
    print(f"runctl-tui first painted dashboard:   median {d * 1000:.0f} ms (of {RUNS})")
    print(f"ratio: {d / f:.2f}x the floor (goal <= 2x)")


if __name__ == "__main__":
    main()
