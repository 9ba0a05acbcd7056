"""Training logs in, metric points out: epoch, step, loss and every other named scalar.

Formats, as they look when stdout and stderr are redirected to a file: hand-written loops
(`Epoch 3/10 step 120/500 loss=0.43`), tqdm bars (many `\\r` updates on one physical line,
ANSI cursor moves), PyTorch Lightning bars, validation bars and metric tables, Hugging Face
Trainer dicts (numbers or strings, glued onto a bar or not), Keras `fit` at verbose 1 and 2,
nanoGPT's `iter` / `step` lines, JSON lines, and per-project regexes with named groups.

How it stays fast: a record is first reduced to its *shape* - the record with every digit
replaced by `0` (one `bytes.translate` over the whole chunk). Two records of one shape differ
only in the digits, so the full analysis (several regexes) runs once per shape and leaves a
*plan*: which byte ranges hold which value. Later records of that shape are sliced and
converted without a regex. The analysis therefore treats every digit alike (`\\d`, never a
literal digit), which is what makes the plan valid for the whole shape; a plan whose metric
names hold digits (`top1_acc`) is not reused.

A block is parsed with whole-block C calls: records are cut (`translate` turns `\r` and
backspaces into `\n`, then `split`), shaped, and given their plans by one `map` of dict
lookups, with no Python code per record. What comes out is a `PointBatch`: plans and records,
read on demand. `losses()` reads the loss chart's two values with `map(float, ...)` over the
plans' slices (~1.1M lines/s on bench/parse_throughput.py, 3x the points); `points()` builds a
`MetricPoint` per record with the plan compiled for its shape (the live follow, `runctl-tui
metrics`). `feed_columns` reads every value of a block into numpy arrays instead, through
layouts derived from the same plans (app/logcolumns.py: the full parse of a whole file,
~1.2M lines/s there, the points' values bit for bit).

No textual import: the parser runs headless (`runctl-tui metrics`, tests) and in workers.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import attrgetter, call, is_not, itemgetter

from app import gc_pauses

# -- the point --------------------------------------------------------------------------------

VAL_LOSS_NAMES = ("val_loss", "eval_loss", "valid_loss", "validation_loss", "val/loss", "test_loss")
# In order of preference: the first one a record has is its training loss.
TRAIN_LOSS_NAMES = (
    "loss",
    "train_loss",
    "training_loss",
    "train/loss",
    "train_loss_step",
    "loss_step",
    "train/loss_step",
    "avg_loss",
    "average_loss",
    "mean_loss",
    "running_loss",
)
VALIDATION_PREFIXES = ("val", "eval", "valid", "test")


@dataclass(slots=True)
class MetricPoint:
    """What one log record says. `line` counts physical (newline-ended) lines from 1; the
    `\\r`-separated updates of one tqdm line share its number.

    `loss` is the training loss; every other named value is in `metrics` under the name the log
    uses. `kind` says which format the record was: "text", "bar", "validation-bar", "keras",
    "dict", "json", "summary" (the Trainer's final train_runtime dict), "table" (Lightning's
    metric table) or "extra" (a project pattern). A bar's own clock is in `elapsed_s` and
    `remaining_s`, its speed in `rate` (steps per second)."""

    line: int
    epoch: float | None = None
    total_epochs: int | None = None
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    is_validation: bool = False
    kind: str = "text"
    elapsed_s: float | None = None
    remaining_s: float | None = None
    rate: float | None = None

    @property
    def val_loss(self) -> float | None:
        for name in VAL_LOSS_NAMES:
            if name in self.metrics:
                return self.metrics[name]
        if self.is_validation:
            for name in TRAIN_LOSS_NAMES:
                if name in self.metrics:
                    return self.metrics[name]
        return None


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


# -- the analysis of one record (runs once per shape) -------------------------------------------

NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?<![A-Za-z])(?i:nan|inf(?:inity)?)(?![A-Za-z])"
# Colour codes and cursor moves: `\x1b[A`, `\x1b[2K`, `\x1b[1m`, OSC titles.
ANSI_RE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")

# One cheap test decides whether a record can hold a metric at all.
MAYBE_METRIC = re.compile(
    r"loss|epoch|step|iter|batch|acc|lr\b|(?<!\d)\d+[/%]|[:=]\s*[-+]?\.?\d|[:=]\s*[-+]?(?:nan|inf)",
    re.IGNORECASE,
)

# Each optional separator is tried with its own whitespace, so a run of spaces is never
# split between several `\s*` (which would make the match quadratic in the run's length).
EPOCH_RE = re.compile(
    r"(?<![\w/])epoch(?:\s*[:=#])?(?:\s*\[)?\s*(\d+(?:\.\d+)?)(?:\s*/\s*(\d+))?", re.I
)
STEP_RE = re.compile(
    r"(?<![\w/])(?:global[_ ]step|step|iter(?:ation)?|batch|it)(?:\s*[:=#])?(?:\s*\[)?\s*(\d+)(?:\s*/\s*(\d+))?",
    re.I,
)
BRACKET_PROGRESS_RE = re.compile(r"\[\s*(\d+)\s*/\s*(\d+)\b")
VALIDATION_LINE_RE = re.compile(
    r"^\W*(?:test|val|valid|validation|validating|eval|evaluation|evaluating)\b", re.I
)
# `loss: 0.4`, `val_loss=0.5`, `Train Loss: 0.4`, `val loss 2.23`, `acc: 91.2%`.
QUALIFIER = (
    r"train|training|val|valid|validation|eval|test|avg|average|mean|running|total|batch|epoch"
)
PAIR_RE = re.compile(
    rf"(?<![\w./-])(?:({QUALIFIER})[ _])?([A-Za-z][\w./-]*?)\s*(?:=|:(?!//))\s*({NUMBER})%?(?![\w.:/])",
    re.I,
)
KNOWN_SPACED = r"loss|acc|accuracy|lr|learning[ _]rate|ppl|perplexity|time|mfu|grad[ _]norm|gnorm|f1|auc|mae|mse|rmse|dt"
SPACED_RE = re.compile(
    rf"(?<![\w./-])(?:({QUALIFIER})[ _])?({KNOWN_SPACED})\s+({NUMBER})(%|ms|s)?(?![\w.:/])", re.I
)
# A tqdm bar: `desc: 45%|████▌     | 45/100 [00:03<00:04, 12.1it/s, loss=0.1]` and the
# no-total form `desc: 45it [00:03, 12.1it/s]`.
BAR_RE = re.compile(
    r"(?<!\d)(?:(\d+)%\|[^|]{0,400}\|\s*(\d+)/(\d+)|(\d+)(?:it)?)\s*"
    r"\[([\d:]+)(?:<([\d:?]+))?,\s*(?:(\d+(?:\.\d+)?|\?)\s*(it/s|s/it)|\?it/s)?(,[^\]]{0,2000})?\]"
)
VALIDATION_BAR_RE = re.compile(
    r"validat|sanity check|testing|predicting|evaluat|\beval\b|\btest\b", re.IGNORECASE
)
POSTFIX_PAIR_RE = re.compile(rf"(?<![\w./-])([A-Za-z][\w./-]*)=({NUMBER})(?![\w.])")
# Keras: `32/32 ━━━━━━━━━━━━━━━━━━━━ 1s 5ms/step - loss: 0.43` and `32/32 - 0s - 5ms/step - ...`.
KERAS_RE = re.compile(r"^\s*(\d+)/(\d+)\s.*?(?:(?<![\d.])(\d+(?:\.\d+)?)(us|ms|s)/step|$)")
# Python dict reprs and JSON objects: `'loss': 0.69`, `"epoch": 1`, `'loss': '1.802'`.
DICT_PAIR_RE = re.compile(rf"""(["'])([^"'\n]{{1,120}}?)\1\s*:\s*(["']?)({NUMBER})\3(?=\s*[,}}])""")


def _latin1(text: str) -> str:
    """How UTF-8 text looks to the analysis, which reads records as latin-1."""
    return text.encode().decode("latin-1")


# Lightning's metric table rows: `│  val_loss  │  0.69  │` or `      val_loss      0.69`.
_RULE = "(?:" + "|".join(map(re.escape, [_latin1("│"), _latin1("┃"), "|"])) + ")"
TABLE_ROW_RE = re.compile(
    rf"^\s*(?:{_RULE}\s*)?([A-Za-z][\w./-]*)\s*{_RULE}\s*({NUMBER})\s*{_RULE}\s*$"
)
# Lightning's Rich bar (printed once, at the end, into a file):
# `Epoch 3/3  ━━━━ 16/16 0:00:00 • 0:00:00 353.96it/s v_num: 0.000`.
RICH_BAR_RE = re.compile(
    r"(?<!\d)(\d+)/(\d+)\s+(\d+:\d\d:\d\d)\s+\S+\s+(\d+:\d\d:\d\d|-:--:--)\s+(\d+(?:\.\d+)?)it/s"
)
PLAIN_TABLE_ROW_RE = re.compile(rf"^\s{{2,}}([A-Za-z][\w./-]*)\s{{4,}}({NUMBER})\s*$")
KERAS_UNITS = {"us": 1e6, "ms": 1e3, "s": 1.0}
DROPPED_NAMES = frozenset({"v_num", "eta"})
EPOCH_NAMES = frozenset({"epoch", "epochs"})
STEP_NAMES = frozenset({"step", "global_step", "iter", "iteration", "batch", "it"})
SUMMARY_KEYS = ("train_runtime", "train_samples_per_second")
TOTAL_STEP_NAMES = frozenset({"total_steps", "max_steps", "max_iters", "num_steps"})
TOTAL_EPOCH_NAMES = frozenset({"total_epochs", "num_epochs", "max_epochs", "epochs_total"})

# MetricPoint fields that hold whole numbers (a plan's other targets are floats or metrics).
INT_TARGETS = ("total_epochs", "step", "total_steps")


@dataclass(slots=True)
class Field:
    """One value of a record: where it is (byte spans of the raw record) and how it reads."""

    target: str  # a MetricPoint field name, or "m:<name>" for a metric
    spans: tuple[tuple[int, int], ...]
    convert: str = "float"  # "float" | "int" | "clock" (h:m:s parts) | "inverse" | "per_<scale>"


class Plan:
    """How every record of one shape turns into a point, without a regex.

    `build(raw, line)` makes the point. It starts as the interpreted `apply`; once the shape
    has been seen COMPILE_AFTER_USES times it is replaced by a function compiled for this shape
    (constant slices, no loop over fields), about twice as fast. Only byte offsets go into the
    generated source; metric names are passed in as a tuple, never pasted into code."""

    __slots__ = (
        "build",
        "fields",
        "is_validation",
        "kind",
        "reusable",
        "train_loss",
        "uses",
        "val_loss",
    )

    def __init__(self, kind: str, is_validation: bool, fields: list[Field]) -> None:
        self.kind = kind
        self.is_validation = is_validation
        self.fields = fields
        self.uses = 0
        self.build = self._count_uses
        # A name with a digit (`top1_acc`, `layer3_loss`) shares its shape with other names
        # (`top5_acc`): such a plan is used for its own record only, never cached.
        self.reusable = not any(
            item.target.startswith("m:") and any(c.isdigit() for c in item.target)
            for item in fields
        )
        # Readers of the two values the loss chart needs, `raw -> bytes` (None: the record has
        # no such value): a training loss (`point.loss` of a training record) and the value of
        # `point.val_loss`. Both are plain floats at one span, whatever the format.
        by_target = {item.target: item for item in fields}
        self.train_loss = None if is_validation else _reader(by_target.get("loss"))
        self.val_loss = None
        names = [*VAL_LOSS_NAMES, *(TRAIN_LOSS_NAMES if is_validation else ())]
        for name in names:
            if "m:" + name in by_target:
                self.val_loss = _reader(by_target["m:" + name])
                break

    def _count_uses(self, raw: bytes, line: int) -> MetricPoint:
        self.uses += 1
        if self.uses >= COMPILE_AFTER_USES:
            self.build = compile_plan(self)
        return self.apply(raw, line)

    def apply(self, raw: bytes, line: int) -> MetricPoint:
        """The reference meaning of a plan (the compiled form must give the same point)."""
        point = MetricPoint(line, is_validation=self.is_validation, kind=self.kind)
        for item in self.fields:
            value = field_value(item, raw)
            if item.target.startswith("m:"):
                if value is not None:
                    point.metrics[item.target[2:]] = value
            else:
                setattr(point, item.target, value)
        return point


def field_value(item: Field, raw: bytes) -> float | int | None:
    """The value of one field of a record, as the point holds it."""
    if item.convert == "int":
        return int(raw[item.spans[0][0] : item.spans[0][1]])
    values = [float(raw[start:end]) for start, end in item.spans]
    value = _convert_special(item.convert, values)
    if item.target in INT_TARGETS:
        return _int_or_none(value)
    return value


def _reader(item: Field | None):
    """`raw -> bytes` of a field that reads as one float (`float(reader(raw))` is its value)."""
    if item is None or item.convert != "float" or len(item.spans) != 1:
        return None
    return itemgetter(slice(*item.spans[0]))


def _int_or_none(value: float | None) -> int | None:
    return int(value) if value is not None and math.isfinite(value) else None


def _inverse(value: float) -> float | None:
    return 1.0 / value if value else None


def _per(scale: float, value: float) -> float | None:
    return scale / value if value else None


POINT_FIELDS = (
    "epoch",
    "total_epochs",
    "step",
    "total_steps",
    "loss",
    "metrics",
    "is_validation",
    "kind",
    "elapsed_s",
    "remaining_s",
    "rate",
)


def compile_plan(plan: Plan):
    """A function `(raw, line) -> MetricPoint` with this plan's slices as constants."""

    def number(start: int, end: int) -> str:
        return f"float(raw[{start}:{end}])"

    def expression(item: Field) -> str:
        spans = item.spans
        if item.convert == "clock":
            text = f"int(raw[{spans[0][0]}:{spans[0][1]}])"
            for start, end in spans[1:]:
                text = f"({text} * 60 + int(raw[{start}:{end}]))"
            return f"float({text})"
        if item.convert == "int":
            return f"int(raw[{spans[0][0]}:{spans[0][1]}])"
        value = number(*spans[0])
        if item.convert == "inverse":
            return f"_inverse({value})"
        if item.convert.startswith("per_"):
            return f"_per({float(item.convert[4:])!r}, {value})"
        if item.target in INT_TARGETS:
            return f"_int_or_none({value})"
        return value

    names: list[str] = []
    metric_items: list[str] = []
    arguments = dict.fromkeys(POINT_FIELDS, "None")
    arguments["is_validation"] = repr(bool(plan.is_validation))
    arguments["kind"] = "KIND"
    for item in plan.fields:
        if item.target.startswith("m:"):
            if item.convert != "float":
                return plan.apply  # not produced by the analysis; keep the reference path
            metric_items.append(f"NAMES[{len(names)}]: {expression(item)}")
            names.append(item.target[2:])
        else:
            arguments[item.target] = expression(item)
    arguments["metrics"] = "{" + ", ".join(metric_items) + "}"
    source = (
        "def build(raw, line):\n"
        f"    return MetricPoint(line, {', '.join(arguments[name] for name in POINT_FIELDS)})\n"
    )
    namespace = {
        "MetricPoint": MetricPoint,
        "NAMES": tuple(names),
        "KIND": plan.kind,
        "_inverse": _inverse,
        "_per": _per,
        "_int_or_none": _int_or_none,
    }
    exec(compile(source, "<log-shape plan>", "exec"), namespace)
    return namespace["build"]


