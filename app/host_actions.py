"""The dashboard's actions on remote machines (`[[hosts]]` and EC2 instances): sync the project (dry run first, then with
files / bytes / rate shown and cancellable), install its dependencies with pip's or uv's output
streaming into the log pane, prepare a host before a run, and the trust-on-first-use question
for an unknown host key.

A mixin of `RunctlApp` (app/tui.py): the blocking parts run in thread workers and report back
through `call_from_thread`; the SSH, sync and dependency code itself lives in providers/ssh.py,
app/sync.py and app/deps.py and knows nothing of the UI.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual import work
from textual.worker import get_current_worker

from providers.base import Instance, ProviderError
from widgets.confirm_modal import ConfirmModal
from widgets.formatting import size

if TYPE_CHECKING:
    from app.tui import RunctlApp

SSH = "ssh"
AWS = "aws"
HOST_WORK_GROUPS = ("sync", "deps", "launch", "s3-copy")


class HostActions:
    """Sync / dependencies / host keys for the selected SSH host or EC2 instance (mixed into
    RunctlApp); the service picks the transport (SSH, or SSM for EC2)."""

    # -- which host ------------------------------------------------------------------------------
    def _selected_host(self: RunctlApp) -> Instance | None:
        instance = self.selected_instance
        if instance is None or not is_remote_machine(instance):
            self.notify(
                "Select an SSH host (listed as [[hosts]] in runctl.toml) or an EC2 instance "
                "in Instances first.",
                severity="warning",
            )
            return None
        return instance

    def _show_activity(self: RunctlApp, text: str | None) -> None:
        """Long host work shows its progress in the header's subtitle."""
        self.sub_title = text if text else self._base_sub_title

    def action_cancel_host_work(self: RunctlApp) -> None:
        cancelled = 0
        for worker in self.workers:
            if worker.group in HOST_WORK_GROUPS and worker.is_running:
                worker.cancel()
                cancelled += 1
        self.notify("Cancelling…" if cancelled else "Nothing to cancel.")

    def _host_failed(self: RunctlApp, instance: Instance, what: str, err: Exception) -> None:
        """An error from a host: an unknown key becomes the trust question, anything else a
        notification that says what failed."""
        from providers.ssh import UnknownHostKey

        if isinstance(err, UnknownHostKey):
            self.call_from_thread(self.ask_trust, err)
            return
        self.call_from_thread(
            self.notify, str(err), title=f"{what} on {instance.id} failed", severity="error"
        )

    # -- host keys: trust on first use ---------------------------------------------------------
    def ask_trust(self: RunctlApp, err: Any, then: Callable[[], None] | None = None) -> None:
        if err.host in self._asked_trust:
            return  # one question per host at a time
        self._asked_trust.add(err.host)
        body = (
            f"{err.host} presents a {err.key_type or 'host'} key with the fingerprint\n\n"
            f"    {err.fingerprint}\n\n"
            "that no known_hosts file has. Compare it with the one the machine's owner sees "
            "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the machine). Trusting "
            "remembers it in runctl's known_hosts; a different key later is refused."
        )

        def answered(yes: bool | None) -> None:
            self._asked_trust.discard(err.host)
            if yes:
                self.trust_host_key(err, then)

        self.push_screen(
            ConfirmModal(f"Unknown host key: {err.host}", body, confirm_label="Trust"), answered
        )

    @work(thread=True, group="trust", exit_on_error=False, description="Trusting a host key")
    def trust_host_key(self: RunctlApp, err: Any, then: Callable[[], None] | None) -> None:
        path = self.service.hosts.trust(err)
        self.oplog.record("trust-host-key", f"ssh:{err.host}", "ok", f"{err.fingerprint} -> {path}")
        self.call_from_thread(self.notify, f"Trusted {err.host} ({err.fingerprint}).")
        self.call_from_thread(self.refresh_instances)
        if then is not None:
            self.call_from_thread(then)

    # -- sync --------------------------------------------------------------------------------------
    def action_sync_code(self: RunctlApp) -> None:
        instance = self._selected_host()
        if instance is not None:
            self.preview_sync(instance)

    @work(thread=True, exclusive=True, group="sync", exit_on_error=False, description="Sync")
    def preview_sync(self: RunctlApp, instance: Instance) -> None:
        """A dry run first: what would be sent and deleted, then a confirmation."""
        from app.sync import describe_plan

        try:
            target = self.service.host_sync(instance)
            preview = target.run(dry_run=True)
        except ProviderError as err:
            self._host_failed(instance, "Sync", err)
            return
        plan = preview.plan
        if not plan.upload and not plan.delete:
            self.call_from_thread(
                self.notify,
                f"{target.remote_dir} on {instance.id} is up to date "
                f"({len(plan.tree.files)} files).",
                title="Nothing to sync",
            )
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.sync_host(instance)

        self.call_from_thread(
            self.push_screen,
            ConfirmModal(
                f"Sync this project to {instance.id}?",
                "\n".join(describe_plan(plan, limit=40)),
                confirm_label="Sync",
            ),
            answered,
        )

    @work(thread=True, exclusive=True, group="sync", exit_on_error=False, description="Sync")
    def sync_host(self: RunctlApp, instance: Instance) -> None:
        worker = get_current_worker()
        try:
            self.sync_project_to(instance, lambda: worker.is_cancelled)
        except ProviderError as err:
            self._host_failed(instance, "Sync", err)

    def sync_project_to(self: RunctlApp, instance: Instance, cancelled: Callable[[], bool]):
        """Sync in the calling (worker) thread, progress in the subtitle; returns the target."""
        target = self.service.host_sync(instance)

        def progress(p: Any) -> None:
            self.call_from_thread(
                self._show_activity,
                f"sync → {instance.id}: {p.files_done}/{p.files_total} files, "
                f"{size(p.bytes_done)}/{size(p.bytes_total)}, {size(int(p.rate_bps))}/s "
                "(x cancels)",
            )

        with self.oplog.operation("sync", _target(instance), remote_dir=target.remote_dir) as op:
            try:
                result = target.run(on_progress=progress, cancel=cancelled)
            finally:
                self.call_from_thread(self._show_activity, None)
            op.message = (
                f"{len(result.plan.upload)} sent ({size(result.bytes_sent)} on the wire), "
                f"{len(result.plan.delete)} deleted in {result.seconds:.1f} s"
            )
        self.call_from_thread(self.notify, op.message, title=f"Synced to {instance.id}")
        return target

    # -- dependencies ------------------------------------------------------------------------------
    def action_install_deps(self: RunctlApp) -> None:
        instance = self._selected_host()
        if instance is not None:
            self.install_deps_on(instance, self._launch_script())

    def _launch_script(self: RunctlApp) -> str:
        remembered = self.store.launch_defaults(str(self.project_root))
        return remembered.get("script") or self.settings.train.default_script

    @work(thread=True, exclusive=True, group="deps", exit_on_error=False, description="Deps")
    def install_deps_on(self: RunctlApp, instance: Instance, script: str) -> None:
        worker = get_current_worker()
        try:
            # The dependency files must be on the host first: a sync that finds nothing
            # changed costs one manifest read.
            target = self.sync_project_to(instance, lambda: worker.is_cancelled)
            self.install_deps_in_thread(instance, script, lambda: worker.is_cancelled, target)
        except ProviderError as err:
            self._host_failed(instance, "Installing dependencies", err)

    def install_deps_in_thread(
        self: RunctlApp,
        instance: Instance,
        script: str,
        cancelled: Callable[[], bool],
        target: Any = None,
    ):
        """Install in the calling (worker) thread; pip's or uv's output goes to a local file
        the log pane follows, the step to the subtitle. `target`: the host's HostSync when a
        sync just resolved it. Returns the DepsResult."""
        from app.deps import DepsInstallError, install_deps, plan_deps

        target = target or self.service.host_sync(instance)
        plan = plan_deps(self.project_root, script)
        log_path = self.settings.state_dir / "ops" / f"deps-{instance.id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(f"== dependencies for {script} on {instance.id} ({plan.describe()})\n")
        self.call_from_thread(self.show_operation_log, log_path, f"Dependencies — {instance.id}")
        lock = threading.Lock()
        with open(log_path, "a", encoding="utf-8") as out:

            def on_output(line: str) -> None:
                with lock:
                    out.write(line + "\n")
                    out.flush()

            def on_step(index: int, total: int, title: str) -> None:
                self.call_from_thread(
                    self._show_activity, f"deps on {instance.id}: step {index}/{total} {title}"
                )

            with self.oplog.operation("install", _target(instance), plan=plan.describe()) as op:
                try:
                    result = install_deps(
                        target.transport,
                        target.remote_dir,
                        plan,
                        on_output=on_output,
                        on_step=on_step,
                        cancel=cancelled,
                    )
                except DepsInstallError as err:
                    on_output(f"!! {err}")
                    raise
                finally:
                    self.call_from_thread(self._show_activity, None)
                op.message = (
                    "unchanged since the last install: skipped"
                    if result.skipped
                    else f"installed with {result.tool} in {result.seconds:.1f} s"
                )
                on_output(f"== {op.message}")
        self.call_from_thread(self.notify, op.message, title=f"Dependencies on {instance.id}")
        return result

    # -- before a run on a host ----------------------------------------------------------------
    def prepare_host(
        self: RunctlApp, instance: Instance, script: str, install_deps: bool = True
    ) -> None:
        """Sync and install before a run, in the launch worker: sync as runctl.toml says,
        dependencies unless the launch dialog's box was cleared."""
        worker = get_current_worker()
        started = time.monotonic()
        target = None
        if self.settings.train.sync_before_run:
            target = self.sync_project_to(instance, lambda: worker.is_cancelled)
        if install_deps:
            self.install_deps_in_thread(instance, script, lambda: worker.is_cancelled, target)
        self.oplog.record(
            "prepare-host",
            _target(instance),
            "ok",
            f"ready in {time.monotonic() - started:.1f} s",
        )

    # -- checkpoints on a host ---------------------------------------------------------------------
    def action_download_checkpoint(self: RunctlApp) -> None:
        checkpoint = self.checkpoints_table.selected_checkpoint
        run = self.selected_run
        if checkpoint is not None and run is not None and checkpoint.path.startswith("s3://"):
            self.download_from_s3(run, checkpoint)
            return
        if checkpoint is None or run is None or run.provider == "local":
            self.notify(
                "Select a checkpoint of a run on a host to download it.", severity="warning"
            )
            return
        self.download_checkpoint(run, checkpoint.path)

    @work(thread=True, group="sync", exit_on_error=False, description="Downloading a checkpoint")
    def download_checkpoint(self: RunctlApp, run: Any, remote_path: str) -> None:
        """Copy it to <state>/downloads/<host>/<run id>/, progress in the subtitle."""
        from app.remote_sources import DownloadCancelled, download_checkpoint

        worker = get_current_worker()
        local_dir = self.settings.state_dir / "downloads" / run.host / run.id
        local_dir.mkdir(parents=True, exist_ok=True)

        def progress(done: int, total: int) -> None:
            self.call_from_thread(
                self._show_activity,
                f"download {run.host}:{remote_path.rsplit('/', 1)[-1]}: "
                f"{size(done)}/{size(total)} (x cancels)",
            )

        instance = self.service.instance_of(run)
        try:
            with self.oplog.operation(
                "download", f"{run.provider}:{run.host}", path=remote_path
            ) as op:
                result = download_checkpoint(
                    self._transport_of(run),
                    remote_path,
                    local_dir,
                    on_progress=progress,
                    cancel=lambda: worker.is_cancelled,
                )
                op.message = (
                    f"{result.files} file(s), {size(result.bytes)} in {result.seconds:.1f} s "
                    f"to {result.local_path}"
                )
        except DownloadCancelled:
            self.call_from_thread(self.notify, "Download cancelled; nothing was kept.")
            return
        except (ProviderError, OSError) as err:
            self._host_failed(instance, "Downloading a checkpoint", err)
            return
        finally:
            self.call_from_thread(self._show_activity, None)
        self.call_from_thread(self.notify, op.message, title="Checkpoint downloaded")


def is_remote_machine(instance: Instance) -> bool:
    """A `[[hosts]]` host or an EC2 instance (not the "AWS not available" row)."""
    return instance.provider == SSH or (instance.provider == AWS and instance.id.startswith("i-"))


def _target(instance: Instance) -> str:
    return f"{instance.provider}:{instance.id}"
