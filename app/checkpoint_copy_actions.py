"""The dashboard's S3 side of checkpoints: `B` copies the selected run's checkpoints to
`s3://<aws.s3_bucket>/runctl/<project>/<run_id>/` (files and bytes in the subtitle, x cancels,
recorded in the operations log); rows already there are marked "S3" in the Checkpoints pane;
`b` switches the pane to the run's S3 copy, where `c` cleans up with the same keep-newest-and-
best rule and confirmation, and `w` downloads a checkpoint from S3.

A mixin of `RunctlApp` (app/tui.py). The copy itself is app/s3_backup.py; this module only
finds the client, the transport and the bucket, and reports. `copy_run_to_s3` is also what
the idle auto-stop and the spot interruption handler call (app/instance_guard_actions.py).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from textual import work
from textual.worker import get_current_worker

from providers.base import ProviderError
from widgets.formatting import size

if TYPE_CHECKING:
    from app.s3_backup import CopyProgress, CopyResult
    from app.store import Run
    from app.tui import RunctlApp

NO_BUCKET = (
    "No S3 bucket is set for checkpoints: set `s3_bucket` under [aws] in runctl.toml "
    '(e.g. s3_bucket = "my-checkpoints", or RUNCTL_AWS__S3_BUCKET) and try again.'
)
S3_LISTING_TTL_S = 30.0  # how long the S3 marks of a run's rows trust one listing


class CheckpointCopyActions:
    """Checkpoints to and from S3 (mixed into RunctlApp)."""

    s3_view: bool = False  # the Checkpoints pane shows the run's S3 copy
    copy_with_host_cli: bool = True  # a host with the AWS CLI syncs to S3 itself
    last_copy_progress: CopyProgress | None = None
    _s3_source: Any = None
    _s3_listings: dict[str, tuple[float, dict[str, int]]] | None = None

    # -- where the copies go -----------------------------------------------------------------------
    @property
    def s3_bucket(self: RunctlApp) -> str | None:
        return self.settings.aws.s3_bucket or None

    @property
    def project_key(self: RunctlApp) -> str:
        from app.project import project_name

        return project_name(self.project_root)

    def s3_client(self: RunctlApp) -> Any:
        """The S3 client of the app's AWS provider (in a worker: may import boto3)."""
        provider = self._ec2_provider()
        return provider.clients.client("s3", provider.regions[0])

    def s3_checkpoint_source(self: RunctlApp) -> Any:
        """One source for the app's life: the metadata cache is keyed by it."""
        if self._s3_source is None:
            from app.s3_checkpoints import S3CheckpointSource

            self._s3_source = S3CheckpointSource(self.s3_client())
        return self._s3_source

    def s3_run_url(self: RunctlApp, run: Run) -> str:
        from app.s3_checkpoints import run_url

        return run_url(self.s3_bucket or "", self.project_key, run.id)

    def s3_sizes(self: RunctlApp, run: Run, fresh: bool = False) -> dict[str, int]:
        """{relative path: size} of the run's S3 prefix, listed at most every
        S3_LISTING_TTL_S unless `fresh` (in a worker)."""
        from app.s3_backup import object_sizes

        if self._s3_listings is None:
            self._s3_listings = {}
        cached = self._s3_listings.get(run.id)
        if cached is not None and not fresh and time.monotonic() - cached[0] < S3_LISTING_TTL_S:
            return cached[1]
        sizes = object_sizes(self.s3_client(), self.s3_bucket, self.project_key, run.id)
        self._s3_listings[run.id] = (time.monotonic(), sizes)
        return sizes

    # -- B: copy ---------------------------------------------------------------------------------
    def action_copy_checkpoints_to_s3(self: RunctlApp) -> None:
        run = self.selected_run
        if run is None:
            self.notify("Select a run to copy its checkpoints to S3.", severity="warning")
            return
        if not self.s3_bucket:
            self.notify(NO_BUCKET, title="Checkpoints → S3", severity="warning", timeout=15)
            return
        self.notify(f"Copying the checkpoints of {run.id} to {self.s3_run_url(run)}…")
        self.copy_checkpoints_to_s3(run)

    @work(thread=True, group="s3-copy", exit_on_error=False, description="Checkpoints to S3")
    def copy_checkpoints_to_s3(self: RunctlApp, run: Run) -> None:
        from app.s3_backup import CopyCancelled, CopyFailed

        worker = get_current_worker()
        try:
            result = self.copy_run_to_s3(run, cancel=lambda: worker.is_cancelled)
        except CopyCancelled:
            self.call_from_thread(self.notify, "Copy to S3 cancelled; what was copied stays.")
            return
        except (CopyFailed, ProviderError) as err:
            self.call_from_thread(
                self.notify,
                str(err),
                title=f"Copying {run.id}'s checkpoints to S3 failed",
                severity="error",
                timeout=20,
            )
            return
        self.call_from_thread(self.notify, result.describe(), title="Checkpoints → S3")
        if run.id == self.selected_run_id:
            self.call_from_thread(self.list_checkpoints, run)  # the S3 marks

    def copy_run_to_s3(self: RunctlApp, run: Run, cancel: Any = None) -> CopyResult:
        """Copy in the calling (worker) thread, from wherever the run's checkpoints are;
        progress in the subtitle, recorded in the operations log. Raises CopyFailed."""
        from app.s3_backup import CopyFailed, copy_run_checkpoints

        if not self.s3_bucket:
            raise CopyFailed(NO_BUCKET)
        url = self.s3_run_url(run)
        hint = " (x cancels)" if cancel is not None else ""

        def progress(p: CopyProgress) -> None:
            self.last_copy_progress = p
            self.call_from_thread(
                self._show_activity,
                f"{run.id} → S3: {p.files_done}/{p.files_total} files, "
                f"{size(p.bytes_done)}/{size(p.bytes_total)}{hint}",
            )

        with self.oplog.operation(
            "checkpoints-to-s3", f"{run.provider}:{run.host}", run_id=run.id, url=url
        ) as op:
            transport = None if run.provider == "local" else self._transport_of(run)
            try:
                result = copy_run_checkpoints(
                    self.s3_client(),
                    self.s3_bucket,
                    self.project_key,
                    run.id,
                    run.checkpoint_dir,
                    transport,
                    progress=progress,
                    cancel=cancel,
                    use_host_cli=self.copy_with_host_cli,
                )
            finally:
                self.call_from_thread(self._show_activity, None)
                if self._s3_listings is not None:
                    self._s3_listings.pop(run.id, None)
            op.message = result.describe()
        return result

    # -- the S3 marks and the S3 view of the Checkpoints pane --------------------------------------
    def s3_marks(self: RunctlApp, run: Run, infos: list) -> frozenset[str]:
        """Paths of the listed checkpoints already in S3 with the same size (in the listing
        worker); nothing when no bucket is set or S3 cannot be asked (said once)."""
        if not infos or not self.s3_bucket or not self.settings.aws.enabled:
            return frozenset()
        from app.uncopied_checkpoints import present_in

        try:
            sizes = self.s3_sizes(run)
        except Exception as err:  # a mark is not worth an error dialog
            self.call_from_thread(self._say_once, f"S3 marks unavailable: {err}")
            return frozenset()
        return frozenset(present_in(infos, run.checkpoint_dir, sizes))

    def action_toggle_s3_view(self: RunctlApp) -> None:
        if not self.s3_view and not self.s3_bucket:
            self.notify(NO_BUCKET, title="S3 copy", severity="warning", timeout=15)
            return
        self.s3_view = not self.s3_view
        self.checkpoint_infos = []
        self.checkpoints_table.show_checkpoints([], None, self.clock())
        self._label_checkpoints_tab()
        if self.s3_view:
            self.notify(
                "The Checkpoints pane shows the run's copy in S3: c cleans it up (newest and "
                "best kept), w downloads. b again shows the run's own checkpoints.",
                title="S3 copy",
            )
        run = self.selected_run
        if run is not None:
            self.list_checkpoints(run)

    def list_s3_checkpoints(self: RunctlApp, run: Run) -> None:
        """The S3 branch of the app's checkpoint listing (in its worker)."""
        from app.checkpoints import list_checkpoints, pick_best
        from app.tui import CheckpointsListed

        try:
            infos = list_checkpoints(
                self.s3_run_url(run), self.settings.checkpoints.globs, self.s3_checkpoint_source()
            )
        except Exception as err:  # botocore's errors, shown not raised
            self.call_from_thread(
                self.notify, str(err), title="Listing the S3 copy failed", severity="error"
            )
            return
        best = pick_best(infos)
        every = frozenset(info.path for info in infos)
        self.post_listing(CheckpointsListed(run.id, infos, best.path if best else None, every))

    # -- w in the S3 view: download --------------------------------------------------------------
    @work(thread=True, group="s3-copy", exit_on_error=False, description="Downloading from S3")
    def download_from_s3(self: RunctlApp, run: Run, checkpoint: Any) -> None:
        """Into <state>/downloads/<host>/<run id>/, where a download from the host goes too
        (and where the terminate check looks for local copies)."""
        from app.s3_checkpoints import download_checkpoints
        from app.uncopied_checkpoints import relative_name

        local_dir = self.settings.state_dir / "downloads" / run.host / run.id
        name = relative_name(checkpoint, self.s3_run_url(run))
        try:
            sizes = self.s3_sizes(run, fresh=True)
            only = [key for key in sizes if key == name or key.startswith(name + "/")]

            def progress(done: int, total: int, current: str) -> None:
                self.call_from_thread(
                    self._show_activity, f"S3 → {run.id}/{current}: {size(done)}/{size(total)}"
                )

            with self.oplog.operation(
                "download-s3", f"{run.provider}:{run.host}", run_id=run.id, checkpoint=name
            ) as op:
                result = download_checkpoints(
                    self.s3_client(),
                    self.s3_bucket,
                    self.project_key,
                    run.id,
                    local_dir,
                    progress=progress,
                    only=only,
                )
                op.message = (
                    f"{len(result.copied)} file(s), {size(result.bytes_copied)} to "
                    f"{local_dir / name}"
                )
        except Exception as err:  # botocore's and the disk's errors alike
            self.call_from_thread(
                self.notify, str(err), title=f"Downloading {name} failed", severity="error"
            )
            return
        finally:
            self.call_from_thread(self._show_activity, None)
        self.call_from_thread(self.notify, op.message, title="Downloaded from S3")
