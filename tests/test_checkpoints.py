"""Checkpoint metadata read from real files made by torch, Lightning, transformers, safetensors,
Keras and the example training (tests/fixtures/checkpoints, made by make_checkpoints.py),
compared with the values they were saved with; listing, best pick, resume arguments, cleanup."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest

from app.checkpoints import (
    CheckpointInfo,
    delete_checkpoints,
    list_checkpoints,
    pick_best,
    plan_cleanup,
    read_checkpoint,
    resume_argv,
)
from app.settings import CheckpointSettings

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"
EXPECTED: dict[str, dict] = json.loads((FIXTURES / "expected.json").read_text())
GLOBS = CheckpointSettings().globs


@pytest.mark.parametrize("relative", sorted(EXPECTED))
def test_metadata_equals_what_was_saved(relative: str) -> None:
    want = EXPECTED[relative]
    info = read_checkpoint(str(FIXTURES / relative))

    assert info.kind == want["kind"]
    assert info.status == want["status"], info.error
    if want["status"] != "ok":
        assert want["error_contains"] in info.error
        return
    assert info.error is None
    for field in ("epoch", "step", "loss", "monitor", "monitor_value", "mode"):
        if field in want:
            assert getattr(info, field) == want[field], field
    for name, value in want.get("metrics", {}).items():
        assert info.metrics[name] == value, name
    for name in want.get("absent_metrics", []):
        assert name not in info.metrics
    if "lightning_version" in want:
        assert info.details["lightning_version"] == want["lightning_version"]
    if "keras_version" in want:
        assert info.details["keras_version"] == want["keras_version"]
    if "sidecar" in want:
        assert Path(info.sidecar).name == want["sidecar"]
    assert info.size_bytes > 0
    assert info.mtime >= os.stat(FIXTURES / relative).st_mtime


def test_scalar_tensor_values_are_read_but_big_tensors_are_not() -> None:
    info = read_checkpoint(str(FIXTURES / "torch" / "scalar-dtypes.pt"))

    assert info.loss == 1.5  # bfloat16
    assert info.step == 1234  # int64 0-dim tensor
    assert info.epoch == 2.0  # int32
    assert info.metrics["grad_norm"] == 0.25  # shape (1,)
    assert "weights" not in info.metrics  # a 2x3 tensor is not a scalar


def test_json_row_has_exactly_the_documented_shape() -> None:
    row = read_checkpoint(str(FIXTURES / "torch" / "epoch-0003.pt")).to_json()

    assert list(row) == [
        "path",
        "kind",
        "epoch",
        "step",
        "loss",
        "metrics",
        "size_bytes",
        "mtime",
        "status",
        "error",
    ]
    assert row["epoch"] == 3.0 and row["step"] == 300 and row["status"] == "ok"
    assert isinstance(row["size_bytes"], int) and isinstance(row["mtime"], float)


def test_json_row_turns_nan_into_null() -> None:
    info = CheckpointInfo(path="x", name="x", loss=math.nan, metrics={"a": math.inf, "b": 1.0})

    row = info.to_json()

    assert row["loss"] is None
    assert row["metrics"] == {"b": 1.0}
    json.dumps(row, allow_nan=False)


# --- listing -----------------------------------------------------------------------------------
def test_listing_a_lightning_run_orders_by_step_and_marks_the_file_lightning_named_best() -> None:
    infos = list_checkpoints(str(FIXTURES / "lightning"), GLOBS)

    names = [i.name for i in infos]
    # last.ckpt repeats epoch 2: the two tie on step and epoch, then go by mtime.
    assert names[:2] == ["epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt"]
    assert set(names[2:]) == {"epoch=2-step=12.ckpt", "last.ckpt"}
    best = pick_best(infos)
    want = EXPECTED["lightning/epoch=2-step=12.ckpt"]
    assert best.name == want["best_model_path"]
    assert best.monitor == "val_loss" and best.mode == "min"


def test_best_follows_the_monitored_metric_and_its_max_mode() -> None:
    infos = list_checkpoints(str(FIXTURES / "lightning-max"), GLOBS)
    best = pick_best(infos)

    scores = {i.name: i.monitor_value for i in infos}
    assert best.monitor == "val_score" and best.mode == "max"
    assert best.monitor_value == max(scores.values())
    assert best.name == EXPECTED[f"lightning-max/{best.name}"]["best_model_path"]
    assert best.loss is None  # val_score is not a loss


def test_hf_checkpoint_directories_are_one_checkpoint_each() -> None:
    infos = list_checkpoints(str(FIXTURES / "hf"), GLOBS)

    assert [i.name for i in infos] == ["checkpoint-4", "checkpoint-8"]
    assert all(i.is_dir and i.kind == "hf-trainer" for i in infos)
    on_disk = sum(p.stat().st_size for p in (FIXTURES / "hf" / "checkpoint-8").iterdir())
    assert infos[1].size_bytes == on_disk
    best = pick_best(infos)
    assert best.name == EXPECTED["hf/checkpoint-8"]["best_model_checkpoint"]


def test_example_training_checkpoints_are_listed_with_epoch_step_and_loss() -> None:
    infos = list_checkpoints(str(FIXTURES / "example"), GLOBS)

    assert [(i.kind, i.epoch, i.step) for i in infos] == [
        ("example-json", 1.0, 20),
        ("example-json", 2.0, 40),
    ]
    losses = {i.name: i.loss for i in infos}
    assert pick_best(infos).loss == min(losses.values())


def test_a_sidecar_json_is_merged_into_its_checkpoint_and_not_listed() -> None:
    infos = list_checkpoints(str(FIXTURES / "sidecar"), [*GLOBS, "*.json"])

    assert [i.name for i in infos] == ["model.pt"]
    assert (infos[0].epoch, infos[0].step, infos[0].loss) == (5.0, 500, 0.2)
    assert infos[0].sidecar_bytes == (FIXTURES / "sidecar" / "model.pt.json").stat().st_size


def test_a_json_that_is_a_checkpoint_itself_is_not_taken_for_a_sidecar(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "sidecar" / "model.pt", tmp_path / "epoch-0001.ckpt")
    shutil.copy(FIXTURES / "example" / "epoch-0001.ckpt.json", tmp_path)
    shutil.copy(FIXTURES / "sidecar" / "model.pt", tmp_path / "epoch-0002.ckpt")
    (tmp_path / "epoch-0002.ckpt.json").write_text('{"epoch": 2, "step": 80, "loss": 0.3}')

    infos = {i.name: i for i in list_checkpoints(str(tmp_path), GLOBS)}

    assert sorted(infos) == ["epoch-0001.ckpt", "epoch-0001.ckpt.json", "epoch-0002.ckpt"]
    assert infos["epoch-0001.ckpt"].sidecar is None
    assert infos["epoch-0001.ckpt"].epoch == 1.0  # from its name, not from the other file
    assert infos["epoch-0002.ckpt"].sidecar == str(tmp_path / "epoch-0002.ckpt.json")
    assert (infos["epoch-0002.ckpt"].step, infos["epoch-0002.ckpt"].loss) == (80, 0.3)
    assert read_checkpoint(str(tmp_path / "epoch-0001.ckpt")).sidecar is None


def test_a_missing_directory_lists_nothing() -> None:
    assert list_checkpoints("/nonexistent/checkpoints", GLOBS) == []


def test_temp_files_of_a_save_in_progress_are_not_listed(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "example" / "epoch-0001.ckpt.json", tmp_path)
    (tmp_path / ".epoch-0002.ckpt.json.tmp").write_text('{"format": "runctl-ex')
    (tmp_path / "notes.txt").write_text("not a checkpoint")

    assert [i.name for i in list_checkpoints(str(tmp_path), GLOBS)] == ["epoch-0001.ckpt.json"]


def test_a_rewritten_file_is_read_again_not_served_from_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "epoch-0001.ckpt.json"
    path.write_text(json.dumps({"format": "runctl-example-v1", "epoch": 1, "loss": 0.5}))
    assert list_checkpoints(str(tmp_path), GLOBS)[0].loss == 0.5

    path.write_text(json.dumps({"format": "runctl-example-v1", "epoch": 1, "loss": 0.25}))
    os.utime(path, (1_000_000, 1_000_000))

    assert list_checkpoints(str(tmp_path), GLOBS)[0].loss == 0.25


# --- best --------------------------------------------------------------------------------------
def ckpt(name: str, step: int, loss: float | None, status: str = "ok", **kw) -> CheckpointInfo:
    return CheckpointInfo(
        path=f"/ck/{name}",
        name=name,
        step=step,
        loss=loss,
        status=status,
        size_bytes=1000 * step,
        mtime=float(step),
        **kw,
    )


def test_best_ignores_corrupt_unsafe_and_nan() -> None:
    infos = [
        ckpt("a", 1, 0.9),
        ckpt("b", 2, math.nan),
        ckpt("c", 3, 0.1, status="corrupt"),
        ckpt("d", 4, 0.05, status="unsafe"),
        ckpt("e", 5, 0.5),
    ]

    assert pick_best(infos).name == "e"
    assert pick_best([ckpt("x", 1, None), ckpt("y", 2, math.nan)]) is None
    assert pick_best([]) is None


def test_best_prefers_the_monitored_metric_over_loss() -> None:
    infos = [
        ckpt("a", 1, 0.1, monitor="val_acc", monitor_value=0.7, mode="max"),
        ckpt("b", 2, 0.3, monitor="val_acc", monitor_value=0.9, mode="max"),
        ckpt("c", 3, 0.2, monitor="val_acc", monitor_value=0.8, mode="max"),
    ]

    assert pick_best(infos).name == "b"


def test_best_at_equal_loss_is_the_newest() -> None:
    assert pick_best([ckpt("a", 1, 0.5), ckpt("b", 2, 0.5)]).name == "b"


# --- resume ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "template", "want"),
    [
        (["--epochs", "5"], "--resume {path}", ["--epochs", "5", "--resume", "/ck/a b.pt"]),
        (
            ["--resume", "/old.pt", "--epochs", "5"],
            "--resume {path}",
            ["--resume", "/ck/a b.pt", "--epochs", "5"],
        ),
        (
            ["--epochs", "5", "--resume=/old.pt"],
            "--resume {path}",
            ["--epochs", "5", "--resume", "/ck/a b.pt"],
        ),
        (
            ["--resume", "/old.pt", "--lr", "0.1", "--resume=/older.pt"],
            "--resume={path}",
            ["--resume=/ck/a b.pt", "--lr", "0.1"],
        ),
        (
            ["--ckpt_path", "x", "--max_epochs", "9"],
            "--ckpt_path {path} --resume-from-last",
            ["--ckpt_path", "/ck/a b.pt", "--resume-from-last", "--max_epochs", "9"],
        ),
        ([], "{path}", ["/ck/a b.pt"]),
    ],
)
def test_resume_argv_replaces_the_resume_option(args, template, want) -> None:
    assert resume_argv(args, template, "/ck/a b.pt") == want


def test_resume_argv_keeps_a_path_with_quotes_as_one_item() -> None:
    path = '/runs/it\'s "odd"/epoch 3.pt'

    assert resume_argv(["--resume", "old"], "--resume {path}", path) == ["--resume", path]


def test_the_example_training_resumes_from_its_own_checkpoint(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import EXAMPLE

    checkpoint = FIXTURES / "example" / "epoch-0001.ckpt.json"
    args = resume_argv(
        ["--epochs", "2", "--steps-per-epoch", "20", "--dim", "4", "--step-delay", "0"],
        "--resume {path}",
        str(checkpoint),
    )
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *args, "--checkpoint-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert f"Resumed from {checkpoint} at epoch 2/2 step 20" in done.stdout
    assert [i.name for i in list_checkpoints(str(tmp_path), GLOBS)] == ["epoch-0002.ckpt.json"]


# --- cleanup -----------------------------------------------------------------------------------
def test_cleanup_keeps_the_newest_n_and_the_best() -> None:
    infos = [ckpt(f"e{i}", i, loss) for i, loss in enumerate([0.9, 0.1, 0.8, 0.7, 0.6, 0.5], 1)]

    plan = plan_cleanup(infos, keep_newest=2)

    assert sorted(i.name for i in plan.keep) == ["e2", "e5", "e6"]
    assert [i.name for i in plan.delete] == ["e1", "e3", "e4"]
    assert plan.bytes_freed == 1000 * (1 + 3 + 4)
    assert plan.reasons["/ck/e2"].startswith("best (loss 0.1")
    assert plan.reasons["/ck/e6"] == "one of the newest 2"


def test_cleanup_describes_every_file_that_goes_and_stays() -> None:
    infos = [ckpt(f"e{i}", i, loss) for i, loss in enumerate([0.9, 0.1, 0.8, 0.7], 1)]

    lines = plan_cleanup(infos, keep_newest=1).describe()

    assert lines == [
        "Delete 2, freeing 3.9 KB:",
        "  - e1  1000 B  (older than the newest 1)",
        "  - e3  2.9 KB  (older than the newest 1)",
        "Keep 2:",
        "  + e2  2.0 KB  (best (loss 0.1))",
        "  + e4  3.9 KB  (one of the newest 1)",
    ]


def test_cleanup_never_deletes_the_newest_protected_or_unreadable() -> None:
    infos = [
        ckpt("e1", 1, 0.1),
        ckpt("e2", 2, 0.5),
        ckpt("e3", 3, 0.5, status="corrupt"),
        ckpt("e4", 4, 0.4),
    ]

    plan = plan_cleanup(infos, keep_newest=0, protect={"/ck/e2"})

    assert {i.name for i in plan.keep} == {"e1", "e2", "e3", "e4"}
    assert plan.delete == []
    assert plan.reasons["/ck/e2"].startswith("protected")
    assert plan.reasons["/ck/e3"].startswith("corrupt")


def test_cleanup_deletes_files_sidecars_and_hf_directories(tmp_path: Path) -> None:
    for name in ("example", "hf", "sidecar"):
        shutil.copytree(FIXTURES / name, tmp_path / name)
    shutil.copy(tmp_path / "sidecar" / "model.pt", tmp_path / "example" / "old.pt")
    (tmp_path / "example" / "old.pt.json").write_text('{"epoch": 0, "step": 1, "loss": 5.0}')
    for name in ("checkpoint-4", "checkpoint-8"):
        shutil.move(tmp_path / "hf" / name, tmp_path / "example" / name)
    directory = tmp_path / "example"
    # Written in step order (a fresh clone gives every file the same mtime in any order).
    for when, name in enumerate(
        ["old.pt", "checkpoint-4", "epoch-0001.ckpt.json", "checkpoint-8", "epoch-0002.ckpt.json"]
    ):
        for path in [directory / name, *(directory / name).glob("*")]:
            os.utime(path, (1e6 * (when + 1), 1e6 * (when + 1)))
    infos = list_checkpoints(str(directory), GLOBS)
    assert len(infos) == 5

    plan = plan_cleanup(infos, keep_newest=1)
    report = delete_checkpoints(plan)

    assert [i.name for i in plan.delete] == ["old.pt", "checkpoint-4", "epoch-0001.ckpt.json"]
    left = sorted(p.name for p in directory.iterdir())
    kept = sorted(i.name for i in plan.keep)
    assert left == kept
    assert set(report.deleted) == {i.path for i in plan.delete} | {str(directory / "old.pt.json")}
    assert report.bytes_freed == plan.bytes_freed > 0
    assert report.failed == {}


def test_cleanup_leaves_a_file_that_changed_since_it_was_listed(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        (tmp_path / f"epoch-{step}.ckpt.json").write_text(
            json.dumps({"format": "runctl-example-v1", "epoch": step, "step": step, "loss": 1.0})
        )
    plan = plan_cleanup(list_checkpoints(str(tmp_path), GLOBS), keep_newest=1)
    assert [i.name for i in plan.delete] == ["epoch-1.ckpt.json", "epoch-2.ckpt.json"]
    (tmp_path / "epoch-1.ckpt.json").write_text("{}  ")  # rewritten after the plan was shown

    report = delete_checkpoints(plan)

    assert (tmp_path / "epoch-1.ckpt.json").exists()
    assert not (tmp_path / "epoch-2.ckpt.json").exists()
    assert "changed since it was listed" in report.failed[str(tmp_path / "epoch-1.ckpt.json")]