def _convert_special(convert: str, values: list[float]) -> float | None:
    if convert == "clock":  # [h:]m:s
        total = 0.0
        for value in values:
            total = total * 60 + value
        return total
    if convert == "inverse":
        return 1.0 / values[0] if values[0] else None
    if convert.startswith("per_"):  # a time per step in a unit -> steps per second
        return float(convert[4:]) / values[0] if values[0] else None
    return values[0]


class _Builder:
    """Collects the fields of one record during its analysis, in raw-byte coordinates."""

    def __init__(self, offsets: list[int] | None) -> None:
        self.offsets = offsets  # clean-text index -> raw index, when ANSI codes were removed
        self.fields: dict[str, Field] = {}

    def span(self, start: int, end: int) -> tuple[int, int]:
        if self.offsets is None:
            return start, end
        return self.offsets[start], self.offsets[end - 1] + 1

    def add(self, target: str, start: int, end: int, convert: str = "float", replace=True) -> None:
        if replace or target not in self.fields:
            self.fields[target] = Field(target, (self.span(start, end),), convert)

    def add_clock(self, target: str, text: str, offset: int) -> None:
        if not text or "?" in text:
            return
        spans = tuple(
            self.span(offset + m.start(), offset + m.end()) for m in re.finditer(r"\d+", text)
        )
        if spans:
            self.fields[target] = Field(target, spans, "clock")

    def add_metric(self, name: str, start: int, end: int, convert: str = "float") -> None:
        if name in DROPPED_NAMES:
            return
        self.add("m:" + name, start, end, convert)


