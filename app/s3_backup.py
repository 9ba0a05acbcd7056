"""Copies a run's checkpoints to S3 (`s3://<bucket>/runctl/<project>/<run_id>/`) from where
they are: this machine, or the host the run ran on, reached through its transport.

On this machine, boto3's managed upload (`app.s3_checkpoints.upload_checkpoints`: multipart,
parts in parallel). On a host, two ways, tried in this order:

1. `aws s3 sync` run on the host itself, when the host has the AWS CLI and credentials that
   may write the bucket (an EC2 instance profile). The bytes go from the host to S3 directly,
   in-region on EC2 and at the host's bandwidth: the only way a multi-GB checkpoint gets out
   within the two minutes of a spot interruption notice.
2. Otherwise (no CLI, no credentials there, or the sync failed) each missing file is read
   through the transport in `part_bytes` parts (`read_from`) into a multipart upload made
   with this machine's credentials. Slower (the bytes cross this machine's link twice), but
   it needs nothing on the host beyond `sh`, `tail` and `head`, and a failed part is retried
   on its own (the transport retries a dropped read, botocore a refused upload).

Either way the verdict is what this machine's credentials see afterwards: each file must be
listed under the prefix with its size, or the copy fails and says which files are missing. A
sync that "succeeded" into another account, or left a file out, is caught; the idle auto-stop
and the spot handler never act on a copy they cannot see. Files whose name starts with "."
are skipped (saves in progress). No textual; boto3 only through the client handed in.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.remote_sources import TransportCheckpointSource, list_tree
from app.s3_checkpoints import (
    iter_objects,
    local_checkpoint_files,
    run_prefix,
    s3_url,
    upload_checkpoints,
)
from providers.base import ProviderError, Transport
from providers.streaming import CommandCancelled, stream_command

PART_BYTES = 8 * 1024 * 1024  # S3's smallest part is 5 MB (except the last)
REPORT_EVERY_S = 0.1
UPLOADED = "uploaded from this machine"
HOST_SYNC = "aws s3 sync on the host"
# $1 the directory, $2 the s3:// prefix, $3 the region. Exit 127: no CLI.
HOST_SYNC_SCRIPT = (
    'command -v aws >/dev/null 2>&1 || { echo "no AWS CLI (aws) on the host" >&2; exit 127; }; '
    'exec aws s3 sync "$1" "$2" --region "$3" --no-progress --exclude ".*" --exclude "*/.*"'
)


@dataclass(frozen=True, slots=True)
class CopyProgress:
    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int
    current: str = ""


ProgressCallback = Callable[[CopyProgress], None]


class CopyFailed(Exception):
    """The copy did not complete; `str()` says what is missing, why, and what to do."""


class CopyCancelled(CopyFailed):
    pass


@dataclass(slots=True)
class CopyResult:
    url: str  # the run's prefix, s3://bucket/runctl/<project>/<run_id>/
    copied: list[str]  # paths relative to the checkpoint dir
    skipped: list[str]  # already in S3 with the same size
    bytes_copied: int
    method: str
    seconds: float
    notes: list[str] = field(default_factory=list)  # e.g. why the host's CLI was not used

    def describe(self) -> str:
        from widgets.formatting import size  # plain formatting, no textual

        if not self.copied:
            if not self.skipped:
                return f"no checkpoint files to copy; {self.url} unchanged"
            return f"nothing new: all {len(self.skipped)} file(s) already in {self.url}"
        text = f"{len(self.copied)} file(s), {size(self.bytes_copied)} to {self.url}"
        if self.copied:
            text += f" ({self.method}) in {self.seconds:.1f} s"
        if self.skipped:
            text += f"; {len(self.skipped)} already there"
        return text + "".join(f"; {note}" for note in self.notes)


class _Tracker:
    """Bytes and files done of one copy, reported at most every REPORT_EVERY_S (and at the
    end). Called from boto3's transfer threads too."""

    def __init__(self, todo: list[tuple[str, int]], report: ProgressCallback | None) -> None:
        self.sizes = dict(todo)
        self.order = [name for name, _ in todo]
        self.ends = list(itertools.accumulate(size for _, size in todo))
        self.total = self.ends[-1] if self.ends else 0
        self.report = report
        self.bytes_done = 0
        self.files_done = 0
        self.current = ""
        self._lock = threading.Lock()
        self._last = 0.0

    def uploaded_bytes(self, done: int, total: int, name: str) -> None:
        """From `upload_checkpoints`: bytes done so far over every file, in list order."""
        with self._lock:
            self.bytes_done = done
            self.files_done = bisect.bisect_right(self.ends, done)
            self.current = name
        self.emit()

    def add(self, count: int, name: str) -> None:
        with self._lock:
            self.bytes_done += count
            self.current = name
        self.emit()

    def file_done(self, name: str, count_bytes: bool) -> None:
        with self._lock:
            self.files_done += 1
            if count_bytes:
                self.bytes_done += self.sizes.get(name, 0)
            self.current = name
        self.emit()

    def emit(self, force: bool = False) -> None:
        if self.report is None:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last < REPORT_EVERY_S:
                return
            self._last = now
            state = CopyProgress(
                min(self.bytes_done, self.total),
                self.total,
                min(self.files_done, len(self.order)),
                len(self.order),
                self.current,
            )
        self.report(state)


