"""The one run protocol over SSH, against a real sshd: the same launcher.sh as local (uploaded
by RunProtocol), started detached in the synced project, followed by byte offset, surviving
dropped connections, reattached by a new transport (an app restart), stopped with grace."""

# ruff: noqa: F811 - test functions take the imported `sshd` fixture by name

from __future__ import annotations

import re
import threading
from pathlib import Path

from app.remote_logfollow import (
    FollowStatus,
    afollow_remote_log,
    follow_remote_log,
    read_whole_log,
)
from app.sync import remote_project_dir, sync_project
from providers.runproto import LAUNCHER_SHA, RunProtocol, RunSpec, new_run_id
from tests.conftest import wait_until
from tests.sshd_server import SshdServer, sshd  # noqa: F401 (a fixture)

PYTHON = "python3"  # the host's own interpreter, as on a rented GPU box


def start_run(transport, project: Path, argv: list[str]) -> tuple[RunProtocol, RunSpec]:
    workdir = remote_project_dir(transport.home(), "proj")
    sync_project(transport, project, workdir)
    run_id = new_run_id()
    run_dir = f"{transport.home()}/.runctl/runs/{run_id}"
    spec = RunSpec(
        run_id,
        run_dir,
        workdir,
        f"{run_dir}/checkpoints",
        argv,
        meta={"project_root": workdir, "script": argv[1]},
    )
    protocol = RunProtocol(transport)
    protocol.start(spec)
    return protocol, spec


def test_remote_run_followed_stopped_with_grace_and_reattached(
    sshd: SshdServer, project: Path
) -> None:
    transport = sshd.transport()
    protocol, spec = start_run(
        transport,
        project,
        [PYTHON, "training/train.py", "--epochs", "50", "--step-delay", "0.02"],
    )
    # The launcher that runs is the same file as local, put there by RunProtocol.
    launcher = sshd.remote_home / ".runctl" / f"launcher-{LAUNCHER_SHA}.sh"
    assert launcher.read_bytes() == (Path("providers/launcher.sh")).read_bytes()
    assert protocol.status(spec.run_dir).kind == "running"
    # The script ran by its path relative to the project root, from that root.
    assert "'training/train.py'" in (Path(spec.run_dir) / "command").read_text()

    # Follow until a few steps are logged.
    stop = threading.Event()
    seen = bytearray()
    for chunk in follow_remote_log(transport, spec.log_path, stop=stop, batch_s=0.05):
        seen += chunk.data
        if seen.count(b"step") >= 3:
            break

    # The connection drops and the app closes: the run lives on, on the host.
    sshd.kill_connections()
    transport.close()
    reopened = sshd.transport()  # a restarted app: new transport, new protocol, same host
    again = RunProtocol(reopened)
    runs = again.list_runs(f"{reopened.home()}/.runctl/runs")
    assert runs[spec.run_id].kind == "running"
    assert again.running_in_project(f"{reopened.home()}/.runctl/runs", spec.workdir)[0][0] == (
        spec.run_id
    )
    whole = read_whole_log(reopened, spec.log_path)
    assert whole.startswith(bytes(seen))  # its whole log, from the first byte

    ticks: list[float] = []
    state, killed = again.stop(spec.run_dir, grace_s=10, on_tick=ticks.append)
    assert (state.kind, state.exit_code, killed) == ("exited", 0, False)
    log = read_whole_log(reopened, spec.log_path).decode()
    assert "Received SIGTERM: saved checkpoint" in log
    assert list(Path(spec.checkpoint_dir).glob("interrupted-*.ckpt.json"))


def test_stubborn_remote_run_is_killed_after_grace(sshd: SshdServer, project: Path) -> None:
    (project / "stubborn.py").write_text(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring TERM', flush=True)\ntime.sleep(120)\n"
    )
    transport = sshd.transport()
    protocol, spec = start_run(transport, project, [PYTHON, "stubborn.py"])
    wait_until(lambda: b"ignoring" in read_whole_log(transport, spec.log_path))
    state, killed = protocol.stop(spec.run_dir, grace_s=1.0)
    assert killed and state.kind == "exited" and state.exit_code == 137