def _strip_ansi(text: str) -> tuple[str, list[int] | None]:
    if "\x1b" not in text:
        return text, None
    kept: list[str] = []
    offsets: list[int] = []
    position = 0
    for match in ANSI_RE.finditer(text):
        kept.append(text[position : match.start()])
        offsets.extend(range(position, match.start()))
        position = match.end()
    kept.append(text[position:])
    offsets.extend(range(position, len(text)))
    offsets.append(len(text))
    return "".join(kept), offsets


def _name(text: str) -> str:
    """A metric name as the log spells it, readable as UTF-8 (analysis works on latin-1)."""
    return text.encode("latin-1").decode("utf-8", "replace")


def analyse(record: str) -> Plan | None:
    """The full analysis of one record (decoded as latin-1, so indexes are byte offsets)."""
    if not MAYBE_METRIC.search(record):
        return None
    text, offsets = _strip_ansi(record)
    build = _Builder(offsets)
    kind = "text"
    is_validation = False

    brace = text.find("{")
    dict_pairs = list(DICT_PAIR_RE.finditer(text, brace)) if brace >= 0 else []
    if dict_pairs:
        head = text[:brace]
        kind = "json" if dict_pairs[0].group(1) == '"' else "dict"
    else:
        head = text
    bar = BAR_RE.search(head) if "[" in head else None

    if bar is not None:
        desc = head[: bar.start()]
        # An unlabelled bar drawn one row down (it moves the cursor back up after itself) is
        # an inner loop under the training bar: the Trainer's evaluation bar.
        inner = not desc.strip() and record.rstrip().endswith("\x1b[A")
        if inner or VALIDATION_BAR_RE.search(desc):
            kind, is_validation = "validation-bar", True
        else:
            if kind == "text":
                kind = "bar"
            if bar.group(2) is not None:
                build.add("step", *bar.span(2))
                build.add("total_steps", *bar.span(3))
            else:
                build.add("step", *bar.span(4))
            build.add_clock("elapsed_s", bar.group(5), bar.start(5))
            if bar.group(6):
                build.add_clock("remaining_s", bar.group(6), bar.start(6))
            if bar.group(7) and bar.group(7) != "?":
                build.add("rate", *bar.span(7), "inverse" if bar.group(8) == "s/it" else "float")
            if epoch := EPOCH_RE.search(desc):
                build.add("epoch", *epoch.span(1))
                if epoch.group(2):
                    build.add("total_epochs", *epoch.span(2))
        if bar.group(9):
            for pair in POSTFIX_PAIR_RE.finditer(text, bar.start(9), bar.end(9)):
                build.add_metric(_name(pair.group(1)), *pair.span(2))
    elif rich := RICH_BAR_RE.search(head):
        desc = head[: rich.start()]
        if VALIDATION_BAR_RE.search(desc):
            kind, is_validation = "validation-bar", True
        else:
            kind = "bar"
            build.add("step", *rich.span(1))
            build.add("total_steps", *rich.span(2))
            build.add_clock("elapsed_s", rich.group(3), rich.start(3))
            build.add_clock("remaining_s", rich.group(4), rich.start(4))
            build.add("rate", *rich.span(5))
            if epoch := EPOCH_RE.search(desc):
                build.add("epoch", *epoch.span(1))
                if epoch.group(2):
                    build.add("total_epochs", *epoch.span(2))
        _text_pairs(head, rich.end(), len(head), build)
    elif keras := KERAS_RE.match(head):
        if "/step" in head or " - " in head:
            kind = "keras"
            build.add("step", *keras.span(1))
            build.add("total_steps", *keras.span(2))
            if keras.group(3):
                build.add("rate", *keras.span(3), f"per_{KERAS_UNITS[keras.group(4)]:g}")
            _text_pairs(text, keras.end(2), len(head), build)
        else:
            _text_fields(head, build)
    elif table := TABLE_ROW_RE.match(head) or PLAIN_TABLE_ROW_RE.match(head):
        kind = "table"
        name = _name(table.group(1))
        build.add_metric(name, *table.span(2))
        is_validation = name.lower().startswith(VALIDATION_PREFIXES)
    elif not dict_pairs or head.strip():
        _text_fields(head, build)

    if dict_pairs:
        keys = set()
        for pair in dict_pairs:
            key = _name(pair.group(2))
            keys.add(key)
            lower = key.lower()
            if lower in EPOCH_NAMES:
                build.add("epoch", *pair.span(4))
            elif lower in STEP_NAMES:
                build.add("step", *pair.span(4))
            elif lower in TOTAL_STEP_NAMES:
                build.add("total_steps", *pair.span(4))
            elif lower in TOTAL_EPOCH_NAMES:
                build.add("total_epochs", *pair.span(4))
            else:
                build.add_metric(key, *pair.span(4))
        if any(key in keys for key in SUMMARY_KEYS):
            kind = "summary"
        elif not keys & {"loss", "train_loss"} and any(
            key.lower().startswith(VALIDATION_PREFIXES) for key in keys if key not in EPOCH_NAMES
        ):
            is_validation = True

    if not build.fields:
        return None
    if kind == "text" and VALIDATION_LINE_RE.match(text):
        is_validation = True  # `Test set: Average loss: 0.0034`, `Validation loss: 0.5`
    if kind != "summary" and not is_validation:
        _promote_loss(build)
    if kind == "text" and not is_validation:
        is_validation = _only_validation(build)
    for item in build.fields.values():
        # Digits only here means digits only in every record of this shape: int() directly.
        if item.target in INT_TARGETS and len(item.spans) == 1 and item.convert == "float":
            start, end = item.spans[0]
            if record[start:end].isdigit():
                item.convert = "int"
    return Plan(kind, is_validation, list(build.fields.values()))


