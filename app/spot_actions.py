"""Spot interruptions in the dashboard: every `aws.spot_watch_s` a self-rescheduling worker
asks each running spot instance with an active run whether EC2 has sent it an interruption
notice (IMDSv2, on the host through its transport). On a notice, each active run there gets
SIGTERM with a short grace (so it saves a checkpoint), its checkpoints are copied to S3, the
run is recorded as interrupted, and a relaunch is offered — a new instance of the same type
that resumes the run from its last checkpoint in S3 — or done at once when
`aws.spot_auto_relaunch` is true.

A mixin of `RunctlApp` (app/tui.py). What a notice means for the store and what a relaunch
plans is app/spot_interruptions.py; the copies are app/s3_backup.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import work
from textual.worker import get_current_worker

from providers.base import Instance, ProviderError
from widgets.confirm_modal import ConfirmModal

if TYPE_CHECKING:
    from app.spot_interruptions import RelaunchPlan
    from app.tui import RunctlApp


class SpotActions:
    """Spot watch, interruption handling and relaunch (mixed into RunctlApp)."""

    spot_imds_url: str | None = None  # the host's metadata service; None: EC2's own address
    relaunch_plans: tuple[RelaunchPlan, ...] = ()  # offered this session, newest last
    relaunch_poll_s: float = 5.0
    relaunch_timeout_s: float = 900.0
    _spot_watching: bool = False
    _spot_handled: set[str] | None = None  # instances whose notice was acted on
    _spot_errors: dict[str, str] | None = None  # instance -> the last failure, said once

    def start_spot_watch(self: RunctlApp, rows: list[Instance]) -> None:
        """From the instances refresh: the watch starts with the first spot instance seen."""
        if not self._spot_watching and any(r.lifecycle == "spot" for r in rows):
            self._spot_watching = True
            self.call_from_thread(self.watch_spot)

    def _spot_runs(self: RunctlApp) -> list[tuple[Instance, list[Any]]]:
        """Running spot instances with active runs, and those runs (from the store)."""
        from app.store import ACTIVE_STATUSES

        handled = self._spot_handled or set()
        found = []
        for instance in list(self.instances.values()):
            if (
                instance.provider != "aws"
                or instance.lifecycle != "spot"
                or instance.state != "running"
                or instance.id in handled
            ):
                continue
            runs = self.store.runs("aws", instance.id, statuses=ACTIVE_STATUSES)
            if runs:
                found.append((instance, runs))
        return found

    @work(
        thread=True,
        exclusive=True,
        group="spot-watch",
        exit_on_error=False,
        description="Watching spot instances",
    )
    def watch_spot(self: RunctlApp) -> None:
        from providers.aws import IMDS_URL, spot_interruption_notice

        try:
            for instance, runs in self._spot_runs():
                try:
                    transport = self.service.transport_for(instance)
                    notice = spot_interruption_notice(transport, self.spot_imds_url or IMDS_URL)
                except ProviderError as err:
                    self._spot_failed(instance, err)
                    continue
                if notice is not None:
                    if self._spot_handled is None:
                        self._spot_handled = set()
                    self._spot_handled.add(instance.id)
                    self.call_from_thread(self.handle_spot_interruption, instance, runs, notice)
        finally:
            if not get_current_worker().is_cancelled:
                every = self.settings.aws.spot_watch_s
                self.call_from_thread(self._reschedule, "spot", every, self.watch_spot)

    def _spot_failed(self: RunctlApp, instance: Instance, err: Exception) -> None:
        """A host whose notices cannot be read is said once (per distinct failure)."""
        if self._spot_errors is None:
            self._spot_errors = {}
        if self._spot_errors.get(instance.id) != str(err):
            self._spot_errors[instance.id] = str(err)
            self.oplog.record("spot-watch", f"aws:{instance.id}", "error", str(err))
            self.call_from_thread(
                self.notify,
                f"Cannot watch {instance.id} for spot interruptions: {err}",
                title="Spot watch",
                severity="warning",
            )

    # -- on a notice -----------------------------------------------------------------------------
    @work(thread=True, group="spot", exit_on_error=False, description="Spot interruption")
    def handle_spot_interruption(
        self: RunctlApp, instance: Instance, runs: list[Any], notice: Any
    ) -> None:
        from app.s3_backup import CopyFailed
        from app.spot_interruptions import INTERRUPTED_STATUS, interruption_note, stop_grace

        what = f"EC2 will {notice.action} {instance.id} at {notice.time}"
        if self.settings.read_only:
            text = f"{what}; read-only: its {len(runs)} run(s) are not stopped or copied from here."
        else:
            text = (
                f"{what}: stopping {len(runs)} run(s) so they save a checkpoint, then copying "
                "their checkpoints to S3."
            )
        self.call_from_thread(
            self.notify, text, title="Spot interruption", severity="error", timeout=30
        )
        if self.settings.read_only:
            return
        grace = stop_grace(self.settings.train.stop_grace_s)
        for run in runs:
            copied = False
            with self.oplog.operation(
                "spot-interruption",
                f"aws:{instance.id}",
                run_id=run.id,
                notice=f"{notice.action} at {notice.time}",
            ) as op:
                try:
                    self.service.stop(run, grace_s=grace)
                except ProviderError as err:
                    op.result = "error"
                    self.call_from_thread(
                        self.notify, str(err), title=f"Stopping {run.id} failed", severity="error"
                    )
                try:
                    copy_note = "checkpoints in S3: " + self.copy_run_to_s3(run).describe()
                    copied = True
                except (CopyFailed, ProviderError) as err:
                    op.result = "error"
                    copy_note = f"checkpoints NOT copied to S3: {err}"
                self.store.update_run(
                    run.id,
                    status=INTERRUPTED_STATUS,
                    error=interruption_note(notice.action, notice.time, copy_note),
                )
                op.message = f"run {run.id} stopped; {copy_note}"
            self.call_from_thread(
                self.notify,
                op.message,
                title=f"Run {run.id} interrupted",
                severity="warning" if copied else "error",
                timeout=30,
            )
            self.call_from_thread(self.refresh_runs)
            if copied:
                self._plan_relaunch(instance, run)

    def _plan_relaunch(self: RunctlApp, instance: Instance, run: Any) -> None:
        """List the run's S3 copy, plan the relaunch from its last checkpoint and offer it."""
        from app.checkpoints import list_checkpoints
        from app.spot_interruptions import plan_relaunch

        url = self.s3_run_url(run)
        try:
            infos = list_checkpoints(
                url, self.settings.checkpoints.globs, self.s3_checkpoint_source(), cache=None
            )
        except Exception as err:  # botocore's errors, shown not raised
            infos, problem = [], str(err)
        else:
            problem = "no readable checkpoint there"
        plan = plan_relaunch(run, instance, infos, self.settings.train.resume_args, url)
        if plan is None:
            self.call_from_thread(
                self.notify,
                f"Run {run.id} cannot be resumed from {url}: {problem}.",
                title="No relaunch",
                severity="warning",
            )
            return
        price = self._ec2_provider().price_of(plan.instance_type, plan.region, plan.spot)
        self.call_from_thread(self.offer_relaunch, plan, price)

    def offer_relaunch(self: RunctlApp, plan: RelaunchPlan, price: float | None) -> None:
        self.relaunch_plans = (*self.relaunch_plans, plan)
        if self.settings.aws.spot_auto_relaunch:
            self.notify(
                f"Relaunching run {plan.run_id} on a new {plan.instance_type} from "
                f"{plan.checkpoint_name} (aws.spot_auto_relaunch).",
                title="Spot relaunch",
            )
            self.relaunch_and_resume(plan)
            return
        self._confirm_then(
            ConfirmModal(
                f"Relaunch run {plan.run_id} on a new {plan.instance_type}?",
                plan.describe(price),
                confirm_label="Relaunch",
            ),
            lambda: self.relaunch_and_resume(plan),
        )

    # -- the relaunch ----------------------------------------------------------------------------
    @work(thread=True, group="launch", exit_on_error=False, description="Relaunching a run")
    def relaunch_and_resume(self: RunctlApp, plan: RelaunchPlan) -> None:
        """New instance, wait until reachable, then `resume_on` it (x stops waiting)."""
        from app.spot_interruptions import relaunch_options

        worker = get_current_worker()
        provider = self._ec2_provider()
        options = relaunch_options(
            self.settings.aws, plan, self.project_key, name=f"runctl-{self.project_key}"
        )

        def progress(step: str, message: str) -> None:
            self.call_from_thread(
                self._show_activity, f"relaunch {plan.run_id}: {step} — {message} (x stops)"
            )

        try:
            with self.oplog.operation(
                "relaunch",
                f"aws:{plan.instance_type}",
                run_id=plan.run_id,
                checkpoint=plan.checkpoint_url,
            ) as op:
                ids = provider.launch(provider.plan_launch(options))
                op.message = f"{', '.join(ids)} launched for run {plan.run_id}"
                self.call_from_thread(self.refresh_instances)
                rows = provider.wait_ready(
                    ids,
                    options.region or provider.regions[0],
                    progress=progress,
                    reachable=self._answers,
                    poll_s=self.relaunch_poll_s,
                    timeout_s=self.relaunch_timeout_s,
                    cancelled=lambda: worker.is_cancelled,
                )
        except ProviderError as err:
            self.call_from_thread(
                self.notify,
                f"{err} Relaunch by hand: L launches an instance, then r resumes from the "
                "checkpoint.",
                title=f"Relaunching run {plan.run_id} failed",
                severity="error",
                timeout=30,
            )
            return
        finally:
            self.call_from_thread(self._show_activity, None)
        self.call_from_thread(self.refresh_instances)
        self.resume_on(rows[0], plan)

    def _answers(self: RunctlApp, instance: Instance) -> bool:
        """wait_ready's check: the transport runs use answers (an unknown host key counts:
        the machine is up, and the trust question comes next)."""
        from providers.ssh import UnknownHostKey

        try:
            return self.service.transport_for(instance).run(["true"], timeout=30).ok
        except UnknownHostKey:
            return True
        except ProviderError:
            return False

    def resume_on(self: RunctlApp, instance: Instance, plan: RelaunchPlan) -> None:
        """Sync and install on the new instance, put the checkpoint there from S3, start the
        run with the resume arguments (in a worker)."""
        from app.s3_backup import CopyFailed, restore_checkpoint
        from providers.ssh import UnknownHostKey

        try:
            self.prepare_host(instance, plan.script, self.settings.train.install_deps)
            transport = self.service.transport_for(instance)
            with self.oplog.operation(
                "restore-checkpoint", f"aws:{instance.id}", url=plan.checkpoint_url
            ) as op:
                path = restore_checkpoint(
                    self.s3_client(),
                    plan.checkpoint_url,
                    transport,
                    f"{transport.home()}/.runctl/restored/{plan.run_id}",
                    use_host_cli=self.copy_with_host_cli,
                )
                op.message = f"{plan.checkpoint_url} → {path}"
            run_plan = self.service.plan(
                plan.script,
                plan.resume_args(path),
                instance,
                parent_run_id=plan.run_id,
                parent_checkpoint=plan.checkpoint_url,
            )
            run = self.service.launch(run_plan)
        except UnknownHostKey as err:
            self.call_from_thread(self.ask_trust, err, lambda: self.resume_later(instance, plan))
            return
        except (ProviderError, CopyFailed) as err:
            self.call_from_thread(
                self.notify,
                str(err),
                title=f"Resuming run {plan.run_id} on {instance.id} failed",
                severity="error",
                timeout=30,
            )
            return
        self.call_from_thread(
            self.notify,
            f"Run {run.id} on {instance.id} resumes {plan.run_id} from {plan.checkpoint_name}.",
            title="Resumed after a spot interruption",
        )

    @work(thread=True, group="launch", exit_on_error=False, description="Resuming a run")
    def resume_later(self: RunctlApp, instance: Instance, plan: RelaunchPlan) -> None:
        self.resume_on(instance, plan)
