"""Checkpoint metadata, read without torch and without executing pickled code; resume
arguments; cleanup plans.

Every reader works on a seekable binary file object handed out by a `CheckpointSource`, so a
remote directory or an S3 prefix can plug in a file object that fetches byte ranges: reading
metadata touches the zip directory, the pickle and the few bytes of scalar tensors, never the
tensor data, so it costs milliseconds whatever the file size.

Pickles go through `SafeUnpickler`: it imports nothing and calls only this module's own
stand-ins for a small allow-list (tensors become `TensorPlaceholder`s). A pickle that names
anything else is reported as "unsafe" and is never run.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fnmatch
import io
import json
import math
import os
import pickle
import re
import shlex
import shutil
import struct
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

STATUS_OK = "ok"
STATUS_CORRUPT = "corrupt"
STATUS_UNSAFE = "unsafe"

# The largest pickle / JSON document read for metadata. Real state-dict pickles are a few MB
# even for multi-billion-parameter models (the tensors live outside the pickle).
MAX_METADATA_BYTES = 256 * 1024 * 1024
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit
MAX_METRICS = 64

EXAMPLE_FORMAT = "runctl-example-v1"

EPOCH_KEYS = ("epoch", "current_epoch", "epochs")
STEP_KEYS = ("global_step", "step", "iter_num", "iteration", "iter", "num_updates", "steps")
LOSS_KEYS = (
    "loss",
    "val_loss",
    "train_loss",
    "valid_loss",
    "eval_loss",
    "test_loss",
    "best_val_loss",
    "best_loss",
)

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# Extensions whose content we know; anything unreadable under these names is corrupt, not
# merely "unknown".
KNOWN_EXTENSIONS = (".pt", ".pth", ".ckpt", ".safetensors", ".keras", ".h5")


class CheckpointError(Exception):
    """A checkpoint that cannot be read; `status` says how it should be listed."""

    status = STATUS_CORRUPT


class CorruptCheckpoint(CheckpointError):
    status = STATUS_CORRUPT


class UnsafePickle(CheckpointError):
    status = STATUS_UNSAFE


# ---------------------------------------------------------------------------------------------
# What a checkpoint says
# ---------------------------------------------------------------------------------------------
@dataclass
class CheckpointInfo:
    path: str
    name: str
    kind: str = "unknown"
    epoch: float | None = None
    step: int | None = None
    loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    size_bytes: int = 0
    mtime: float = 0.0
    status: str = STATUS_OK
    error: str | None = None
    # What the checkpoint itself says it is ranked by (Lightning's ModelCheckpoint, the HF
    # Trainer's best_metric): the metric's name, this checkpoint's value and "min"/"max".
    monitor: str | None = None
    monitor_value: float | None = None
    mode: str | None = None
    # Text facts for a details view: framework version, best_model_path, ...
    details: dict[str, str] = field(default_factory=dict)
    is_dir: bool = False
    sidecar: str | None = None  # a `<name>.json` beside the file whose values were merged in
    sidecar_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        """The headless `--json` row. Non-finite numbers become null / are left out, so the
        output is strict JSON."""
        return {
            "path": self.path,
            "kind": self.kind,
            "epoch": _finite_or_none(self.epoch),
            "step": self.step,
            "loss": _finite_or_none(self.loss),
            "metrics": {k: v for k, v in self.metrics.items() if math.isfinite(v)},
            "size_bytes": self.size_bytes,
            "mtime": self.mtime,
            "status": self.status,
            "error": self.error,
        }


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


# ---------------------------------------------------------------------------------------------
# Where checkpoints live: local now, remote directories and S3 prefixes later
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceEntry:
    path: str
    name: str
    is_dir: bool
    size: int
    mtime: float


class CheckpointSource(Protocol):
    """A place that holds checkpoints. `open` returns a seekable, read-only binary file
    object: a remote implementation fetches only the byte ranges that are read (see
    `open_range_file`), so metadata of a multi-GB file costs a few small requests."""

    def list(self, directory: str) -> list[SourceEntry]:
        """Entries directly inside `directory`; FileNotFoundError when it does not exist."""
        ...

    def stat(self, path: str) -> SourceEntry: ...

    def open(self, path: str) -> BinaryIO: ...

    def delete(self, path: str, is_dir: bool) -> None: ...


class LocalCheckpointSource:
    """Checkpoints on this machine's file system."""

    def list(self, directory: str) -> list[SourceEntry]:
        entries = []
        with os.scandir(directory) as scan:
            for item in scan:
                try:
                    st = item.stat()  # follows symlinks: a linked checkpoint is listed as one
                    is_dir = item.is_dir()
                except OSError:
                    continue  # vanished between listing and stat, or a dangling link
                entries.append(SourceEntry(item.path, item.name, is_dir, st.st_size, st.st_mtime))
        return entries

    def stat(self, path: str) -> SourceEntry:
        st = os.stat(path)
        is_dir = os.path.isdir(path)
        return SourceEntry(
            path, os.path.basename(path.rstrip("/")), is_dir, st.st_size, st.st_mtime
        )

    def open(self, path: str) -> BinaryIO:
        return open(path, "rb")

    def delete(self, path: str, is_dir: bool) -> None:
        if os.path.islink(path) or not is_dir:
            os.unlink(path)  # a link is removed, never what it points to
        else:
            shutil.rmtree(path)


LOCAL = LocalCheckpointSource()


class RangeFile(io.RawIOBase):
    """A seekable, read-only file over `read_range(offset, length) -> bytes`: what a remote
    source needs to hand the readers a multi-GB file without copying it (an SFTP read at an
    offset, an S3 GET with a Range header). Use `open_range_file`, which adds buffering."""

    def __init__(self, size: int, read_range: Callable[[int, int], bytes]) -> None:
        super().__init__()
        self.size = size
        self.read_range = read_range
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.position = base + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:
        length = min(len(buffer), max(0, self.size - self.position))
        if length == 0:
            return 0
        data = self.read_range(self.position, length)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def open_range_file(
    size: int, read_range: Callable[[int, int], bytes], block_size: int = 64 * 1024
) -> BinaryIO:
    """A buffered `RangeFile`: small reads (zip headers, a scalar's bytes) become one request
    of `block_size` bytes each."""
    return io.BufferedReader(RangeFile(size, read_range), buffer_size=block_size)


