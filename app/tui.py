"""The dashboard: one screen with Instances, Runs, Checkpoints, Costs, the metrics strip and the
live log of the selected run. Blocking work runs in workers and reports back by message."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import shlex
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Input, TabbedContent, TabPane
from textual.worker import Worker, WorkerState, get_current_worker

from app import gc_pauses
from app.checkpoint_copy_actions import CheckpointCopyActions
from app.cloud_actions import CloudActions
from app.host_actions import HostActions
from app.instance_guard_actions import InstanceGuardActions
from app.launch_actions import LaunchActions
from app.logfollow import follow_local_file
from app.oplog import OperationLog
from app.runs import EARLY_FAILURE_S, AlreadyRunning, RunService, tail_lines
from app.settings import Settings
from app.spot_actions import SpotActions
from app.store import Run, RunStore
from providers.base import Instance, ProviderError
from widgets.after_first_frame import AfterFirstFrame
from widgets.checkpoints_table import CheckpointsTable
from widgets.confirm_modal import ConfirmModal
from widgets.costs_panel import CostBanner, CostsPane
from widgets.filterable_table import FilterableTable
from widgets.instances_table import InstancesTable, instance_rows
from widgets.log_view import LogView
from widgets.loss_chart import LossChart
from widgets.metrics_strip import MetricsStrip
from widgets.runs_table import RunsTable

if TYPE_CHECKING:
    # Imported where first used: the dashboard paints before the parser or dialogs load.
    from app.run_metrics import RunMetrics
    from app.screens.launch import LaunchRequest

TAIL_BYTES = 4 << 20  # the metrics strip parses the log's last 4 MB; the chart scans it all
DRY_RUN_ID = "<new-run-id>"
STARTUP_GRACE_S = 0.5
REMOTE_REFRESH_S = 5.0  # run states of a remote host are re-read at most this often
BURST_BYTES = 256 * 1024  # a batch bigger than this is a burst: see _digest
PARSED_TAIL_BYTES = 64 * 1024
BURST_CHART_EVERY_S = 0.5
DESTRUCTIVE_ACTIONS = {
    "stop_run",
    "cleanup_checkpoints",
    "stop_instance",
    "terminate_instance",
    "toggle_autostop",  # it stops instances
    "launch_instance",  # not destructive, but it starts spending money
}


class RunsRefreshed(Message):
    def __init__(self, instance_key: str, runs: list[Run]) -> None:
        super().__init__()
        self.instance_key = instance_key
        self.runs = runs


class InstancesRefreshed(Message):
    def __init__(self, instances: list[Instance], table_rows: list[tuple[str, list]]) -> None:
        super().__init__()
        self.instances = instances
        self.table_rows = table_rows  # the Instances table's rows, made in the worker


class CheckpointsListed(Message):
    def __init__(
        self, run_id: str, infos: list, best_path: str | None, in_s3: frozenset[str] = frozenset()
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.infos = infos
        self.best_path = best_path
        self.in_s3 = in_s3  # paths also copied to S3


class SidePanel(Vertical):
    """The loss chart over the Checkpoints / Costs tabs (the app owns the pane widgets)."""

    def __init__(self, chart: LossChart, checkpoints: CheckpointsTable, costs: CostsPane):
        super().__init__(id="side")
        self.chart, self.checkpoints, self.costs = chart, checkpoints, costs

    def compose(self) -> ComposeResult:
        yield self.chart
        with TabbedContent(id="lower-tabs"):
            with TabPane("Checkpoints", id="tab-checkpoints"):
                yield self.checkpoints
            with TabPane("Costs", id="tab-costs"):
                yield self.costs

    def on_mount(self) -> None:
        self.app._label_checkpoints_tab()
        self.app._show_costs()


class RunctlApp(
    HostActions,
    CloudActions,
    LaunchActions,
    CheckpointCopyActions,
    InstanceGuardActions,
    SpotActions,
    App[int],
):
    TITLE = "runctl-tui"
    # Absolute, so subclasses defined elsewhere (benchmarks, tests) find it too.
    CSS_PATH = Path(__file__).with_name("app.tcss")

    BINDINGS = [
        Binding("t", "train", "Train", id="run.train"),
        Binding("s", "stop_run", "Stop run", id="run.stop"),
        Binding("r", "resume", "Resume", id="checkpoint.resume"),
        Binding("c", "cleanup_checkpoints", "Clean up", id="checkpoint.cleanup"),
        Binding("w", "download_checkpoint", "Download", show=False, id="checkpoint.download"),
        Binding("B", "copy_checkpoints_to_s3", "Checkpoints → S3", show=False, id="checkpoint.s3"),
        Binding("b", "toggle_s3_view", "S3 copy", show=False, id="checkpoint.s3_view"),
        Binding("S", "sync_code", "Sync", id="host.sync"),
        Binding("D", "install_deps", "Deps", id="host.deps"),
        Binding("x", "cancel_host_work", "Cancel sync/install", show=False, id="host.cancel"),
        Binding("Z", "stop_instance", "Stop instance", show=False, id="instance.stop"),
        Binding("U", "start_instance", "Start instance", show=False, id="instance.start"),
        Binding("K", "terminate_instance", "Terminate", show=False, id="instance.terminate"),
        Binding("A", "toggle_autostop", "Idle auto-stop", show=False, id="instance.autostop"),
        Binding("L", "launch_instance", "Launch EC2", show=False, id="instance.launch"),
        Binding("a", "toggle_show_all", "All instances", show=False, id="instance.show_all"),
        Binding("e", "events", "Events", id="app.events"),
        Binding("g", "refresh_now", "Refresh", show=False, id="app.refresh"),
        Binding("f", "toggle_follow", "Follow", show=False, id="log.follow"),
        Binding("slash", "filter", "Filter", id="table.filter"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(
        self,
        settings: Settings,
        project_root: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.project_root = project_root.resolve()
        self.clock = clock
        self.store = RunStore(settings.store_path)
        self.oplog = OperationLog(settings.oplog_path, debug=settings.debug)
        self.service = RunService(settings, self.store, self.oplog, self.project_root)
        self.instances: dict[str, Instance] = {}
        self.selected_instance_key: str | None = None
        self.selected_run_id: str | None = None
        self.run_metrics: RunMetrics | None = None
        self.loss_chart = LossChart(id="chart")
        self.checkpoints_table = CheckpointsTable(id="checkpoints")
        self.costs_pane = CostsPane(id="costs-pane")
        self.cost_banner = CostBanner(id="cost-banner")
        self.stopping: set[str] = set()
        self._base_sub_title = f"{self.project_root}" + (
            "  [read-only]" if settings.read_only else ""
        )
        self.sub_title = self._base_sub_title
        self._announced_failures: set[str] = set()
        self._announced_stale: set[str] = set()
        self._announced_nonfinite: set[str] = set()
        self._asked_trust: set[str] = set()  # hosts whose key question is open
        self._trust_offered: set[str] = set()  # hosts asked about on selection already
        self._showing_operation_log = False  # the log pane shows pip's output, not a run's
        self._checkpoint_sources: dict[str, object] = {}  # host -> TransportCheckpointSource
        self._last_refresh_error: str | None = None
        self._startup_heap_frozen = False  # gc.freeze() after the first instances refresh
        self._last_cloud_message: str | None = None
        self._refresh_timers: dict[str, Timer] = {}
        self._last_remote_refresh = 0.0
        self._last_progress_write = 0.0
        self._live_history = None  # losses that arrived while following
        self._chart_drawn_at = 0.0  # time.monotonic() of the last chart update
        self._chart_timer: Timer | None = None  # a chart update held back during a burst
        self._scanned_history = None  # losses of the log as it was when opened
        self.checkpoint_infos: list = []  # of the selected run, as last listed

    # -- layout ------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield self.cost_banner
        with Horizontal(id="top"):
            yield InstancesTable(id="instances")
            yield RunsTable(id="runs")
        yield MetricsStrip(id="metrics")
        with Horizontal(id="bottom"):
            yield LogView(placeholder="no run selected", id="log")
            # Mounted just after the first frame (it is the most costly part to lay out and
            # draw); the panes exist from the start, so results that arrive earlier are kept.
            yield AfterFirstFrame(
                SidePanel(self.loss_chart, self.checkpoints_table, self.costs_pane)
            )
        # Hidden until `/`: mounted after the first frame, which it would slow (~5 ms).
        yield AfterFirstFrame(
            Input(
                placeholder="filter the focused table — enter keeps it, escape clears it",
                id="filter",
            )
        )
        yield Footer()

    def on_mount(self) -> None:
        # Kept as attributes: `App.query_one` searches the top screen, which is a dialog
        # whenever one is open, while workers keep reporting to these panes.
        self.instances_table = self.query_one(InstancesTable)
        self.runs_table = self.query_one(RunsTable)
        self.metrics_strip = self.query_one(MetricsStrip)
        self.log_view = self.query_one(LogView)
        self._title_instances_pane()
        self.runs_table.border_title = "Runs"
        self.log_view.border_title = "Log"
        self.runs_table.checkpoint_warn_s = self.settings.checkpoints.stale_minutes * 60
        self.metrics_strip.show(None)
        local = self.service.local.list_instances()
        self._show_instances(local)
        self.instances_table.focus()
        self.call_after_refresh(gc_pauses.end_startup_pause)  # paused by the command's start
        self.refresh_runs()
        # Hosts and clouds after the first frames: importing boto3 (~0.5 s of CPU) in a worker
        # would hold the GIL while the dashboard paints.
        self._reschedule("instances", STARTUP_GRACE_S, self.refresh_instances)

    @work(
        thread=True,
        exclusive=True,
        group="refresh-instances",
        exit_on_error=False,
        description="Checking hosts",
    )
    def refresh_instances(self) -> None:
        """Every machine of every provider; hosts' reachability re-checked, then again later."""
        try:
            with gc_pauses.paused():  # botocore's parse of 1,500 instances: app/gc_pauses.py
                rows = self.service.local.list_instances()
                if self.settings.hosts:
                    rows += self.service.hosts.list_instances(check=True)
                rows += self.aws_rows()
                self.guard_instances(rows)
                self.post_message(InstancesRefreshed(rows, instance_rows(rows)))
        finally:
            if not get_current_worker().is_cancelled:
                every = min(self.settings.ssh.refresh_s, self.settings.aws.refresh_s)
                self.call_from_thread(self._reschedule, "instances", every, self.refresh_instances)

    @on(InstancesRefreshed)
    def instances_refreshed(self, event: InstancesRefreshed) -> None:
        if not self._startup_heap_frozen:  # boto3 and its service models are loaded by now
            self._startup_heap_frozen = True
            gc_pauses.freeze_startup_heap()
            # Frozen caches would keep whatever is added to them later, even once dropped:
            # the tables start new ones.
            for table in (
                self.instances_table,
                self.runs_table,
                self.checkpoints_table,
                self.costs_pane.table,
            ):
                table.drop_caches()
        self._show_instances(event.instances, event.table_rows)

    # -- instances ---------------------------------------------------------------------------------
    def _show_instances(
        self, instances: list[Instance], table_rows: list[tuple[str, list]] | None = None
    ) -> None:
        self.instances = {f"{i.provider}:{i.id}": i for i in instances}
        self.instances_table.show_instances(instances, table_rows)
        if self.costs_pane.is_mounted:  # else the side panel shows them when it mounts
            self._show_costs()
        if self.selected_instance_key not in self.instances and instances:
            self.selected_instance_key = next(iter(self.instances))

    @on(InstancesTable.Selected)
    def instance_selected(self, event: InstancesTable.Selected) -> None:
        key = f"{event.instance.provider}:{event.instance.id}"
        if (
            event.instance.state == "unknown host key"
            and event.instance.id not in self._trust_offered
        ):
            # Asked once when the row is first selected (the table re-highlights its row on
            # every refresh); sync, install and train ask again when they need the host.
            check = self.service.hosts.checks.get(event.instance.id)
            if check is not None and check.error is not None:
                self._trust_offered.add(event.instance.id)
                self.ask_trust(check.error, then=self.refresh_runs)
        if key != self.selected_instance_key:
            self.selected_instance_key = key
            self.selected_run_id = None
            self.refresh_runs()

    @property
    def selected_instance(self) -> Instance | None:
        return self.instances.get(self.selected_instance_key or "")

    # -- runs: a self-rescheduling refresh ---------------------------------------------------------
    @work(
        thread=True,
        exclusive=True,
        group="refresh-runs",
        exit_on_error=False,
        description="Refreshing runs",
    )
    def refresh_runs(self) -> None:
        instance = self.selected_instance
        if instance is None:
            return
        try:
            if instance.provider != "local" and (
                not self.service.reachable(instance)
                or time.monotonic() - self._last_remote_refresh < REMOTE_REFRESH_S
            ):
                # A host that is down, or an EC2 instance that is not running, is not asked
                # again every second; the store has its runs.
                runs = self.store.runs(instance.provider, instance.id)
            else:
                if instance.provider != "local":
                    self._last_remote_refresh = time.monotonic()
                runs = self.service.refresh(instance)
                self._last_refresh_error = None
        except ProviderError as err:
            if str(err) != self._last_refresh_error:  # say it once, not every refresh
                self._last_refresh_error = str(err)
                self._host_failed(instance, "Refreshing runs", err)
            runs = self.store.runs(instance.provider, instance.id)
        finally:
            if not get_current_worker().is_cancelled:
                self.call_from_thread(self._schedule_refresh)
        self.post_message(RunsRefreshed(f"{instance.provider}:{instance.id}", runs))

    def _schedule_refresh(self) -> None:
        self._reschedule("runs", self.settings.ui.refresh_s, self._refresh_tick)

    def _reschedule(self, name: str, delay: float, callback: Callable[[], object]) -> None:
        """One pending timer per refresh: a refresh asked for by hand replaces the next
        scheduled one instead of starting a second chain of timers."""
        previous = self._refresh_timers.get(name)
        if previous is not None:
            previous.stop()
        self._refresh_timers[name] = self.set_timer(delay, callback, name=f"refresh-{name}")

    def _refresh_tick(self) -> None:
        if len(self.screen_stack) > 1:
            self._schedule_refresh()  # no point refreshing under a dialog; look again later
            return
        self.refresh_runs()

    @on(RunsRefreshed)
    def runs_refreshed(self, event: RunsRefreshed) -> None:
        if event.instance_key != self.selected_instance_key:
            return
        table = self.runs_table
        selected_before = table.runs.get(self.selected_run_id) if self.selected_run_id else None
        table.show_runs(event.runs, now=self.clock())
        self._announce_early_failures(event.runs)
        self._announce_stale_checkpoints(event.runs)
        if self.selected_run_id is None and event.runs:
            first = sorted(event.runs, key=lambda r: (not r.active, -r.started_at))[0]
            self._select_run(first)
        elif self.selected_run_id is not None and not self._showing_operation_log:
            run = table.runs.get(self.selected_run_id)
            if run is not None:
                self._update_log_title(run)
                if selected_before is not None and selected_before.active and not run.active:
                    self.list_checkpoints(run)  # the run has ended: its list is final now

    def _announce_early_failures(self, runs: list[Run]) -> None:
        for run in runs:
            if (
                run.status == "failed"
                and run.id not in self._announced_failures
                and run.ended_at is not None
                and run.ended_at - run.started_at <= EARLY_FAILURE_S
                and self.clock() - run.ended_at < 60
            ):
                self._announced_failures.add(run.id)
                last = "\n".join(tail_lines(run.log_path, 6)) or "(no output)"
                self.notify(
                    f"{run.script} exited {run.exit_code} after "
                    f"{run.ended_at - run.started_at:.1f} s:\n{last}",
                    title=f"Run {run.id} failed",
                    severity="error",
                    timeout=20,
                )

    def _announce_stale_checkpoints(self, runs: list[Run]) -> None:
        """Once per run: the hours lost when an instance dies are those since its last save."""
        limit_s = self.settings.checkpoints.stale_minutes * 60
        for run in runs:
            if not run.active or run.id in self._announced_stale:
                continue
            since = run.last_checkpoint_at or run.started_at
            if self.clock() - since > limit_s:
                self._announced_stale.add(run.id)
                saved = (
                    "no checkpoint yet" if run.last_checkpoint_at is None else "no new checkpoint"
                )
                self.notify(
                    f"Run {run.id} has written {saved} for {(self.clock() - since) / 60:.0f} "
                    "minutes: everything since is lost if the machine dies.",
                    title="Checkpoints are getting old",
                    severity="warning",
                    timeout=15,
                )

    @on(RunsTable.Selected)
    def run_selected(self, event: RunsTable.Selected) -> None:
        if event.run.id != self.selected_run_id or self._showing_operation_log:
            self._select_run(event.run)

    def _select_run(self, run: Run) -> None:
        self.selected_run_id = run.id
        self._showing_operation_log = False
        self._update_log_title(run)
        from app.run_metrics import RunMetrics

        self.run_metrics = RunMetrics(self.settings.logs.extra_patterns)
        self.metrics_strip.show(None)
        self.loss_chart.clear()
        self.follow_log(run)
        self.list_checkpoints(run)
        self.watch_checkpoints(run)

    def _update_log_title(self, run: Run) -> None:
        log = self.log_view
        log.border_title = f"Log — {run.id} {run.script} [{run.status}]"
        log.border_subtitle = run.log_path

    @property
    def selected_run(self) -> Run | None:
        return self.runs_table.runs.get(self.selected_run_id or "")

    # -- the log: followed by offset, in batches ---------------------------------------------------
    @work(exclusive=True, group="follow-log", exit_on_error=False, description="Following the log")
    async def follow_log(self, run: Run) -> None:
        """Show the log (its tail at once, the rest indexed backwards by the view), parse its
        tail for the metrics strip, scan the whole file for the loss chart in a thread, then
        follow it: each batch goes to the view, the parser and the chart."""
        from app.log_history import LossHistory
        from app.log_index import FileSource, LogIndex

        batch_s = self.settings.logs.batch_ms / 1000
        if run.provider == "local":
            source = FileSource(run.log_path)
            end = await asyncio.to_thread(source.size)
            chunks = follow_local_file(run.log_path, end, batch_s=batch_s)
        else:
            from app.remote_logfollow import afollow_remote_log
            from app.remote_sources import TransportByteSource

            try:
                transport = await asyncio.to_thread(self._transport_of, run)
                source = TransportByteSource(transport, run.log_path)
                end, _ = await asyncio.to_thread(source.poll_stat)
            except ProviderError as err:
                self.log_view.clear(f"the log on {run.host} cannot be read: {err}")
                return
            chunks = afollow_remote_log(transport, run.log_path, end, batch_s=batch_s)
        metrics = self.run_metrics
        self.log_view.open_index(LogIndex(source))
        self._live_history = LossHistory()
        self._scanned_history = None
        self.scan_loss_history(run, source, end)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        await asyncio.to_thread(self._parse_range, metrics, source, max(0, end - TAIL_BYTES), end)
        self._show_summary(run, force_store=True)
        async for chunk in chunks:
            if chunk.reset:
                decoder.reset()
                metrics.reset()
                self.log_view.reload()
                self._live_history = LossHistory()
                self._scanned_history = None
                self.loss_chart.clear()
                continue
            if run.provider != "local":
                source.feed(chunk.offset, chunk.data)  # the view reads new lines from memory
            self.log_view.append(chunk.offset, chunk.data)
            batch = await asyncio.to_thread(self._digest, metrics, decoder, chunk.data)
            if batch is not None:
                # Merged here, on the UI thread: the chart reads the live history as it draws.
                self._live_history.append_history(batch)
                if len(chunk.data) > BURST_BYTES:
                    self._show_chart_soon()
                else:
                    self._show_chart()
                self._show_summary(run)

    def _transport_of(self, run: Run):
        return self.service.transport_for(self.service.instance_of(run))

    @work(exclusive=True, group="follow-log", exit_on_error=False, description="Following a log")
    async def show_operation_log(self, path: Path, title: str) -> None:
        """Output of host work (pip / uv) in the log pane, followed as it is written."""
        from app.log_index import FileSource, LogIndex

        self._showing_operation_log = True  # until a run is selected again
        self.log_view.border_title = title
        self.log_view.border_subtitle = str(path)
        self.log_view.open_index(LogIndex(FileSource(path)))
        async for chunk in follow_local_file(str(path), 0, batch_s=0.1):
            if chunk.reset:
                self.log_view.reload()
            else:
                self.log_view.append(chunk.offset, chunk.data)

    def _digest(self, metrics: RunMetrics, decoder, data: bytes):
        """New log bytes into the strip's tracker and a loss history of this batch alone
        (in a thread; None when the batch holds no metric).

        A batch of ordinary size is parsed whole, so a tqdm bar moves with every `\r`. A
        burst (a run printing faster than anyone reads) is not: its losses go to the chart
        through the fast block scan and only its last lines are parsed for the strip, which
        keeps a million-line burst from holding the parser (and the GIL) for seconds."""
        from app.log_history import LossHistory

        history = LossHistory()
        if len(data) <= BURST_BYTES:
            points = metrics.feed(decoder.decode(data), self.clock())
            history.add_points(points)
            return history if points else None
        # A line the previous batch began is read whole: its start is taken back from the
        # parser (and any bytes of a character the decoder holds).
        held = decoder.getstate()[0]
        decoder.reset()
        data = metrics.take_partial_line() + held + data
        cut = data.rfind(b"\n", 0, max(0, len(data) - PARSED_TAIL_BYTES)) + 1
        history.add_block(data[:cut])
        history.add_points(metrics.feed(decoder.decode(data[cut:]), self.clock()))
        return history

    def _parse_range(self, metrics: RunMetrics, source, start: int, end: int) -> None:
        """The tail of the log the strip needs (epoch, step, loss, ETA), read in blocks."""
        from app.log_history import iter_line_blocks

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for block, _ in iter_line_blocks(source, start, end):
            metrics.feed(decoder.decode(bytes(block)), self.clock())

    @work(
        thread=True,
        exclusive=True,
        group="loss-history",
        exit_on_error=False,
        description="Reading the loss history",
    )
    def scan_loss_history(self, run: Run, source, end: int) -> None:
        """The whole log's losses for the chart, read in blocks; the chart fills in as it goes."""
        from app.log_history import scan_loss_history

        worker = get_current_worker()
        for progress in scan_loss_history(source, end=end, cancelled=lambda: worker.is_cancelled):
            done = progress.scanned_bytes >= progress.total_bytes
            self.call_from_thread(
                self._history_scanned, run.id, progress.history, None if done else progress.fraction
            )

    def _history_scanned(self, run_id: str, history, fraction: float | None) -> None:
        if run_id == self.selected_run_id:
            self._scanned_history = history
            self._show_chart(fraction)

    def _show_chart(self, fraction: float | None = None) -> None:
        if self._chart_timer is not None:
            self._chart_timer.stop()
            self._chart_timer = None
        self._chart_drawn_at = time.monotonic()
        self.loss_chart.show(self._scanned_history, self._live_history, progress=fraction)

    def _show_chart_soon(self) -> None:
        """During a burst the chart is drawn at most every BURST_CHART_EVERY_S (and once after
        the last batch): it is the costliest widget of a frame, and drawn for each of a burst's
        ten batches a second it kept keys waiting (bench/burst.py)."""
        wait = BURST_CHART_EVERY_S - (time.monotonic() - self._chart_drawn_at)
        if wait <= 0:
            self._show_chart()
        elif self._chart_timer is None:
            self._chart_timer = self.set_timer(wait, self._show_chart)

    def _show_summary(self, run: Run, force_store: bool = False) -> None:
        summary = self.run_metrics.summary(self.clock()) if self.run_metrics else None
        self.metrics_strip.show(summary, now=self.clock())
        if summary is None:
            return
        if summary.nonfinite_loss and run.id not in self._announced_nonfinite:
            self._announced_nonfinite.add(run.id)
            self.notify(
                f"Run {run.id} logged a loss of {summary.loss}: training has diverged or a "
                "batch is bad. The log filter (i) lists the lines.",
                title="Loss is nan/inf",
                severity="error",
                timeout=20,
            )
        if force_store or self.clock() - self._last_progress_write > 5:
            self._last_progress_write = self.clock()
            self.service.record_progress(
                run.id,
                last_epoch=summary.epoch,
                total_epochs=summary.total_epochs,
                last_step=summary.step,
                last_loss=summary.loss,
            )

    def action_toggle_follow(self) -> None:
        self.log_view.following = not self.log_view.following
        if self.log_view.following:
            self.log_view.scroll_to_end()
        self.notify("Following the log" if self.log_view.following else "Stopped following the log")

    # -- checkpoints -------------------------------------------------------------------------------
    @work(
        thread=True,
        exclusive=True,
        group="checkpoints",
        exit_on_error=False,
        description="Listing checkpoints",
    )
    def list_checkpoints(self, run: Run) -> None:
        from app.checkpoints import list_checkpoints, pick_best

        if self.s3_view:
            self.list_s3_checkpoints(run)
            return
        globs = self.settings.checkpoints.globs
        if run.provider == "local":
            infos = list_checkpoints(run.checkpoint_dir, globs)
        else:
            from app.remote_sources import list_remote_checkpoints

            try:
                source = self._checkpoint_source(run)
                infos = list_remote_checkpoints(source, run.checkpoint_dir, globs)
            except ProviderError as err:
                self._host_failed(self.service.instance_of(run), "Listing checkpoints", err)
                return
        best = pick_best(infos)
        if infos:
            newest = max(info.mtime for info in infos)
            if run.last_checkpoint_at != newest:
                self.service.record_progress(run.id, last_checkpoint_at=newest)
        in_s3 = self.s3_marks(run, infos)
        self.post_listing(CheckpointsListed(run.id, infos, best.path if best else None, in_s3))

    def post_listing(self, listed: CheckpointsListed) -> None:
        """From a listing worker, unless a newer listing has started since: listings overlap
        (a burst of new files), and an older one that finishes last must not win."""
        if not get_current_worker().is_cancelled:
            self.post_message(listed)

    @work(
        exclusive=True,
        group="watch-checkpoints",
        exit_on_error=False,
        description="Watching for new checkpoints",
    )
    async def watch_checkpoints(self, run: Run) -> None:
        """New checkpoints appear as the run writes them: watched, not polled."""
        if not run.active:
            return
        if run.provider != "local":
            # No file events from another machine: look again every few seconds.
            while True:
                await asyncio.sleep(REMOTE_REFRESH_S * 2)
                self.list_checkpoints(run)
        from watchfiles import awatch

        directory = Path(run.checkpoint_dir)
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        # Files written between the first listing and the watcher's start send no event: the
        # first quiet period (an empty set, the watcher surely running) lists once more.
        listed_after_start = False
        async for changes in awatch(
            directory, debounce=300, step=50, yield_on_timeout=True, rust_timeout=1000
        ):
            if changes or not listed_after_start:
                listed_after_start = True
                self.list_checkpoints(run)

    def _checkpoint_source(self, run: Run):
        """One source per host for the app's life: its metadata cache makes a re-listing of an
        unchanged directory cost one command."""
        from app.remote_sources import TransportCheckpointSource

        source = self._checkpoint_sources.get(run.host)
        if source is None:
            source = TransportCheckpointSource(self._transport_of(run))
            self._checkpoint_sources[run.host] = source
        return source

    @on(CheckpointsListed)
    def checkpoints_listed(self, event: CheckpointsListed) -> None:
        if event.run_id != self.selected_run_id:
            return
        self.checkpoint_infos = event.infos
        self.checkpoints_table.show_checkpoints(
            event.infos, event.best_path, self.clock(), event.in_s3
        )
        self._label_checkpoints_tab()

    @on(CheckpointsTable.Sorted)
    def _label_checkpoints_tab(self) -> None:
        table = self.checkpoints_table
        if not table.is_mounted:
            return  # labelled when the side panel mounts
        with contextlib.suppress(NoMatches):  # the app may be closing
            tab = table.query_ancestor(TabbedContent).get_tab("tab-checkpoints")
            where = " in S3" if self.s3_view else ""
            tab.label = (
                f"Checkpoints{where} ({len(table.checkpoints)}) · by {table.sort_description}"
            )

    # -- launching ---------------------------------------------------------------------------------
    def action_train(self) -> None:
        self._open_launch_dialog()

    def _open_launch_dialog(
        self,
        script: str | None = None,
        args: str | None = None,
        parent_run_id: str | None = None,
        parent_checkpoint: str | None = None,
    ) -> None:
        remembered = self.store.launch_defaults(str(self.project_root))
        default_script = self.settings.train.default_script
        if not (self.project_root / default_script).is_file():
            default_script = ""
        choices = [
            (f"{i.provider}: {i.name or i.id} ({i.id})", key) for key, i in self.instances.items()
        ]
        from app.screens.launch import LaunchScreen

        screen = LaunchScreen(
            self.project_root,
            choices,
            self._check_launch,
            script=script if script is not None else remembered.get("script", default_script),
            args=args if args is not None else remembered.get("args", ""),
            instance_key=self.selected_instance_key,
            parent_run_id=parent_run_id,
            parent_checkpoint=parent_checkpoint,
            install_deps=self.settings.train.install_deps,
        )
        self.push_screen(screen, self._launch_dialog_closed)

    def _check_launch(
        self, script: str, args: list[str], instance_key: str
    ) -> tuple[list[str], str]:
        instance = self.instances[instance_key]
        problems = self.service.preflight(script, instance)
        if problems:
            return problems, ""
        plan = self.service.plan(script, args, instance, run_id=DRY_RUN_ID)
        return [], plan.describe()

    def _launch_dialog_closed(self, request: LaunchRequest | None) -> None:
        if request is not None:
            self.store.remember_launch(
                str(self.project_root),
                request.script,
                shlex.join(request.args),
                request.instance_key,
            )
            self.launch_run(request, force=False)

    @work(thread=True, group="launch", exit_on_error=False, description="Starting the run")
    def launch_run(self, request: LaunchRequest, force: bool) -> None:
        instance = self.instances[request.instance_key]
        try:
            if instance.provider != "local" and not force:
                self.prepare_host(instance, request.script, request.install_deps)
            plan = self.service.plan(
                request.script,
                request.args,
                instance,
                request.parent_run_id,
                request.parent_checkpoint,
            )
            run = self.service.launch(plan, force=force)
        except AlreadyRunning as err:
            self.call_from_thread(self._ask_start_anyway, request, str(err))
            return
        except ProviderError as err:
            self._host_failed(instance, "Starting the run", err)
            return
        self.call_from_thread(self._run_started, run)

    def _ask_start_anyway(self, request: LaunchRequest, message: str) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.launch_run(request, force=True)

        self.push_screen(
            ConfirmModal(
                "A training is already running here", message, confirm_label="Start anyway"
            ),
            answered,
        )

    def _run_started(self, run: Run) -> None:
        self.notify(f"{run.script} started as run {run.id}", title="Training started")
        self.selected_run_id = None  # the refresh selects the newest (running) run
        self.refresh_runs()

    # -- stopping ----------------------------------------------------------------------------------
    def action_stop_run(self) -> None:
        run = self.selected_run
        if run is None or not run.active:
            self.notify("Select a running run to stop it.", severity="warning")
            return
        if run.id in self.stopping:
            self.notify(f"Run {run.id} is already stopping.", severity="warning")
            return
        grace = self.settings.train.stop_grace_s
        body = (
            f"Run {run.id}: {run.script} {shlex.join(run.args)}\n"
            f"on {run.provider} {run.host}, started {time.strftime('%H:%M:%S', time.localtime(run.started_at))}\n\n"
            f"Sends SIGTERM to its process group, waits up to {grace:g} s for it to save and exit, "
            "then SIGKILL. The run stays in the history with its exit code."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.stopping.add(run.id)
                self.stop_run(run)

        self.push_screen(
            ConfirmModal(f"Stop run {run.id}?", body, confirm_label="Stop run"), answered
        )

    @work(thread=True, group="stop", exit_on_error=False, description="Stopping the run")
    def stop_run(self, run: Run) -> None:
        def tick(left: float) -> None:
            self.call_from_thread(self._show_countdown, run, left)

        try:
            stopped = self.service.stop(run, on_tick=tick)
        except ProviderError as err:
            self.call_from_thread(
                self.notify, str(err), title=f"Stopping {run.id} failed", severity="error"
            )
            return
        finally:
            self.call_from_thread(self._countdown_done, run)
        self.call_from_thread(
            self.notify,
            f"Run {run.id} is {stopped.status} (exit code {stopped.exit_code}).",
            title="Run stopped",
        )
        self.call_from_thread(self.refresh_runs)

    def _show_countdown(self, run: Run, left: float) -> None:
        self.sub_title = f"stopping {run.id}: SIGKILL in {left:.0f} s unless it exits"
        table = self.runs_table
        table.stop_countdowns[run.id] = left
        if run.id in table.runs:
            table.show_runs(list(table.runs.values()), now=self.clock())

    def _countdown_done(self, run: Run) -> None:
        self.runs_table.stop_countdowns.pop(run.id, None)
        self.stopping.discard(run.id)
        self.sub_title = self._base_sub_title

    # -- resume & cleanup need the checkpoints service ---------------------------------------------
    def action_resume(self) -> None:
        checkpoint = self.checkpoints_table.selected_checkpoint
        run = self.selected_run
        if checkpoint is None or run is None:
            self.notify("Select a checkpoint of a run to resume from it.", severity="warning")
            return
        if checkpoint.status != "ok":
            self.notify(
                f"{checkpoint.name} is {checkpoint.status} ({checkpoint.error}); "
                "pick another checkpoint to resume from.",
                title="Cannot resume from this checkpoint",
                severity="error",
            )
            return
        if checkpoint.path.startswith("s3://"):
            self.notify(
                "This is the run's copy in S3: download it first (w), or press b and resume "
                "from the run's own checkpoint.",
                severity="warning",
            )
            return
        from app.checkpoints import resume_argv

        args = resume_argv(run.args, self.settings.train.resume_args, checkpoint.path)
        self._open_launch_dialog(
            script=run.script,
            args=shlex.join(args),
            parent_run_id=run.id,
            parent_checkpoint=checkpoint.path,
        )

    @on(CheckpointsTable.DetailsRequested)
    def checkpoint_details(self, event: CheckpointsTable.DetailsRequested) -> None:
        from app.screens.checkpoint_details import CheckpointDetailsScreen

        is_best = event.checkpoint.path == self.checkpoints_table.best_path
        self.push_screen(CheckpointDetailsScreen(event.checkpoint, is_best))

    def action_cleanup_checkpoints(self) -> None:
        run = self.selected_run
        if run is None or not self.checkpoint_infos:
            self.notify("Select a run with checkpoints to clean them up.", severity="warning")
            return
        from app.checkpoints import plan_cleanup

        keep = self.settings.checkpoints.keep_newest
        protect = set()
        if run.active:
            # The newest file of a running run may be the one it is writing right now.
            protect.add(max(self.checkpoint_infos, key=lambda c: c.mtime).path)
        plan = plan_cleanup(self.checkpoint_infos, keep, protect)
        if not plan.delete:
            self.notify(
                f"Nothing to delete: {len(plan.keep)} checkpoints, keeping the newest {keep} "
                "and the best.",
                title="Clean up checkpoints",
            )
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete_checkpoints(run, plan)

        self.push_screen(
            ConfirmModal(
                f"Delete {len(plan.delete)} checkpoints of run {run.id}"
                + (" in S3?" if self.s3_view else "?"),
                "\n".join(plan.describe()),
                confirm_label="Delete",
            ),
            answered,
        )

    @work(thread=True, group="cleanup", exit_on_error=False, description="Deleting checkpoints")
    def delete_checkpoints(self, run: Run, plan) -> None:
        from app.checkpoints import delete_checkpoints
        from widgets.formatting import size

        with self.oplog.operation(
            "cleanup-checkpoints", f"{run.provider}:{run.host}", run_id=run.id
        ) as op:
            if plan.delete and plan.delete[0].path.startswith("s3://"):
                report = delete_checkpoints(plan, source=self.s3_checkpoint_source())
            elif run.provider == "local":
                report = delete_checkpoints(plan)
            else:
                report = delete_checkpoints(plan, source=self._checkpoint_source(run))
            op.message = f"deleted {len(report.deleted)}, freed {size(report.bytes_freed)}"
            if report.failed:
                op.result = "error"
                op.message += "; kept " + "; ".join(
                    f"{path}: {why}" for path, why in report.failed.items()
                )
        self.call_from_thread(
            self.notify,
            op.message,
            title="Checkpoints cleaned up",
            severity="warning" if report.failed else "information",
        )
        self.call_from_thread(self.list_checkpoints, run)

    # -- general -----------------------------------------------------------------------------------
    def action_refresh_now(self) -> None:
        self.refresh_runs()
        # Hosts and clouds after the first frames: importing boto3 (~0.5 s of CPU) in a worker
        # would hold the GIL while the dashboard paints.
        self._reschedule("instances", STARTUP_GRACE_S, self.refresh_instances)
        run = self.selected_run
        if run is not None:
            self.list_checkpoints(run)

    def action_events(self) -> None:
        from app.screens.info import EventsScreen

        self.push_screen(EventsScreen(lambda: list(self.oplog.recent)))

    def action_help(self) -> None:
        rows = [
            (self.get_key_display(binding), binding.description)
            for binding in self.BINDINGS
            if isinstance(binding, Binding) and self.check_action(binding.action, ()) is not False
        ]
        from app.screens.info import HelpScreen

        self.push_screen(HelpScreen(rows, self.settings.read_only))

    def action_filter(self) -> None:
        focused = self.focused
        if not isinstance(focused, FilterableTable):
            self.notify("Focus a table (tab) to filter it.", severity="warning")
            return
        box = self.filter_box
        if box is None:  # the instant before it is mounted, just after start
            self.call_after_refresh(self.action_filter)
            return
        self._filter_target = focused
        box.value = focused.filter_text
        box.add_class("-visible")
        box.focus()

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        target = getattr(self, "_filter_target", None)
        if target is not None:
            target.set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def filter_done(self) -> None:
        self._close_filter(clear=False)

    @property
    def filter_box(self) -> Input | None:
        """The table filter's input; None until it is mounted (just after the first frame)."""
        found = self.screen_stack[0].query("#filter") if self.screen_stack else None
        return found.first(Input) if found else None

    def _close_filter(self, clear: bool) -> None:
        box = self.filter_box
        target = getattr(self, "_filter_target", None)
        if clear and target is not None:
            target.set_filter("")
        if box is not None:
            box.remove_class("-visible")
        if target is not None:
            target.focus()

    def on_key(self, event) -> None:
        if event.key == "escape" and self.focused is not None and self.focused.id == "filter":
            event.stop()
            self._close_filter(clear=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (self.settings.read_only and action in DESTRUCTIVE_ACTIONS)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for binding in self.BINDINGS:
            if not isinstance(binding, Binding) or binding.action == "quit":
                continue
            if self.check_action(binding.action, ()) is False:
                continue
            yield SystemCommand(
                binding.description,
                f"{binding.description} ({binding.key})",
                getattr(self, f"action_{binding.action}"),
            )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The safety net: a worker that fails unexpectedly becomes a notification and an
        entry in the operations log — never a traceback, never a dead dashboard."""
        if event.state != WorkerState.ERROR:
            return
        worker = event.worker
        error = worker.error
        message = f"{type(error).__name__}: {error}" if error else "unknown error"
        # The description names the work; a worker's own name would spell out its arguments.
        what = worker.description if worker.group else "A background task"
        self.oplog.record(worker.group or "worker", what, "error", message[:2000])
        self.notify(
            f"{what} failed: {message[:300]}\nDetails are in the Events view (e).",
            title="Something went wrong",
            severity="error",
            timeout=15,
        )

    def on_unmount(self) -> None:
        self.store.close()
        if self._startup_heap_frozen:
            gc_pauses.thaw()
