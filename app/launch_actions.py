"""The dashboard's EC2 launch and its instance scope: the launch dialog (key L) fed by the
provider, the launch itself in a worker — a spot request that cannot be filled asks before going
on-demand, never silently — then pending → running → reachable with the steps in the subtitle;
and the toggle (key a) between the instances runctl manages and every instance in the account.

A mixin of `RunctlApp` (app/tui.py), like CloudActions: boto3 is touched only in workers, and
the dialog (widgets/ec2_launch_dialog.py) gets plain data and blocking callables, never the
provider itself.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from textual import work
from textual.worker import get_current_worker

from app.project import project_name
from providers.base import Instance, ProviderError
from widgets.confirm_modal import ConfirmModal

if TYPE_CHECKING:
    from app.tui import RunctlApp
    from widgets.ec2_launch_dialog import Ec2Launch, Ec2LaunchRequest, TypeList

SSH_PORT = 22


class Reachability:
    """Is a new instance ready for runs? With an instance profile, over SSM: its agent
    reports PingStatus Online. Without one, over SSH: a TCP connection to port 22 of its
    address opens. Answers True / False for `AwsProvider.wait_ready`; `last_answer` keeps
    what the last try saw, for the message when waiting runs out.

    An SSM error (the endpoint down, an API the region or moto does not offer) counts as "not
    yet" — the caller's timeout bounds the wait and the message says SSM never answered —
    except a refusal of credentials or permissions, which no waiting fixes."""

    def __init__(
        self,
        provider: Any,
        via_ssm: bool,
        ssh_port: int = SSH_PORT,
        connect_timeout_s: float = 3.0,
    ) -> None:
        self.provider = provider
        self.via_ssm = via_ssm
        self.ssh_port = ssh_port
        self.connect_timeout_s = connect_timeout_s
        self.via = "SSM" if via_ssm else f"SSH (port {ssh_port})"
        self.last_answer = "not asked yet"

    def __call__(self, instance: Instance) -> bool:
        return self._ssm_online(instance) if self.via_ssm else self._port_open(instance)

    def _ssm_online(self, instance: Instance) -> bool:
        from providers.aws import AccessDenied, AwsError, ExpiredCredentials, NoCredentials

        try:
            reply = self.provider.clients.call(
                "ssm",
                instance.region,
                "describe_instance_information",
                Filters=[{"Key": "InstanceIds", "Values": [instance.id]}],
            )
        except (AccessDenied, ExpiredCredentials, NoCredentials):
            raise
        except AwsError as err:
            self.last_answer = f"SSM did not answer: {err}"
            return False
        found = reply.get("InstanceInformationList") or [{}]
        status = found[0].get("PingStatus")
        self.last_answer = f"SSM agent {status or 'not registered yet'}"
        return status == "Online"

    def _port_open(self, instance: Instance) -> bool:
        if not instance.address:
            self.last_answer = "no address yet"
            return False
        where = f"port {self.ssh_port} at {instance.address}"
        try:
            with socket.create_connection(
                (instance.address, self.ssh_port), timeout=self.connect_timeout_s
            ):
                pass
        except OSError as err:
            self.last_answer = f"{where}: {err.strerror or err}"
            return False
        self.last_answer = f"{where} open"
        return True


class LaunchActions:
    """Launch dialog, launch worker and the show-all toggle (mixed into RunctlApp)."""

    # How a launch waits for its instance; tests make the poll tiny.
    launch_poll_s: float = 5.0
    launch_timeout_s: float = 900.0  # pending → reachable, at most
    launch_ssh_port: int = SSH_PORT
    launch_connect_timeout_s: float = 3.0
    _show_all: bool | None = None  # None: as aws.show_all says

    # -- which instances -------------------------------------------------------------------------
    @property
    def show_all_instances(self: RunctlApp) -> bool:
        return self.settings.aws.show_all if self._show_all is None else self._show_all

    def action_toggle_show_all(self: RunctlApp) -> None:
        if not self.settings.aws.enabled:
            self.notify(
                "Only EC2 has unmanaged instances, and AWS is turned off (aws.enabled = false).",
                severity="warning",
            )
            return
        self._show_all = not self.show_all_instances
        self._title_instances_pane()
        scope = (
            "every instance in the account"
            if self._show_all
            else "only instances tagged runctl:managed=true"
        )
        self.notify(f"Instances: {scope}.", title="Instances")
        self.refresh_instances()

    def _title_instances_pane(self: RunctlApp) -> None:
        # Only the non-default scope is named: "managed" would puzzle someone without AWS.
        title = "Instances"
        if self.settings.aws.enabled and self.show_all_instances:
            title += " (all in account)"
        self.instances_table.border_title = title

    # -- the dialog ------------------------------------------------------------------------------
    def action_launch_instance(self: RunctlApp) -> None:
        from widgets.ec2_launch_dialog import Ec2LaunchDialog, Ec2LaunchRequest  # on first use

        aws = self.settings.aws
        if not aws.enabled:
            self.notify(
                "AWS is turned off (aws.enabled = false in runctl.toml).", severity="warning"
            )
            return
        types = list(aws.instance_types) or self.price_catalog.instance_types()
        if aws.default_instance_type not in types:
            types.insert(0, aws.default_instance_type)
        regions = list(aws.regions) or list(getattr(self._aws_provider, "regions", ()))
        defaults = Ec2LaunchRequest(
            instance_type=aws.default_instance_type,
            region=regions[0] if regions else None,
            spot=aws.spot,
            spot_max_price=aws.spot_max_price,
            name=f"runctl-{project_name(self.project_root)}",
            key_name=aws.key_name or "",
            security_group_ids=list(aws.security_group_ids),
            subnet_id=aws.subnet_id or "",
            instance_profile=aws.instance_profile or "",
            root_volume_gb=aws.root_volume_gb,
        )
        dialog = Ec2LaunchDialog(
            defaults,
            regions,
            types,
            load_types=lambda region: self._ec2_type_list(region, types),
            spot_price=lambda kind, region: self._ec2_provider().price_of(kind, region, True),
            plan=self._ec2_plan,
            project=project_name(self.project_root),
        )
        self.push_screen(dialog, self._ec2_dialog_closed)

    def _ec2_type_list(self: RunctlApp, region: str | None, types: list[str]) -> TypeList:
        """The dialog's type rows for `region` (in the dialog's worker). Without GPU facts
        (DescribeInstanceTypes refused, say) the rows still carry the catalog's prices."""
        from widgets.ec2_launch_dialog import TypeChoice, TypeList

        provider = self._ec2_provider()
        region = region or provider.regions[0]
        problem = None
        try:
            rows = provider.type_choices(region, types)
        except ProviderError as err:
            problem = str(err)
            rows = [(kind, None, provider.price_of(kind, region)) for kind in types]
        choices = [
            TypeChoice(kind, gpu.label() if gpu else None, price) for kind, gpu, price in rows
        ]
        return TypeList(list(provider.regions), region, choices, problem)

    def _ec2_plan(self: RunctlApp, request: Ec2LaunchRequest) -> tuple[Any, str]:
        """The exact RunInstances request for the form and the dry-run text (in a worker)."""
        from providers.aws import DLAMI_PARAMETER, LaunchOptions
        from widgets.ec2_launch_dialog import rate

        aws = self.settings.aws
        provider = self._ec2_provider()
        options = LaunchOptions(
            instance_type=request.instance_type,
            project=project_name(self.project_root),
            region=request.region,
            name=request.name or None,
            spot=request.spot,
            spot_max_price=request.spot_max_price,
            ami=aws.ami,
            ami_parameter=aws.ami_parameter or DLAMI_PARAMETER,
            key_name=request.key_name or None,
            security_group_ids=request.security_group_ids,
            subnet_id=request.subnet_id or None,
            instance_profile=request.instance_profile or None,
            root_volume_gb=request.root_volume_gb,
        )
        plan = provider.plan_launch(options)
        market = "spot" if plan.is_spot else "on-demand"
        reach = (
            "SSM (the instance profile)"
            if request.instance_profile
            else f"SSH (port {self.launch_ssh_port})"
        )
        header = [
            f"AMI {plan.request['ImageId']} ({plan.ami_source}); root device {plan.root_device}, "
            f"{request.root_volume_gb} GB gp3",
            f"{request.instance_type}: {plan.gpu.label() if plan.gpu else 'no GPU'}, "
            f"{market} {rate(plan.price_per_hour)}; checked reachable over {reach}",
            "",
        ]
        return plan, "\n".join(header) + plan.describe()

    def _ec2_dialog_closed(self: RunctlApp, result: Ec2Launch | None) -> None:
        if result is not None:
            self.launch_ec2(result.plan)

    # -- launching -------------------------------------------------------------------------------
    @work(thread=True, group="launch", exit_on_error=False, description="Launching an instance")
    def launch_ec2(self: RunctlApp, plan: Any) -> None:
        """RunInstances, then wait until the instance is reachable (x stops waiting)."""
        from providers.aws import SpotUnavailable

        provider = self._ec2_provider()
        kind = plan.request["InstanceType"]
        market = "spot" if plan.is_spot else "on-demand"
        what = f"{kind} ({market}) in {plan.region}"
        self.call_from_thread(self._show_activity, f"launching {what}…")
        try:
            with self.oplog.operation(
                "launch", f"aws:{kind}", region=plan.region, market=market
            ) as op:
                ids = provider.launch(plan)
                op.message = f"{', '.join(ids)}: {what}"
        except SpotUnavailable as err:
            on_demand = provider.price_of(kind, plan.region, spot=False)
            self.call_from_thread(self._ask_on_demand, plan, err, on_demand)
            return
        except ProviderError as err:
            self.call_from_thread(
                self.notify, str(err), title=f"Launching {kind} failed", severity="error"
            )
            return
        finally:
            self.call_from_thread(self._show_activity, None)
        self.call_from_thread(
            self.notify, f"{op.message}; waiting for it to be reachable.", title="Launched"
        )
        self.call_from_thread(self.refresh_instances)
        self._wait_until_ready(provider, plan, ids)

    def _ask_on_demand(self: RunctlApp, plan: Any, err: Any, price: float | None) -> None:
        from widgets.ec2_launch_dialog import rate

        kind = plan.request["InstanceType"]
        body = (
            f"Spot capacity for {kind} in {plan.region} is not available ({err.code}): "
            f"launch on-demand at {rate(price)} instead?\n\nNothing was created. On-demand is "
            "billed at that rate until the instance is stopped or terminated, and is not "
            "interrupted."
        )
        self._confirm_then(
            ConfirmModal(f"No spot capacity for {kind}", body, confirm_label="Launch on-demand"),
            lambda: self.launch_ec2(plan.on_demand()),
        )

    def _wait_until_ready(self: RunctlApp, provider: Any, plan: Any, ids: list[str]) -> None:
        """pending → running → reachable (in the launch worker), each step in the subtitle."""
        worker = get_current_worker()
        check = Reachability(
            provider,
            via_ssm="IamInstanceProfile" in plan.request,
            ssh_port=self.launch_ssh_port,
            connect_timeout_s=self.launch_connect_timeout_s,
        )
        named = ", ".join(ids)
        steps: list[str] = []

        def progress(step: str, message: str) -> None:
            steps.append(step)
            self.call_from_thread(
                self._show_activity, f"launch {named}: {step} — {message} (x stops waiting)"
            )
            if step == "running":
                self.call_from_thread(self.refresh_instances)

        try:
            with self.oplog.operation("wait-ready", f"aws:{named}", via=check.via) as op:
                rows = provider.wait_ready(
                    ids,
                    plan.region,
                    progress=progress,
                    reachable=check,
                    poll_s=self.launch_poll_s,
                    timeout_s=self.launch_timeout_s,
                    cancelled=lambda: worker.is_cancelled,
                )
                op.message = f"reachable over {check.via}: " + ", ".join(
                    f"{row.id} at {row.address or 'no address'}" for row in rows
                )
        except ProviderError as err:
            self.call_from_thread(self._not_ready, named, err, steps, check)
            return
        finally:
            self.call_from_thread(self._show_activity, None)
            self.call_from_thread(self.refresh_instances)
        self.call_from_thread(self.notify, op.message, title=f"{named} is ready")

    def _not_ready(
        self: RunctlApp, named: str, err: Exception, steps: list[str], check: Reachability
    ) -> None:
        code = getattr(err, "code", "")
        if code not in ("Timeout", "Cancelled"):
            self.notify(str(err), title=f"Waiting for {named} failed", severity="error")
            return
        said = "Stopped waiting" if code == "Cancelled" else f"Waited {self.launch_timeout_s:g} s"
        if steps and steps[-1] == "reachable":
            detail = f"{named} is running but not yet reachable over {check.via}"
            detail += f" (last check: {check.last_answer})"
        else:
            detail = f"{named} was not running yet"
        self.notify(
            f"{said}: {detail}. It is billed while it runs; g refreshes, K terminates it.",
            title=f"{named} not ready",
            severity="warning",
            timeout=20,
        )
