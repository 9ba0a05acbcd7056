"""A run's checkpoints in S3, under `s3://<bucket>/runctl/<project>/<run_id>/`.

Upload and download go through boto3's managed transfer (multipart above
`multipart_threshold`, parts in parallel) and report progress as bytes; listings follow
ListObjectsV2 continuation tokens, so a prefix with more than 1,000 objects is listed whole.
`S3CheckpointSource` makes a prefix a `CheckpointSource`: `app.checkpoints.list_checkpoints`
and `read_checkpoint` read metadata through ranged GETs (`open_range_file`), so the header of
a multi-GB checkpoint costs a few small requests. Cleanup is `plan_cleanup` over that listing,
then `delete_checkpoints(plan, source)`.

The caller hands in a boto3 S3 client (`AwsProvider.clients.client("s3", region)`); this
module imports boto3 only for `TransferConfig`, inside the functions that need it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from app.checkpoints import SourceEntry, open_range_file

ROOT = "runctl"
MB = 1024 * 1024
# Progress: (bytes done, bytes total, the file being copied)
Progress = Callable[[int, int, str], None]


def run_prefix(project: str, run_id: str) -> str:
    """The key prefix of one run's checkpoints (ends with "/")."""
    for part, what in ((project, "project"), (run_id, "run id")):
        if not part or "/" in part or part in (".", ".."):
            raise ValueError(f"{what} {part!r} cannot be part of an S3 key prefix")
    return f"{ROOT}/{project}/{run_id}/"


def s3_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def parse_s3_url(url: str) -> tuple[str, str]:
    """("bucket", "key") of "s3://bucket/key"."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}")
    return bucket, key


@dataclass(frozen=True, slots=True)
class S3Object:
    key: str
    size: int
    mtime: float
    etag: str


def list_objects(client: Any, bucket: str, prefix: str) -> list[S3Object]:
    """Every object under `prefix`, across as many ListObjectsV2 pages as it takes."""
    return list(iter_objects(client, bucket, prefix))


def iter_objects(client: Any, bucket: str, prefix: str) -> Iterator[S3Object]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            yield S3Object(
                item["Key"], int(item["Size"]), item["LastModified"].timestamp(), item["ETag"]
            )


def transfer_config(threshold_mb: int = 64, chunk_mb: int = 64, threads: int = 8) -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=threshold_mb * MB,
        multipart_chunksize=chunk_mb * MB,
        max_concurrency=threads,
    )


class _ProgressCounter:
    """boto3 calls back from several threads with byte deltas; sum them under a lock."""

    def __init__(self, total: int, report: Progress | None) -> None:
        self.total = total
        self.done = 0
        self.report = report
        self.lock = threading.Lock()

    def callback(self, name: str) -> Callable[[int], None]:
        def add(amount: int) -> None:
            with self.lock:
                self.done += amount
                done = self.done
            if self.report is not None:
                self.report(done, self.total, name)

        return add


@dataclass(slots=True)
class TransferResult:
    copied: list[str]  # relative paths
    skipped: list[str]  # already there with the same size
    bytes_copied: int


def local_checkpoint_files(root: Path) -> list[tuple[str, Path]]:
    """(path relative to `root`, path) of every file a copy to S3 takes, sorted."""
    files = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):  # hidden: saves in progress
            files.append((path.relative_to(root).as_posix(), path))
    return files


def upload_checkpoints(
    client: Any,
    local_dir: str | Path,
    bucket: str,
    project: str,
    run_id: str,
    progress: Progress | None = None,
    config: Any = None,
) -> TransferResult:
    """Copy every file under `local_dir` to the run's prefix; a file already there with the
    same size is skipped. Multipart above the config's threshold."""
    root = Path(local_dir)
    prefix = run_prefix(project, run_id)
    present = {obj.key: obj.size for obj in iter_objects(client, bucket, prefix)}
    todo, skipped = [], []
    for relative, path in local_checkpoint_files(root):
        if present.get(prefix + relative) == path.stat().st_size:
            skipped.append(relative)
        else:
            todo.append((relative, path))
    counter = _ProgressCounter(sum(p.stat().st_size for _, p in todo), progress)
    config = config or transfer_config()
    for relative, path in todo:
        client.upload_file(
            str(path),
            bucket,
            prefix + relative,
            Callback=counter.callback(relative),
            Config=config,
        )
    return TransferResult([r for r, _ in todo], skipped, counter.total)


