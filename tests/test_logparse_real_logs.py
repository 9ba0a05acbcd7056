"""Parsed values of real training logs compared with each framework's own record of the run.

The logs and the truth files were written by tests/fixtures/make_logs.py running the real
frameworks (transformers, Lightning, Keras on jax, tqdm, torch loops); this test needs none
of them.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from app.eta import ProgressTracker
from app.logparse import LogParser, MetricPoint, parse_text

LOGS = Path(__file__).parent / "fixtures" / "logs"


def parse_log(name: str) -> list[MetricPoint]:
    return parse_text((LOGS / f"{name}.log").read_bytes())


def printed(value: float, digits: int) -> float:
    """A value as a log prints it with `digits` significant digits."""
    return float(f"{value:.{digits}g}")


def close(parsed: float, truth: float, rel: float = 6e-3) -> bool:
    return math.isclose(parsed, truth, rel_tol=rel, abs_tol=1e-12)


def jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (LOGS / name).read_text().splitlines()]


# -- Hugging Face Trainer -----------------------------------------------------------------------


def test_hf_trainer_dicts_match_log_history():
    history = json.loads((LOGS / "hf_trainer.trainer_state.json").read_text())["log_history"]
    points = parse_log("hf_trainer")
    train = [p for p in points if p.kind == "dict" and p.loss is not None]
    evals = [p for p in points if p.kind == "dict" and p.is_validation]
    truth_train = [h for h in history if "loss" in h]
    truth_eval = [h for h in history if "eval_loss" in h]
    assert len(train) == len(truth_train) and len(evals) == len(truth_eval)
    for point, truth in zip(train, truth_train, strict=True):
        assert point.loss == printed(truth["loss"], 4)
        assert point.epoch == pytest.approx(truth["epoch"])
        assert close(point.metrics["grad_norm"], truth["grad_norm"])
        assert close(point.metrics["learning_rate"], truth["learning_rate"])
    for point, truth in zip(evals, truth_eval, strict=True):
        assert point.val_loss == printed(truth["eval_loss"], 4)
        assert point.epoch == truth["epoch"]
    summary = [p for p in points if p.kind == "summary"]
    assert len(summary) == 1
    assert close(summary[0].metrics["train_loss"], history[-1]["train_loss"])
    assert close(summary[0].metrics["train_runtime"], history[-1]["train_runtime"])


def test_hf_trainer_bar_is_the_global_step_and_eval_bars_are_not():
    state = json.loads((LOGS / "hf_trainer.trainer_state.json").read_text())
    bars = [p for p in parse_log("hf_trainer") if p.step is not None]
    assert {p.total_steps for p in bars} == {state["global_step"]}
    steps = [p.step for p in bars]
    assert steps == sorted(steps)  # the evaluation bar (n/4) never shows up as progress
    assert steps[-1] == state["global_step"]


# -- Lightning -----------------------------------------------------------------------------------


def lightning_truth(name: str) -> list[dict]:
    with (LOGS / f"{name}.metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_lightning_bar_losses_match_csv_logger():
    rows = lightning_truth("lightning_tqdm")
    points = [p for p in parse_log("lightning_tqdm") if p.kind == "bar"]
    steps_per_epoch = points[0].total_steps
    # Lightning draws each step twice; the last draw of a step carries that step's loss.
    last_draw = {(int(p.epoch), p.step): p for p in points}
    logged = [r for r in rows if r["train_loss_step"]]
    assert logged
    for row in logged:
        epoch, global_step = int(row["epoch"]), int(row["step"])
        point = last_draw[(epoch, global_step - epoch * steps_per_epoch + 1)]
        assert close(point.loss, float(row["train_loss_step"])), row
    val_truth = [float(r["val_loss"]) for r in rows if r["val_loss"]]
    val_seen = {p.metrics["val_loss"] for p in points if "val_loss" in p.metrics}
    assert {printed(v, 3) for v in val_truth[:-1]} == {printed(v, 3) for v in val_seen}


def test_lightning_validation_bars_and_table():
    points = parse_log("lightning_tqdm")
    assert all(p.step is not None for p in points if p.kind == "bar")
    table = [p for p in points if p.kind == "table"]
    final_val = float(
        [r for r in lightning_truth("lightning_tqdm") if r["val_loss"]][-1]["val_loss"]
    )
    assert [p.val_loss for p in table] == [final_val]  # printed in full precision


def test_lightning_rich_bar_and_table():
    points = parse_log("lightning_rich")
    bar = [p for p in points if p.kind == "bar"]
    assert [(p.epoch, p.step, p.total_steps) for p in bar] == [(3.0, 16, 16)]
    final_val = float(
        [r for r in lightning_truth("lightning_rich") if r["val_loss"]][-1]["val_loss"]
    )
    assert [p.val_loss for p in points if p.kind == "table"] == [final_val]


# -- Keras ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["keras_verbose1", "keras_verbose2"])
def test_keras_epoch_results_match_history(name):
    history = json.loads((LOGS / f"{name}.history.json").read_text())
    epoch = None
    end_of_epoch: dict[int, MetricPoint] = {}
    for point in parse_log(name):
        if point.epoch is not None:
            epoch = int(point.epoch)
            assert point.total_epochs == len(history["loss"])
        elif point.kind == "keras" and point.step == point.total_steps:
            end_of_epoch[epoch] = point
    assert sorted(end_of_epoch) == list(range(1, len(history["loss"]) + 1))
    for epoch, point in end_of_epoch.items():
        i = epoch - 1
        assert point.loss == pytest.approx(history["loss"][i], abs=6e-5)
        assert point.metrics["accuracy"] == pytest.approx(history["accuracy"][i], abs=6e-5)
        assert point.val_loss == pytest.approx(history["val_loss"][i], abs=6e-5)
        assert point.metrics["val_accuracy"] == pytest.approx(history["val_accuracy"][i], abs=6e-5)


def test_keras_verbose1_updates_each_a_record():
    points = [p for p in parse_log("keras_verbose1") if p.kind == "keras"]
    assert len(points) > len(json.loads((LOGS / "keras_verbose1.history.json").read_text())["loss"])
    assert all(p.rate and p.rate > 0 for p in points)


# -- tqdm, nanoGPT, plain loop -------------------------------------------------------------------


def test_tqdm_loop_postfix_losses_are_the_loops_losses():
    truth = jsonl("tqdm_loop.truth.jsonl")
    points = parse_log("tqdm_loop")
    for epoch in (1, 2, 3):
        losses = [t["loss"] for t in truth if t["epoch"] == epoch and "loss" in t]
        shown = {
            p.loss for p in points if p.kind == "bar" and p.epoch == epoch and p.loss is not None
        }
        assert shown == {printed(v, 3) for v in losses}
        last_bar = [p for p in points if p.kind == "bar" and p.epoch == epoch][-1]
        assert (last_bar.step, last_bar.total_steps, last_bar.total_epochs) == (32, 32, 3)
        val = [t["val_loss"] for t in truth if t["epoch"] == epoch and "val_loss" in t]
        assert [p.val_loss for p in points if p.is_validation and p.epoch == epoch] == [
            round(val[0], 4)
        ]


def test_nanogpt_lines_match_the_loop():
    truth = jsonl("nanogpt.truth.jsonl")
    points = parse_log("nanogpt")
    iters = [p for p in points if "time_ms" in p.metrics]
    evals = [p for p in points if p.val_loss is not None]
    assert [(p.step, p.loss) for p in iters] == [
        (t["iter"], round(t["loss"], 4)) for t in truth if "iter" in t
    ]
    assert [(p.step, p.loss, p.val_loss) for p in evals] == [
        (t["step"], round(t["train_loss"], 4), round(t["val_loss"], 4))
        for t in truth
        if "step" in t
    ]


def test_plain_loop_text_and_json_lines_match_the_loop():
    truth = jsonl("plain_loop.truth.jsonl")
    points = parse_log("plain_loop")
    train = [p for p in points if p.loss is not None]
    truth_train = [t for t in truth if "loss" in t]
    assert [(p.epoch, p.step) for p in train] == [(t["epoch"], t["step"]) for t in truth_train]
    for point, t in zip(train, truth_train, strict=True):
        expected = t["loss"] if point.kind == "json" else round(t["loss"], 4)
        assert point.loss == expected
    vals = [p.val_loss for p in points if p.val_loss is not None]
    assert vals == [round(t["val_loss"], 4) for t in truth if "val_loss" in t]


# -- every log, any chunking ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.stem for p in LOGS.glob("*.log")))
@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_chunked_feed_gives_the_same_points_as_one_feed(name, chunk):
    data = (LOGS / f"{name}.log").read_bytes()
    if chunk == 1:
        data = data[:6000]  # byte by byte is slow in Python; the first kilobytes are enough
    whole = parse_text(data)
    parser = LogParser()
    pieces: list[MetricPoint] = []
    for start in range(0, len(data), chunk):
        pieces += parser.feed(data[start : start + chunk])
    pieces += parser.flush()
    assert pieces == whole


@pytest.mark.parametrize("name", sorted(p.stem for p in LOGS.glob("*.log")))
def test_every_real_log_gives_a_finished_summary(name):
    points = parse_log(name)
    tracker = ProgressTracker()
    tracker.update(points, 1000.0)
    summary = tracker.summary(1000.0)
    assert summary.loss is not None or summary.val_loss is not None
    assert summary.eta_seconds is not None or summary.eta_reason


@pytest.mark.parametrize(
    ("name", "steps", "per_epoch"),
    [
        ("hf_trainer", 60, False),
        ("keras_verbose1", 5 * 16, True),
        ("keras_verbose2", 5 * 16, True),
        ("tqdm_loop", 3 * 32, True),
        ("plain_loop", 40, False),
    ],
)
def test_progress_is_counted_once_per_step(name, steps, per_epoch):
    tracker = ProgressTracker()
    for i, point in enumerate(parse_log(name)):
        tracker.update([point], float(i))
    assert tracker._counted == pytest.approx(steps, abs=1)  # a bar may start at 0 or 1
    assert bool(tracker.per_epoch_steps) == per_epoch


@pytest.mark.parametrize("name", sorted(p.stem for p in LOGS.glob("*.log")))
def test_a_live_follow_of_every_real_log_always_has_an_eta_or_a_reason(name):
    data = (LOGS / f"{name}.log").read_bytes()
    parser, tracker = LogParser(), ProgressTracker()
    for i, start in enumerate(range(0, len(data), 512)):
        now = i * 0.1
        tracker.update(parser.feed(data[start : start + 512]), now)
        summary = tracker.summary(now)
        if summary.eta_seconds is None:
            assert summary.eta_reason
        elif summary.eta_source == "finished":
            assert summary.eta_seconds == 0 and summary.finish_at <= now
        else:
            assert summary.eta_seconds >= 0 and summary.finish_at >= now
        assert summary.progress is None or 0.0 <= summary.progress <= 1.0
        assert all(math.isfinite(v) for v in summary.loss_history)
