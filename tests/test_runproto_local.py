"""The one run protocol with real processes on this machine: start, refuse a second, stop with
grace, SIGKILL after grace, reattach after the app restarts, exit codes, argv verbatim."""

from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path

import pytest

from app.oplog import OperationLog
from app.runs import AlreadyRunning, RunService
from app.settings import load_settings
from app.store import RunStore
from providers.local import LocalTransport
from providers.runproto import RunProtocol, RunSpec
from tests.conftest import PYTHON, wait_until

LAUNCHER = str(Path(__file__).resolve().parent.parent / "providers" / "launcher.sh")


def make_service(project: Path) -> RunService:
    settings = load_settings(project)
    store = RunStore(settings.store_path)
    return RunService(settings, store, OperationLog(settings.oplog_path), project)


def write_script(project: Path, relative: str, body: str) -> str:
    path = project / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return relative


def test_run_gets_its_environment_and_argv_verbatim(project: Path) -> None:
    script = write_script(
        project,
        "tools/show.py",
        """
        import json, os, sys
        keys = ["RUNCTL_RUN_ID", "RUNCTL_RUN_DIR", "RUNCTL_CHECKPOINT_DIR",
                "RUNCTL_PROJECT_ROOT", "PYTHONUNBUFFERED"]
        print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(),
                          "env": {k: os.environ.get(k) for k in keys},
                          "own_group": os.getpgid(0) == os.getpid()}))
        """,
    )
    service = make_service(project)
    local = service.local.list_instances()[0]
    nasty = ["; rm -rf ~", "$(touch pwned)", 'it\'s "quoted"', "a b", ""]
    run = service.launch(service.plan(script, nasty, local))
    wait_until(
        lambda: service.refresh(local) and service.store.get_run(run.id).status == "finished"
    )
    output = json.loads(Path(run.log_path).read_text())
    assert output["argv"] == ["tools/show.py", *nasty]
    assert output["cwd"] == str(project.resolve())
    assert output["own_group"] is True
    env = output["env"]
    assert env["RUNCTL_RUN_ID"] == run.id
    assert env["RUNCTL_RUN_DIR"] == run.run_dir
    assert env["RUNCTL_CHECKPOINT_DIR"] == run.checkpoint_dir
    assert env["RUNCTL_PROJECT_ROOT"] == str(project.resolve())
    assert env["PYTHONUNBUFFERED"] == "1"
    assert not (project / "pwned").exists()
    run_dir = Path(run.run_dir)
    for name in ("command", "pid", "output.log", "exit_code", "meta.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "exit_code").read_text().strip() == "0"
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["script"] == "tools/show.py" and meta["args"] == nasty
    assert "'; rm -rf ~'" in (run_dir / "command").read_text()


def test_script_in_subfolder_runs_by_relative_path(project: Path) -> None:
    service = make_service(project)
    local = service.local.list_instances()[0]
    plan = service.plan(str(project / "training" / "train.py"), ["--epochs", "1"], local)
    assert plan.script == "training/train.py"
    assert plan.spec.argv[1] == "training/train.py"


def test_second_training_in_same_project_is_refused_unless_forced(project: Path) -> None:
    script = write_script(project, "sleepy.py", "import time\ntime.sleep(60)\n")
    service = make_service(project)
    local = service.local.list_instances()[0]
    first = service.launch(service.plan(script, [], local))
    with pytest.raises(AlreadyRunning) as refused:
        service.launch(service.plan(script, [], local))
    assert first.id in str(refused.value)
    second = service.launch(service.plan(script, [], local), force=True)
    assert second.status == "running"
    for run in (first, second):
        stopped = service.stop(run, grace_s=5)
        assert stopped.status == "stopped"


def test_stop_with_grace_lets_the_script_save_and_records_exit_code(project: Path) -> None:
    service = make_service(project)
    local = service.local.list_instances()[0]
    run = service.launch(
        service.plan("training/train.py", ["--step-delay", "0.05", "--epochs", "50"], local)
    )
    wait_until(lambda: "step" in Path(run.log_path).read_text())
    ticks: list[float] = []
    stopped = service.stop(run, on_tick=ticks.append, grace_s=10)
    assert stopped.status == "stopped"
    assert stopped.exit_code == 0  # the example saves and exits cleanly on SIGTERM
    assert ticks and ticks[0] <= 10
    log = Path(run.log_path).read_text()
    assert "Received SIGTERM: saved checkpoint" in log
    assert list(Path(run.checkpoint_dir).glob("interrupted-*.ckpt.json"))


def test_sigkill_after_grace_when_sigterm_is_ignored(project: Path) -> None:
    script = write_script(
        project,
        "stubborn.py",
        """
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c",
            "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
        print("child", child.pid, flush=True)
        time.sleep(120)
        """,
    )
    service = make_service(project)
    local = service.local.list_instances()[0]
    run = service.launch(service.plan(script, [], local))
    text = wait_until(
        lambda: "child" in Path(run.log_path).read_text() and Path(run.log_path).read_text()
    )
    child_pid = int(text.split()[1])
    stopped = service.stop(run, grace_s=1.0)
    assert stopped.status == "stopped"
    assert stopped.exit_code == 128 + signal.SIGKILL
    # SIGKILL went to the whole group: the grandchild is gone too.
    wait_until(lambda: not _alive(child_pid), timeout=5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_reattach_after_restart_and_runs_that_ended_while_closed(project: Path) -> None:
    script = write_script(
        project,
        "quick.py",
        "import sys, time\ntime.sleep(float(sys.argv[1]))\nsys.exit(int(sys.argv[2]))\n",
    )
    service = make_service(project)
    local = service.local.list_instances()[0]
    long_run = service.launch(service.plan(script, ["60", "0"], local), force=True)
    fails = service.launch(service.plan(script, ["0.2", "3"], local), force=True)
    ok = service.launch(service.plan(script, ["0.2", "0"], local), force=True)
    service.store.close()  # "the TUI is closed"
    wait_until(
        lambda: (
            (Path(fails.run_dir) / "exit_code").exists()
            and (Path(ok.run_dir) / "exit_code").exists()
        )
    )

    reopened = make_service(project)
    runs = {r.id: r for r in reopened.refresh(local)}
    assert runs[long_run.id].status == "running"
    assert runs[fails.id].status == "failed" and runs[fails.id].exit_code == 3
    assert runs[ok.id].status == "finished" and runs[ok.id].exit_code == 0
    assert reopened.stop(runs[long_run.id], grace_s=5).status == "stopped"


def test_store_moved_aside_runs_are_adopted_from_the_host(project: Path) -> None:
    script = write_script(project, "quick.py", "print('hi')\n")
    service = make_service(project)
    local = service.local.list_instances()[0]
    run = service.launch(service.plan(script, [], local))
    service.store.close()
    store_path = service.settings.store_path
    store_path.rename(store_path.with_suffix(".old"))
    for suffix in ("-wal", "-shm"):
        Path(str(store_path) + suffix).unlink(missing_ok=True)
    fresh = make_service(project)
    wait_until(lambda: any(r.id == run.id and r.status == "finished" for r in fresh.refresh(local)))


def test_killed_supervisor_leaves_a_lost_run(project: Path, tmp_path: Path) -> None:
    protocol = RunProtocol(LocalTransport(), LAUNCHER)
    run_dir = tmp_path / "runs" / "r1"
    spec = RunSpec(
        "r1",
        str(run_dir),
        str(project),
        str(run_dir / "ck"),
        [PYTHON, "-c", "import time; time.sleep(60)"],
    )
    pgid = protocol.start(spec)
    assert protocol.status(str(run_dir)).kind == "running"
    supervisor = int((run_dir / "launcher_pid").read_text())
    os.kill(supervisor, signal.SIGKILL)
    os.killpg(pgid, signal.SIGKILL)
    state = wait_until(lambda: (s := protocol.status(str(run_dir))).kind == "lost" and s)
    assert state.exit_code is None
