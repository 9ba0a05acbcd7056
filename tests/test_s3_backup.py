"""A run's checkpoints copied to S3 from where they are (moto as a real HTTP server): from this
machine; from a host with the AWS CLI (`aws s3 sync` there); from a host without it, streamed
through a real SSH transport into a multipart upload; back onto a host for a resume; and the
census of a host's checkpoints that exist nowhere else, which the terminate dialog shows."""

# ruff: noqa: F811 - test functions take the imported `moto` and `sshd` fixtures by name
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from app.s3_backup import HOST_SYNC, CopyFailed, copy_run_checkpoints, restore_checkpoint
from app.s3_checkpoints import list_objects, run_prefix, upload_checkpoints
from app.settings import CheckpointSettings
from app.uncopied_checkpoints import find_uncopied
from providers.aws import AwsClients
from providers.base import TransportError
from providers.local import LocalTransport
from tests.conftest import write_example_checkpoint
from tests.moto_server import REGION, CallCounter, MotoServer, moto  # noqa: F401
from tests.sshd_server import SshdServer, sshd  # noqa: F401

BUCKET = "ada-checkpoints"
GLOBS = CheckpointSettings().globs
MB = 1024 * 1024


@pytest.fixture
def s3(moto: MotoServer):
    client = AwsClients(max_backoff_s=0.0).client("s3", REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


def checkpoint_dir(root: Path) -> Path:
    """Two example checkpoints, an 11 MB file in a subdirectory and a save in progress."""
    now = time.time()
    write_example_checkpoint(root, 1, 0.6, now - 200)
    write_example_checkpoint(root, 2, 0.4, now - 100)
    (root / "extra").mkdir()
    (root / "extra" / "model.safetensors").write_bytes(os.urandom(11 * MB))
    (root / ".epoch-0003.ckpt.json.tmp").write_bytes(b"half written")
    return root


def in_s3(s3, run_id: str) -> dict[str, int]:
    prefix = run_prefix("proj", run_id)
    return {o.key[len(prefix) :]: o.size for o in list_objects(s3, BUCKET, prefix)}


def on_disk(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def without_aws_cli(transport) -> None:
    """The SSH test host must not find an AWS CLI: one there would reach out for credentials."""
    found = transport.run(["sh", "-c", "command -v aws"])
    assert not found.ok, f"the test sshd's PATH has an AWS CLI: {found.text()}"


def test_from_this_machine_with_progress_then_nothing_twice(s3, tmp_path: Path) -> None:
    local = checkpoint_dir(tmp_path / "ckpt")
    seen = []
    result = copy_run_checkpoints(s3, BUCKET, "proj", "run-1", str(local), progress=seen.append)
    assert in_s3(s3, "run-1") == on_disk(local)
    assert sorted(result.copied) == sorted(on_disk(local))
    last = seen[-1]
    assert (last.files_done, last.files_total) == (3, 3)
    assert last.bytes_done == last.bytes_total == sum(on_disk(local).values())
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)
    again = copy_run_checkpoints(s3, BUCKET, "proj", "run-1", str(local))
    assert again.copied == [] and "already in" in again.describe()


def test_a_host_with_the_aws_cli_syncs_itself(s3, tmp_path: Path) -> None:
    # This machine has the CLI, and the moto fixture's environment points it at moto: the
    # local transport stands for a host whose instance profile may write the bucket.
    local = checkpoint_dir(tmp_path / "ckpt")
    seen = []
    result = copy_run_checkpoints(
        s3, BUCKET, "proj", "run-2", str(local), LocalTransport(), progress=seen.append
    )
    assert result.method == HOST_SYNC and result.notes == []
    assert in_s3(s3, "run-2") == on_disk(local)
    assert seen[-1].files_done == 3 and seen[-1].bytes_done == sum(on_disk(local).values())


def test_a_host_without_the_cli_streams_parts_through_ssh(
    s3, sshd: SshdServer, tmp_path: Path
) -> None:
    remote = checkpoint_dir(sshd.remote_home / "runs" / "r3" / "checkpoints")
    transport = sshd.transport()
    without_aws_cli(transport)
    parts = CallCounter(s3, "s3.UploadPart")
    seen = []
    result = copy_run_checkpoints(
        s3,
        BUCKET,
        "proj",
        "run-3",
        str(remote),
        transport,
        progress=seen.append,
        part_bytes=5 * MB,
    )
    assert in_s3(s3, "run-3") == on_disk(remote)  # the save in progress stays behind
    assert parts.calls == 3  # 11 MB in 5 MB parts; the small files in one PUT each
    assert result.method.startswith("streamed through")
    assert any("no AWS CLI" in note for note in result.notes)
    assert (seen[-1].files_done, seen[-1].files_total) == (3, 3)


def test_a_missing_bucket_is_an_error_that_names_it(moto: MotoServer, tmp_path: Path) -> None:
    client = AwsClients(max_backoff_s=0.0).client("s3", REGION)
    local = checkpoint_dir(tmp_path / "ckpt")
    with pytest.raises(CopyFailed, match="s3://no-such-bucket/runctl/proj/run-4/"):
        copy_run_checkpoints(client, "no-such-bucket", "proj", "run-4", str(local))


def test_restore_puts_the_checkpoint_back_on_a_host(s3, sshd: SshdServer, tmp_path: Path) -> None:
    local = checkpoint_dir(tmp_path / "ckpt")
    upload_checkpoints(s3, local, BUCKET, "proj", "run-5")
    url = f"s3://{BUCKET}/{run_prefix('proj', 'run-5')}"
    transport = sshd.transport()
    without_aws_cli(transport)
    target = sshd.remote_home / "restored"
    path = restore_checkpoint(s3, url + "epoch-0002.ckpt.json", transport, str(target))
    assert Path(path).read_bytes() == (local / "epoch-0002.ckpt.json").read_bytes()
    directory = restore_checkpoint(s3, url + "extra", transport, str(target))
    assert directory == str(target / "extra")
    assert (target / "extra" / "model.safetensors").read_bytes() == (
        local / "extra" / "model.safetensors"
    ).read_bytes()
    # With the CLI (this machine's, pointed at moto) the host fetches it itself.
    here = restore_checkpoint(s3, url + "epoch-0001.ckpt.json", LocalTransport(), str(tmp_path))
    assert Path(here).read_bytes() == (local / "epoch-0001.ckpt.json").read_bytes()
    with pytest.raises(CopyFailed, match="not in S3"):
        restore_checkpoint(s3, url + "nothing-here.ckpt", transport, str(target))


class StoreRun:
    """What the census reads of a store run."""

    def __init__(self, run_id: str, checkpoint_dir: Path) -> None:
        self.id, self.host, self.checkpoint_dir = run_id, "i-0abc", str(checkpoint_dir)


def test_census_counts_what_is_neither_in_s3_nor_downloaded(
    s3, sshd: SshdServer, tmp_path: Path
) -> None:
    now = time.time()
    remote = sshd.remote_home / ".runctl" / "runs"
    first = StoreRun("run-a", remote / "run-a" / "checkpoints")
    for epoch in (1, 2, 3):
        write_example_checkpoint(Path(first.checkpoint_dir), epoch, 0.5, now - 100 * epoch)
    second = StoreRun("run-b", remote / "run-b" / "checkpoints")  # saved nothing
    # Epoch 1 went to S3, epoch 2 was downloaded; epoch 3 exists only on the host.
    s3.put_object(
        Bucket=BUCKET,
        Key=run_prefix("proj", "run-a") + "epoch-0001.ckpt.json",
        Body=Path(first.checkpoint_dir, "epoch-0001.ckpt.json").read_bytes(),
    )
    downloads = tmp_path / "downloads"
    (downloads / "i-0abc" / "run-a").mkdir(parents=True)
    (downloads / "i-0abc" / "run-a" / "epoch-0002.ckpt.json").write_bytes(
        Path(first.checkpoint_dir, "epoch-0002.ckpt.json").read_bytes()
    )

    def s3_sizes(run_id: str) -> dict[str, int]:
        return in_s3(s3, run_id)

    transport = sshd.transport()
    census = find_uncopied(
        transport,
        "i-0abc",
        [first, second],
        globs=GLOBS,
        downloads_root=downloads,
        s3_sizes=s3_sizes,
    )
    assert census.runs_checked == 2 and census.checkpoints == 3
    assert [(c.run_id, c.name) for c in census.uncopied] == [("run-a", "epoch-0003.ckpt.json")]
    size = Path(first.checkpoint_dir, "epoch-0003.ckpt.json").stat().st_size
    assert census.uncopied_bytes == size
    assert census.sentence() == (
        f"terminating destroys 1 checkpoint, {size} B, not copied anywhere "
        "(checked: S3 or this machine)."
    )
    # Without a bucket only local copies count, and the sentence says S3 was not checked.
    local_only = find_uncopied(transport, "i-0abc", [first], globs=GLOBS, downloads_root=downloads)
    assert len(local_only.uncopied) == 2 and "S3 not checked" in local_only.sentence()

    sshd.stop()
    with pytest.raises(TransportError):
        find_uncopied(transport, "i-0abc", [first], globs=GLOBS, downloads_root=downloads)