def _promote_loss(build: _Builder) -> None:
    names = {target[2:].lower(): target for target in build.fields if target.startswith("m:")}
    for candidate in TRAIN_LOSS_NAMES:
        target = names.get(candidate)
        if target is not None:
            item = build.fields.pop(target)
            build.fields["loss"] = Field("loss", item.spans, item.convert)
            return


def _only_validation(build: _Builder) -> bool:
    targets = list(build.fields)
    if any(not t.startswith("m:") for t in targets if t not in ("epoch", "total_epochs")):
        return False
    metrics = [t[2:].lower() for t in targets if t.startswith("m:")]
    return bool(metrics) and all(name.startswith(VALIDATION_PREFIXES) for name in metrics)


def _text_fields(text: str, build: _Builder) -> None:
    """Free text: `Epoch [3/10] Step 120/500 loss=0.43 val loss 0.5 ...`."""
    if epoch := EPOCH_RE.search(text):
        build.add("epoch", *epoch.span(1))
        if epoch.group(2):
            build.add("total_epochs", *epoch.span(2))
    if step := STEP_RE.search(text):
        build.add("step", *step.span(1))
        if step.group(2):
            build.add("total_steps", *step.span(2))
    elif epoch:
        # PyTorch's examples: `Train Epoch: 1 [640/60000 (1%)]  Loss: 0.51` (not the epoch's own
        # `Epoch [3/10]`; and only beside an epoch, so a build's `[12/340] Building` is no step).
        taken = epoch.span()
        for progress in BRACKET_PROGRESS_RE.finditer(text):
            if not taken[0] <= progress.start() < taken[1]:
                build.add("step", *progress.span(1))
                build.add("total_steps", *progress.span(2))
                break
    _text_pairs(text, 0, len(text), build)


