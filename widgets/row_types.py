"""What the tables need from the things they show.

Widgets never import `providers` or `app`: the app hands them objects that have these
attributes (`providers.base.Instance`, `app.store.Run`, checkpoint infos).
"""

from __future__ import annotations

from typing import Protocol


class InstanceLike(Protocol):
    provider: str
    id: str
    name: str | None
    type: str | None
    gpu: str | None
    state: str
    uptime_s: float | None
    price_per_hour: float | None
    accrued_usd: float | None
    warnings: list[str]


class RunLike(Protocol):
    id: str
    script: str
    status: str
    exit_code: int | None
    started_at: float
    ended_at: float | None
    last_epoch: float | None
    total_epochs: int | None
    last_loss: float | None
    last_checkpoint_at: float | None
    parent_run_id: str | None

    @property
    def active(self) -> bool: ...


class CostLineLike(Protocol):
    key: str
    label: str
    state: str
    usd_per_hour: float | None
    burn_usd_per_hour: float
    today_usd: float | None
    month_usd: float | None
    idle_s: float | None
    idle_auto_stop: bool


class CostAlertLike(Protocol):
    instance_id: str
    label: str
    text: str
