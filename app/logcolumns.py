"""Every value of a log as columns: the parser's points, read into arrays instead of objects.

`LogParser.feed` builds a `MetricPoint` per record, which costs about 2.7 µs a record: most of
it is Python creating objects (the point, its dict, a float per value). A whole file does not
need them: `LogParser.feed_columns` gives the same values as numpy arrays, one per field and per
metric name, with a presence mask, in log order (`Columns`).

How, without Python code per value: every record of one *shape* (its digits replaced by `0`,
see logparse) has the same length, and its values sit at the same offsets and are written
alike (as many digits before and after the point, an exponent or not, the same sign). So the
shape's plan, applied once to a record of that shape, gives a *layout*: for each value, the
offsets and lengths of its digit runs and how they combine. For a whole block, the start of
every record comes from the lengths of the shapes, the start of every digit run from the
record's start plus its layout offset, and all runs (up to 8 digits each) are read at once by
array arithmetic on 64-bit words (SWAR).

A number is its digits as an integer M, times ten to a power E. `M / 10**-E` (or `M * 10**E`) is
the very double `float(text)` gives when M < 2**53 and |E| <= 22: both operands are then exact,
and IEEE division and multiplication round once. 17-digit reprs (M up to 2**62) go through x86's
64-bit long double mantissa (see `_read_long`); the few others (huge exponents, 40+ digits) and
values no layout describes are read with `float()` or by the plan itself. Tests check that the
columns hold exactly the points' values.

No textual import. numpy is imported by this module only, which the parser imports on first use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from app.logparse import (
    INT_TARGETS,
    MAX_SHAPE_BYTES,
    MAX_SHAPES,
    NEWLINE_AS_ONE,
    NO_PLAN,
    NOT_A_SEPARATOR,
    POINT_FIELDS,
    TRAIN_LOSS_NAMES,
    VAL_LOSS_NAMES,
    Field,
    LossSeries,
    MetricPoint,
    Plan,
    field_value,
)

KINDS = ("text", "bar", "validation-bar", "keras", "dict", "json", "summary", "table", "extra")
KIND_CODES = {kind: code for code, kind in enumerate(KINDS)}
# The MetricPoint fields that hold numbers; every other value is a metric.
NUMBER_FIELDS = tuple(
    name for name in POINT_FIELDS if name not in ("metrics", "is_validation", "kind")
)

MAX_EXACT_MANTISSA = 1 << 53
MAX_EXACT_POWER = 22  # 10**22 is the largest power of ten a double holds exactly
POWERS_OF_TEN = np.array([10.0**k for k in range(MAX_EXACT_POWER + 1)])
MAX_RUN_DIGITS = 8  # digits read at once from one 64-bit word
MAX_LAYOUT_DIGITS = 40  # longer numbers are read by the plan (their powers of ten overflow)
# Where long double has a 64-bit mantissa (x86), 17-digit numbers are read exactly without
# `float()` (see _read_long); elsewhere they go through `float()`.
READS_17_DIGITS = np.finfo(np.longdouble).nmant >= 63
LONG_POWERS_OF_TEN = np.array([10**k for k in range(MAX_EXACT_POWER + 1)], dtype=np.longdouble)
PLAIN, INVERSE, PER = 0, 1, 2
NUMBER_LAYOUT = re.compile(rb"(\d*)(?:\.(\d*))?(?:[eE]([-+]?)(\d{1,4}))?")


@dataclass(slots=True)
class Column:
    """One field or metric: its value at each point, where `present` says it has one."""

    values: np.ndarray  # float64 (whole numbers too: steps, totals)
    present: np.ndarray  # bool


@dataclass(slots=True)
class Columns:
    """The points of a stretch of log, a row each: their lines, kinds, whether they are
    validation records, and every value by field (`fields`, MetricPoint's names) and by metric
    name (`metrics`, as the log spells it)."""

    lines: np.ndarray  # int64
    kinds: np.ndarray  # int8, an index into KINDS
    is_validation: np.ndarray  # bool
    fields: dict[str, Column] = field(default_factory=dict)
    metrics: dict[str, Column] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.lines)

    @classmethod
    def empty(cls) -> Columns:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0, bool))

    @classmethod
    def of_points(cls, points: Sequence[MetricPoint]) -> Columns:
        """The columns of points made one by one (a parser with extra patterns)."""
        count = len(points)
        columns = cls(
            np.array([point.line for point in points], dtype=np.int64),
            np.array([KIND_CODES[point.kind] for point in points], dtype=np.int8),
            np.array([point.is_validation for point in points], dtype=bool),
        )
        for index, point in enumerate(points):
            for name in NUMBER_FIELDS:
                value = getattr(point, name)
                if value is not None:
                    _set(columns.fields, name, count, index, value)
            for name, value in point.metrics.items():
                _set(columns.metrics, name, count, index, value)
        return columns

    @classmethod
    def concat(cls, parts: Sequence[Columns]) -> Columns:
        parts = [part for part in parts if len(part)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([part.lines for part in parts]),
            np.concatenate([part.kinds for part in parts]),
            np.concatenate([part.is_validation for part in parts]),
            _concat_named([part.fields for part in parts], [len(part) for part in parts]),
            _concat_named([part.metrics for part in parts], [len(part) for part in parts]),
        )

    def points(self) -> list[MetricPoint]:
        """The same points `LogParser.feed` makes (tests, small stretches)."""
        points = [
            MetricPoint(line, kind=KINDS[kind], is_validation=validation)
            for line, kind, validation in zip(
                self.lines.tolist(), self.kinds.tolist(), self.is_validation.tolist(), strict=True
            )
        ]
        for name, column in self.fields.items():
            whole = name in INT_TARGETS
            for index in np.flatnonzero(column.present).tolist():
                value = float(column.values[index])
                setattr(points[index], name, int(value) if whole else value)
        for name, column in self.metrics.items():
            for index in np.flatnonzero(column.present).tolist():
                points[index].metrics[name] = float(column.values[index])
        return points

    def losses(self) -> LossSeries:
        """The loss chart's two series, as `PointBatch.losses` gives them."""
        count = len(self)
        loss = self.fields.get("loss")
        if loss is None:
            training = np.zeros(count, bool)
            train = []
        else:
            training = loss.present & ~self.is_validation
            train = loss.values[training].tolist()
        value = np.zeros(count)
        found = np.zeros(count, bool)
        # MetricPoint.val_loss: the first validation name a point has; in a validation record,
        # else the first training name.
        for names, among in ((VAL_LOSS_NAMES, None), (TRAIN_LOSS_NAMES, self.is_validation)):
            for name in names:
                column = self.metrics.get(name)
                if column is None:
                    continue
                take = column.present & ~found
                if among is not None:
                    take &= among
                value[take] = column.values[take]
                found |= take
        if not found.any():
            return LossSeries(train, [], [])
        after = np.cumsum(training)[found]
        return LossSeries(train, value[found].tolist(), after.tolist())


def _set(named: dict[str, Column], name: str, count: int, index: int, value: float) -> None:
    column = named.get(name)
    if column is None:
        column = named[name] = Column(np.zeros(count), np.zeros(count, bool))
    column.values[index] = value
    column.present[index] = True


def _concat_named(parts: list[dict[str, Column]], sizes: list[int]) -> dict[str, Column]:
    names = list(dict.fromkeys(name for part in parts for name in part))
    joined = {}
    for name in names:
        values, present = [], []
        for part, size in zip(parts, sizes, strict=True):
            column = part.get(name)
            values.append(column.values if column is not None else np.zeros(size))
            present.append(column.present if column is not None else np.zeros(size, bool))
        joined[name] = Column(np.concatenate(values), np.concatenate(present))
    return joined


# -- layouts ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Slot:
    """How one value of a shape is read: the sum of its digit runs (offset, length, multiplier),
    times ten to the power of an exponent run (offset, length, sign) plus `scale`;
    or a constant (nan, inf); or, when `python`, by the plan's own `field_value`."""

    runs: tuple[tuple[int, int, int], ...] = ()
    exponent: tuple[int, int, int] = (0, 0, 1)
    scale: int = 0
    sign: float = 1.0
    constant: float | None = None
    convert: int = PLAIN
    per: float = 1.0
    whole: bool = False
    python: bool = False


def _slot_of(item: Field, raw: bytes) -> _Slot:
    slot = _Slot(whole=item.target in INT_TARGETS)
    if item.convert == "clock" or item.convert == "int":
        runs = []
        for index, (start, end) in enumerate(item.spans):
            if not raw[start:end].isdigit() or end - start > MAX_LAYOUT_DIGITS or index > 3:
                slot.python = True
                return slot
            runs.append((start, end - start, 60 ** (len(item.spans) - 1 - index)))
        slot.runs = tuple(runs)
        return slot
    if item.convert == "inverse":
        slot.convert = INVERSE
    elif item.convert.startswith("per_"):
        slot.convert, slot.per = PER, float(item.convert[4:])
    elif item.convert != "float":
        slot.python = True
        return slot
    start, end = item.spans[0]
    text = raw[start:end]
    if text[:1] in (b"-", b"+"):
        slot.sign = -1.0 if text[:1] == b"-" else 1.0
        text, start = text[1:], start + 1
    if text[:1].isalpha():  # nan, inf, Infinity: the shape keeps letters, so all read alike
        slot.constant = float(raw[item.spans[0][0] : end])
        return slot
    layout = NUMBER_LAYOUT.fullmatch(text)
    if layout is None:
        slot.python = True
        return slot
    whole, fraction = len(layout.group(1)), len(layout.group(2) or b"")
    if whole + fraction > MAX_LAYOUT_DIGITS:
        slot.python = True
        return slot
    runs = []
    if whole:
        runs.append((start, whole, 10**fraction))
    if fraction:
        runs.append((start + whole + 1, fraction, 1))
    slot.runs = tuple(runs)
    slot.scale = -fraction
    if layout.group(4):
        sign = -1 if layout.group(3) == b"-" else 1
        slot.exponent = (start + layout.start(4), len(layout.group(4)), sign)
    return slot


class _Table:
    """Columns of small numbers that grow a row at a time: rows wait in a list and go into the
    arrays (grown by doubling) in one assignment per column when the table is next read."""

    def __init__(self, dtypes: dict[str, type]) -> None:
        self.dtypes = dtypes
        self.arrays = {name: np.zeros(64, dtype) for name, dtype in dtypes.items()}
        self.stored = 0
        self.waiting: list[dict] = []

    @property
    def size(self) -> int:
        return self.stored + len(self.waiting)

    def append(self, **row) -> None:
        self.waiting.append(row)

    def truncate(self, size: int) -> None:
        self._store()
        self.stored = min(self.stored, size)

    def __getitem__(self, name: str) -> np.ndarray:
        if self.waiting:
            self._store()
        return self.arrays[name][: self.stored]

    def _store(self) -> None:
        rows, self.waiting = self.waiting, []
        if not rows:
            return
        end = self.stored + len(rows)
        capacity = len(self.arrays[next(iter(self.arrays))])
        if end > capacity:
            capacity = max(end, 2 * capacity)
            for name, array in self.arrays.items():
                grown = np.zeros(capacity, array.dtype)
                grown[: self.stored] = array[: self.stored]
                self.arrays[name] = grown
        for name, array in self.arrays.items():
            zero = array.dtype.type(0)
            array[self.stored : end] = [row.get(name, zero) for row in rows]
        self.stored = end


LAYOUT_COLUMNS = {
    "first_slot": np.int64,
    "slots": np.int64,
    "first_run": np.int64,
    "runs": np.int64,
    "kind": np.int8,
    "validation": bool,
    "point": bool,
}
SLOT_COLUMNS = {
    "target": np.int16,
    "text_offset": np.int64,
    "text_length": np.int64,
    "scale": np.int64,
    "sign": np.float64,
    "constant": np.float64,
    "has_constant": bool,
    "convert": np.int8,
    "per": np.float64,
    "whole": bool,
    "python": bool,
    "plain": bool,  # an exact digit reading is the value: no sign, constant or conversion
}
# A digit run of a layout: where it is in the record, which of the layout's values it belongs
# to, and what it is worth there: `multiplier` times its integer in the mantissa, or, for an
# exponent run, `multiplier` (the exponent's sign) times its integer in the power of ten.
RUN_COLUMNS = {
    "offset": np.int64,
    "whole_multiplier": np.int64,  # the multiplier as an int64 (at most 10**18, see _read_long)
    "shift": np.uint64,  # 8 * (8 - its length): the bits that move its digits to the top
    "slot": np.int64,
    "multiplier": np.float64,
    "exponent": bool,
}


def _runs_of(slot: _Slot) -> list[dict]:
    """The digit runs of a value, a run longer than MAX_RUN_DIGITS cut into pieces that long
    (the multipliers are floats: a power of ten above 10**22 is inexact, but it can only
    multiply zero digits in a value that stays exact; any other makes the mantissa too big to
    be exact, and the value is read with `float()`)."""

    def run(offset: int, length: int, multiplier: int, exponent: bool = False) -> dict:
        return {
            "offset": offset,
            "shift": 8 * (MAX_RUN_DIGITS - length),
            "multiplier": float(multiplier),
            # A bigger one only ever multiplies zero digits in a value _read_long reads.
            "whole_multiplier": min(multiplier, 10**18),
            "exponent": exponent,
        }

    runs = []
    for offset, length, multiplier in slot.runs:
        while length > MAX_RUN_DIGITS:
            runs.append(run(offset + length - MAX_RUN_DIGITS, MAX_RUN_DIGITS, multiplier))
            multiplier *= 10**MAX_RUN_DIGITS
            length -= MAX_RUN_DIGITS
        runs.append(run(offset, length, multiplier))
    offset, length, sign = slot.exponent
    if length:
        runs.append(run(offset, length, sign, exponent=True))
    return runs


class Layouts:
    """A parser's layouts by shape, and the tables that read a block through them."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.by_shape: dict[bytes, int] = {}
        self.layouts = _Table(LAYOUT_COLUMNS)
        self.slots = _Table(SLOT_COLUMNS)
        self.runs = _Table(RUN_COLUMNS)
        self.items: list[Field] = []  # per slot, for values read by `field_value`
        self.targets: dict[str, int] = {}
        self.target_names: list[str] = []

    def _target(self, name: str) -> int:
        target = self.targets.get(name)
        if target is None:
            target = self.targets[name] = len(self.target_names)
            self.target_names.append(name)
        return target

    def _add(self, plan: Plan | object, raw: bytes) -> int:
        layout = self.layouts.size
        first_slot, first_run = self.slots.size, self.runs.size
        if plan is NO_PLAN:
            self.layouts.append(first_slot=first_slot, first_run=first_run, point=False)
            return layout
        assert isinstance(plan, Plan)
        for index, item in enumerate(plan.fields):
            target = self._target(item.target)
            slot = _slot_of(item, raw)
            self.slots.append(
                target=target,
                # The value's text, for `float()` when its digits are too many (a clock is
                # several texts: it goes to `field_value` then).
                text_offset=item.spans[0][0] if item.convert != "clock" else 0,
                text_length=item.spans[0][1] - item.spans[0][0] if item.convert != "clock" else 0,
                scale=slot.scale,
                sign=slot.sign,
                constant=0.0 if slot.constant is None else slot.constant,
                has_constant=slot.constant is not None,
                convert=slot.convert,
                per=slot.per,
                whole=slot.whole,
                python=slot.python,
                plain=slot.constant is None
                and slot.convert == PLAIN
                and not slot.python
                and slot.sign == 1.0
                # digits only: a whole number already, so truncating changes nothing
                and (not slot.whole or item.convert in ("int", "clock")),
            )
            self.items.append(item)
            if not slot.python:
                for run in _runs_of(slot):
                    self.runs.append(slot=index, **run)
        self.layouts.append(
            first_slot=first_slot,
            slots=len(plan.fields),
            first_run=first_run,
            runs=self.runs.size - first_run,
            kind=KIND_CODES[plan.kind],
            validation=plan.is_validation,
            point=True,
        )
        return layout

    def ids(
        self, parser, block: bytes, shapes: list[bytes], starts: np.ndarray
    ) -> tuple[np.ndarray, int]:
        """The layout of each record, and how many layouts are cached (those after are this
        block's own: records whose shape is not cached, which the caller forgets after)."""
        if len(self.by_shape) >= MAX_SHAPES:
            self._reset()
        ids = np.fromiter(map(self.by_shape.get, shapes, repeat(-1)), np.int64, len(shapes))
        unknown = np.flatnonzero(ids < 0)
        own: list[tuple[int, Plan | object, bytes]] = []
        for index in unknown.tolist():
            shape = shapes[index]
            layout = self.by_shape.get(shape)
            if layout is None:
                start = int(starts[index])
                raw = block[start : start + len(shape)]
                plan = parser._plan_for(raw, shape)
                if len(shape) <= MAX_SHAPE_BYTES and (plan is NO_PLAN or plan.reusable):
                    layout = self.by_shape[shape] = self._add(plan, raw)
                else:
                    own.append((index, plan, raw))
                    continue
            ids[index] = layout
        cached = self.layouts.size
        for index, plan, raw in own:
            ids[index] = self._add(plan, raw)
        return ids, cached

    def forget_after(self, cached: int) -> None:
        if self.layouts.size > cached:
            self.slots.truncate(int(self.layouts["first_slot"][cached]))
            self.runs.truncate(int(self.layouts["first_run"][cached]))
            del self.items[self.slots.size :]
            self.layouts.truncate(cached)


def columns_of_block(parser, block: bytes, final: bool) -> Columns:
    """The columns of a block of whole records (`final`: the rest of the file, which may end
    without a separator), read through `parser` (its line count and plans)."""
    block, shapes, first, cut_within_lines = parser._shapes(block, final)
    if not shapes:
        return Columns.empty()
    layouts = parser.layouts()
    count = len(shapes)
    lengths = np.fromiter(map(len, shapes), np.int64, count)
    starts = np.zeros(count, np.int64)
    np.cumsum(lengths[:-1] + 1, out=starts[1:])
    ids, cached = layouts.ids(parser, block, shapes, starts)
    try:
        return _read(layouts, block, ids, starts, lengths, first, cut_within_lines)
    finally:
        layouts.forget_after(cached)


def _read(
    layouts: Layouts, block: bytes, ids, starts, lengths, first: int, cut_within_lines: bool
) -> Columns:
    table, slots = layouts.layouts, layouts.slots
    per_record = table["slots"][ids]
    has_point = table["point"][ids]
    values, present, record_of, slot = _values(layouts, block, ids, starts, lengths, per_record)
    points = np.flatnonzero(has_point)
    if cut_within_lines:
        newlines = np.frombuffer(
            block.translate(None, NOT_A_SEPARATOR).translate(NEWLINE_AS_ONE), np.uint8
        )
        line_of = first + np.concatenate([[0], np.cumsum(newlines, dtype=np.int64)])[: len(ids)]
        lines = line_of[points]
    else:
        lines = first + points.astype(np.int64)
    columns = Columns(lines, table["kind"][ids][points], table["validation"][ids][points])
    if not len(values):
        return columns
    # One scatter into a points x names table; each name's column is a view of it.
    row_of_record = np.cumsum(has_point) - 1
    rows = row_of_record[record_of]
    target = slots["target"][slot]
    width = len(layouts.targets)
    table_values = np.zeros((len(points), width))
    table_present = np.zeros((len(points), width), bool)
    table_values[rows, target] = values
    table_present[rows, target] = present
    for index in np.flatnonzero(table_present.any(axis=0)).tolist():
        name = layouts.target_names[index]
        column = Column(table_values[:, index], table_present[:, index])
        if name.startswith("m:"):
            columns.metrics[name[2:]] = column
        else:
            columns.fields[name] = column
    return columns


def _values(layouts: Layouts, block: bytes, ids, starts, record_lengths, per_record):
    """Every value of the block's records: (values, present, record of each, slot of each)."""
    layout, slots, runs = layouts.layouts, layouts.slots, layouts.runs
    total = int(per_record.sum())
    record_of = np.repeat(np.arange(len(ids)), per_record)
    # The k-th value of a record is slot first_slot + k of its layout.
    value_start = np.cumsum(per_record) - per_record
    slot = np.arange(total) + np.repeat(layout["first_slot"][ids] - value_start, per_record)
    # The same for runs: the k-th run of a record is run first_run + k of its layout.
    runs_per_record = layout["runs"][ids]
    run_start = np.cumsum(runs_per_record) - runs_per_record
    run = np.arange(int(runs_per_record.sum())) + np.repeat(
        layout["first_run"][ids] - run_start, runs_per_record
    )
    digits = _digit_runs(
        block, np.repeat(starts, runs_per_record) + runs["offset"][run], runs["shift"][run]
    )
    value_of_run = np.repeat(value_start, runs_per_record) + runs["slot"][run]
    worth = digits * runs["multiplier"][run]
    power = slots["scale"][slot]
    exponent = np.flatnonzero(runs["exponent"][run])
    if len(exponent):
        # A value has one exponent run at most: its power is set, and its mantissa not summed.
        power[value_of_run[exponent]] += worth[exponent].astype(np.int64)
        worth[exponent] = 0.0
    mantissa = np.bincount(value_of_run, worth, minlength=total)
    # Exact while every part and their sum are integers below 2**53 (see the module's doc).
    down = -power
    exact = (mantissa < MAX_EXACT_MANTISSA) & (np.abs(down) <= MAX_EXACT_POWER)
    values = mantissa / POWERS_OF_TEN[np.clip(down, 0, MAX_EXACT_POWER)]
    up = np.flatnonzero(down < 0)
    if len(up):
        values[up] = mantissa[up] * POWERS_OF_TEN[np.minimum(-down[up], MAX_EXACT_POWER)]
    if READS_17_DIGITS:
        near = np.flatnonzero(~exact & (mantissa < 2.0**62) & (np.abs(down) <= MAX_EXACT_POWER))
        if len(near):
            _read_long(near, values, exact, down, digits, run, runs, value_of_run, total)
    present = np.ones(total, bool)
    special = np.flatnonzero(~(slots["plain"][slot] & exact))
    if len(special):
        _special_values(
            layouts, block, starts, record_lengths, record_of, slot, exact, special, values, present
        )
    return values, present, record_of, slot


def _read_long(near, values, exact, down, digits, run, runs, value_of_run, total) -> None:
    """Values whose digits make an integer between 2**53 and 2**62 (17-digit reprs), in
    place, through the 64-bit mantissa of x86's long double: the integer is exact there, the
    quotient (or product) by the power of ten is rounded once to 64 bits and then to 53. That
    second rounding is right unless the first landed exactly halfway between two doubles;
    those few stay inexact (and are read with `float()`)."""
    wanted = np.zeros(total, bool)
    wanted[near] = True
    chosen = np.flatnonzero(wanted[value_of_run] & ~runs["exponent"][run])
    # Each term is at most the mantissa (< 2**62): the int64 products do not overflow.
    terms = digits[chosen] * runs["whole_multiplier"][run[chosen]]
    owners = value_of_run[chosen]
    firsts = np.flatnonzero(np.diff(owners, prepend=-1))
    mantissa = np.add.reduceat(terms, firsts).astype(np.longdouble)
    owners = owners[firsts]
    power = -down[owners]
    scale = LONG_POWERS_OF_TEN[np.abs(power)]
    quotient = np.where(power >= 0, mantissa * scale, mantissa / scale)
    result = quotient.astype(np.float64)
    above = np.nextafter(result, np.inf).astype(np.longdouble)
    below = np.nextafter(result, -np.inf).astype(np.longdouble)
    here = result.astype(np.longdouble)
    safe = (quotient != (here + above) / 2) & (quotient != (here + below) / 2)
    values[owners[safe]] = result[safe]
    exact[owners[safe]] = True


def _special_values(
    layouts: Layouts,
    block: bytes,
    starts,
    record_lengths,
    record_of,
    slot,
    exact,
    special,
    values,
    present,
) -> None:
    """The values that are not plain digit readings, in place: signs, constants (nan, inf),
    conversions (s/it, ms/step, whole numbers), digits too many to be exact, and fields read
    by their plan."""
    slots = layouts.slots
    which = slot[special]
    values[special] *= slots["sign"][which]
    constant = slots["has_constant"][which]
    values[special[constant]] = slots["constant"][which[constant]]
    # Too many digits for an exact reading, in one text or (a clock) several.
    inexact = ~(exact[special] | constant)
    by_python = slots["python"][which] | (inexact & (slots["text_length"][which] == 0))
    inexact = special[inexact & ~by_python]
    if len(inexact):
        # Digits an integer below 2**53 cannot hold (17-digit reprs): `float()` of the text,
        # which is correctly rounded.
        text_start = starts[record_of[inexact]] + slots["text_offset"][slot[inexact]]
        text_end = text_start + slots["text_length"][slot[inexact]]
        values[inexact] = [
            float(block[start:end])
            for start, end in zip(text_start.tolist(), text_end.tolist(), strict=True)
        ]
    convert = slots["convert"][which]
    with np.errstate(divide="ignore", invalid="ignore"):
        for code in (INVERSE, PER):
            chosen = special[convert == code]
            if len(chosen):
                read = values[chosen]
                numerator = 1.0 if code == INVERSE else slots["per"][slot[chosen]]
                present[chosen] = read != 0
                values[chosen] = numerator / read
    whole = special[slots["whole"][which]]
    if len(whole):
        read = values[whole]
        present[whole] &= np.isfinite(read)
        values[whole] = np.trunc(read)
    items = layouts.items
    for index in special[by_python].tolist():
        record = int(record_of[index])
        start = int(starts[record])
        raw = block[start : start + int(record_lengths[record])]
        try:
            value = field_value(items[int(slot[index])], raw)
        except (ValueError, OverflowError):
            value = None
        present[index] = value is not None
        values[index] = 0.0 if value is None else value


def _digit_runs(block: bytes, offsets: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """The integer each run of 1 to 8 ASCII digits spells, all at once (SWAR): the 8 bytes
    from each run's start are read as one little-endian uint64, shifted so that its digits are
    at the top (the zero bytes shifted in read as leading zeros; `shifts` is 8 * (8 - length)),
    and the eight digits are combined pairwise in three multiplications."""
    padded = block + bytes(8)
    # Element i is the uint64 made of bytes i..i+7: overlapping, unaligned, no copy.
    words = np.frombuffer(padded, "<u8", count=1)
    words = np.lib.stride_tricks.as_strided(
        words, shape=(len(block),), strides=(1,), writeable=False
    )
    raw = words[offsets]
    raw <<= shifts
    raw &= np.uint64(0x0F0F0F0F0F0F0F0F)
    raw *= np.uint64(2561)
    raw >>= np.uint64(8)
    raw &= np.uint64(0x00FF00FF00FF00FF)
    raw *= np.uint64(6553601)
    raw >>= np.uint64(16)
    raw &= np.uint64(0x0000FFFF0000FFFF)
    raw *= np.uint64(42949672960001)
    raw >>= np.uint64(32)
    return raw.view(np.int64)