def _text_pairs(text: str, start: int, end: int, build: _Builder) -> None:
    for pair in PAIR_RE.finditer(text, start, end):
        qualifier, name = pair.group(1), pair.group(2)
        lower = name.lower()
        if qualifier is None and lower in EPOCH_NAMES:
            build.add("epoch", *pair.span(3), replace=False)
            continue
        if qualifier is None and lower in STEP_NAMES:
            build.add("step", *pair.span(3), replace=False)
            continue
        if qualifier is None and lower in TOTAL_EPOCH_NAMES:
            build.add("total_epochs", *pair.span(3), replace=False)
            continue
        if qualifier is None and lower in TOTAL_STEP_NAMES:
            build.add("total_steps", *pair.span(3), replace=False)
            continue
        full = f"{qualifier}_{name}" if qualifier else name
        build.add_metric(_name(full).lower(), *pair.span(3))
    for pair in SPACED_RE.finditer(text, start, end):
        qualifier, name, unit = pair.group(1), pair.group(2), pair.group(4)
        full = f"{qualifier}_{name}" if qualifier else name
        full = full.lower().replace(" ", "_")
        if unit == "ms":
            full += "_ms"
        if "m:" + full not in build.fields:
            build.add_metric(full, *pair.span(3))


# -- extra patterns (per project; run on every record, never cached) ------------------------------