# ---------------------------------------------------------------------------------------------
# The restricted unpickler
# ---------------------------------------------------------------------------------------------
# name -> (struct format, item size); bfloat16 is the top half of a float32.
DTYPES: dict[str, tuple[str, int]] = {
    "float32": ("f", 4),
    "float64": ("d", 8),
    "float16": ("e", 2),
    "bfloat16": ("H", 2),
    "int64": ("q", 8),
    "int32": ("i", 4),
    "int16": ("h", 2),
    "int8": ("b", 1),
    "uint8": ("B", 1),
    "uint16": ("H", 2),
    "uint32": ("I", 4),
    "uint64": ("Q", 8),
    "bool": ("?", 1),
    "complex64": ("", 8),
    "complex128": ("", 16),
    "float8_e4m3fn": ("", 1),
    "float8_e5m2": ("", 1),
    "float8_e4m3fnuz": ("", 1),
    "float8_e5m2fnuz": ("", 1),
}
TORCH_DTYPE_ALIASES = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "long": "int64",
    "int": "int32",
    "short": "int16",
    "cfloat": "complex64",
    "cdouble": "complex128",
}
STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "UntypedStorage": "uint8",
    "QInt8Storage": "int8",
    "QUInt8Storage": "uint8",
    "QInt32Storage": "int32",
}


@dataclass(frozen=True)
class TorchDType:
    name: str


@dataclass(frozen=True)
class StorageType:
    dtype: str


@dataclass(frozen=True)
class StorageRef:
    """A tensor storage named by a torch pickle's persistent id; its bytes are not read."""

    key: str
    dtype: str
    numel: int


class TensorPlaceholder:
    """Where a tensor was: dtype and shape when the pickle says them; its data is not read."""

    def __init__(
        self,
        dtype: str | None = None,
        shape: tuple[int, ...] | None = None,
        storage: StorageRef | None = None,
        offset: int = 0,
    ) -> None:
        self.dtype = dtype
        self.shape = shape
        self.storage = storage
        self.offset = offset

    @property
    def numel(self) -> int | None:
        if self.shape is None:
            return None
        return math.prod(self.shape)

    def __setstate__(self, state: Any) -> None:
        pass  # python attributes on a tensor subclass: not needed for metadata

    def __repr__(self) -> str:
        return f"tensor(dtype={self.dtype}, shape={self.shape})"


class OpaqueValue:
    """A value we may name but never build: a numpy array, a torch device, a layout."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __setstate__(self, state: Any) -> None:
        pass

    def __repr__(self) -> str:
        return self.what


def _shape(size: Any) -> tuple[int, ...] | None:
    if isinstance(size, tuple) and all(isinstance(d, int) for d in size):
        return size
    return None


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *_: Any) -> Any:
    if not isinstance(storage, StorageRef):
        raise CorruptCheckpoint("a tensor refers to something that is not a storage")
    offset = storage_offset if isinstance(storage_offset, int) else 0
    return TensorPlaceholder(storage.dtype, _shape(size), storage, offset)


def _rebuild_tensor_v3(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    backward_hooks: Any,
    dtype: Any,
    *_: Any,
) -> Any:
    tensor = _rebuild_tensor(storage, storage_offset, size, stride)
    if isinstance(dtype, TorchDType):
        tensor.dtype = dtype.name
    return tensor


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any = None) -> Any:
    # `func` came through find_class, so it is one of our own stand-ins.
    if not callable(func) or not isinstance(args, tuple):
        raise CorruptCheckpoint("a tensor subclass record is malformed")
    return func(*args)


def _rebuild_meta_tensor(dtype: Any, size: Any, *_: Any) -> Any:
    return TensorPlaceholder(dtype.name if isinstance(dtype, TorchDType) else None, _shape(size))


def _opaque_tensor(*_: Any, **__: Any) -> Any:
    return TensorPlaceholder()


class _TorchSize(tuple):
    __slots__ = ()


def _torch_device(kind: Any = "cpu", index: Any = None) -> Any:
    return OpaqueValue(f"device({kind}{'' if index is None else f':{index}'})")


def _safe_bytes(value: Any = b"", encoding: Any = None) -> bytes:
    if isinstance(value, int):
        raise UnsafePickle(f"refuses bytes({value}): the pickle asks for a zero-filled buffer")
    if isinstance(value, str):
        return value.encode(encoding or "utf-8")
    return bytes(value)


def _safe_bytearray(value: Any = b"", encoding: Any = None) -> bytearray:
    return bytearray(_safe_bytes(value, encoding))


def _codecs_encode(value: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    # Protocol-2 pickles store bytes as _codecs.encode(text, "latin1").
    if not isinstance(value, str) or encoding not in {"latin1", "latin-1", "utf-8", "utf8"}:
        raise CorruptCheckpoint("the pickle calls _codecs.encode with unexpected arguments")
    return value.encode(encoding)


class NumpyDType:
    """numpy.dtype('f8', False, True) followed by BUILD (3, '<', ...): enough to decode a
    numpy scalar's bytes without numpy."""

    def __init__(self, code: Any = "", align: Any = False, copy: Any = False) -> None:
        self.code = code if isinstance(code, str) else ""
        self.byteorder = "<"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in {"<", ">", "|", "="}:
            self.byteorder = "<" if state[1] in {"|", "="} else state[1]


NUMPY_STRUCT = {
    "f2": "e",
    "f4": "f",
    "f8": "d",
    "i1": "b",
    "i2": "h",
    "i4": "i",
    "i8": "q",
    "u1": "B",
    "u2": "H",
    "u4": "I",
    "u8": "Q",
    "b1": "?",
}


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if isinstance(dtype, NumpyDType) and isinstance(data, bytes):
        fmt = NUMPY_STRUCT.get(dtype.code)
        if fmt and struct.calcsize(fmt) == len(data):
            return struct.unpack(dtype.byteorder + fmt, data)[0]
    return OpaqueValue("numpy scalar")


def _numpy_array(*_: Any) -> Any:
    return OpaqueValue("numpy array")


def _marker(name: str) -> Any:
    return OpaqueValue(name)


# (module, name) -> our stand-in. Both the old and the new homes of numpy's helpers are listed.
SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._utils", "_rebuild_meta_tensor_no_storage"): _rebuild_meta_tensor,
    ("torch._utils", "_rebuild_qtensor"): _opaque_tensor,
    ("torch._utils", "_rebuild_sparse_tensor"): _opaque_tensor,
    ("torch._utils", "_rebuild_nested_tensor"): _opaque_tensor,
    ("torch._utils", "_rebuild_wrapper_subclass"): _opaque_tensor,
    ("torch._utils", "_rebuild_device_tensor_from_numpy"): _opaque_tensor,
    ("torch._tensor", "_rebuild_from_type"): _rebuild_from_type,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Tensor"): _marker("torch.Tensor"),
    ("torch.nn.parameter", "Parameter"): _marker("torch.nn.Parameter"),
    ("torch", "Size"): _TorchSize,
    ("torch", "device"): _torch_device,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytes"): _safe_bytes,
    ("builtins", "bytearray"): _safe_bytearray,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy", "dtype"): NumpyDType,
    ("numpy", "ndarray"): _marker("numpy.ndarray"),
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_array,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_array,
    ("numpy.core.numeric", "_frombuffer"): _numpy_array,
    ("numpy._core.numeric", "_frombuffer"): _numpy_array,
}