def object_sizes(client: Any, bucket: str, project: str, run_id: str) -> dict[str, int]:
    """{path relative to the run's prefix: size} of what S3 holds for the run."""
    prefix = run_prefix(project, run_id)
    return {
        obj.key[len(prefix) :]: obj.size
        for obj in iter_objects(client, bucket, prefix)
        if len(obj.key) > len(prefix)
    }


def copy_run_checkpoints(
    client: Any,
    bucket: str,
    project: str,
    run_id: str,
    checkpoint_dir: str,
    transport: Transport | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: Callable[[], bool] | None = None,
    use_host_cli: bool = True,
    part_bytes: int = PART_BYTES,
    config: Any = None,
) -> CopyResult:
    """Copy the files under `checkpoint_dir` that S3 lacks (or holds with another size) to the
    run's prefix. `transport` None: the directory is on this machine. Blocking: call it from a
    thread. Raises CopyFailed (CopyCancelled) with a message a person can act on."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    url = s3_url(bucket, run_prefix(project, run_id))
    started = time.monotonic()
    cancelled = cancel or (lambda: False)
    try:
        if transport is None:
            result = _copy_local(client, bucket, project, run_id, checkpoint_dir, progress, config)
        else:
            result = _copy_from_host(
                client,
                bucket,
                project,
                run_id,
                checkpoint_dir,
                transport,
                progress,
                cancelled,
                use_host_cli,
                part_bytes,
            )
    except CopyFailed:
        raise
    except (ClientError, BotoCoreError, S3UploadFailedError) as err:
        raise CopyFailed(f"copying to {url} failed: {err}") from None
    except (ProviderError, OSError) as err:
        where = "this machine" if transport is None else transport.label
        raise CopyFailed(f"reading the checkpoints on {where} failed: {err}") from None
    result.seconds = time.monotonic() - started
    return result


def _copy_local(
    client: Any,
    bucket: str,
    project: str,
    run_id: str,
    directory: str,
    progress: ProgressCallback | None,
    config: Any,
) -> CopyResult:
    root = Path(directory)
    url = s3_url(bucket, run_prefix(project, run_id))
    files = local_checkpoint_files(root) if root.is_dir() else []
    sizes = [(rel, path.stat().st_size) for rel, path in files]
    present = object_sizes(client, bucket, project, run_id)
    if not sizes:
        return CopyResult(url, [], [], 0, "nothing to copy", 0.0)
    tracker = _Tracker([(r, s) for r, s in sizes if present.get(r) != s], progress)
    tracker.emit(force=True)
    done = upload_checkpoints(
        client, root, bucket, project, run_id, progress=tracker.uploaded_bytes, config=config
    )
    tracker.uploaded_bytes(done.bytes_copied, done.bytes_copied, "")
    tracker.emit(force=True)
    return CopyResult(url, done.copied, done.skipped, done.bytes_copied, UPLOADED, 0.0)


def _host_files(transport: Transport, directory: str) -> list[tuple[str, int, float]]:
    try:
        files = list_tree(transport, directory)
    except (FileNotFoundError, NotADirectoryError):
        return []  # the run saved nothing (yet)
    return sorted(
        (f for f in files if not any(part.startswith(".") for part in f[0].split("/"))),
        key=lambda f: f[0],
    )


def _copy_from_host(
    client: Any,
    bucket: str,
    project: str,
    run_id: str,
    directory: str,
    transport: Transport,
    progress: ProgressCallback | None,
    cancel: Callable[[], bool],
    use_host_cli: bool,
    part_bytes: int,
) -> CopyResult:
    prefix = run_prefix(project, run_id)
    url = s3_url(bucket, prefix)
    files = _host_files(transport, directory)
    present = object_sizes(client, bucket, project, run_id)
    todo = [f for f in files if present.get(f[0]) != f[1]]
    skipped = [rel for rel, size, _ in files if present.get(rel) == size]
    tracker = _Tracker([(rel, size) for rel, size, _ in todo], progress)
    methods: list[str] = []
    notes: list[str] = []
    if not todo:
        return CopyResult(url, [], skipped, 0, "nothing to copy", 0.0)
    tracker.emit(force=True)
    remaining = todo
    if use_host_cli:
        region = getattr(client.meta, "region_name", None) or "us-east-1"
        why_not = _sync_on_host(transport, directory, url, region, tracker, cancel)
        if why_not is None:
            methods.append(HOST_SYNC)
            present = object_sizes(client, bucket, project, run_id)
            remaining = [f for f in todo if present.get(f[0]) != f[1]]
        else:
            notes.append(why_not)
    if remaining:
        methods.append(f"streamed through {transport.label}")
        for rel, size, mtime in remaining:
            if cancel():
                raise CopyCancelled(f"copy to {url} cancelled; what was copied stays")
            _stream_file(
                client,
                bucket,
                prefix + rel,
                transport,
                f"{directory.rstrip('/')}/{rel}",
                size,
                mtime,
                part_bytes,
                tracker,
                cancel,
            )
            tracker.file_done(rel, count_bytes=False)
    tracker.emit(force=True)
    present = object_sizes(client, bucket, project, run_id)
    missing = [rel for rel, size, _ in todo if present.get(rel) != size]
    if missing:
        raise CopyFailed(
            f"{len(missing)} file(s) are not in {url} after the copy ({', '.join(missing[:5])}): "
            "they changed while being copied or S3 refused them; copy again"
        )
    copied = [rel for rel, _, _ in todo]
    return CopyResult(url, copied, skipped, tracker.total, " + ".join(methods), 0.0, notes)


def _sync_on_host(
    transport: Transport,
    directory: str,
    url: str,
    region: str,
    tracker: _Tracker,
    cancel: Callable[[], bool],
) -> str | None:
    """Run `aws s3 sync` on the host; None when it exited 0, else why it was not used."""
    marker = f" to {url}"
    pending = bytearray()

    def on_output(chunk: bytes) -> None:
        pending.extend(chunk)
        *lines, rest = pending.split(b"\n")
        pending[:] = rest
        for raw in lines:
            line = raw.decode("utf-8", "replace").strip()
            at = line.find(marker)
            if line.startswith("upload:") and at >= 0:
                tracker.file_done(line[at + len(marker) :], count_bytes=True)

    argv = ["sh", "-c", HOST_SYNC_SCRIPT, "sh", directory.rstrip("/") + "/", url, region]
    try:
        result = stream_command(transport, argv, on_output=on_output, cancel=cancel)
    except CommandCancelled:
        raise CopyCancelled(f"copy to {url} cancelled; what was copied stays") from None
    except ProviderError as err:
        return f"aws s3 sync on the host could not run ({err}); streamed instead"
    if result.returncode == 127:
        return "the host has no AWS CLI; streamed through this machine instead"
    if not result.ok:
        lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
        why = lines[-1] if lines else f"exit status {result.returncode}"
        return f"aws s3 sync on the host failed ({why}); streamed instead"
    return None


def _stream_file(
    client: Any,
    bucket: str,
    key: str,
    transport: Transport,
    path: str,
    size: int,
    mtime: float,
    part_bytes: int,
    tracker: _Tracker,
    cancel: Callable[[], bool],
) -> None:
    """One host file into one object: a PutObject up to `part_bytes`, else a multipart
    upload (aborted on any failure, so no half object and no orphaned parts stay)."""
    name = key.rsplit("/", 1)[-1]
    if size <= part_bytes:
        body = _read_exact(transport, path, 0, size)
        client.put_object(Bucket=bucket, Key=key, Body=body)
        tracker.add(size, name)
    else:
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        try:
            parts = []
            for number, offset in enumerate(range(0, size, part_bytes), start=1):
                if cancel():
                    raise CopyCancelled(f"copy of {path} cancelled")
                body = _read_exact(transport, path, offset, min(part_bytes, size - offset))
                reply = client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                )
                parts.append({"PartNumber": number, "ETag": reply["ETag"]})
                tracker.add(len(body), name)
            client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(Exception):  # the first failure is the one to report
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise
    now = TransportCheckpointSource(transport).stat(path)
    if (now.size, now.mtime) != (size, mtime):
        client.delete_object(Bucket=bucket, Key=key)
        raise CopyFailed(
            f"{path} changed while it was copied (being rewritten?); copy again when it is done"
        )


def _read_exact(transport: Transport, path: str, offset: int, length: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < length:
        data = transport.read_from(path, offset + got, length - got)
        if not data:
            raise CopyFailed(
                f"{path} got shorter while it was copied; copy again when it is written"
            )
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


# $1 the s3:// URL, $2 the destination path, $3 the region, $4 "--recursive" for a directory.
HOST_COPY_SCRIPT = (
    'command -v aws >/dev/null 2>&1 || { echo "no AWS CLI (aws) on the host" >&2; exit 127; }; '
    'exec aws s3 cp "$1" "$2" --region "$3" --no-progress ${4:+"$4"}'
)
# $1 the destination: written to a temp name beside it, renamed when complete.
RECEIVE_SCRIPT = (
    'mkdir -p -- "$(dirname -- "$1")" && cat > "$1.part" && mv -f -- "$1.part" "$1" '
    '|| { rm -f -- "$1.part"; exit 1; }'
)


def restore_checkpoint(
    client: Any,
    url: str,
    transport: Transport,
    destination_dir: str,
    *,
    use_host_cli: bool = True,
    chunk_bytes: int = PART_BYTES,
) -> str:
    """Put the checkpoint at `url` (an object, or a prefix for a checkpoint directory) into
    `destination_dir` on the transport's machine; returns its path there. The host's AWS CLI
    fetches it when it can (see the module docstring), else it is streamed from S3 through
    this machine; either way each file's size on the host is checked. Raises CopyFailed."""
    from botocore.exceptions import BotoCoreError, ClientError

    from app.s3_checkpoints import parse_s3_url

    bucket, key = parse_s3_url(url)
    name = key.rstrip("/").rsplit("/", 1)[-1]
    target = f"{destination_dir.rstrip('/')}/{name}"
    try:
        objects = {obj.key: obj.size for obj in iter_objects(client, bucket, key)}
        if key in objects:
            files = {key: (target, objects[key])}
        else:
            base = key.rstrip("/") + "/"
            files = {
                k: (f"{target}/{k[len(base) :]}", size)
                for k, size in objects.items()
                if k.startswith(base)
            }
        if not files:
            raise CopyFailed(f"{url} is not in S3 (any more): nothing to resume from")
        if use_host_cli and _copy_on_host(client, url, target, transport, files):
            return target
        for object_key, (path, _) in files.items():
            body = client.get_object(Bucket=bucket, Key=object_key)["Body"]
            result = stream_command(
                transport,
                ["sh", "-c", RECEIVE_SCRIPT, "sh", path],
                stdin_chunks=body.iter_chunks(chunk_bytes),
            )
            if not result.ok:
                raise CopyFailed(
                    f"writing {path} on {transport.label} failed: {result.describe_failure()}"
                )
        missing = _wrong_sizes(transport, files)
        if missing:
            raise CopyFailed(f"{', '.join(missing)} arrived incomplete on {transport.label}")
    except (ClientError, BotoCoreError) as err:
        raise CopyFailed(f"reading {url} failed: {err}") from None
    except ProviderError as err:
        raise CopyFailed(f"copying {url} to {transport.label} failed: {err}") from None
    return target


def _copy_on_host(
    client: Any, url: str, target: str, transport: Transport, files: dict[str, tuple[str, int]]
) -> bool:
    """True when the host's `aws s3 cp` left every file complete (False: stream instead)."""
    region = getattr(client.meta, "region_name", None) or "us-east-1"
    recursive = "" if len(files) == 1 and next(iter(files.values()))[0] == target else "--recursive"
    argv = ["sh", "-c", HOST_COPY_SCRIPT, "sh", url.rstrip("/"), target, region, recursive]
    try:
        result = stream_command(transport, argv)
    except ProviderError:
        return False
    return result.ok and not _wrong_sizes(transport, files)


def _wrong_sizes(transport: Transport, files: dict[str, tuple[str, int]]) -> list[str]:
    return [path for path, size in files.values() if transport.file_size(path) != size]
