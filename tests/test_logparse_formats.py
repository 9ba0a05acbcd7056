"""The log parser, format by format, on lines as they appear in a redirected training log."""

from __future__ import annotations

import math
import random

import pytest

from app.logparse import (
    COMPILE_AFTER_USES,
    LogParser,
    MetricPoint,
    analyse,
    compile_plan,
    parse_text,
)


def only(text: str | bytes, extra: list[str] | None = None) -> MetricPoint:
    points = parse_text(text, extra or [])
    assert len(points) == 1, points
    return points[0]


# -- hand-written loops ---------------------------------------------------------------------


def test_epoch_step_and_several_scalars_on_one_line():
    point = only("Epoch 3/10 step 120/500 loss=0.4312 acc=0.91 lr=5e-05")
    assert (point.epoch, point.total_epochs) == (3.0, 10)
    assert (point.step, point.total_steps) == (120, 500)
    assert point.loss == 0.4312
    assert point.metrics == {"acc": 0.91, "lr": 5e-05}
    assert point.kind == "text"
    assert not point.is_validation


@pytest.mark.parametrize(
    ("line", "epoch", "total"),
    [
        ("epoch 3", 3.0, None),
        ("Epoch [3/10]", 3.0, 10),
        ("Epoch: 3", 3.0, None),
        ("epoch=7 loss=1.0", 7.0, None),
        ("EPOCH 2 / 5 done", 2.0, 5),
    ],
)
def test_epoch_spellings(line, epoch, total):
    point = only(line)
    assert (point.epoch, point.total_epochs) == (epoch, total)


@pytest.mark.parametrize(
    ("line", "step", "total"),
    [
        ("Step 120/500", 120, 500),
        ("[Batch 20/100] loss 0.5", 20, 100),
        ("iteration 42: loss=1.5", 42, None),
        ("global_step=900 loss=0.1", 900, None),
    ],
)
def test_step_spellings(line, step, total):
    point = only(line)
    assert (point.step, point.total_steps) == (step, total)


@pytest.mark.parametrize(
    ("line", "loss", "metrics"),
    [
        ("loss: 0.43", 0.43, {}),
        ("loss=0.43", 0.43, {}),
        ("Loss 0.43", 0.43, {}),
        ("train_loss: 0.43 val_loss: 0.5", 0.43, {"val_loss": 0.5}),
        ("avg loss 0.17", 0.17, {}),
        ("Train Loss: 0.2, Val Loss: 0.3, Val Acc: 91.5%", 0.2, {"val_loss": 0.3, "val_acc": 91.5}),
    ],
)
def test_loss_spellings(line, loss, metrics):
    point = only(line)
    assert point.loss == loss
    assert point.metrics == metrics


def test_pytorch_example_lines():
    train = only("Train Epoch: 1 [640/60000 (1%)]\tLoss: 0.512345")
    assert (train.epoch, train.step, train.total_steps, train.loss) == (1.0, 640, 60000, 0.512345)
    test = only("Test set: Average loss: 0.0034, Accuracy: 9845/10000 (98%)")
    assert test.is_validation and test.loss is None
    assert test.val_loss == 0.0034


def test_a_build_step_counter_is_not_training_progress():
    assert parse_text("[12/340] Building CXX object csrc/kernels.cu.o") == []


def test_a_line_that_starts_with_validation_is_validation():
    point = only("Validation loss: 0.25, accuracy: 0.9")
    assert point.is_validation and point.val_loss == 0.25 and point.loss is None


def test_validation_only_line_is_not_training_progress():
    point = only("epoch 2 val_loss: 0.51 val_acc: 0.8")
    assert point.is_validation
    assert point.val_loss == 0.51
    assert point.loss is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1.5e-3", 1.5e-3), ("2E+02", 200.0), ("-3.25", -3.25), (".5", 0.5), ("7.", 7.0)],
)
def test_numbers_in_every_notation(raw, expected):
    assert only(f"loss={raw}").loss == expected


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_nan_and_inf_are_kept(raw):
    loss = only(f"step 5 loss: {raw}").loss
    assert loss is not None and not math.isfinite(loss)
    assert math.isnan(loss) == ("nan" in raw.lower())


@pytest.mark.parametrize(
    "line",
    [
        "Downloading 3 files",
        "INFO 2026-01-01 12:00:01 starting the run",
        "Traceback (most recent call last):",
        '  File "train.py", line 12, in <module>',
        "see https://example.com:8080/docs",
        "nanogpt information",
        "",
    ],
)
def test_lines_without_metrics_give_nothing(line):
    assert parse_text(line) == []