def _apply_extra(point: MetricPoint | None, patterns: list[re.Pattern], record: str, line: int):
    for pattern in patterns:
        match = pattern.search(record)
        if match is None:
            continue
        for name, raw in match.groupdict().items():
            if raw is None:
                continue
            try:
                value = float(raw)
            except ValueError:
                continue
            if point is None:
                point = MetricPoint(line, kind="extra")
            if name in ("loss", "epoch"):
                setattr(point, name, value)
            elif name in INT_TARGETS:
                setattr(point, name, int(value) if math.isfinite(value) else None)
            else:
                point.metrics[name] = value
    return point


# -- the streaming parser ---------------------------------------------------------------------

DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
# A block is cut into records in C: \r and backspace become \n (in the records and in their
# shapes), and the separators alone, \n as 1 and the others as 0, count the physical lines.
# An empty record (between `\r\r`, or `\r\n`) is no point.
BACKSPACE_RUN = re.compile(rb"\x08{2,}")
SEPARATORS_TO_NEWLINE = bytes.maketrans(b"\r\x08", b"\n\n")
SHAPE_OF_RECORDS = bytes.maketrans(b"123456789\r\x08", b"000000000\n\n")
NOT_A_SEPARATOR = bytes(sorted(set(range(256)) - set(b"\n\r\x08")))
NEWLINE_AS_ONE = bytes.maketrans(b"\n\r\x08", b"\x01\x00\x00")
COMPILE_AFTER_USES = 3  # a shape seen this often gets its own compiled function
MAX_SHAPES = 4096  # plans kept (~4 kB each); the cache starts over when it is full
MAX_SHAPE_BYTES = 2048  # longer records are analysed every time, never cached
MAX_RECORD_BYTES = 1 << 20  # a record is cut here; a 1 MB line must not stall a live follow


class _NoPlan:
    """The plan of a record without metrics: it reads no loss."""

    __slots__ = ()
    train_loss = None
    val_loss = None


NO_PLAN = _NoPlan()


@dataclass(slots=True)
class LossSeries:
    """The losses of a batch in log order, as a loss chart takes them: every training loss
    (`point.loss` of a training record) and every `point.val_loss`, the latter with the number
    of the batch's training losses up to and including its record."""

    train: list[float]
    validation: list[float]
    validation_after: list[int]


def _without_gc(function, *arguments):
    """The cyclic garbage collector is paused while points are made: they hold no cycles, yet
    the collector would scan them (and every other live object in the process) over and over
    as they pile up, which measured here as ~45% of the time."""
    with gc_pauses.paused():
        return function(*arguments)


class PointBatch:
    """The points of one block of log, read on demand.

    Parsing a block finds each record's plan (which bytes hold which value) and keeps the
    record; nothing is converted yet. `points()` builds a `MetricPoint` per record (every value
    read); `losses()` reads only the two values a loss chart needs, with C-level loops
    (`map(float, ...)` over the plans' slices) and no object per record, which is what makes
    whole-file extraction fast. A batch from a parser with extra patterns holds its points.

    `plans` and `raws` hold every record of the block, NO_PLAN for those without metrics.
    Record k is on line `first` + k, or, when the block is given (one with `\\r` or
    backspaces), `first` + the number of newlines among the first k separators."""

    __slots__ = ("_block", "_first", "_plans", "_points", "_raws")

    def __init__(
        self,
        plans: list[Plan | _NoPlan],
        raws: list[bytes],
        first: int = 1,
        block: bytes | None = None,
        points: list[MetricPoint] | None = None,
    ) -> None:
        self._plans = plans
        self._raws = raws
        self._first = first
        self._block = block
        self._points = points

    @classmethod
    def of_points(cls, points: list[MetricPoint]) -> PointBatch:
        return cls([], [], points=points)

    def __len__(self) -> int:
        if self._points is not None:
            return len(self._points)
        return len(self._plans) - self._plans.count(NO_PLAN)

    def points(self) -> list[MetricPoint]:
        if self._points is None:
            self._points = _without_gc(self._build)
        return self._points

    def _build(self) -> list[MetricPoint]:
        plans, raws = self._plans, self._raws
        without = plans.count(NO_PLAN)
        if without == len(plans):
            return []
        lines = _line_numbers(self._first, self._block)
        if without:
            keep = list(map(is_not, plans, repeat(NO_PLAN)))
            plans, raws = list(compress(plans, keep)), list(compress(raws, keep))
            lines = compress(lines, keep)
        lines = list(itertools.islice(lines, len(plans)))
        return _build_points(plans, raws, lines)

    def losses(self) -> LossSeries:
        if self._points is not None:
            return _losses_of_points(self._points)
        plans, raws = self._plans, self._raws
        # A reader is an itemgetter (true) or None (false): it selects its own records.
        readers = list(map(attrgetter("train_loss"), plans))
        if None in readers:
            train = list(map(float, map(call, compress(readers, readers), compress(raws, readers))))
        else:
            train = list(map(float, map(call, readers, raws)))
        validation_readers = list(map(attrgetter("val_loss"), plans))
        if not any(validation_readers):
            return LossSeries(train, [], [])
        # Training losses up to and including each record (ints: the first sum is no bool).
        trains = itertools.accumulate(map(is_not, readers, repeat(None)), initial=0)
        next(trains)
        after = list(compress(trains, validation_readers))
        selected = compress(raws, validation_readers)
        validation = list(
            map(float, map(call, compress(validation_readers, validation_readers), selected))
        )
        return LossSeries(train, validation, after)


