"""What a spot interruption notice means for a run, headless: how it is recorded, and the
relaunch that resumes it from the last checkpoint copied to S3.

EC2 gives about two minutes between the notice and the end of the instance. The dashboard
(app/spot_actions.py) stops the run with SIGTERM and a short grace (`stop_grace`) so it saves
a checkpoint, copies the checkpoints to S3, records the interruption on the run, and offers
`plan_relaunch`: a new instance of the same type and market in the same region, where the run
continues with the resume arguments pointing at the last checkpoint brought back from S3.

The run ends with the status "interrupted", and its `error` field says which notice and where
the checkpoints went. No textual, no boto3.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from app.checkpoints import STATUS_OK, CheckpointInfo, checkpoint_order, resume_argv

SPOT_STOP_GRACE_S = 30.0  # of the ~120 s a notice gives: time left to copy to S3
INTERRUPTED = "interrupted:"
INTERRUPTED_STATUS = "interrupted"


def stop_grace(configured_s: float) -> float:
    """The grace a run gets on a notice: its configured stop grace, at most SPOT_STOP_GRACE_S."""
    return min(configured_s, SPOT_STOP_GRACE_S)


def interruption_note(action: str, when: str, copy_note: str) -> str:
    """The run's `error` text after an interruption."""
    return f"{INTERRUPTED} spot {action} notice for {when}; {copy_note}"


def is_interrupted(run: Any) -> bool:
    return getattr(run, "status", None) == INTERRUPTED_STATUS


def last_checkpoint(infos: Iterable[CheckpointInfo]) -> CheckpointInfo | None:
    """The newest readable checkpoint (by step, epoch, then time): where a resume continues."""
    readable = [info for info in infos if info.status == STATUS_OK]
    return max(readable, key=checkpoint_order) if readable else None


@dataclass(frozen=True, slots=True)
class RelaunchPlan:
    """Everything a relaunch does, shown before it is done."""

    run_id: str  # the interrupted run
    script: str
    args: tuple[str, ...]  # the interrupted run's arguments
    instance_id: str  # the interrupted instance
    instance_type: str
    region: str
    spot: bool
    checkpoint_url: str  # s3://bucket/runctl/<project>/<run_id>/<name>
    checkpoint_name: str  # relative to the run's prefix
    resume_template: str  # train.resume_args, e.g. "--resume {path}"
    epoch: float | None = None
    step: int | None = None

    def resume_args(self, host_path: str) -> list[str]:
        """The new run's arguments, resuming from the checkpoint at `host_path`."""
        return resume_argv(self.args, self.resume_template, host_path)

    def describe(self, price_per_hour: float | None = None) -> str:
        from widgets.formatting import money  # plain formatting, no textual

        where = "epoch " + (
            "?" if self.epoch is None or math.isnan(self.epoch) else f"{self.epoch:g}"
        )
        if self.step is not None:
            where += f", step {self.step}"
        market = "spot" if self.spot else "on-demand"
        shown = " ".join(self.resume_args("<it, on the new host>"))
        return (
            f"Resume run {self.run_id} from its last checkpoint in S3:\n"
            f"  {self.checkpoint_url} ({where})\n\n"
            f"1. Launch a new {self.instance_type} ({market}, {money(price_per_hour, True)}) in "
            f"{self.region}, like {self.instance_id}, and wait until it is reachable.\n"
            "2. Sync this project (and its dependencies) to it.\n"
            "3. Copy the checkpoint there from S3.\n"
            f"4. Start {self.script} {shown}"
        )


def plan_relaunch(
    run: Any,
    instance: Any,
    infos: Sequence[CheckpointInfo],
    resume_template: str,
    run_url: str,
) -> RelaunchPlan | None:
    """The relaunch of `run` (interrupted on `instance`) from the last of `infos`, the run's
    checkpoints as listed under `run_url` in S3; None when none is readable."""
    last = last_checkpoint(infos)
    if last is None:
        return None
    base = run_url.rstrip("/") + "/"
    name = last.path[len(base) :] if last.path.startswith(base) else last.name
    return RelaunchPlan(
        run_id=run.id,
        script=run.script,
        args=tuple(run.args),
        instance_id=instance.id,
        instance_type=instance.type or "",
        region=instance.region or "",
        spot=instance.lifecycle == "spot",
        checkpoint_url=last.path,
        checkpoint_name=name,
        resume_template=resume_template,
        epoch=last.epoch,
        step=last.step,
    )


def relaunch_options(aws: Any, plan: RelaunchPlan, project: str, name: str | None = None) -> Any:
    """The LaunchOptions of the new instance: the interrupted one's type, region and market,
    everything else from the `[aws]` settings, as the launch dialog starts with them."""
    from providers.aws import DLAMI_PARAMETER, LaunchOptions

    return LaunchOptions(
        instance_type=plan.instance_type,
        project=project,
        region=plan.region or None,
        name=name,
        spot=plan.spot,
        spot_max_price=aws.spot_max_price,
        ami=aws.ami,
        ami_parameter=aws.ami_parameter or DLAMI_PARAMETER,
        key_name=aws.key_name,
        security_group_ids=list(aws.security_group_ids),
        subnet_id=aws.subnet_id,
        instance_profile=aws.instance_profile,
        root_volume_gb=aws.root_volume_gb,
    )