# -- tqdm -------------------------------------------------------------------------------------

TQDM = "Epoch 1/3:  50%|█████     | 16/32 [00:01<00:02, 12.30it/s, loss=0.123, acc=0.9]"


def test_tqdm_bar_with_time_rate_and_postfix():
    point = only(TQDM)
    assert point.kind == "bar"
    assert (point.epoch, point.total_epochs, point.step, point.total_steps) == (1.0, 3, 16, 32)
    assert (point.elapsed_s, point.remaining_s, point.rate) == (1.0, 2.0, 12.3)
    assert point.loss == 0.123
    assert point.metrics == {"acc": 0.9}


def test_tqdm_seconds_per_iteration_and_hours():
    point = only(" 10%|█         | 10/100 [1:02:03<9:18:27,  372.30s/it]")
    assert point.elapsed_s == 3723.0
    assert point.remaining_s == 9 * 3600 + 18 * 60 + 27
    assert point.rate == pytest.approx(1 / 372.3)


def test_tqdm_without_total_or_rate_yet():
    point = only("  0%|          | 0/32 [00:00<?, ?it/s]")
    assert (point.step, point.total_steps, point.remaining_s, point.rate) == (0, 32, None, None)
    assert only("37it [00:05,  7.01it/s]").step == 37


def test_every_carriage_return_update_is_a_record_of_the_same_line():
    updates = [TQDM.replace("16/32", f"{n}/32") for n in (16, 17, 18)]
    points = parse_text("\r".join(updates) + "\nnext loss=1\n")
    assert [p.step for p in points[:3]] == [16, 17, 18]
    assert [p.line for p in points] == [1, 1, 1, 2]


def test_an_update_is_emitted_when_the_next_one_begins_not_at_the_newline():
    parser = LogParser()
    assert parser.feed("\r" + TQDM.replace("16/32", "1/32")) == []  # may still be growing
    first = parser.feed("\r" + TQDM.replace("16/32", "2/32"))
    assert [p.step for p in first] == [1]
    assert [p.step for p in parser.feed("\r")] == [2]
    assert parser.flush() == []


def test_ansi_cursor_moves_and_colours_are_ignored():
    point = only("\x1b[A\x1b[2K\x1b[32m" + TQDM + "\x1b[0m")
    assert (point.step, point.loss) == (16, 0.123)


def test_inner_unlabelled_bar_that_moves_the_cursor_up_is_not_training_progress():
    # The Hugging Face Trainer's evaluation bar, drawn one row below the training bar.
    points = parse_text("\r 50%|█████     | 2/4 [00:00<00:00, 30.1it/s]\x1b[A\n")
    assert all(p.is_validation or p.step is None for p in points)


# -- PyTorch Lightning ---------------------------------------------------------------------------


def test_lightning_training_bar():
    point = only(
        "Epoch 2:  45%|████▌     | 45/100 [00:03<00:04, 12.1it/s, v_num=0, "
        "train_loss=0.123, val_loss=0.153]"
    )
    assert (point.epoch, point.step, point.total_steps) == (2.0, 45, 100)
    assert point.loss == 0.123
    assert point.val_loss == 0.153
    assert "v_num" not in point.metrics


@pytest.mark.parametrize(
    "desc", ["Validation DataLoader 0", "Sanity Checking DataLoader 0", "Testing DataLoader 0"]
)
def test_lightning_validation_bars_are_not_training_progress(desc):
    points = parse_text(f"\r{desc}:  50%|█████     | 4/8 [00:00<00:00, 80.1it/s]\n")
    assert all(p.step is None for p in points)


def test_lightning_step_and_epoch_losses():
    point = only(
        "Epoch 1: 100%|██████████| 16/16 [00:00<00:00, 306.08it/s, v_num=0, "
        "train_loss_step=0.0299, val_loss=0.0531, train_loss_epoch=0.0722]"
    )
    assert point.loss == 0.0299
    assert point.metrics == {"val_loss": 0.0531, "train_loss_epoch": 0.0722}


def test_lightning_metric_table_rows():
    table = (
        "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━┓\n"
        "┃      Validate metric      ┃       DataLoader 0        ┃\n"
        "┡━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━┩\n"
        "│         val_loss          │    0.6931471824645996     │\n"
        "│          val_acc          │           0.875           │\n"
        "└───────────────────────────┴───────────────────────────┘\n"
        "────────────────────────────────────────────\n"
        "       Test metric             DataLoader 0\n"
        "────────────────────────────────────────────\n"
        "        test_loss              0.25\n"
    )
    points = parse_text(table)
    assert [(p.kind, p.metrics) for p in points] == [
        ("table", {"val_loss": 0.6931471824645996}),
        ("table", {"val_acc": 0.875}),
        ("table", {"test_loss": 0.25}),
    ]
    assert all(p.is_validation for p in points)