def _line_numbers(first: int, block: bytes | None) -> Iterator[int]:
    """The line of each record of a block: consecutive without `\\r` and backspaces (`block`
    None); otherwise `first` + the newlines among the separators before the record."""
    if block is None:
        return itertools.count(first)
    newlines = block.translate(None, NOT_A_SEPARATOR).translate(NEWLINE_AS_ONE)
    return itertools.accumulate(newlines, initial=first)


def _build_points(plans: list[Plan], raws: list[bytes], lines: list[int]) -> list[MetricPoint]:
    """The loop over records runs in C (`map`); Python runs only each record's compiled plan."""
    try:
        return list(map(call, map(attrgetter("build"), plans), raws, lines))
    except (ValueError, OverflowError):
        # A plan is checked on the record it came from, and every record of its shape reads
        # alike, so this does not happen; if it did, only the record that fails is skipped.
        return [
            point
            for plan, raw, line in zip(plans, raws, lines, strict=True)
            if (point := _build_or_none(plan, raw, line)) is not None
        ]


def _reads(plan: Plan, raw: bytes) -> bool:
    """Whether the record a plan came from reads through it. When one does not (a value with an
    ANSI code inside it), no record of that shape does: they differ only in their digits."""
    try:
        plan.apply(raw, 0)
    except (ValueError, OverflowError):
        return False
    return True


def _build_or_none(plan: Plan, raw: bytes, line: int) -> MetricPoint | None:
    try:
        return plan.build(raw, line)
    except (ValueError, OverflowError):
        return None


def _losses_of_points(points: Sequence[MetricPoint]) -> LossSeries:
    series = LossSeries([], [], [])
    for point in points:
        if point.loss is not None and not point.is_validation:
            series.train.append(point.loss)
        val_loss = point.val_loss
        if val_loss is not None:
            series.validation.append(val_loss)
            series.validation_after.append(len(series.train))
    return series


