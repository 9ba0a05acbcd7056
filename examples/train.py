"""A real (small) training: logistic regression on synthetic data, standard library only.

It prints what the dashboard parses (`Epoch 2/5 step 120/500 loss=0.4312`), writes a JSON
checkpoint each epoch to $RUNCTL_CHECKPOINT_DIR, saves one more and exits 0 on SIGTERM, and
continues from `--resume PATH`. `--step-delay` stands in for the time a GPU step takes on a
real model, so the default run lasts about 40 s and there is something to watch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path

FORMAT = "runctl-example-v1"


def make_dataset(n: int, dim: int, seed: int) -> tuple[list[list[float]], list[int]]:
    """Two classes separated by a hidden hyperplane, with 10% label noise."""
    rng = random.Random(seed)
    hidden = [rng.gauss(0, 1) for _ in range(dim)]
    xs, ys = [], []
    for _ in range(n):
        x = [rng.gauss(0, 1) for _ in range(dim)]
        margin = sum(w * v for w, v in zip(hidden, x, strict=True))
        label = 1 if margin > 0 else 0
        if rng.random() < 0.1:
            label = 1 - label
        xs.append(x)
        ys.append(label)
    return xs, ys


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def evaluate(weights, bias, xs, ys) -> tuple[float, float]:
    loss, correct = 0.0, 0
    for x, y in zip(xs, ys, strict=True):
        p = sigmoid(sum(w * v for w, v in zip(weights, x, strict=True)) + bias)
        p = min(max(p, 1e-12), 1 - 1e-12)
        loss -= y * math.log(p) + (1 - y) * math.log(1 - p)
        correct += (p >= 0.5) == (y == 1)
    return loss / len(xs), correct / len(xs)


def save_checkpoint(directory: Path, name: str, state: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    tmp = directory / f".{name}.tmp"
    tmp.write_text(json.dumps({"format": FORMAT, "saved_at": time.time(), **state}))
    os.replace(tmp, path)  # a reader never sees half a checkpoint
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--step-delay", type=float, default=0.08, help="seconds per step")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", type=Path, default=None, help="checkpoint to continue from")
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path(os.environ.get("RUNCTL_CHECKPOINT_DIR", "checkpoints")),
    )
    args = parser.parse_args(argv)

    stop_requested = False

    def on_sigterm(signum, frame):
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, on_sigterm)

    total_steps = args.epochs * args.steps_per_epoch
    train_x, train_y = make_dataset(args.steps_per_epoch * args.batch_size, args.dim, args.seed)
    val_x, val_y = make_dataset(500, args.dim, args.seed)  # same hidden plane, other samples
    val_x, val_y = val_x[:500], val_y[:500]
    weights, bias = [0.0] * args.dim, 0.0
    start_epoch, step = 1, 0

    if args.resume is not None:
        try:
            state = json.loads(args.resume.read_text())
            weights, bias = [float(w) for w in state["weights"]], float(state["bias"])
            step = int(state["step"])
            start_epoch = int(state["epoch"]) + (1 if state.get("epoch_complete") else 0)
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(f"error: cannot resume from {args.resume}: {err}", file=sys.stderr)
            return 2
        if len(weights) != args.dim:
            print(f"error: {args.resume} has {len(weights)} weights, expected {args.dim}")
            return 2
        print(f"Resumed from {args.resume} at epoch {start_epoch}/{args.epochs} step {step}")

    print(
        f"Training logistic regression: {len(train_x)} samples, dim {args.dim}, "
        f"{args.epochs} epochs x {args.steps_per_epoch} steps, checkpoints in {args.checkpoint_dir}"
    )
    loss = float("nan")
    window: list[float] = []  # losses since the last log line; printing their mean smooths noise
    for epoch in range(start_epoch, args.epochs + 1):
        order = list(range(len(train_x)))
        random.Random(args.seed * 1000 + epoch).shuffle(order)
        first_step_in_epoch = step - (epoch - 1) * args.steps_per_epoch
        epoch_losses: list[float] = []
        for batch_index in range(max(first_step_in_epoch, 0), args.steps_per_epoch):
            batch = order[batch_index * args.batch_size : (batch_index + 1) * args.batch_size]
            grad_w, grad_b, loss = [0.0] * args.dim, 0.0, 0.0
            for i in batch:
                x, y = train_x[i], train_y[i]
                p = sigmoid(sum(w * v for w, v in zip(weights, x, strict=True)) + bias)
                p_clamped = min(max(p, 1e-12), 1 - 1e-12)
                loss -= y * math.log(p_clamped) + (1 - y) * math.log(1 - p_clamped)
                for d in range(args.dim):
                    grad_w[d] += (p - y) * x[d]
                grad_b += p - y
            n = len(batch)
            weights = [w - args.lr * g / n for w, g in zip(weights, grad_w, strict=True)]
            bias -= args.lr * grad_b / n
            loss /= n
            step += 1
            window.append(loss)
            epoch_losses.append(loss)
            if step % args.log_every == 0:
                mean = sum(window) / len(window)
                window.clear()
                print(f"Epoch {epoch}/{args.epochs} step {step}/{total_steps} loss={mean:.4f}")
            time.sleep(args.step_delay)
            if stop_requested:
                path = save_checkpoint(
                    args.checkpoint_dir,
                    f"interrupted-epoch-{epoch:04d}-step-{step:06d}.ckpt.json",
                    {
                        "epoch": epoch,
                        "epoch_complete": batch_index + 1 == args.steps_per_epoch,
                        "total_epochs": args.epochs,
                        "step": step,
                        "total_steps": total_steps,
                        "loss": loss,
                        "weights": weights,
                        "bias": bias,
                    },
                )
                print(f"Received SIGTERM: saved checkpoint {path}; exiting cleanly")
                return 0
        loss = sum(epoch_losses) / len(epoch_losses) if epoch_losses else loss
        val_loss, accuracy = evaluate(weights, bias, val_x, val_y)
        print(
            f"Epoch {epoch}/{args.epochs} done: loss={loss:.4f} "
            f"val_loss={val_loss:.4f} acc={accuracy:.4f}"
        )
        path = save_checkpoint(
            args.checkpoint_dir,
            f"epoch-{epoch:04d}.ckpt.json",
            {
                "epoch": epoch,
                "epoch_complete": True,
                "total_epochs": args.epochs,
                "step": step,
                "total_steps": total_steps,
                "loss": loss,
                "val_loss": val_loss,
                "accuracy": accuracy,
                "weights": weights,
                "bias": bias,
            },
        )
        print(f"Saved checkpoint {path}")
    print(f"Training finished: {step} steps, final loss={loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