def test_lightning_rich_bar_printed_at_the_end():
    point = only("Epoch 3/3  ━━━━━━━━━━━━━━━━ 16/16 0:00:01 • 0:00:02 353.96it/s v_num: 0.000")
    assert (point.epoch, point.step, point.total_steps, point.rate) == (3.0, 16, 16, 353.96)
    assert (point.elapsed_s, point.remaining_s) == (1.0, 2.0)


# -- Hugging Face Trainer ------------------------------------------------------------------------


def test_trainer_dict_with_numbers():
    point = only("{'loss': 0.6931, 'grad_norm': 1.2, 'learning_rate': 5e-05, 'epoch': 0.33}")
    assert (point.kind, point.loss, point.epoch) == ("dict", 0.6931, 0.33)
    assert point.metrics == {"grad_norm": 1.2, "learning_rate": 5e-05}


def test_trainer_dict_with_string_values():
    point = only(
        "{'loss': '1.802', 'grad_norm': '0.2462', 'learning_rate': '0.00475', 'epoch': '2'}"
    )
    assert (point.loss, point.epoch) == (1.802, 2.0)
    assert point.metrics["learning_rate"] == 0.00475


def test_trainer_dict_glued_onto_a_bar_update():
    point = only(
        " 33%|███▎      | 10/30 [00:01<00:02,  9.50it/s]"
        "{'loss': '0.69', 'grad_norm': '1.2', 'learning_rate': '5e-05', 'epoch': '0.33'}"
    )
    assert (point.step, point.total_steps, point.remaining_s) == (10, 30, 2.0)
    assert (point.loss, point.epoch) == (0.69, 0.33)


def test_trainer_eval_dict_is_validation():
    point = only("{'eval_loss': '0.4997', 'eval_runtime': '0.027', 'epoch': '1'}")
    assert point.is_validation
    assert point.val_loss == 0.4997
    assert point.loss is None


def test_trainer_final_summary_is_not_a_training_loss():
    point = only(
        "{'train_runtime': '3.469', 'train_samples_per_second': '138.4', "
        "'train_steps_per_second': '17.3', 'train_loss': '0.3168', 'epoch': '3'}"
    )
    assert point.kind == "summary"
    assert point.loss is None
    assert point.metrics["train_loss"] == 0.3168
    assert point.metrics["train_runtime"] == 3.469


# -- Keras -------------------------------------------------------------------------------------


def test_keras_verbose_2():
    points = parse_text(
        "Epoch 3/10\n32/32 - 0s - 5ms/step - loss: 0.4321 - accuracy: 0.81 - val_loss: 0.5\n"
    )
    assert (points[0].epoch, points[0].total_epochs) == (3.0, 10)
    second = points[1]
    assert (second.kind, second.step, second.total_steps) == ("keras", 32, 32)
    assert second.loss == 0.4321
    assert second.metrics == {"accuracy": 0.81, "val_loss": 0.5}
    assert second.rate == pytest.approx(200.0)


def test_keras_verbose_1_with_colours_and_backspaces():
    bar = "\x1b[32m━━━━━━━━━━\x1b[0m\x1b[37m━━━━━━━━━━\x1b[0m"
    text = (
        f"\r\x1b[1m 4/16\x1b[0m {bar} \x1b[1m1s\x1b[0m 146ms/step - accuracy: 0.4375 - loss: 0.7165"
        + "\x08" * 70
        + f"\r\x1b[1m16/16\x1b[0m {bar} \x1b[1m1s\x1b[0m 20ms/step - accuracy: 0.5254 - loss: 0.6825"
        " - val_accuracy: 0.5312 - val_loss: 0.6448\n"
    )
    points = parse_text(text)
    assert [(p.step, p.total_steps, p.loss) for p in points] == [(4, 16, 0.7165), (16, 16, 0.6825)]
    assert points[1].val_loss == 0.6448
    assert points[0].rate == pytest.approx(1000 / 146)


# -- nanoGPT and JSON lines ----------------------------------------------------------------------


