"""Runs as a service: plan, pre-flight, launch, refresh, stop — for any instance, headless.

The dashboard calls this from thread workers; `runctl-tui runs` and the tests call it
directly. Hosts hold the truth (the run protocol); the store mirrors it.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import shlex
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.oplog import OperationLog
from app.project import script_relative_path
from app.settings import Settings, python_for_local_runs
from app.store import ACTIVE_STATUSES, Run, RunStore
from providers.base import Instance, ProviderError, Transport, TransportError
from providers.local import LOCAL_PROVIDER, LocalProvider
from providers.runproto import RunProtocol, RunSpec, RunState, new_run_id

# providers.hosts.SSH_PROVIDER and providers.aws.AWS_PROVIDER, spelled here so importing this
# module (at start-up) loads neither the SSH transport nor the AWS code.
SSH_PROVIDER = "ssh"
AWS_PROVIDER = "aws"
LOCAL_LAUNCHER = str(Path(__file__).resolve().parent.parent / "providers" / "launcher.sh")
EARLY_FAILURE_S = 5.0


class LaunchRefused(ProviderError):
    """Launching would break a rule (e.g. one training per project per host)."""


class AlreadyRunning(LaunchRefused):
    def __init__(self, runs: Sequence[tuple[str, dict]], host: str) -> None:
        run_id, meta = runs[0]
        script = meta.get("script", "?")
        super().__init__(
            f"Training {run_id} ({script}) is already running in this project on {host}. "
            "Stop it first, or confirm 'start anyway' to run both."
        )
        self.run_ids = [r for r, _ in runs]


@dataclass(slots=True)
class LaunchPlan:
    """What a launch would do, shown by the dry-run before anything starts."""

    instance: Instance
    script: str
    args: list[str]
    spec: RunSpec
    parent_run_id: str | None = None
    parent_checkpoint: str | None = None

    def describe(self) -> str:
        env = "\n".join(f"  {k}={v}" for k, v in self.spec.environment().items())
        return (
            f"host:     {self.instance.provider} {self.instance.id}\n"
            f"workdir:  {self.spec.workdir}\n"
            f"argv:     {' '.join(_quote(a) for a in self.spec.argv)}\n"
            f"run dir:  {self.spec.run_dir}\n"
            f"log:      {self.spec.log_path}\n"
            f"environment:\n{env}"
        )


def _quote(word: str) -> str:
    return shlex.quote(word)


class RunService:
    def __init__(
        self,
        settings: Settings,
        store: RunStore,
        oplog: OperationLog,
        project_root: Path,
    ) -> None:
        self.settings = settings
        self.store = store
        self.oplog = oplog
        self.project_root = project_root.resolve()
        self.local = LocalProvider()
        self._local_protocol = RunProtocol(self.local.transport_for(None), LOCAL_LAUNCHER)  # type: ignore[arg-type]
        self._hosts = None
        self._aws = None
        self._remote_protocols: dict[str, RunProtocol] = {}  # "provider:id" -> protocol
        self._remote_dirs: dict[str, str] = {}  # "provider:id" -> the project dir there
        self._ec2_instances: dict[str, Instance] = {}  # id -> the row its transport was chosen for
        self._lock = threading.RLock()

    # -- where things live -------------------------------------------------------------------------
    @property
    def hosts(self):
        """The `[[hosts]]` provider, made on first use (it imports the SSH transport)."""
        if self._hosts is None:
            from app.sync_report import hosts_provider

            self._hosts = hosts_provider(self.settings)
        return self._hosts

    @property
    def aws(self):
        """The EC2 provider, made on first use (it imports boto3). The dashboard hands in the
        one its Instances pane uses, so both share one set of clients."""
        with self._lock:
            if self._aws is None:
                from app.aws_session import aws_provider

                self.aws = aws_provider(self.settings)
            return self._aws

    @aws.setter
    def aws(self, provider) -> None:
        self._aws = provider
        if provider is not None and provider.transport_factory is None:
            provider.transport_factory = self.transport_for

    def transport_for(self, instance: Instance) -> Transport:
        """How to talk to a machine: the local one, a `[[hosts]]` host over SSH, or an EC2
        instance over SSH or SSM (chosen by app.ec2_transport)."""
        return self.protocol_for(instance).transport

    def protocol_for(self, instance: Instance) -> RunProtocol:
        if instance.provider == LOCAL_PROVIDER:
            return self._local_protocol
        key = f"{instance.provider}:{instance.id}"
        with self._lock:
            protocol = self._remote_protocols.get(key)
            if protocol is None or self._moved(instance):
                if protocol is not None:
                    protocol.transport.close()
                    self._remote_dirs.pop(key, None)
                protocol = RunProtocol(self._remote_transport(instance))
                self._remote_protocols[key] = protocol
            return protocol

    def _remote_transport(self, instance: Instance) -> Transport:
        if instance.provider == SSH_PROVIDER:
            return self.hosts.transport(instance.id)
        if instance.provider == AWS_PROVIDER and instance.id.startswith("i-"):
            return self._ec2_transport(instance)
        raise ProviderError(f"runs on {instance.provider} instances are not available yet")

    def _ec2_transport(self, instance: Instance) -> Transport:
        from app.ec2_transport import SSM, choose_route, route_transport, ssh_config_entry
        from app.sync_report import known_hosts_path, ssh_config_file

        aws = self.settings.aws
        region = instance.region or self.aws.regions[0]
        record = self.aws.raw_instance(instance.id, region)
        config_file = ssh_config_file(self.settings)
        entry = False
        if aws.transport != SSM:
            try:
                entry = ssh_config_entry(instance.id, config_file)
            except TransportError:
                entry = False  # no usable ssh here: the rule falls through to the address
        route = choose_route(record, region, aws, entry)
        self.oplog.record("transport", f"aws:{instance.id}", "ok", route.describe())
        self._ec2_instances[instance.id] = dataclasses.replace(instance)  # as it was now
        return route_transport(
            route,
            aws,
            clients=self.aws.clients,
            known_hosts=known_hosts_path(self.settings.state_dir),
            config_file=config_file,
        )

    def _moved(self, instance: Instance) -> bool:
        """An EC2 instance gets a new public address when it is stopped and started."""
        if instance.provider != AWS_PROVIDER:
            return False
        seen = self._ec2_instances.get(instance.id)
        return seen is not None and instance.address != seen.address

    def reachable(self, instance: Instance) -> bool:
        """Whether asking the machine now makes sense (else its runs come from the store): a
        host that failed its last check, or an EC2 instance that is not running, is not asked."""
        if instance.provider == AWS_PROVIDER:
            return instance.id.startswith("i-") and instance.state == "running"
        return instance.reachable is not False

    def host_sync(self, instance: Instance):
        """Sync target of a host: its transport and the project's directory there."""
        from app.sync_report import transport_sync

        remote_root = None
        if instance.provider == SSH_PROVIDER:
            remote_root = self.hosts.record(instance.id).remote_root
        target = transport_sync(
            self.settings, self.project_root, self.transport_for(instance), instance.id, remote_root
        )
        self._remote_dirs[f"{instance.provider}:{instance.id}"] = target.remote_dir
        return target

    def close(self) -> None:
        """End the shared connections to remote machines (they reopen when used again)."""
        with self._lock:
            for protocol in self._remote_protocols.values():
                protocol.transport.close()

    def runs_root_for(self, instance: Instance) -> str:
        if instance.provider == LOCAL_PROVIDER:
            return str(self.settings.runs_root)
        return f"{self.protocol_for(instance).transport.home()}/.runctl/runs"

    def workdir_for(self, instance: Instance) -> str:
        if instance.provider == LOCAL_PROVIDER:
            return str(self.project_root)
        key = f"{instance.provider}:{instance.id}"
        if key not in self._remote_dirs:
            self.host_sync(instance)
        return self._remote_dirs[key]

    def python_for(self, instance: Instance) -> str:
        if instance.provider == LOCAL_PROVIDER:
            return python_for_local_runs(self.settings)
        # The project's venv on the host, made by the dependency step, when it exists.
        from app.deps import venv_python

        venv = venv_python(self.workdir_for(instance))
        if self.protocol_for(instance).transport.file_size(venv) is not None:
            return venv
        return "python3"

    # -- before a launch ---------------------------------------------------------------------------
    def preflight(self, script: str, instance: Instance) -> list[str]:
        """Problems that would make the run fail at once; [] when it may start."""
        problems: list[str] = []
        try:
            relative = script_relative_path(self.project_root, script)
        except ValueError as err:
            return [str(err)]
        path = self.project_root / relative
        if not relative or relative == ".":
            return ["no script given: pick a script relative to the project root"]
        if not path.is_file():
            return [f"script {relative} does not exist under {self.project_root}"]
        if path.suffix == ".py":
            # compile() checks the syntax like py_compile without writing any bytecode file.
            try:
                compile(path.read_bytes(), str(relative), "exec", dont_inherit=True)
            except SyntaxError as err:
                problems.append(f"{relative} does not compile: {err.msg} (line {err.lineno})")
            except (ValueError, OSError) as err:
                problems.append(f"{relative} cannot be read as Python: {err}")
        if instance.provider == LOCAL_PROVIDER:
            python = self.python_for(instance)
            if not (
                shutil.which(python) or (os.path.isfile(python) and os.access(python, os.X_OK))
            ):
                problems.append(
                    f"interpreter {python!r} not found; set train.python in runctl.toml"
                )
        return problems

    def plan(
        self,
        script: str,
        args: Sequence[str],
        instance: Instance,
        parent_run_id: str | None = None,
        parent_checkpoint: str | None = None,
        now: float | None = None,
        run_id: str | None = None,
    ) -> LaunchPlan:
        """`run_id` is for dry runs, which show a placeholder: the real id is made at start."""
        relative = script_relative_path(self.project_root, script)
        run_id = run_id or new_run_id(now)
        run_dir = f"{self.runs_root_for(instance)}/{run_id}"
        started = time.time() if now is None else now
        argv = [self.python_for(instance), relative, *args]
        if not relative.endswith(".py"):
            argv = [f"./{relative}", *args]
        spec = RunSpec(
            run_id=run_id,
            run_dir=run_dir,
            workdir=self.workdir_for(instance),
            checkpoint_dir=f"{run_dir}/{self.settings.train.checkpoint_subdir}",
            argv=argv,
            meta={
                "run_id": run_id,
                "script": relative,
                "args": list(args),
                "started_at": started,
                "host": instance.id,
                "provider": instance.provider,
                "project_root": self.workdir_for(instance),
                "git_commit": git_commit(self.project_root),
                "user": _user(),
                "parent_run_id": parent_run_id,
                "parent_checkpoint": parent_checkpoint,
            },
        )
        return LaunchPlan(instance, relative, list(args), spec, parent_run_id, parent_checkpoint)

    def running_in_project(self, instance: Instance) -> list[tuple[str, dict]]:
        protocol = self.protocol_for(instance)
        return protocol.running_in_project(self.runs_root_for(instance), self.workdir_for(instance))

    # -- launch / refresh / stop -------------------------------------------------------------------
    def launch(self, plan: LaunchPlan, force: bool = False) -> Run:
        instance, spec = plan.instance, plan.spec
        with self.oplog.operation(
            "launch", f"{instance.provider}:{instance.id}", argv=spec.argv, run_dir=spec.run_dir
        ) as op:
            if not force:
                running = self.running_in_project(instance)
                if running:
                    raise AlreadyRunning(running, instance.id)
            run = Run(
                id=spec.run_id,
                host=instance.id,
                provider=instance.provider,
                instance_id=instance.id,
                project_root=spec.workdir,
                script=plan.script,
                args=list(plan.args),
                started_at=float(spec.meta["started_at"]),
                status="starting",
                run_dir=spec.run_dir,
                checkpoint_dir=spec.checkpoint_dir,
                parent_run_id=plan.parent_run_id,
                parent_checkpoint=plan.parent_checkpoint,
            )
            self.store.add_run(run)
            try:
                pgid = self.protocol_for(instance).start(spec)
            except ProviderError as err:
                self.store.update_run(run.id, status="failed", ended_at=time.time(), error=str(err))
                raise
            self.store.update_run(run.id, status="running")
            run.status = "running"
            op.message = f"run {run.id} started (process group {pgid})"
            return run

    def refresh(self, instance: Instance) -> list[Run]:
        """Bring the store in line with the host: ended runs get their final status and exit
        code (also those that ended while the TUI was closed); run dirs the store does not know
        (a store moved aside) are adopted from their meta.json."""
        protocol = self.protocol_for(instance)
        states = protocol.list_runs(self.runs_root_for(instance))
        known = {r.id: r for r in self.store.runs(instance.provider, instance.id, limit=100_000)}
        for run_id, state in states.items():
            run = known.get(run_id)
            if run is None:
                self._adopt(instance, protocol, run_id, state)
            elif run.status in ACTIVE_STATUSES:
                if instance.provider == LOCAL_PROVIDER:
                    self._record_local_progress(run)
                self._apply_state(run, state)
        for run in known.values():
            if run.status in ACTIVE_STATUSES and run.id not in states:
                self.store.update_run(
                    run.id, status="lost", ended_at=time.time(), error="run directory is gone"
                )
        return self.store.runs(instance.provider, instance.id)

    def _record_local_progress(self, run: Run) -> None:
        """Latest epoch/loss (from the log's tail) and newest checkpoint time of a live run,
        so the Runs pane and `runctl-tui runs` show them for runs nobody is watching."""
        from app.run_metrics import latest_progress

        changes: dict[str, float | int | None] = dict(latest_progress(run.log_path))
        newest = newest_mtime(run.checkpoint_dir)
        if newest is not None:
            changes["last_checkpoint_at"] = newest
        self.record_progress(run.id, **changes)

    def _apply_state(self, run: Run, state: RunState) -> None:
        if state.alive:
            if run.status == "starting":
                self.store.update_run(run.id, status="running")
            return
        if state.kind == "exited":
            if run.stop_requested_at is not None:
                status = "stopped"
            else:
                status = "finished" if state.exit_code == 0 else "failed"
            ended = self._ended_at(run)
            self.store.update_run(run.id, status=status, exit_code=state.exit_code, ended_at=ended)
            self.oplog.record(
                "run-ended",
                f"{run.provider}:{run.host}",
                "ok" if status != "failed" else "error",
                f"run {run.id} {status} (exit code {state.exit_code})",
            )
        else:
            self.store.update_run(
                run.id,
                status="lost",
                ended_at=time.time(),
                error="the run's processes are gone and no exit code was written "
                "(host rebooted or the launcher was killed)",
            )

    def _ended_at(self, run: Run) -> float:
        if run.provider == LOCAL_PROVIDER:
            try:
                return os.stat(f"{run.run_dir}/exit_code").st_mtime
            except OSError:
                pass
        return time.time()

    def _adopt(self, instance: Instance, protocol: RunProtocol, run_id: str, state) -> None:
        run_dir = f"{self.runs_root_for(instance)}/{run_id}"
        meta = protocol.read_meta(run_dir)
        if not meta:
            return
        run = Run(
            id=run_id,
            host=instance.id,
            provider=instance.provider,
            instance_id=instance.id,
            project_root=str(meta.get("project_root", "")),
            script=str(meta.get("script", "?")),
            args=[str(a) for a in meta.get("args", [])],
            started_at=float(meta.get("started_at", 0.0)),
            status="running",
            run_dir=run_dir,
            checkpoint_dir=f"{run_dir}/{self.settings.train.checkpoint_subdir}",
            parent_run_id=meta.get("parent_run_id"),
            parent_checkpoint=meta.get("parent_checkpoint"),
        )
        self.store.add_run(run)
        self._apply_state(run, state)

    def stop(
        self, run: Run, on_tick: Callable[[float], None] | None = None, grace_s: float | None = None
    ) -> Run:
        instance = self.instance_of(run)
        grace = self.settings.train.stop_grace_s if grace_s is None else grace_s
        with self.oplog.operation(
            "stop", f"{run.provider}:{run.host}", run_id=run.id, grace_s=grace
        ) as op:
            self.store.update_run(run.id, status="stopping", stop_requested_at=time.time())
            state, killed = self.protocol_for(instance).stop(run.run_dir, grace, on_tick=on_tick)
            if state.kind == "exited":
                self.store.update_run(
                    run.id,
                    status="stopped",
                    exit_code=state.exit_code,
                    ended_at=self._ended_at(run),
                )
            elif not state.alive:
                self.store.update_run(run.id, status="lost", ended_at=time.time())
            op.message = (
                f"run {run.id} stopped"
                + (" with SIGKILL after the grace period" if killed else "")
                + f" (exit code {state.exit_code})"
            )
        stopped = self.store.get_run(run.id)
        assert stopped is not None
        return stopped

    def instance_of(self, run: Run) -> Instance:
        if run.provider == LOCAL_PROVIDER:
            return self.local.list_instances()[0]
        if run.provider == SSH_PROVIDER:
            return next(i for i in self.hosts.list_instances(check=False) if i.id == run.host)
        if run.provider == AWS_PROVIDER:
            return self._ec2_instances.get(run.host) or self._find_ec2(run.host)
        raise ProviderError(f"runs on {run.provider} instances are not available yet")

    def _find_ec2(self, instance_id: str) -> Instance:
        """The instance of a run started before this session, looked up in each region."""
        for region in self.aws.regions:
            try:
                record = self.aws.raw_instance(instance_id, region)
            except ProviderError:
                continue
            return Instance(
                provider=AWS_PROVIDER,
                id=instance_id,
                state=record.get("State", {}).get("Name", "unknown"),
                region=region,
                address=record.get("PublicIpAddress") or record.get("PrivateIpAddress"),
            )
        raise ProviderError(
            f"{instance_id} is not found in {', '.join(self.aws.regions)}: it was terminated, "
            "or its region is not in aws.regions"
        )

    def record_progress(self, run_id: str, **values: float | int | None) -> None:
        changes = {k: v for k, v in values.items() if v is not None}
        if changes:
            self.store.update_run(run_id, **changes)


def git_commit(project_root: Path) -> str | None:
    if not (project_root / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(project_root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def newest_mtime(directory: str) -> float | None:
    """Modification time of the newest entry of a local directory (None if empty/missing)."""
    newest = None
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue  # temp files of a checkpoint being written
                mtime = entry.stat().st_mtime
                newest = mtime if newest is None else max(newest, mtime)
    except OSError:
        return None
    return newest


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def tail_lines(path: str, count: int = 10, max_bytes: int = 64 * 1024) -> list[str]:
    """The last `count` lines of a (local) file without reading all of it."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            raw = handle.read()
    except OSError:
        return []
    lines = raw.decode("utf-8", "replace").replace("\r", "\n").splitlines()
    return [line for line in lines if line.strip()][-count:]


def hostname() -> str:
    return socket.gethostname()
