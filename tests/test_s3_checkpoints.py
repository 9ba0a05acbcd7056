"""A run's checkpoints in S3 (moto as a real server): upload, list, read metadata through
ranged GETs, download, clean up; multipart with progress; listings beyond 1,000 objects."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.checkpoints import delete_checkpoints, list_checkpoints, pick_best, plan_cleanup
from app.s3_checkpoints import (
    S3CheckpointSource,
    download_checkpoints,
    list_objects,
    run_prefix,
    run_url,
    transfer_config,
    upload_checkpoints,
)
from app.settings import CheckpointSettings
from providers.aws import AwsClients
from tests.moto_server import (
    REGION,
    CallCounter,
    FaultInjector,
    moto,  # noqa: F401
    no_real_aws,  # noqa: F401
)

pytestmark = pytest.mark.usefixtures("moto")

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"
GLOBS = CheckpointSettings().globs
BUCKET = "ada-checkpoints"


@pytest.fixture
def s3():
    client = AwsClients(max_backoff_s=0.0).client("s3", REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


def facts(infos) -> list[tuple]:
    return [(i.name, i.kind, i.epoch, i.step, i.loss, i.size_bytes, i.status) for i in infos]


@pytest.mark.parametrize("kind", ["lightning", "hf", "torch", "safetensors", "sidecar"])
def test_round_trip_keeps_every_checkpoint_and_its_metadata(s3, tmp_path, kind):
    local = tmp_path / "run" / "checkpoints"
    shutil.copytree(FIXTURES / kind, local)
    seen: list[tuple[int, int, str]] = []
    uploaded = upload_checkpoints(
        s3, local, BUCKET, "vision", "run-1", progress=lambda d, t, n: seen.append((d, t, n))
    )
    total = sum(p.stat().st_size for p in local.rglob("*") if p.is_file())
    assert uploaded.bytes_copied == total and seen[-1][:2] == (total, total)

    source = S3CheckpointSource(s3)
    in_s3 = list_checkpoints(run_url(BUCKET, "vision", "run-1"), GLOBS, source, cache=None)
    on_disk = list_checkpoints(str(local), GLOBS, cache=None)
    assert in_s3 and facts(in_s3) == facts(on_disk)
    assert all(info.path.startswith(f"s3://{BUCKET}/runctl/vision/run-1/") for info in in_s3)
    best_s3, best_local = pick_best(in_s3), pick_best(on_disk)
    assert (best_s3 and best_s3.name) == (best_local and best_local.name)

    back = tmp_path / "back"
    downloaded = download_checkpoints(s3, BUCKET, "vision", "run-1", back)
    assert sorted(downloaded.copied) == sorted(uploaded.copied)
    for path in local.rglob("*"):
        if path.is_file():
            assert (back / path.relative_to(local)).read_bytes() == path.read_bytes()
    # A second copy sends nothing.
    again = upload_checkpoints(s3, local, BUCKET, "vision", "run-1")
    assert again.copied == [] and sorted(again.skipped) == sorted(uploaded.copied)


def test_large_checkpoints_go_multipart_with_progress(s3, tmp_path):
    local = tmp_path / "ckpt"
    local.mkdir()
    (local / "model.safetensors").write_bytes(b"\0" * (11 * 1024 * 1024))
    creates = CallCounter(s3, "s3.CreateMultipartUpload")
    parts = CallCounter(s3, "s3.UploadPart")
    progress: list[int] = []
    upload_checkpoints(
        s3,
        local,
        BUCKET,
        "vision",
        "run-2",
        progress=lambda done, total, name: progress.append(done),
        config=transfer_config(threshold_mb=5, chunk_mb=5),
    )
    assert creates.calls == 1 and parts.calls == 3
    assert progress == sorted(progress) and progress[-1] == 11 * 1024 * 1024
    [obj] = list_objects(s3, BUCKET, run_prefix("vision", "run-2"))
    assert obj.size == 11 * 1024 * 1024


def test_listings_go_past_the_first_1000_objects(s3):
    prefix = run_prefix("vision", "run-3")

    def put(n: int) -> None:
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}step-{n:05d}.ckpt.json", Body=b"{}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, range(1234)))
    listed = CallCounter(s3, "s3.ListObjectsV2")
    assert len(list_objects(s3, BUCKET, prefix)) == 1234
    assert listed.calls == 2
    entries = S3CheckpointSource(s3).list(run_url(BUCKET, "vision", "run-3"))
    assert len(entries) == 1234


def test_cleanup_in_s3_keeps_the_newest_and_the_best(s3, tmp_path):
    shutil.copytree(FIXTURES / "lightning", tmp_path / "ckpt")
    shutil.copytree(FIXTURES / "hf", tmp_path / "ckpt", dirs_exist_ok=True)
    upload_checkpoints(s3, tmp_path / "ckpt", BUCKET, "vision", "run-4")
    source = S3CheckpointSource(s3)
    url = run_url(BUCKET, "vision", "run-4")
    infos = list_checkpoints(url, GLOBS, source, cache=None)
    plan = plan_cleanup(infos, keep_newest=1)
    assert plan.delete, "the fixture has old checkpoints to delete"
    report = delete_checkpoints(plan, source)
    assert report.failed == {}
    left = {info.path for info in list_checkpoints(url, GLOBS, source, cache=None)}
    assert left == {info.path for info in plan.keep}
    keys = {obj.key for obj in list_objects(s3, BUCKET, run_prefix("vision", "run-4"))}
    for gone in plan.delete:  # directories (HF checkpoint-N/) lose every object under them
        gone_key = gone.path.removeprefix(f"s3://{BUCKET}/")
        assert not any(key == gone_key or key.startswith(gone_key + "/") for key in keys)


def test_s3_throttling_backs_off_and_recovers(s3, tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "a.pt").write_bytes(b"x" * 10)
    injector = FaultInjector(s3, "s3.ListObjectsV2", "SlowDown", 503, times=2, protocol="s3")
    started = time.monotonic()
    result = upload_checkpoints(s3, tmp_path / "ckpt", BUCKET, "vision", "run-5")
    assert result.copied == ["a.pt"] and injector.sends == 3
    assert time.monotonic() - started < 5


def test_a_missing_run_prefix_lists_no_checkpoints(s3):
    assert list_checkpoints(run_url(BUCKET, "vision", "nope"), GLOBS, S3CheckpointSource(s3)) == []
    with pytest.raises(ValueError, match="cannot be part of an S3 key prefix"):
        run_prefix("vision", "../etc")