class LogParser:
    """Feed log text (str or bytes) as it arrives; get the points of every complete record.

    A record ends at `\\n`, and also at `\\r` or a backspace (tqdm and Keras redraw a bar that
    way), so a bar update is emitted as soon as the next one begins. `flush()` parses the
    unterminated rest (end of file). `feed_batch` / `flush_batch` give the same points as a
    `PointBatch`, read on demand (whole-file extraction); `feed` / `flush` give them built."""

    def __init__(self, extra_patterns: Sequence[str] = ()) -> None:
        self.extra = [re.compile(p) for p in extra_patterns]
        self.lines_seen = 0  # completed physical lines
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._plans: dict[bytes, Plan | _NoPlan] = {}
        self._layouts = None  # logcolumns.Layouts, made by the first feed_columns
        # Work done, for tests that bound it by input size: bytes given to the full analysis,
        # and bytes of held-back partial records copied when their record completes.
        self.analysed_bytes = 0
        self.joined_bytes = 0

    # -- input ------------------------------------------------------------------------------
    def feed(self, text: str | bytes) -> list[MetricPoint]:
        return self.feed_batch(text).points()

    def flush(self) -> list[MetricPoint]:
        return self.flush_batch().points()

    def feed_batch(self, text: str | bytes) -> PointBatch:
        head = self._complete_records(text)
        return PointBatch([], []) if head is None else self._parse_block(head, final=False)

    def flush_batch(self) -> PointBatch:
        rest = self._rest()
        return PointBatch([], []) if rest is None else self._parse_block(rest, final=True)

    def feed_columns(self, text: str | bytes):
        """Every value of the complete records so far as `logcolumns.Columns` (numpy arrays):
        the same values as `feed`, for whole files, without an object per record."""
        return self._columns(self._complete_records(text), final=False)

    def flush_columns(self):
        return self._columns(self._rest(), final=True)

    def _columns(self, block: bytes | None, final: bool):
        from app import logcolumns

        if block is None:
            return logcolumns.Columns.empty()
        if self.extra:  # extra patterns run per record: the points, as columns
            return logcolumns.Columns.of_points(self._parse_block(block, final).points())
        return logcolumns.columns_of_block(self, block, final)

    def layouts(self):
        """The layouts `feed_columns` reads records with (logcolumns), made on first use."""
        if self._layouts is None:
            from app.logcolumns import Layouts

            self._layouts = Layouts()
        return self._layouts

    def _complete_records(self, text: str | bytes) -> bytes | None:
        """The input up to its last separator, after what was held back; the rest is held."""
        # surrogatepass: any str encodes, even one holding lone surrogates.
        data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        if not data:
            return None
        cut = max(data.rfind(b"\n"), data.rfind(b"\r"), data.rfind(b"\x08"))
        if cut < 0:
            self._hold(data)
            return None
        head = data[: cut + 1]
        if self._pending:
            self.joined_bytes += self._pending_bytes
            head = b"".join(self._pending) + head
            self._pending.clear()
            self._pending_bytes = 0
        if cut + 1 < len(data):
            self._hold(data[cut + 1 :])
        return head

    def _rest(self) -> bytes | None:
        if not self._pending:
            return None
        block = b"".join(self._pending)
        self.joined_bytes += self._pending_bytes
        self._pending.clear()
        self._pending_bytes = 0
        return block

    def take_pending(self) -> bytes:
        """The unterminated rest held back for the next feed, handed over and forgotten (a
        caller that reads the next part of the log another way starts from it)."""
        pending = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        return pending

    def _hold(self, data: bytes) -> None:
        room = MAX_RECORD_BYTES - self._pending_bytes
        if room > 0:
            piece = data[:room]
            self._pending.append(piece)
            self._pending_bytes += len(piece)

    # -- records ----------------------------------------------------------------------------
    def _parse_block(self, block: bytes, final: bool) -> PointBatch:
        """`block` ends with a separator unless `final` (then it holds none: the rest of the
        file). Records are cut, shaped and numbered by whole-block C calls (translate, split,
        accumulate); a record of a known shape costs one dict lookup."""
        block, shapes, first, cut_within_lines = self._shapes(block, final)
        raws = (block.translate(SEPARATORS_TO_NEWLINE) if cut_within_lines else block).split(b"\n")
        if not final:
            raws.pop()  # empty: the block ends with a separator
        lines_block = block if cut_within_lines else None
        if self.extra:
            numbers = _line_numbers(first, lines_block)
            return PointBatch.of_points(_without_gc(self._points_with_extra, raws, shapes, numbers))
        plans: list = list(map(self._plans.get, shapes))
        missing = -1
        try:
            while True:  # each shape not in the cache yet (one scan of the list in all)
                missing = plans.index(None, missing + 1)
                plans[missing] = self._plan_for(raws[missing], shapes[missing])
        except ValueError:
            pass
        return PointBatch(plans, raws, first, lines_block)

    def _shapes(self, block: bytes, final: bool) -> tuple[bytes, list[bytes], int, bool]:
        """The block as its records are cut from it, the shape of each record, the line of the
        first, and whether records end within lines (`\\r`, backspaces). Counts the lines."""
        first = self.lines_seen + 1
        if b"\x08" in block:
            # Keras erases its bar with a run of backspaces: one separator, not one per byte.
            block = BACKSPACE_RUN.sub(b"\x08", block)
        cut_within_lines = b"\r" in block or b"\x08" in block
        if cut_within_lines:
            shapes = block.translate(SHAPE_OF_RECORDS).split(b"\n")
            self.lines_seen += block.count(b"\n")
        else:
            shapes = block.translate(DIGITS_TO_ZERO).split(b"\n")
            self.lines_seen += len(shapes) - 1
        if not final:
            shapes.pop()  # empty: the block ends with a separator
        if final and not block.endswith(b"\n"):
            self.lines_seen += 1  # the last line, which no newline ends
        return block, shapes, first, cut_within_lines

    def _points_with_extra(
        self, raws: list[bytes], shapes: list[bytes], numbers: Iterable[int]
    ) -> list[MetricPoint]:
        return [
            point
            for raw, shape, number in zip(raws, shapes, numbers)  # noqa: B905 - numbers never end
            if (point := self._record(raw, shape, number)) is not None
        ]

    def _plan_for(self, raw: bytes, shape: bytes) -> Plan | _NoPlan:
        plan = self._plans.get(shape)
        if plan is None:
            if len(raw) > MAX_RECORD_BYTES:
                raw = raw[:MAX_RECORD_BYTES]
            self.analysed_bytes += len(raw)
            plan = analyse(raw.decode("latin-1")) or NO_PLAN
            if plan is not NO_PLAN and not _reads(plan, raw):
                plan = NO_PLAN
            if len(shape) <= MAX_SHAPE_BYTES and (plan is NO_PLAN or plan.reusable):
                if len(self._plans) >= MAX_SHAPES:
                    self._plans.clear()
                self._plans[shape] = plan
        return plan

    def _record(self, raw: bytes, shape: bytes, line: int) -> MetricPoint | None:
        plan = self._plan_for(raw, shape)
        point = None if plan is NO_PLAN else _build_or_none(plan, raw, line)
        if self.extra:
            point = _apply_extra(point, self.extra, raw.decode("utf-8", "replace"), line)
        return point


def parse_text(text: str | bytes, extra_patterns: Sequence[str] = ()) -> list[MetricPoint]:
    """All points of a whole text (tests, small files)."""
    parser = LogParser(extra_patterns)
    return parser.feed(text) + parser.flush()


def as_json_point(point: MetricPoint) -> dict:
    """The `metrics --json` form of a point (nan and inf stay numbers Python's json writes)."""
    return {
        "line": point.line,
        "epoch": point.epoch,
        "total_epochs": point.total_epochs,
        "step": point.step,
        "total_steps": point.total_steps,
        "loss": point.loss,
        "metrics": dict(point.metrics),
    }
