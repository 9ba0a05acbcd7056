"""Training logs in, metric points out: epoch, step, loss and every other named scalar.

This is the foundation parser for hand-written loops (`Epoch 3/10 step 120/500 loss=0.43`,
`val_loss: 0.5`); the log-intelligence work extends it to tqdm, Lightning, the Hugging Face
Trainer, Keras, nanoGPT and JSON lines behind the same `LogParser.feed` interface.

No textual import: the parser runs headless (`runctl-tui metrics`, tests) and in workers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
EPOCH_RE = re.compile(r"\bepoch\s*\[?\s*(\d+(?:\.\d+)?)(?:\s*/\s*(\d+))?", re.IGNORECASE)
STEP_RE = re.compile(r"\b(?:step|iter|batch)\s*\[?\s*(\d+)(?:\s*/\s*(\d+))?", re.IGNORECASE)
SCALAR_RE = re.compile(
    rf"\b([A-Za-z][A-Za-z0-9_./-]*?)\s*(?:=|:)\s*({NUMBER})(?![\w.])", re.IGNORECASE
)
# One cheap test decides whether a line can hold a metric at all.
MAYBE_METRIC = re.compile(r"loss|epoch|step|iter|acc|[:=]\s*[-+.\d]", re.IGNORECASE)
LOSS_NAMES = ("loss", "train_loss", "training_loss", "train/loss")
VALIDATION_PREFIXES = ("val", "eval", "valid", "test")


@dataclass(slots=True)
class MetricPoint:
    """What one log record says. `line` counts physical lines from 1."""

    line: int
    epoch: float | None = None
    total_epochs: int | None = None
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    is_validation: bool = False

    @property
    def val_loss(self) -> float | None:
        for name in ("val_loss", "eval_loss", "valid_loss", "validation_loss"):
            if name in self.metrics:
                return self.metrics[name]
        return None


def to_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


class LogParser:
    """Feed decoded text as it arrives; a line is parsed once it is complete."""

    def __init__(self, extra_patterns: Sequence[str] = ()) -> None:
        self.extra = [re.compile(p) for p in extra_patterns]
        self._partial = ""
        self.lines_seen = 0

    def feed(self, text: str) -> list[MetricPoint]:
        if not text:
            return []
        pieces = (self._partial + text).split("\n")
        self._partial = pieces.pop()
        points: list[MetricPoint] = []
        for piece in pieces:
            self.lines_seen += 1
            point = self.parse_line(piece, self.lines_seen)
            if point is not None:
                points.append(point)
        return points

    def flush(self) -> list[MetricPoint]:
        """Parse the unterminated last line (end of file)."""
        if not self._partial:
            return []
        self.lines_seen += 1
        piece, self._partial = self._partial, ""
        point = self.parse_line(piece, self.lines_seen)
        return [point] if point is not None else []

    def parse_line(self, line: str, number: int) -> MetricPoint | None:
        if "\r" in line:
            line = line.rsplit("\r", 1)[-1] or line.strip("\r")
        if not MAYBE_METRIC.search(line) and not self.extra:
            return None
        point = MetricPoint(number)
        found = False
        if match := EPOCH_RE.search(line):
            point.epoch = float(match.group(1))
            point.total_epochs = int(match.group(2)) if match.group(2) else None
            found = True
        if match := STEP_RE.search(line):
            point.step = int(match.group(1))
            point.total_steps = int(match.group(2)) if match.group(2) else None
            found = True
        for name, raw in SCALAR_RE.findall(line):
            value = to_float(raw)
            if value is None:
                continue
            key = name.lower()
            if key in ("epoch", "step", "iter", "batch"):
                continue
            if key in LOSS_NAMES:
                point.loss = value
            else:
                point.metrics[key] = value
            found = True
        for pattern in self.extra:
            if match := pattern.search(line):
                for name, raw in match.groupdict().items():
                    value = to_float(raw) if raw is not None else None
                    if value is None:
                        continue
                    if name == "loss":
                        point.loss = value
                    elif name == "epoch":
                        point.epoch = value
                    elif name == "step":
                        point.step = int(value)
                    else:
                        point.metrics[name] = value
                    found = True
        if not found:
            return None
        if point.loss is None and point.epoch is None and point.step is None:
            point.is_validation = any(k.startswith(VALIDATION_PREFIXES) for k in point.metrics)
        return point


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
