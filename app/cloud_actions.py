"""The dashboard's EC2 side: the AWS rows of the Instances and Costs panes (refreshed by the
app's self-rescheduling instances worker), and stop / start / terminate behind the one
confirmation, naming ids, state and $/h; terminating asks for the instance id to be typed.

A mixin of `RunctlApp` (app/tui.py). boto3 is imported here only when a worker first needs the
provider, after the dashboard painted; the AWS code itself is providers/aws.py and
app/aws_session.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import work

from app.cost_actions import CostActions
from providers.base import Instance, ProviderError
from widgets.confirm_modal import ConfirmModal
from widgets.formatting import money

if TYPE_CHECKING:
    from app.tui import RunctlApp

AWS = "aws"
HOW_TO_CONFIGURE = (
    "Run `aws configure` (or set AWS_PROFILE / aws.profile in runctl.toml) and press g."
)


class CloudActions(CostActions):
    """AWS rows and instance actions (mixed into RunctlApp)."""

    _aws_provider: Any = None
    _ec2_listed: list[Instance] = []  # replaced on each refresh, never mutated
    _ec2_listed_scope: bool | None = None  # the show-all choice _ec2_listed was made with
    aws_max_backoff_s: float | None = None  # caps botocore's retry backoff (tests: 0)

    def _ec2_provider(self: RunctlApp) -> Any:
        """The app's AwsProvider, made on first use (in a worker: it imports boto3). Raises
        ProviderError (no credentials, no region, ...) saying what to configure."""
        if self._aws_provider is None:
            from app.aws_session import aws_provider

            self._aws_provider = aws_provider(
                self.settings,
                catalog=self.price_catalog,
                clock=self.clock,
                max_backoff_s=self.aws_max_backoff_s,
            )
            self.service.aws = self._aws_provider  # runs on EC2 use its clients
        return self._aws_provider

    def aws_rows(self: RunctlApp) -> list[Instance]:
        """Rows of the managed EC2 instances, or all with the show-all toggle (in a worker).
        Without AWS configured: one row that says why and how to configure it."""
        if not self.settings.aws.enabled:
            return []
        try:
            rows = self._ec2_provider().list_instances(show_all=self.show_all_instances)
        except ProviderError as err:
            self._aws_provider = None
            return [
                Instance(
                    provider=AWS,
                    id="(aws)",
                    name="AWS not available",
                    state="not configured",
                    warnings=[f"{err} {HOW_TO_CONFIGURE}"],
                )
            ]
        failed = [
            f"{result.region}: {result.error}"
            for result in self._aws_provider.last_results.values()
            if result.error is not None
        ]
        if failed:
            self.call_from_thread(self._say_once, "AWS: " + "; ".join(failed))
        rows += self._vanished_ec2_rows(rows)
        return self.track_aws_costs(rows, self._aws_provider)

    def _vanished_ec2_rows(self: RunctlApp, rows: list[Instance]) -> list[Instance]:
        """Instances listed before that EC2 no longer lists at all (terminated outside
        runctl, long enough ago): kept as `terminated` rows instead of silently vanishing.
        Compared only within the same scope: turning show-all off is not a termination."""
        from providers.aws import mark_vanished

        scope = self.show_all_instances
        previous = self._ec2_listed if self._ec2_listed_scope == scope else []
        answered = [r.region for r in self._aws_provider.last_results.values() if r.error is None]
        gone = mark_vanished(previous, rows, answered)
        self._ec2_listed, self._ec2_listed_scope = [*rows, *gone], scope
        return gone

    def _say_once(self: RunctlApp, message: str) -> None:
        if message != self._last_cloud_message:
            self._last_cloud_message = message
            self.notify(message, title="AWS", severity="warning", timeout=15)

    def _selected_ec2(self: RunctlApp) -> Instance | None:
        instance = self.selected_instance
        if instance is None or instance.provider != AWS or not instance.id.startswith("i-"):
            self.notify("Select an EC2 instance in Instances first.", severity="warning")
            return None
        return instance

    def _describe(self: RunctlApp, instance: Instance) -> str:
        return (
            f"{instance.id} ({instance.name or 'no name'}), {instance.type or '?'} in "
            f"{instance.region}, {instance.state}, {money(instance.price_per_hour, per_hour=True)}"
            f", {money(instance.accrued_usd)} so far"
        )

    # -- stop / start / terminate ------------------------------------------------------------------
    def action_stop_instance(self: RunctlApp) -> None:
        instance = self._selected_ec2()
        if instance is None:
            return
        body = (
            f"Stops {self._describe(instance)}.\n\nThe instance stops billing for compute; its "
            "EBS volumes stay (and cost storage). Runs on it are killed: save checkpoints "
            "first. Spot instances may not get capacity back when started again."
        )
        self._confirm_then(
            ConfirmModal(f"Stop {instance.id}?", body, confirm_label="Stop instance"),
            lambda: self.change_instance(instance, "stop"),
        )

    def action_start_instance(self: RunctlApp) -> None:
        instance = self._selected_ec2()
        if instance is None:
            return
        body = f"Starts {self._describe(instance)}: billing resumes at that rate."
        self._confirm_then(
            ConfirmModal(f"Start {instance.id}?", body, confirm_label="Start instance"),
            lambda: self.change_instance(instance, "start"),
        )

    def action_terminate_instance(self: RunctlApp) -> None:
        instance = self._selected_ec2()
        if instance is not None:
            # The dialog opens once its checkpoints are counted (in a worker, bounded).
            self.check_checkpoints_then(
                instance, "terminating", lambda note: self._confirm_terminate(instance, note)
            )

    def _confirm_terminate(self: RunctlApp, instance: Instance, checkpoints: str) -> None:
        body = (
            f"TERMINATES {self._describe(instance)}.\n\n{checkpoints}\n\nThe instance and its "
            "root volume are destroyed and cannot be brought back: checkpoints and outputs on "
            "its disks that were not copied to S3 or downloaded are lost. Instances tagged "
            "runctl:protected=true are refused."
        )
        self._confirm_then(
            ConfirmModal(
                f"Terminate {instance.id}?",
                body,
                confirm_label="Terminate",
                require_typing=instance.id,
            ),
            lambda: self.change_instance(instance, "terminate"),
        )

    def _confirm_then(self: RunctlApp, modal: ConfirmModal, then: Any) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.push_screen(modal, answered)

    @work(thread=True, group="instance", exit_on_error=False, description="Changing an instance")
    def change_instance(self: RunctlApp, instance: Instance, verb: str) -> None:
        provider = self._aws_provider
        if provider is None:
            self.call_from_thread(self.notify, "AWS is not available.", severity="error")
            return
        try:
            with self.oplog.operation(verb, f"aws:{instance.id}", region=instance.region) as op:
                states = getattr(provider, verb)([instance.id], instance.region)
                op.message = ", ".join(f"{i} → {state}" for i, state in states.items())
        except ProviderError as err:
            self.call_from_thread(
                self.notify, str(err), title=f"Could not {verb} {instance.id}", severity="error"
            )
            return
        self.call_from_thread(self.notify, op.message, title=f"{verb.capitalize()} requested")
        self.call_from_thread(self.refresh_instances)