def test_nanogpt_iter_line():
    point = only("iter 100: loss 2.3456, time 12.34ms, mfu 12.34%")
    assert (point.step, point.loss) == (100, 2.3456)
    assert point.metrics == {"time_ms": 12.34, "mfu": 12.34}


def test_nanogpt_eval_line():
    point = only("step 250: train loss 2.1234, val loss 2.2345")
    assert (point.step, point.loss, point.val_loss) == (250, 2.1234, 2.2345)


def test_json_lines_mixed_with_text():
    points = parse_text(
        'starting\n{"epoch": 1, "step": 10, "loss": 0.5, "lr": 1e-4, "note": "warmup"}\n'
        "Epoch 1 loss=0.4\n"
    )
    assert [(p.kind, p.line, p.epoch, p.step, p.loss) for p in points] == [
        ("json", 2, 1.0, 10, 0.5),
        ("text", 3, 1.0, None, 0.4),
    ]
    assert points[0].metrics == {"lr": 1e-4}


def test_json_nan_and_nested_values():
    point = only('{"step": 3, "loss": NaN, "metrics": {"val/loss": 1.5}}')
    assert point.step == 3 and math.isnan(point.loss)
    assert point.val_loss == 1.5


# -- project patterns --------------------------------------------------------------------------


def test_extra_pattern_named_groups_become_metrics():
    extra = [r"kl=(?P<kl>\S+) recon=(?P<recon>\S+)", r"^round (?P<step>\d+) elbo (?P<loss>\S+)"]
    point = only("round 7 elbo 3.5 kl=0.25 recon=1e-2", extra)
    assert (point.step, point.loss) == (7, 3.5)
    assert point.metrics["kl"] == 0.25 and point.metrics["recon"] == 0.01


def test_extra_pattern_on_an_otherwise_silent_line():
    point = only("reward: mean=12.5", [r"reward: mean=(?P<reward>[\d.]+)"])
    assert point.kind in ("extra", "text")
    assert point.metrics["reward"] == 12.5


# -- the shape cache ---------------------------------------------------------------------------


def test_compiled_plans_give_the_same_points_as_the_reference():
    rng = random.Random(3)
    templates = [
        "Epoch {a}/10 Step {b}/500 loss={f:.4f} lr={e:.2e}",
        "Epoch {a}:  50%|█████     | {b}/100 [00:0{a}<01:{b:02d}, {f:.2f}it/s, train_loss={f:.3g}]",
        " 10%|█         | {b}/100 [1:0{a}:03<9:18:27,  {f:.2f}s/it]",
        "{b}/32 - 0s - {a}ms/step - loss: {f:.4f} - accuracy: {f:.4f}",
        "{{'loss': '{f:.4f}', 'learning_rate': '{e:.3e}', 'epoch': '{f:.2f}'}}",
        '{{"epoch": {a}, "step": {b}, "loss": {f}}}',
        "iter {b}: loss {f:.4f}, time {f:.2f}ms, mfu {f:.2f}%",
    ]
    for template in templates:
        for _ in range(20):
            line = template.format(
                a=rng.randint(1, 9), b=rng.randint(10, 99), f=rng.uniform(0.1, 9.9), e=1e-4
            )
            raw = line.encode()
            plan = analyse(raw.decode("latin-1"))
            assert plan is not None, line
            assert compile_plan(plan)(raw, 4) == plan.apply(raw, 4), line


def test_a_shape_is_analysed_once_and_then_reused():
    parser = LogParser()
    lines = [
        f"Epoch 1/10 step {n}/900 loss=0.{n}" for n in range(100, 100 + 5 * COMPILE_AFTER_USES)
    ]
    points = parser.feed("\n".join(lines) + "\n")
    assert [p.step for p in points] == list(range(100, 100 + 5 * COMPILE_AFTER_USES))
    assert parser.analysed_bytes == len(lines[0])  # one analysis for the whole shape


def test_names_with_digits_are_read_from_each_record():
    lines = [f"layer{n % 3}_loss={n}.5 {{'top{n % 2}_acc': {n}}}" for n in range(12)]
    points = parse_text("\n".join(lines) + "\n")
    assert [sorted(p.metrics) for p in points] == [
        sorted([f"layer{n % 3}_loss", f"top{n % 2}_acc"]) for n in range(12)
    ]


def test_line_numbers_count_physical_lines_across_feeds():
    parser = LogParser()
    points = parser.feed("a\nloss=1\nb\n") + parser.feed("c\r\nloss=2") + parser.flush()
    assert [(p.line, p.loss) for p in points] == [(2, 1.0), (5, 2.0)]