def test_log_follow_across_killed_connections_loses_and_repeats_nothing(
    sshd: SshdServer, project: Path
) -> None:
    lines = 3000
    (project / "count.py").write_text(
        "import sys, time\n"
        f"for i in range({lines}):\n"
        "    print(f'line {i:05d} ' + 'x' * 40, flush=True)\n"
        "    time.sleep(0.002)\n"
    )
    transport = sshd.transport()
    protocol, spec = start_run(transport, project, [PYTHON, "count.py"])

    statuses: list[FollowStatus] = []
    stop = threading.Event()
    received = bytearray()

    def consume() -> None:
        for chunk in follow_remote_log(
            transport,
            spec.log_path,
            stop=stop,
            batch_s=0.05,
            idle_poll_s=0.05,
            on_status=statuses.append,
        ):
            assert chunk.offset == len(received) and not chunk.reset
            received.extend(chunk.data)

    follower = threading.Thread(target=consume, daemon=True)
    follower.start()
    masters = set()
    for cut in (500, 1000, 1500):  # drop the connection three times while lines pour in
        wait_until(lambda cut=cut: received.count(b"\n") >= cut, timeout=60)
        masters.add(transport.master_pid())
        assert sshd.kill_connections() >= 1
    # Then the host is unreachable for a while (sshd down), and comes back.
    wait_until(lambda: received.count(b"\n") >= 2000, timeout=60)
    sshd.stop()
    wait_until(lambda: any(not s.connected for s in statuses), timeout=30)
    assert "cannot connect" in statuses[-1].message
    sshd.start()
    wait_until(lambda: protocol.status(spec.run_dir).kind == "exited", timeout=60)
    wait_until(lambda: received.count(b"\n") >= lines, timeout=30)
    stop.set()
    follower.join(10)

    got = received.decode().splitlines()
    assert got == [f"line {i:05d} " + "x" * 40 for i in range(lines)]
    assert bytes(received) == read_whole_log(transport, spec.log_path)
    assert len(masters - {None}) == 3  # each cut really ended the connection in use
    assert statuses[-1].connected  # and the pane says it is back


def test_follow_sees_a_shrunk_file_and_starts_over(sshd: SshdServer) -> None:
    transport = sshd.transport()
    path = f"{transport.home()}/log.txt"
    transport.write_file(path, b"one\ntwo\nthree\n")
    stop = threading.Event()
    chunks = follow_remote_log(transport, path, stop=stop, batch_s=0.01, idle_poll_s=0.01)
    first = next(chunks)
    assert (first.data, first.offset) == (b"one\ntwo\nthree\n", 0)
    transport.write_file(path, b"new\n")
    reset = next(chunks)
    assert reset.reset and reset.offset == 0
    again = next(chunks)
    assert (again.data, again.offset) == (b"new\n", 0)
    stop.set()
    assert re.fullmatch(rb"new\n", read_whole_log(transport, path))


async def test_async_follow_for_the_dashboard(sshd: SshdServer) -> None:
    transport = sshd.transport()
    path = f"{transport.home()}/async.log"
    transport.write_file(path, b"epoch 1 loss 0.5\n")
    received = bytearray()
    async for chunk in afollow_remote_log(transport, path, batch_s=0.01, idle_poll_s=0.01):
        received += chunk.data
        if len(received) == len(b"epoch 1 loss 0.5\n"):
            transport.write_file(path, b"epoch 1 loss 0.5\nepoch 2 loss 0.4\n")
        if received.endswith(b"epoch 2 loss 0.4\n"):
            break
    assert bytes(received) == b"epoch 1 loss 0.5\nepoch 2 loss 0.4\n"