def download_checkpoints(
    client: Any,
    bucket: str,
    project: str,
    run_id: str,
    local_dir: str | Path,
    progress: Progress | None = None,
    config: Any = None,
    only: Sequence[str] | None = None,
) -> TransferResult:
    """Copy the run's objects (or the relative paths in `only`) into `local_dir`; a local
    file of the same size is skipped. Each file is written to a temp name and renamed, so an
    interrupted download never leaves a truncated checkpoint under its real name."""
    root = Path(local_dir)
    prefix = run_prefix(project, run_id)
    wanted = set(only) if only is not None else None
    todo, skipped = [], []
    for obj in iter_objects(client, bucket, prefix):
        relative = obj.key[len(prefix) :]
        if not relative or (wanted is not None and relative not in wanted):
            continue
        target = root / relative
        if not target.resolve().is_relative_to(root.resolve()):
            continue  # a key with ".." must not write outside the directory
        if target.is_file() and target.stat().st_size == obj.size:
            skipped.append(relative)
        else:
            todo.append((relative, obj))
    counter = _ProgressCounter(sum(obj.size for _, obj in todo), progress)
    config = config or transfer_config()
    for relative, obj in todo:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        try:
            client.download_file(
                bucket, obj.key, str(partial), Callback=counter.callback(relative), Config=config
            )
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return TransferResult([r for r, _ in todo], skipped, counter.total)


class S3CheckpointSource:
    """A CheckpointSource over S3. Paths are `s3://bucket/key` URLs; a "directory" is a key
    prefix (S3 has no directories: a prefix exists when an object is under it)."""

    def __init__(self, client: Any, block_size: int = 256 * 1024) -> None:
        self.client = client
        self.block_size = block_size

    def list(self, directory: str) -> list[SourceEntry]:
        bucket, prefix = parse_s3_url(directory)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        entries: list[SourceEntry] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            for common in page.get("CommonPrefixes", ()):
                key = common["Prefix"].rstrip("/")
                name = key.rsplit("/", 1)[-1]
                entries.append(SourceEntry(s3_url(bucket, key), name, True, 0, 0.0))
            for item in page.get("Contents", ()):
                name = item["Key"][len(prefix) :]
                if not name:
                    continue  # a "folder" marker object
                entries.append(
                    SourceEntry(
                        s3_url(bucket, item["Key"]),
                        name,
                        False,
                        int(item["Size"]),
                        item["LastModified"].timestamp(),
                    )
                )
        if not entries:
            raise FileNotFoundError(f"nothing under {directory}")
        return entries

    def stat(self, path: str) -> SourceEntry:
        bucket, key = parse_s3_url(path)
        name = key.rstrip("/").rsplit("/", 1)[-1]
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
            return SourceEntry(
                path, name, False, int(head["ContentLength"]), head["LastModified"].timestamp()
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise OSError(f"cannot read {path}: {err}") from None
        reply = self.client.list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1)
        if reply.get("KeyCount", 0):
            return SourceEntry(path.rstrip("/"), name, True, 0, 0.0)
        raise FileNotFoundError(f"{path} does not exist")

    def open(self, path: str) -> BinaryIO:
        bucket, key = parse_s3_url(path)
        size = self.stat(path).size

        def read_range(offset: int, length: int) -> bytes:
            reply = self.client.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={offset}-{offset + length - 1}"
            )
            return reply["Body"].read()

        return open_range_file(size, read_range, self.block_size)

    def delete(self, path: str, is_dir: bool) -> None:
        bucket, key = parse_s3_url(path)
        if not is_dir:
            self.client.delete_object(Bucket=bucket, Key=key)
            return
        keys = [obj.key for obj in iter_objects(self.client, bucket, key.rstrip("/") + "/")]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            chunk = keys[start : start + 1000]
            reply = self.client.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
            )
            if reply.get("Errors"):
                first = reply["Errors"][0]
                raise OSError(f"cannot delete s3://{bucket}/{first['Key']}: {first['Message']}")


def run_url(bucket: str, project: str, run_id: str) -> str:
    """The `directory` to pass to `list_checkpoints(..., source=S3CheckpointSource(...))`."""
    return s3_url(bucket, run_prefix(project, run_id))