class SafeUnpickler(pickle.Unpickler):
    """Loads a pickle without importing or calling anything outside `SAFE_GLOBALS`; torch
    storages (persistent ids) become `StorageRef`s, recorded in `storages`."""

    def __init__(self, file: Any) -> None:
        super().__init__(file, encoding="utf-8", errors="replace")
        self.storages: dict[str, StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        stand_in = SAFE_GLOBALS.get((module, name))
        if stand_in is not None:
            return stand_in
        if module == "torch":
            if name in DTYPES or name in TORCH_DTYPE_ALIASES:
                return TorchDType(TORCH_DTYPE_ALIASES.get(name, name))
            if name in STORAGE_DTYPES:
                return StorageType(STORAGE_DTYPES[name])
        raise UnsafePickle(
            f"refuses GLOBAL {module}.{name}: the pickle would import and run it. "
            "runctl reads only tensors, numbers, strings and containers; load this file only "
            "if you trust where it came from"
        )

    def persistent_load(self, pid: Any) -> Any:
        if (
            isinstance(pid, tuple)
            and len(pid) >= 5
            and pid[0] == "storage"
            and isinstance(pid[1], StorageType)
            and isinstance(pid[4], int)
        ):
            ref = StorageRef(str(pid[2]), pid[1].dtype, pid[4])
            self.storages.setdefault(ref.key, ref)
            return ref
        raise CorruptCheckpoint(f"unknown persistent id in the pickle: {str(pid)[:80]}")


def _unpickle(data: bytes | BinaryIO) -> tuple[Any, dict[str, StorageRef]]:
    unpickler = SafeUnpickler(io.BytesIO(data) if isinstance(data, bytes) else data)
    try:
        return unpickler.load(), unpickler.storages
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError) as err:
        raise CorruptCheckpoint(
            f"the pickle is truncated or damaged ({err or 'ended early'})"
        ) from None
    except Exception as err:
        raise CorruptCheckpoint(f"the pickle is damaged ({type(err).__name__}: {err})") from None


# ---------------------------------------------------------------------------------------------
# Reading scalar tensors: a 0-dim tensor's value is a few bytes at a known place
# ---------------------------------------------------------------------------------------------
def _decode_scalar(raw: bytes, dtype: str, byteorder: str) -> float | int | None:
    fmt, size = DTYPES.get(dtype, ("", 0))
    if not fmt or len(raw) != size or dtype == "bool":
        return None
    prefix = "<" if byteorder == "little" else ">"
    value = struct.unpack(prefix + fmt, raw)[0]
    if dtype == "bfloat16":
        return struct.unpack("<f", struct.pack("<I", value << 16))[0]
    return value


class ScalarReader:
    """Reads the value of one-element tensors; everything else stays unread. This base class
    reads nothing (a plain pickle has no tensor data to read)."""

    byteorder = "little"

    def value(self, tensor: TensorPlaceholder) -> float | int | None:
        if tensor.storage is None or tensor.numel != 1 or tensor.dtype not in DTYPES:
            return None
        size = DTYPES[tensor.dtype][1]
        raw = self.read_storage_bytes(tensor.storage, tensor.offset * size, size)
        return None if raw is None else _decode_scalar(raw, tensor.dtype, self.byteorder)

    def read_storage_bytes(self, storage: StorageRef, offset: int, length: int) -> bytes | None:
        return None


class ZipScalarReader(ScalarReader):
    def __init__(self, fileobj: BinaryIO, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        self.fileobj = fileobj
        self.archive = archive
        self.prefix = prefix
        self.byteorder = byteorder

    def read_storage_bytes(self, storage: StorageRef, offset: int, length: int) -> bytes | None:
        try:
            info = self.archive.getinfo(f"{self.prefix}data/{storage.key}")
        except KeyError:
            return None
        if offset + length > info.file_size:
            return None
        if info.compress_type != zipfile.ZIP_STORED:
            with self.archive.open(info) as entry:
                return entry.read(offset + length)[offset:]
        self.fileobj.seek(_zip_data_offset(self.fileobj, info) + offset)
        return self.fileobj.read(length)


def _zip_data_offset(fileobj: BinaryIO, info: zipfile.ZipInfo) -> int:
    """Where a stored entry's bytes start: after its local header, whose name and extra
    field lengths may differ from the central directory's."""
    fileobj.seek(info.header_offset)
    header = fileobj.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise CorruptCheckpoint(f"zip entry {info.filename} has no local header")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


class LegacyScalarReader(ScalarReader):
    """The pre-1.6 torch format: after the main pickle come a pickled list of storage keys and
    then each storage as an 8-byte element count followed by its bytes, in that order. Walking
    those counts (a seek and 8 bytes per storage) finds every storage and shows a truncated
    file, without reading any tensor data."""

    def __init__(
        self,
        fileobj: BinaryIO,
        data_start: int,
        storages: dict[str, StorageRef],
        file_size: int,
        byteorder: str,
    ) -> None:
        self.fileobj = fileobj
        self.storages = storages
        self.byteorder = byteorder
        self.offsets: dict[str, int] = {}
        fileobj.seek(data_start)
        keys, _ = _unpickle(_BoundedReader(fileobj, MAX_METADATA_BYTES))
        if not isinstance(keys, list):
            raise CorruptCheckpoint("the storage key list of this legacy torch file is missing")
        position = fileobj.tell()
        count_format = "<q" if byteorder == "little" else ">q"
        for key in keys:
            ref = storages.get(str(key))
            if ref is None:
                raise CorruptCheckpoint(f"storage {key} is listed but no tensor uses it")
            fileobj.seek(position)
            count_bytes = fileobj.read(8)
            if len(count_bytes) != 8:
                break
            (count,) = struct.unpack(count_format, count_bytes)
            self.offsets[ref.key] = position + 8
            position += 8 + count * DTYPES.get(ref.dtype, ("", 1))[1]
        if len(self.offsets) < len(keys) or position > file_size:
            raise CorruptCheckpoint(
                f"truncated: the tensors need {max(position, file_size + 1)} bytes but the file "
                f"has {file_size}; the save was interrupted or the copy is incomplete"
            )

    def read_storage_bytes(self, storage: StorageRef, offset: int, length: int) -> bytes | None:
        start = self.offsets.get(storage.key)
        if start is None:
            return None
        self.fileobj.seek(start + offset)
        raw = self.fileobj.read(length)
        return raw if len(raw) == length else None


class _BoundedReader:
    """A read-only view of a file that refuses to hand out more than `budget` bytes, so a
    pickle that claims a huge string cannot make us read a multi-GB file into memory."""

    def __init__(self, fileobj: BinaryIO, budget: int) -> None:
        self.fileobj = fileobj
        self.budget = budget

    def _take(self, n: int) -> int:
        if n < 0 or n > self.budget:
            raise CorruptCheckpoint(
                f"the pickle is larger than the {MAX_METADATA_BYTES // 2**20} MB read for metadata"
            )
        self.budget -= n
        return n

    def read(self, n: int = -1) -> bytes:
        data = self.fileobj.read(self._take(n))
        return data

    def readinto(self, buffer: Any) -> int:
        return self.fileobj.readinto(memoryview(buffer)[: self._take(len(buffer))])

    def readline(self, limit: int = -1) -> bytes:
        line = self.fileobj.readline(min(limit, 65536) if limit >= 0 else 65536)
        self._take(len(line))
        return line

    def peek(self, n: int = 0) -> bytes:
        peek = getattr(self.fileobj, "peek", None)
        return peek(n)[: self.budget] if peek else b""


# ---------------------------------------------------------------------------------------------
# From what was unpickled (or parsed as JSON) to epoch / step / loss / metrics
# ---------------------------------------------------------------------------------------------
def _number(value: Any, scalars: ScalarReader | None) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, TensorPlaceholder) and scalars is not None:
        return scalars.value(value)
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except (ValueError, OverflowError):
        return None


