"""What the dashboard does before an EC2 instance goes away: the terminate dialog says which
checkpoints on it exist nowhere else (counted in a worker, bounded in time, before the dialog
opens), and the idle auto-stop stops an instance that has had no active run for
`costs.idle_warn_minutes` — after copying every run's checkpoints on it to S3, and never when
that copy failed.

Auto-stop is on for the instance ids in `costs.idle_auto_stop`; `A` turns it on or off for the
selected instance for this session. It is checked on every instances refresh
(`guard_instances`, called from the refresh worker). A mixin of `RunctlApp` (app/tui.py); the
counting is app/uncopied_checkpoints.py, the copy app/checkpoint_copy_actions.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual import work

from providers.base import Instance, ProviderError

if TYPE_CHECKING:
    from app.tui import RunctlApp

CENSUS_TIMEOUT_S = 20.0
AUTO_STOP_RETRY_S = 600.0  # after a failed copy, the auto-stop tries again this much later


class InstanceGuardActions:
    """Terminate warnings and the idle auto-stop (mixed into RunctlApp)."""

    census_timeout_s: float = CENSUS_TIMEOUT_S
    _autostop_overrides: dict[str, bool] | None = None
    _auto_stopping: set[str] | None = None
    _auto_stop_retry_at: dict[str, float] | None = None

    # -- terminate: what it would destroy ------------------------------------------------------
    def check_checkpoints_then(
        self: RunctlApp, instance: Instance, verb: str, then: Callable[[str], None]
    ) -> None:
        """Count the un-copied checkpoints on `instance` in a worker, then `then(note)` on the
        UI thread with the sentence for the dialog."""
        self.notify(f"Checking checkpoints on {instance.id}…", title=verb.capitalize())
        self.count_uncopied(instance, verb, then)

    @work(
        thread=True,
        exclusive=True,
        group="census",
        exit_on_error=False,
        description="Checking checkpoints",
    )
    def count_uncopied(
        self: RunctlApp, instance: Instance, verb: str, then: Callable[[str], None]
    ) -> None:
        note = self.uncopied_note(instance, verb)
        self.call_from_thread(then, note)

    def uncopied_note(self: RunctlApp, instance: Instance, verb: str) -> str:
        """The dialog's sentence about checkpoints (in a worker, at most census_timeout_s)."""
        from app.uncopied_checkpoints import Census, find_uncopied

        runs = self.store.runs(instance.provider, instance.id, limit=10_000)
        if not runs:
            return Census(instance.id).sentence(verb)
        answer: dict[str, object] = {}
        by_id = {run.id: run for run in runs}

        def in_s3(run_id: str) -> dict[str, int]:
            return self.s3_sizes(by_id[run_id], fresh=True)

        def census() -> None:
            try:
                answer["census"] = find_uncopied(
                    self.service.transport_for(instance),
                    instance.id,
                    runs,
                    globs=self.settings.checkpoints.globs,
                    downloads_root=self.settings.state_dir / "downloads",
                    s3_sizes=in_s3 if self.s3_bucket else None,
                )
            except Exception as err:  # any failure is "could not check"
                answer["error"] = err

        thread = threading.Thread(target=census, name=f"census-{instance.id}", daemon=True)
        thread.start()
        thread.join(self.census_timeout_s)
        if thread.is_alive():
            reason = f"no answer within {self.census_timeout_s:g} s"
        elif "error" in answer:
            reason = str(answer["error"]) or type(answer["error"]).__name__
        else:
            result = answer["census"]
            return "\n".join([result.sentence(verb.capitalize()), *result.listing()])
        return (
            f"Could not check checkpoints on {instance.id}: {reason}. Assume the checkpoints "
            "of its runs are not copied anywhere."
        )

    # -- idle auto-stop ------------------------------------------------------------------------
    def autostop_on(self: RunctlApp, instance_id: str) -> bool:
        overrides = self._autostop_overrides or {}
        if instance_id in overrides:
            return overrides[instance_id]
        return instance_id in self.settings.costs.idle_auto_stop

    def action_toggle_autostop(self: RunctlApp) -> None:
        instance = self._selected_ec2()
        if instance is None:
            return
        if self._autostop_overrides is None:
            self._autostop_overrides = {}
        on = not self.autostop_on(instance.id)
        self._autostop_overrides[instance.id] = on
        if self._auto_stop_retry_at:
            self._auto_stop_retry_at.pop(instance.id, None)  # turned on again: try at once
        minutes = self.settings.costs.idle_warn_minutes
        if on:
            text = (
                f"Idle auto-stop is on for {instance.id} (this session): after {minutes:g} min "
                "with no active run, its runs' checkpoints are copied to S3, then it is stopped."
            )
            if not self.s3_bucket:
                text += " No aws.s3_bucket is set, so it cannot copy and will not stop."
        else:
            text = f"Idle auto-stop is off for {instance.id} (this session)."
        self.notify(text, title="Idle auto-stop", severity="information" if on else "warning")

    def guard_instances(self: RunctlApp, rows: list[Instance]) -> None:
        """Called by the instances refresh worker with the rows it just read: starts the
        auto-stop of each idle instance that has it on, and the spot watch."""
        self.start_spot_watch(rows)
        if self.settings.read_only:
            return
        try:
            self._stop_idle(rows)
        except Exception as err:  # the refresh must show its rows whatever happens here
            self.oplog.record("auto-stop", "aws", "error", f"{type(err).__name__}: {err}")
            self.call_from_thread(self._say_once, f"Idle auto-stop check failed: {err}")

    def _stop_idle(self: RunctlApp, rows: list[Instance]) -> None:
        from app.costs import idle_auto_stop

        now = self.clock()
        stopping = self._auto_stopping if self._auto_stopping is not None else set()
        self._auto_stopping = stopping
        retry_at = self._auto_stop_retry_at if self._auto_stop_retry_at is not None else {}
        self._auto_stop_retry_at = retry_at
        for row in rows:
            if row.provider != "aws" or not row.id.startswith("i-") or row.id in stopping:
                continue
            if not self.autostop_on(row.id) or retry_at.get(row.id, 0.0) > now:
                continue
            runs = self.store.runs("aws", row.id, limit=10_000)
            decision = idle_auto_stop(
                enabled=True,
                state=row.state,
                run_active=any(run.active for run in runs),
                idle_since=self._idle_since(row, now),
                idle_minutes=self.settings.costs.idle_warn_minutes,
                now=now,
            )
            if decision.stop:
                stopping.add(row.id)
                self.call_from_thread(self.auto_stop_instance, row, decision.reason)

    def _idle_since(self: RunctlApp, row: Instance, now: float) -> float | None:
        from app.cost_tracking import idle_since

        return idle_since(self.store, row, now)

    @work(thread=True, group="auto-stop", exit_on_error=False, description="Idle auto-stop")
    def auto_stop_instance(self: RunctlApp, instance: Instance, reason: str) -> None:
        """Copy every run's checkpoints on it to S3, then stop it; not when a copy failed."""
        from app.s3_backup import CopyFailed

        runs = self.store.runs("aws", instance.id, limit=10_000)
        try:
            with self.oplog.operation(
                "auto-stop", f"aws:{instance.id}", reason=reason, runs=len(runs)
            ) as op:
                try:
                    copies = [self.copy_run_to_s3(run) for run in runs]
                except (CopyFailed, ProviderError) as err:
                    op.result = "error"
                    op.message = f"not stopped: copying checkpoints to S3 failed: {err}"
                    self._auto_stop_retry_at[instance.id] = self.clock() + AUTO_STOP_RETRY_S
                    self.call_from_thread(
                        self.notify,
                        f"{instance.id} is {reason} but was NOT stopped: copying its "
                        f"checkpoints to S3 failed: {err}",
                        title="Idle auto-stop",
                        severity="error",
                        timeout=30,
                    )
                    return
                states = self._ec2_provider().stop([instance.id], instance.region)
                files = sum(len(c.copied) + len(c.skipped) for c in copies)
                op.message = (
                    f"{reason}: {files} checkpoint file(s) of {len(runs)} run(s) in S3, then "
                    + ", ".join(f"{i} → {state}" for i, state in states.items())
                )
        except ProviderError as err:
            self.call_from_thread(
                self.notify,
                f"Stopping {instance.id} failed: {err}",
                title="Idle auto-stop",
                severity="error",
            )
            return
        finally:
            self._auto_stopping.discard(instance.id)
        self.call_from_thread(self.notify, op.message, title=f"Auto-stopped {instance.id}")
        self.call_from_thread(self.refresh_instances)