def _fill_from_mapping(
    info: CheckpointInfo,
    mapping: dict,
    scalars: ScalarReader | None = None,
    numbers_in_text: bool = False,
) -> None:
    """epoch / step / loss from the first key of each kind that holds a number; every other
    top-level number into `metrics`. Only fields still empty are filled. `numbers_in_text`:
    the values are strings that may spell numbers (safetensors metadata)."""
    numbers: dict[str, float | int] = {}
    for key, value in mapping.items():
        # Dotted names are module buffers of a bare state_dict (bn.num_batches_tracked).
        if not isinstance(key, str) or "." in key:
            continue
        if numbers_in_text and isinstance(value, str):
            value = _parse_number_text(value)
        number = _number(value, scalars)
        if number is not None:
            numbers[key] = number
    used: set[str] = set()
    if info.epoch is None:
        key = next((k for k in EPOCH_KEYS if k in numbers), None)
        if key is not None:
            info.epoch = float(numbers[key])
            used.add(key)
    if info.step is None:
        key = next((k for k in STEP_KEYS if k in numbers and _is_whole(numbers[k])), None)
        if key is not None:
            info.step = int(numbers[key])
            used.add(key)
    if info.loss is None:
        key = next((k for k in LOSS_KEYS if k in numbers), None)
        if key is not None:
            info.loss = float(numbers[key])
            used.add(key)
    for key, number in numbers.items():
        if key in used or key in info.metrics or len(info.metrics) >= MAX_METRICS:
            continue
        info.metrics[key] = float(number)


def _is_whole(value: float | int) -> bool:
    return isinstance(value, int) or (math.isfinite(value) and value == int(value))


def _parse_number_text(text: str) -> float | int | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


NAME_PATTERNS = (
    ("epoch", re.compile(r"(?:^|[^a-z])(?:epoch|ep)[=_-]?(\d+)", re.IGNORECASE)),
    ("step", re.compile(r"(?:^|[^a-z])(?:global_step|step|iter|checkpoint)[=_-]?(\d+)", re.I)),
    ("loss", re.compile(r"(?:^|[^a-z])(?:val_loss|loss)[=_-]?(\d+(?:\.\d+)?)", re.IGNORECASE)),
)


def _fill_from_name(info: CheckpointInfo) -> None:
    """Last resort for formats that store no counters (Keras, HDF5): the file name, as
    `epoch=3-step=400.ckpt` or `model-epoch05-loss0.42.keras` say them."""
    found = []
    for field_name, pattern in NAME_PATTERNS:
        if getattr(info, field_name) is not None:
            continue
        match = pattern.search(info.name)
        if match:
            text = match.group(1)
            value: float | int = int(text) if field_name == "step" else float(text)
            setattr(info, field_name, value)
            found.append(field_name)
    if found:
        info.details["from_file_name"] = ", ".join(found)


# ---------------------------------------------------------------------------------------------
# The readers
# ---------------------------------------------------------------------------------------------
def _read_torch_zip(
    fileobj: BinaryIO, archive: zipfile.ZipFile, pickle_name: str, info: CheckpointInfo
) -> None:
    prefix = pickle_name[: -len("data.pkl")]
    names = set(archive.namelist())
    if f"{prefix}constants.pkl" in names or any(n.startswith(f"{prefix}code/") for n in names):
        info.kind = "torchscript"
        info.details["note"] = "a TorchScript module: it stores no training counters"
        return
    byteorder = "little"
    if f"{prefix}byteorder" in names:
        byteorder = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
    info.kind = "torch"  # also when the pickle turns out unsafe or damaged
    pickle_info = archive.getinfo(pickle_name)
    if pickle_info.file_size > MAX_METADATA_BYTES:
        raise CorruptCheckpoint(
            f"{pickle_name} is {pickle_info.file_size // 2**20} MB; runctl reads pickles up to "
            f"{MAX_METADATA_BYTES // 2**20} MB for metadata"
        )
    obj, storages = _unpickle(archive.read(pickle_info))
    for ref in storages.values():
        entry = f"{prefix}data/{ref.key}"
        if entry not in names:
            raise CorruptCheckpoint(f"tensor data {entry} is missing from the zip")
    info.details["tensors"] = str(len(storages))
    _fill_from_object(info, obj, ZipScalarReader(fileobj, archive, prefix, byteorder))


def _fill_from_object(info: CheckpointInfo, obj: Any, scalars: ScalarReader) -> None:
    if not isinstance(obj, dict):
        info.details["content"] = type(obj).__name__
        return
    if "pytorch-lightning_version" in obj:
        _fill_lightning(info, obj, scalars)
    _fill_from_mapping(info, obj, scalars)


MODE_IN_CALLBACK_KEY = re.compile(r"['\"]mode['\"]:\s*['\"](min|max)['\"]")
MONITOR_IN_CALLBACK_KEY = re.compile(r"['\"]monitor['\"]:\s*['\"]([^'\"]+)['\"]")


def _fill_lightning(info: CheckpointInfo, ckpt: dict, scalars: ScalarReader) -> None:
    info.kind = "lightning"
    info.details["lightning_version"] = str(ckpt.get("pytorch-lightning_version"))
    callbacks = ckpt.get("callbacks")
    if not isinstance(callbacks, dict):
        return
    candidates = [
        (key, state)
        for key, state in callbacks.items()
        if isinstance(key, str) and key.startswith("ModelCheckpoint") and isinstance(state, dict)
    ]
    # The callback that ranks by a metric says more than one that only saves the last epoch.
    candidates.sort(key=lambda item: item[1].get("monitor") is None)
    if not candidates:
        return
    key, state = candidates[0]
    monitor = state.get("monitor")
    if monitor is None and (named := MONITOR_IN_CALLBACK_KEY.search(key)):
        monitor = named.group(1)  # older Lightning kept it only in the callback's key
    best = _number(state.get("best_model_score"), scalars)
    current = _number(state.get("current_score"), scalars)
    if isinstance(state.get("best_model_path"), str) and state["best_model_path"]:
        info.details["best_model_path"] = state["best_model_path"]
    if best is not None:
        info.metrics["best_model_score"] = float(best)
    if isinstance(monitor, str):
        info.monitor = monitor
        mode_match = MODE_IN_CALLBACK_KEY.search(key)
        info.mode = mode_match.group(1) if mode_match else "min"
        if current is not None:
            info.monitor_value = float(current)
            info.metrics[monitor] = float(current)
            if info.loss is None and "loss" in monitor:
                info.loss = float(current)


def _read_zip(fileobj: BinaryIO, info: CheckpointInfo) -> None:
    info.kind = "zip"  # until its entries say torch or Keras
    try:
        archive = zipfile.ZipFile(fileobj)
    except zipfile.BadZipFile as err:
        raise CorruptCheckpoint(
            f"truncated or damaged zip ({err}): still being written, or the save was "
            "interrupted, or the copy is incomplete"
        ) from None
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if pickles:
        _read_torch_zip(fileobj, archive, pickles[0], info)
    elif "metadata.json" in names and "config.json" in names:
        _read_keras(archive, info)
    else:
        info.details["note"] = "a zip that is neither a torch checkpoint nor a Keras archive"


def _read_keras(archive: zipfile.ZipFile, info: CheckpointInfo) -> None:
    info.kind = "keras"
    metadata = _json_entry(archive, "metadata.json")
    config = _json_entry(archive, "config.json")
    if isinstance(metadata, dict):
        for key in ("keras_version", "date_saved"):
            if isinstance(metadata.get(key), str):
                info.details[key] = metadata[key]
        _fill_from_mapping(info, metadata)
    if isinstance(config, dict):
        if isinstance(config.get("class_name"), str):
            info.details["model"] = config["class_name"]
        inner = config.get("config")
        if isinstance(inner, dict):
            if isinstance(inner.get("name"), str):
                info.details["name"] = inner["name"]
            layers = inner.get("layers")
            if isinstance(layers, list):
                info.metrics["layers"] = float(len(layers))
        compile_config = config.get("compile_config")
        if isinstance(compile_config, dict):
            loss = compile_config.get("loss")
            if isinstance(loss, str):
                info.details["loss_function"] = loss
            optimizer = compile_config.get("optimizer")
            if isinstance(optimizer, dict):
                opt_config = optimizer.get("config")
                if isinstance(optimizer.get("class_name"), str):
                    info.details["optimizer"] = optimizer["class_name"]
                if isinstance(opt_config, dict):
                    lr = _as_float(opt_config.get("learning_rate"))
                    if lr is not None:
                        info.metrics["learning_rate"] = lr
    _fill_from_name(info)


def _json_entry(archive: zipfile.ZipFile, name: str) -> Any:
    entry = archive.getinfo(name)
    if entry.file_size > MAX_METADATA_BYTES:
        raise CorruptCheckpoint(f"{name} is too large to be metadata")
    try:
        return json.loads(archive.read(entry))
    except ValueError as err:
        raise CorruptCheckpoint(f"{name} is not valid JSON ({err})") from None


def _read_pickle_file(fileobj: BinaryIO, info: CheckpointInfo) -> None:
    """A legacy (pre-1.6, or `_use_new_zipfile_serialization=False`) torch file is several
    pickles in a row: a magic number, a protocol version, system info, the object, the storage
    keys, then raw storages. Anything else starting with a pickle is read as a plain pickle."""
    reader = _BoundedReader(fileobj, MAX_METADATA_BYTES)
    info.kind = "pickle"
    first, storages = _unpickle(reader)
    if first != TORCH_LEGACY_MAGIC:
        _fill_from_object(info, first, ScalarReader())
        return
    version, _ = _unpickle(reader)
    if version != 1001:
        raise CorruptCheckpoint(f"legacy torch file with unknown protocol version {version!r}")
    info.kind = "torch-legacy"
    sys_info, _ = _unpickle(reader)
    little_endian = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
    obj, storages = _unpickle(reader)
    byteorder = "little" if little_endian else "big"
    scalars = LegacyScalarReader(fileobj, fileobj.tell(), storages, info.size_bytes, byteorder)
    info.details["tensors"] = str(len(storages))
    _fill_from_object(info, obj, scalars)


def _read_safetensors(fileobj: BinaryIO, info: CheckpointInfo) -> None:
    info.kind = "safetensors"
    fileobj.seek(0)
    (header_len,) = struct.unpack("<Q", fileobj.read(8))
    if header_len > MAX_SAFETENSORS_HEADER or 8 + header_len > info.size_bytes:
        raise CorruptCheckpoint(
            f"safetensors header claims {header_len} bytes but the file has {info.size_bytes}: "
            "truncated or not a safetensors file"
        )
    try:
        header = json.loads(fileobj.read(header_len))
    except ValueError as err:
        raise CorruptCheckpoint(f"safetensors header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise CorruptCheckpoint("safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data_end = 0
    for name, tensor in header.items():
        offsets = tensor.get("data_offsets") if isinstance(tensor, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2):
            raise CorruptCheckpoint(f"safetensors tensor {name!r} has no data_offsets")
        data_end = max(data_end, int(offsets[1]))
    if 8 + header_len + data_end > info.size_bytes:
        raise CorruptCheckpoint(
            f"truncated: the tensors need {8 + header_len + data_end} bytes but the file has "
            f"{info.size_bytes}"
        )
    info.metrics["tensors"] = float(len(header))
    info.metrics["tensor_bytes"] = float(data_end)
    if isinstance(metadata, dict):
        for key, value in metadata.items():
            if isinstance(value, str) and _parse_number_text(value) is None:
                info.details[str(key)] = value[:200]
        _fill_from_mapping(info, metadata, numbers_in_text=True)


def _read_json_file(fileobj: BinaryIO, info: CheckpointInfo) -> None:
    document = _load_json(fileobj, info.size_bytes, info.name)
    if not isinstance(document, dict):
        raise CorruptCheckpoint(f"{info.name} holds JSON but not an object")
    if document.get("format") == EXAMPLE_FORMAT:
        info.kind = "example-json"
        if document.get("epoch_complete") is False:
            info.details["note"] = "saved mid-epoch (interrupted)"
    else:
        info.kind = "json-sidecar"
    _fill_from_mapping(info, document)


def _load_json(fileobj: BinaryIO, size: int, name: str) -> Any:
    if size > MAX_METADATA_BYTES:
        raise CorruptCheckpoint(f"{name} is {size // 2**20} MB, too large to read as metadata")
    fileobj.seek(0)
    try:
        return json.loads(fileobj.read(size + 1))
    except ValueError as err:
        raise CorruptCheckpoint(
            f"not valid JSON ({err}): a partly written file or not a checkpoint"
        ) from None


def _read_file(fileobj: BinaryIO, info: CheckpointInfo) -> None:
    head = fileobj.read(16)
    fileobj.seek(0)
    if not head:
        raise CorruptCheckpoint("empty file (0 bytes): the save was interrupted")
    if head[:4] in ZIP_MAGICS:
        _read_zip(fileobj, info)
    elif head[:8] == HDF5_MAGIC:
        info.kind = "hdf5"
        info.details["note"] = "an HDF5 file (Keras .h5): epoch and loss come only from its name"
        _fill_from_name(info)
    elif head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        _read_pickle_file(fileobj, info)
    elif len(head) >= 9 and head[8:9] == b"{":
        _read_safetensors(fileobj, info)
    elif head.lstrip()[:1] == b"{":
        _read_json_file(fileobj, info)
    elif info.name.lower().endswith(KNOWN_EXTENSIONS):
        raise CorruptCheckpoint(
            f"unrecognised content (starts with {head[:8].hex(' ')}): not a torch, "
            "safetensors or Keras file"
        )
    else:
        info.kind = "unknown"
        _fill_from_name(info)


def _read_hf_dir(source: CheckpointSource, entry: SourceEntry, info: CheckpointInfo) -> None:
    info.kind = "hf-trainer"
    info.is_dir = True
    size, mtime, names = _dir_totals(source, entry.path)
    info.size_bytes, info.mtime = size, max(mtime, entry.mtime)
    step_in_name = re.search(r"(\d+)$", entry.name)
    if "trainer_state.json" not in names:
        if step_in_name:
            info.step = int(step_in_name.group(1))
        raise CorruptCheckpoint(
            "no trainer_state.json in this checkpoint directory: still being written, or the "
            "save was interrupted, or it is not a Hugging Face Trainer checkpoint"
        )
    state_path = names["trainer_state.json"]
    with source.open(state_path.path) as fileobj:
        state = _load_json(fileobj, state_path.size, "trainer_state.json")
    if not isinstance(state, dict):
        raise CorruptCheckpoint("trainer_state.json is not a JSON object")
    log_history = state.get("log_history") if isinstance(state.get("log_history"), list) else []
    last_values: dict[str, float] = {}
    for record in log_history:
        if not isinstance(record, dict):
            continue
        for key, value in record.items():
            number = _as_float(value) if not isinstance(value, str) else None
            if number is not None and key not in {"epoch", "step"}:
                last_values[key] = number
    info.epoch = _as_float(state.get("epoch"))
    step = state.get("global_step")
    info.step = step if isinstance(step, int) and not isinstance(step, bool) else None
    if info.step is None and step_in_name:
        info.step = int(step_in_name.group(1))
    info.loss = last_values.pop("loss", None)
    top_level = {
        key: value
        for key, value in state.items()
        if key not in {"epoch", "global_step", "log_history"}
    }
    _fill_from_mapping(info, top_level)
    for key, value in last_values.items():
        if len(info.metrics) < MAX_METRICS:
            info.metrics.setdefault(key, value)
    if isinstance(state.get("best_model_checkpoint"), str):
        info.details["best_model_checkpoint"] = state["best_model_checkpoint"]
    best_metric = _as_float(state.get("best_metric"))
    if best_metric is not None:
        _hf_monitor(info, log_history, best_metric)


def _hf_monitor(info: CheckpointInfo, log_history: list, best_metric: float) -> None:
    """The Trainer stores best_metric but not its name (that is in training_args.bin, a pickle
    of a class we will not load): the eval metric that took exactly that value is the one.
    The Trainer's own default is "greater is better" unless the name ends in "loss"."""
    names = [
        key
        for record in log_history
        if isinstance(record, dict)
        for key, value in record.items()
        if key.startswith("eval_") and _as_float(value) == best_metric
    ]
    if not names:
        return
    monitor = "eval_loss" if "eval_loss" in names else names[0]
    info.monitor = monitor
    info.mode = "min" if monitor.endswith("loss") else "max"
    value = None
    for record in log_history:
        if not isinstance(record, dict) or monitor not in record:
            continue
        record_step = record.get("step")
        if isinstance(record_step, int) and info.step is not None and record_step > info.step:
            break
        value = _as_float(record[monitor])
    info.monitor_value = value


def _dir_totals(source: CheckpointSource, path: str) -> tuple[int, float, dict[str, SourceEntry]]:
    """Total size and newest mtime under a directory, and its top-level entries by name."""
    total, newest = 0, 0.0
    top: dict[str, SourceEntry] = {}
    pending = [path]
    while pending:
        directory = pending.pop()
        for item in source.list(directory):
            if directory == path:
                top[item.name] = item
            if item.is_dir:
                pending.append(item.path)
            else:
                total += item.size
                newest = max(newest, item.mtime)
    return total, newest, top


def is_hf_checkpoint_dir(path: str, source: CheckpointSource = LOCAL) -> bool:
    """A Hugging Face Trainer `checkpoint-N/` directory, which counts as one checkpoint."""
    name = os.path.basename(path.rstrip("/"))
    if re.fullmatch(r"checkpoint-\d+", name):
        return True
    try:
        return any(e.name == "trainer_state.json" for e in source.list(path))
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# The public reading API
# ---------------------------------------------------------------------------------------------
def _read_entry(source: CheckpointSource, entry: SourceEntry) -> CheckpointInfo:
    """What one file or directory says by itself (no sidecar, no file-name guesses)."""
    info = CheckpointInfo(
        path=entry.path,
        name=entry.name,
        size_bytes=entry.size,
        mtime=entry.mtime,
        is_dir=entry.is_dir,
    )
    try:
        if entry.is_dir:
            _read_hf_dir(source, entry, info)
        else:
            with source.open(entry.path) as fileobj:
                _read_file(fileobj, info)
    except CheckpointError as err:
        info.status, info.error = err.status, str(err)
    except OSError as err:
        info.status = STATUS_CORRUPT
        info.error = f"cannot read it: {err.strerror or err}"
    except Exception as err:  # a reader must never stop a listing; report the file instead
        info.status = STATUS_CORRUPT
        info.error = f"damaged ({type(err).__name__}: {err})"
    return info


def _complete(info: CheckpointInfo, sidecar: CheckpointInfo | None) -> CheckpointInfo:
    """Fills what the checkpoint left empty: first from its sidecar, then from its name."""
    if info.status != STATUS_OK:
        return info
    if sidecar is not None:
        if sidecar.status == STATUS_OK:
            info.sidecar, info.sidecar_bytes = sidecar.path, sidecar.size_bytes
            info.details["sidecar"] = sidecar.name
            info.epoch = sidecar.epoch if info.epoch is None else info.epoch
            info.step = sidecar.step if info.step is None else info.step
            info.loss = sidecar.loss if info.loss is None else info.loss
            for key, value in sidecar.metrics.items():
                if len(info.metrics) < MAX_METRICS:
                    info.metrics.setdefault(key, value)
        else:
            info.details["sidecar_error"] = f"{sidecar.name}: {sidecar.error}"
    if info.kind not in {"example-json", "json-sidecar", "hf-trainer"}:
        _fill_from_name(info)
    return info


def read_checkpoint(path: str, source: CheckpointSource = LOCAL) -> CheckpointInfo:
    """Metadata of one checkpoint file or HF `checkpoint-N/` directory, with a `<name>.json`
    sidecar beside it merged in. Never raises for a bad file: it comes back with status
    "corrupt" or "unsafe" and the reason in `error`."""
    path = str(path)
    try:
        entry = source.stat(path)
    except OSError as err:
        return CheckpointInfo(
            path=path,
            name=os.path.basename(path.rstrip("/")),
            status=STATUS_CORRUPT,
            error=f"cannot read it: {err.strerror or err}",
        )
    info = _read_entry(source, entry)
    sidecar = None
    if not entry.is_dir and info.kind not in {"example-json", "json-sidecar"}:
        sidecar_entry = _find_sidecar(source, entry, None)
        if sidecar_entry is not None:
            sidecar = _read_entry(source, sidecar_entry)
    return _complete(info, sidecar if sidecar and sidecar.kind == "json-sidecar" else None)


def _sidecar_names(name: str) -> list[str]:
    if name.endswith(".json"):
        return []
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return [f"{name}.json", f"{stem}.json"]


def _find_sidecar(
    source: CheckpointSource, entry: SourceEntry, siblings: dict[str, SourceEntry] | None
) -> SourceEntry | None:
    for candidate in _sidecar_names(entry.name):
        if siblings is not None:
            if candidate in siblings and not siblings[candidate].is_dir:
                return siblings[candidate]
            continue
        path = os.path.join(os.path.dirname(entry.path), candidate)
        with contextlib.suppress(OSError):
            found = source.stat(path)
            if not found.is_dir:
                return found
    return None


def _matches(entry: SourceEntry, globs: Iterable[str]) -> bool:
    for pattern in globs:
        if pattern.endswith("/"):
            if entry.is_dir and fnmatch.fnmatchcase(entry.name, pattern[:-1]):
                return True
        elif not entry.is_dir and fnmatch.fnmatchcase(entry.name, pattern):
            return True
    return False


class MetadataCache:
    """What each file says by itself, by (path, size, mtime): a directory listed again after
    one new file is written re-reads only that file."""

    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self.entries: dict[tuple, CheckpointInfo] = {}

    def get(self, key: tuple) -> CheckpointInfo | None:
        info = self.entries.get(key)
        if info is None:
            return None
        return dataclasses.replace(info, metrics=dict(info.metrics), details=dict(info.details))

    def put(self, key: tuple, info: CheckpointInfo) -> None:
        if len(self.entries) >= self.max_entries:
            self.entries.pop(next(iter(self.entries)))
        self.entries[key] = dataclasses.replace(
            info, metrics=dict(info.metrics), details=dict(info.details)
        )


DEFAULT_CACHE = MetadataCache()


def list_checkpoints(
    directory: str,
    globs: Sequence[str],
    source: CheckpointSource = LOCAL,
    cache: MetadataCache | None = DEFAULT_CACHE,
) -> list[CheckpointInfo]:
    """Every checkpoint in `directory` matching `globs` (a pattern ending in "/" matches
    directories), oldest first by step, epoch, then modification time. A missing directory
    is an empty list; any other OSError (e.g. permission denied) is raised for the caller to
    show. A `<name>.json` beside a checkpoint that is not a checkpoint itself is merged into
    it as a sidecar and not listed."""
    try:
        entries = source.list(str(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    by_name = {entry.name: entry for entry in entries}
    # Hidden names are temp files of saves in progress (`.epoch-3.ckpt.json.tmp`).
    matched = [e for e in entries if not e.name.startswith(".") and _matches(e, globs)]
    infos = {entry.name: _read_cached(source, entry, cache) for entry in matched}
    sidecars: dict[str, CheckpointInfo] = {}
    for name, info in infos.items():
        if info.is_dir or info.kind in {"example-json", "json-sidecar"}:
            continue
        entry = _find_sidecar(source, by_name[name], by_name)
        if entry is None:
            continue
        sidecar = infos.get(entry.name) or _read_cached(source, entry, cache)
        if sidecar.kind == "json-sidecar":  # a JSON that is a checkpoint of its own stays a row
            sidecars[name] = sidecar
    merged = {sidecar.name for sidecar in sidecars.values()}
    return sorted(
        (_complete(info, sidecars.get(name)) for name, info in infos.items() if name not in merged),
        key=checkpoint_order,
    )


def _read_cached(
    source: CheckpointSource, entry: SourceEntry, cache: MetadataCache | None
) -> CheckpointInfo:
    if cache is None or entry.is_dir:  # a directory's size/mtime do not track its files
        return _read_entry(source, entry)
    key = (id(source), entry.path, entry.size, entry.mtime)
    info = cache.get(key)
    if info is None:
        info = _read_entry(source, entry)
        cache.put(key, info)
    return info


def checkpoint_order(info: CheckpointInfo) -> tuple:
    """Older first: by step, then epoch, then modification time."""
    return (
        -1 if info.step is None else info.step,
        -1.0 if info.epoch is None or math.isnan(info.epoch) else info.epoch,
        info.mtime,
    )


def _ranking(info: CheckpointInfo) -> tuple[str, float, str] | None:
    """(metric name, value, mode) a checkpoint is ranked by, or None when it has none."""
    if info.monitor and info.monitor_value is not None and math.isfinite(info.monitor_value):
        return info.monitor, info.monitor_value, info.mode or "min"
    if info.loss is not None and math.isfinite(info.loss):
        return "loss", info.loss, "min"
    return None


def pick_best(infos: Iterable[CheckpointInfo]) -> CheckpointInfo | None:
    """The best readable checkpoint: by the metric the checkpoints say they are ranked by
    (the most common one, with its min/max mode), else the lowest loss. Ties go to the
    newest. Corrupt, unsafe and NaN ones never win."""
    ranked = [
        (info, rank)
        for info in infos
        if info.status == STATUS_OK and (rank := _ranking(info)) is not None
    ]
    if not ranked:
        return None
    counts = collections.Counter(rank[0] for _, rank in ranked if rank[0] != "loss")
    metric = counts.most_common(1)[0][0] if counts else "loss"
    candidates = [(info, rank) for info, rank in ranked if rank[0] == metric]
    if metric != "loss" and not candidates:
        candidates = [(info, rank) for info, rank in ranked if rank[0] == "loss"]

    # At equal scores (Lightning's last.ckpt repeats the best epoch's), the file the framework
    # itself named as best wins, then the newest.
    named_best = {
        os.path.basename(str(path).rstrip("/"))
        for info, _ in ranked
        for key in ("best_model_path", "best_model_checkpoint")
        if (path := info.details.get(key))
    }

    def key(item: tuple[CheckpointInfo, tuple[str, float, str]]) -> tuple:
        info, (_, value, mode) = item
        score = value if mode == "min" else -value
        newer_first = tuple(-part for part in checkpoint_order(info))
        return (score, info.name not in named_best, newer_first)

    return min(candidates, key=key)[0]


# ---------------------------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------------------------
def resume_argv(args: Sequence[str], template: str, path: str) -> list[str]:
    """The run's arguments with the resume arguments of `template` (e.g. "--resume {path}")
    in place of any existing ones: `--resume X` and `--resume=X` are replaced where they
    stood, not repeated. `path` becomes one argv item verbatim, spaces and all."""
    template_argv = [token.replace("{path}", path) for token in shlex.split(template)]
    # The options the template sets, and whether each takes the following token as its value.
    options: dict[str, bool] = {}
    raw_tokens = shlex.split(template)
    for index, token in enumerate(raw_tokens):
        if not token.startswith("-") or token == "--":
            continue
        name = token.split("=", 1)[0]
        follows = index + 1 < len(raw_tokens) and not raw_tokens[index + 1].startswith("-")
        options[name] = "=" in token or follows
    result: list[str] = []
    insert_at: int | None = None
    index = 0
    args = list(args)
    while index < len(args):
        token = args[index]
        name = token.split("=", 1)[0]
        if token.startswith("-") and name in options:
            if insert_at is None:
                insert_at = len(result)
            takes_value = options[name] and "=" not in token
            has_value = index + 1 < len(args) and not args[index + 1].startswith("-")
            index += 2 if takes_value and has_value else 1
            continue
        result.append(token)
        index += 1
    if insert_at is None:
        return result + template_argv
    return result[:insert_at] + template_argv + result[insert_at:]


# ---------------------------------------------------------------------------------------------
# Cleanup
# ---------------------------------------------------------------------------------------------
@dataclass
class CleanupPlan:
    """What a cleanup deletes and what it keeps, with the reason for each path."""

    delete: list[CheckpointInfo]
    keep: list[CheckpointInfo]
    reasons: dict[str, str]
    bytes_freed: int
    protect: frozenset[str] = frozenset()

    def describe(self) -> list[str]:
        """Every file that goes and every file that stays, with sizes and reasons: the text of
        a confirmation."""
        from widgets.formatting import size  # plain formatting, no textual

        def line(mark: str, info: CheckpointInfo) -> str:
            extra = f" + {os.path.basename(info.sidecar)}" if info.sidecar else ""
            name = info.name + ("/" if info.is_dir else "") + extra
            total = size(info.size_bytes + info.sidecar_bytes)
            return f"  {mark} {name}  {total}  ({self.reasons[info.path]})"

        lines = [f"Delete {len(self.delete)}, freeing {size(self.bytes_freed)}:"]
        lines += [line("-", info) for info in self.delete] or ["  (nothing)"]
        lines.append(f"Keep {len(self.keep)}:")
        lines += [line("+", info) for info in self.keep] or ["  (nothing)"]
        return lines


@dataclass
class DeletionReport:
    deleted: list[str]
    failed: dict[str, str]  # path -> why it was not deleted
    bytes_freed: int


def _normalized(path: str) -> str:
    return os.path.normpath(path)


def plan_cleanup(
    infos: Iterable[CheckpointInfo],
    keep_newest: int,
    protect: Iterable[str] = frozenset(),
) -> CleanupPlan:
    """Keep the newest `keep_newest` readable checkpoints (by step, epoch, then mtime; at
    least one), the best, the most recently written, and every path in `protect` (e.g. the
    one a running run is writing); delete the rest. Corrupt and unsafe files are kept: a
    cleanup does not delete what it could not read."""
    infos = list(infos)
    protected = frozenset(_normalized(p) for p in protect)
    keep_count = max(1, keep_newest)
    readable = sorted((i for i in infos if i.status == STATUS_OK), key=checkpoint_order)
    newest = readable[-keep_count:]
    newest_paths = {i.path for i in newest}
    best = pick_best(readable)
    latest_written = max(readable, key=lambda i: i.mtime) if readable else None
    delete: list[CheckpointInfo] = []
    keep: list[CheckpointInfo] = []
    reasons: dict[str, str] = {}
    for info in sorted(infos, key=checkpoint_order):
        reason = None
        if _normalized(info.path) in protected:
            reason = "protected: a running run is writing it"
        elif info.status != STATUS_OK:
            reason = f"{info.status}: not deleted automatically, check it by hand"
        elif best is not None and info.path == best.path:
            metric, value, _ = _ranking(info) or ("loss", float("nan"), "min")
            reason = f"best ({metric} {value:.6g})"
        elif info.path in newest_paths:
            reason = f"one of the newest {keep_count}"
        elif latest_written is not None and info.path == latest_written.path:
            reason = "the most recently written"
        if reason is None:
            delete.append(info)
            reasons[info.path] = f"older than the newest {keep_count}"
        else:
            keep.append(info)
            reasons[info.path] = reason
    freed = sum(info.size_bytes + info.sidecar_bytes for info in delete)
    return CleanupPlan(delete, keep, reasons, freed, protected)


def delete_checkpoints(plan: CleanupPlan, source: CheckpointSource = LOCAL) -> DeletionReport:
    """Deletes what `plan` lists (files, their sidecars, HF `checkpoint-N/` directories).
    A file that changed since it was listed, or that is protected, is left alone."""
    deleted: list[str] = []
    failed: dict[str, str] = {}
    freed = 0
    for info in plan.delete:
        if _normalized(info.path) in plan.protect:
            failed[info.path] = "protected: a running run is writing it"
            continue
        try:
            now = source.stat(info.path)
        except FileNotFoundError:
            failed[info.path] = "already gone"
            continue
        except OSError as err:
            failed[info.path] = f"cannot check it: {err.strerror or err}"
            continue
        if not info.is_dir and (now.size != info.size_bytes or now.mtime != info.mtime):
            failed[info.path] = "changed since it was listed (being written?); list again"
            continue
        try:
            source.delete(info.path, info.is_dir)
        except OSError as err:
            failed[info.path] = f"could not delete it: {err.strerror or err}"
            continue
        deleted.append(info.path)
        freed += info.size_bytes
        if info.sidecar:
            with contextlib.suppress(OSError):
                source.delete(info.sidecar, False)
                deleted.append(info.sidecar)
                freed += info.sidecar_bytes
    return DeletionReport(deleted, failed, freed)


__all__ = [
    "DEFAULT_CACHE",
    "LOCAL",
    "CheckpointInfo",
    "CheckpointSource",
    "CleanupPlan",
    "DeletionReport",
    "LocalCheckpointSource",
    "MetadataCache",
    "RangeFile",
    "SafeUnpickler",
    "SourceEntry",
    "TensorPlaceholder",
    "checkpoint_order",
    "delete_checkpoints",
    "is_hf_checkpoint_dir",
    "list_checkpoints",
    "open_range_file",
    "pick_best",
    "plan_cleanup",
    "read_checkpoint",
    "resume_argv",
]
