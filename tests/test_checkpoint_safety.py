"""Files that must never run code or stop a listing: malicious pickles (whose payload is
first shown to work), truncated and damaged files, random bytes, and a sparse multi-GB
checkpoint whose metadata must come back without its tensor data being read."""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.checkpoints import (
    LOCAL,
    LocalCheckpointSource,
    SourceEntry,
    list_checkpoints,
    open_range_file,
    read_checkpoint,
)
from app.settings import CheckpointSettings
from tests.fixtures.checkpoints.torch_zip import (
    pack_scalar,
    scalar_tensor,
    torch_pickle,
    write_sparse_checkpoint,
    write_zip64,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"
GLOBS = CheckpointSettings().globs
MARKER_VARIABLE = "CHECKPOINT_TEST_MARKER"  # the committed malicious fixture touches $this


class RunsAShellCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class CallsAnother:
    """Reduces to any callable, e.g. builtins.eval or subprocess.Popen."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def legacy_torch_file(obj) -> bytes:
    """The pre-1.6 torch layout: magic number, protocol version, sys info, then the object."""
    parts = [
        0x1950A86A20F9469CFC6C,
        1001,
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {}},
        obj,
        [],
    ]
    return b"".join(pickle.dumps(part, protocol=2) for part in parts)


def torch_zip_bytes(data_pkl: bytes, extra: list[tuple[str, bytes]] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", b"little")
        for name, content in extra:
            archive.writestr(name, content)
    return buffer.getvalue()


# --- malicious pickles ---------------------------------------------------------------------------
def malicious_files(marker: Path) -> dict[str, bytes]:
    command = f"touch {marker}"
    payload = {"epoch": 1, "loss": 0.5, "payload": RunsAShellCommand(command)}
    return {
        "plain-protocol2.pt": pickle.dumps(payload, protocol=2),
        "plain-protocol0.pt": pickle.dumps(payload, protocol=0).replace(b"(dp0", b"\x80\x02(dp0"),
        "plain-protocol5.pkl.pt": pickle.dumps(payload, protocol=5),
        "torch-zip.pt": torch_zip_bytes(pickle.dumps(payload, protocol=2)),
        "legacy.pt": legacy_torch_file(payload),
        "nested.ckpt": torch_zip_bytes(
            pickle.dumps({"epoch": 2, "state": [1, 2, {"deep": RunsAShellCommand(command)}]})
        ),
        "eval.pt": pickle.dumps(CallsAnother(eval, f"__import__('os').system('{command}')")),
        "popen.pt": pickle.dumps(CallsAnother(subprocess.Popen, ["touch", str(marker)])),
        "exec.pt": pickle.dumps(
            CallsAnother(exec, f"open({str(marker)!r}, 'w').close()"), protocol=4
        ),
    }


UNPICKLE_EVERYTHING = """
import io, pickle, sys, zipfile
data = open(sys.argv[1], "rb").read()
if data[:2] == b"PK":
    archive = zipfile.ZipFile(io.BytesIO(data))
    data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
stream = io.BytesIO(data)
while stream.tell() < len(data):  # a legacy torch file is several pickles in a row
    pickle.load(stream)
"""


def unpickle_with_the_standard_library(path: Path, env: dict[str, str] | None = None) -> None:
    subprocess.run(
        [sys.executable, "-c", UNPICKLE_EVERYTHING, str(path)],
        env={**os.environ, **(env or {})},
        check=False,
        capture_output=True,
    )


def test_every_malicious_payload_works_when_unpickled_normally(tmp_path: Path) -> None:
    """The test below proves something only if these files really would run code."""
    for name in malicious_files(tmp_path / "unused"):
        marker = tmp_path / f"proof-{name}"
        path = tmp_path / name
        path.write_bytes(malicious_files(marker)[name])

        unpickle_with_the_standard_library(path)

        assert marker.exists(), name


def test_malicious_pickles_are_listed_unsafe_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    for name, content in malicious_files(marker).items():
        (directory / name).write_bytes(content)
    (directory / "good.pt").write_bytes(torch_zip_bytes(torch_pickle({"epoch": 4, "loss": 0.25})))

    infos = {i.name: i for i in list_checkpoints(str(directory), GLOBS)}

    assert not marker.exists()
    assert infos.pop("good.pt").status == "ok"
    assert set(infos) == set(malicious_files(marker))
    for name, info in infos.items():
        assert info.status == "unsafe", (name, info.error)
        assert info.error.startswith("refuses GLOBAL "), info.error
    assert "refuses GLOBAL posix.system" in infos["torch-zip.pt"].error
    assert "refuses GLOBAL posix.system" in infos["legacy.pt"].error
    assert "refuses GLOBAL builtins.eval" in infos["eval.pt"].error
    assert "refuses GLOBAL subprocess.Popen" in infos["popen.pt"].error


def test_the_committed_malicious_checkpoint_is_live_and_is_never_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture = FIXTURES / "unsafe" / "malicious.pt"
    proof = tmp_path / "proof"
    unpickle_with_the_standard_library(fixture, {MARKER_VARIABLE: str(proof)})
    assert proof.exists()  # the payload really runs a shell command

    marker = tmp_path / "pwned"
    monkeypatch.setenv(MARKER_VARIABLE, str(marker))
    info = read_checkpoint(str(fixture))

    assert info.status == "unsafe"
    assert "refuses GLOBAL posix.system" in info.error
    assert not marker.exists()


def test_a_huge_buffer_request_is_refused_without_allocating_it(tmp_path: Path) -> None:
    # GLOBAL builtins.bytearray; (10**12,) REDUCE: one TB of zeros if it were obeyed.
    data = b"\x80\x02cbuiltins\nbytearray\n\x8a\x06\x00\x10\xa5\xd4\xe8\x00\x85R."
    path = tmp_path / "bomb.pt"
    path.write_bytes(data)

    info = read_checkpoint(str(path))

    assert info.status == "unsafe"
    assert "zero-filled buffer" in info.error


# --- truncated and damaged files ------------------------------------------------------------------
TRUNCATABLE = [
    "torch/epoch-0003.pt",
    "torch/legacy-format.pt",
    "lightning/epoch=1-step=8.ckpt",
    "keras/model-epoch01.keras",
    "safetensors/model-step4000.safetensors",
    "example/epoch-0001.ckpt.json",
]


@pytest.mark.parametrize("relative", TRUNCATABLE)
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, -1])
def test_truncated_files_are_corrupt_with_the_reason(
    tmp_path: Path, relative: str, keep: float
) -> None:
    content = (FIXTURES / relative).read_bytes()
    cut = len(content) - 1 if keep == -1 else int(len(content) * keep)
    path = tmp_path / Path(relative).name
    path.write_bytes(content[:cut])

    info = read_checkpoint(str(path))

    assert info.status == "corrupt", info
    assert info.error
    if relative.endswith((".pt", ".ckpt", ".keras")) and "legacy" not in relative:
        assert "truncated" in info.error


def test_damaged_pickle_inside_an_intact_zip_is_corrupt(tmp_path: Path) -> None:
    archive = zipfile.ZipFile(FIXTURES / "torch" / "epoch-0003.pt")
    names = archive.namelist()
    pickle_name = next(n for n in names if n.endswith("data.pkl"))
    damaged = archive.read(pickle_name)[:200]  # stops mid-pickle, CRC still right
    path = tmp_path / "damaged.pt"
    with zipfile.ZipFile(path, "w") as out:
        for name in names:
            out.writestr(name, damaged if name == pickle_name else archive.read(name))

    info = read_checkpoint(str(path))

    assert info.status == "corrupt"
    assert "pickle" in info.error


def test_flipped_bytes_in_a_zip_entry_are_reported(tmp_path: Path) -> None:
    content = bytearray((FIXTURES / "torch" / "epoch-0003.pt").read_bytes())
    start = content.index(b"data.pkl") + 200
    content[start : start + 16] = b"\xff" * 16
    path = tmp_path / "bitrot.pt"
    path.write_bytes(bytes(content))

    info = read_checkpoint(str(path))

    assert info.status == "corrupt"
    assert info.error


def test_empty_and_unreadable_files_are_corrupt(tmp_path: Path) -> None:
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.ckpt").write_text("this is not a checkpoint")
    hf = tmp_path / "checkpoint-30"
    hf.mkdir()
    (hf / "model.safetensors").write_bytes(b"")

    infos = {i.name: i for i in list_checkpoints(str(tmp_path), GLOBS)}

    assert infos["empty.pt"].status == "corrupt"
    assert "empty file" in infos["empty.pt"].error
    assert infos["text.ckpt"].status == "corrupt"
    assert "unrecognised content" in infos["text.ckpt"].error
    assert infos["checkpoint-30"].status == "corrupt"
    assert infos["checkpoint-30"].step == 30
    assert "trainer_state.json" in infos["checkpoint-30"].error


def test_a_missing_file_is_a_corrupt_row_not_an_exception() -> None:
    info = read_checkpoint("/nonexistent/epoch-1.pt")

    assert info.status == "corrupt"
    assert "No such file" in info.error


def test_a_bad_file_does_not_stop_the_listing(tmp_path: Path) -> None:
    for relative in ("torch/epoch-0003.pt", "unsafe/malicious.pt", "keras/model-epoch02.keras"):
        (tmp_path / Path(relative).name).write_bytes((FIXTURES / relative).read_bytes())
    (tmp_path / "cut.pt").write_bytes((FIXTURES / "torch/epoch-0003.pt").read_bytes()[:999])

    statuses = {i.name: i.status for i in list_checkpoints(str(tmp_path), GLOBS)}

    assert statuses == {
        "epoch-0003.pt": "ok",
        "malicious.pt": "unsafe",
        "model-epoch02.keras": "ok",
        "cut.pt": "corrupt",
    }


# --- never raises, whatever the bytes -------------------------------------------------------------
class MemorySource(LocalCheckpointSource):
    """Files held in memory: the CheckpointSource protocol with no disk at all."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def stat(self, path: str) -> SourceEntry:
        if path not in self.files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return SourceEntry(path, path.rsplit("/", 1)[-1], False, len(self.files[path]), 0.0)

    def open(self, path: str):
        return io.BytesIO(self.files[path])


PREFIXES = [
    b"",
    b"PK\x03\x04",
    b"\x80\x02",
    b"\x80\x05",
    b"{",
    b"\x10\x00\x00\x00\x00\x00\x00\x00{",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from(PREFIXES), body=st.binary(max_size=600))
def test_random_bytes_never_raise(prefix: bytes, body: bytes) -> None:
    info = read_checkpoint("/m/x.pt", source=MemorySource({"/m/x.pt": prefix + body}))

    assert info.status in {"ok", "corrupt", "unsafe"}
    assert info.status == "ok" or info.error


REAL_PICKLE = zipfile.ZipFile(FIXTURES / "lightning" / "epoch=1-step=8.ckpt").read(
    next(
        n
        for n in zipfile.ZipFile(FIXTURES / "lightning" / "epoch=1-step=8.ckpt").namelist()
        if n.endswith("data.pkl")
    )
)


@settings(max_examples=300, deadline=None)
@given(
    position=st.integers(0, len(REAL_PICKLE) - 1),
    garbage=st.binary(min_size=1, max_size=8),
    cut=st.integers(1, len(REAL_PICKLE)),
)
def test_mutated_real_pickles_never_raise(position: int, garbage: bytes, cut: int) -> None:
    mutated = (REAL_PICKLE[:position] + garbage + REAL_PICKLE[position + len(garbage) :])[:cut]
    data = torch_zip_bytes(mutated)

    info = read_checkpoint("/m/x.ckpt", source=MemorySource({"/m/x.ckpt": data}))

    assert info.status in {"ok", "corrupt", "unsafe"}


# --- a multi-GB checkpoint: metadata without reading tensor data -----------------------------------
class CountingSource(LocalCheckpointSource):
    """Counts every byte a reader asks for."""

    def __init__(self) -> None:
        self.bytes_read = 0

    def open(self, path: str):
        source = self
        raw = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the wrapper

        class Counting(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def seekable(self) -> bool:
                return True

            def readinto(self, buffer) -> int:
                count = raw.readinto(buffer)
                source.bytes_read += count
                return count

            def seek(self, offset: int, whence: int = 0) -> int:
                return raw.seek(offset, whence)

            def tell(self) -> int:
                return raw.tell()

            def close(self) -> None:
                raw.close()
                super().close()

        return io.BufferedReader(Counting(), buffer_size=8192)


def test_a_sparse_3gb_checkpoint_is_read_from_a_few_kb(tmp_path: Path) -> None:
    path = tmp_path / "big.pt"
    size = write_sparse_checkpoint(path, 3 * 2**30, epoch=12, step=120_000, loss=0.8125)
    assert size > 3 * 2**30
    assert os.stat(path).st_blocks * 512 < 16 * 2**20  # the test itself wrote no GBs
    source = CountingSource()

    info = read_checkpoint(str(path), source=source)

    assert (info.status, info.kind) == ("ok", "torch"), info.error
    assert (info.epoch, info.step, info.loss) == (12.0, 120_000, 0.8125)
    assert info.size_bytes == size
    assert source.bytes_read < 256 * 1024, source.bytes_read


def test_a_0_dim_tensor_value_is_read_from_its_own_bytes(tmp_path: Path) -> None:
    state = {
        "epoch": 3,
        "loss": scalar_tensor("0", "float32"),
        "val_loss": scalar_tensor("1", "float64"),
        "lr": scalar_tensor("2", "bfloat16"),
        "step": scalar_tensor("3", "int64"),
    }
    entries = [
        ("archive/data.pkl", torch_pickle(state)),
        ("archive/data/0", pack_scalar(0.5, "float32")),
        ("archive/data/1", pack_scalar(0.125, "float64")),
        ("archive/data/2", pack_scalar(0.75, "bfloat16")),
        ("archive/data/3", pack_scalar(77, "int64")),
    ]
    write_zip64(tmp_path / "scalars.pt", entries)

    info = read_checkpoint(str(tmp_path / "scalars.pt"))

    assert (info.epoch, info.step, info.loss) == (3.0, 77, 0.5)
    assert info.metrics == {"val_loss": 0.125, "lr": 0.75}


def test_a_tensor_whose_data_entry_is_missing_is_corrupt(tmp_path: Path) -> None:
    entries = [("archive/data.pkl", torch_pickle({"loss": scalar_tensor("0", "float32")}))]
    write_zip64(tmp_path / "missing.pt", entries)

    info = read_checkpoint(str(tmp_path / "missing.pt"))

    assert info.status == "corrupt"
    assert "archive/data/0 is missing" in info.error


def test_big_endian_legacy_scalars_are_decoded(tmp_path: Path) -> None:
    # byteorder "big" in the zip: the 0-dim tensor's 4 bytes are big-endian.
    entries = [
        ("archive/data.pkl", torch_pickle({"loss": scalar_tensor("0", "float32")})),
        ("archive/byteorder", b"big"),
        ("archive/data/0", struct.pack(">f", 0.375)),
    ]
    write_zip64(tmp_path / "be.pt", entries)

    assert read_checkpoint(str(tmp_path / "be.pt")).loss == 0.375


class RangeRequestSource(LocalCheckpointSource):
    """A stand-in for a remote source (SFTP, S3): every read is a byte-range request."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, int]] = []

    def open(self, path: str):
        size = os.path.getsize(path)

        def read_range(offset: int, length: int) -> bytes:
            self.requests.append((offset, length))
            with open(path, "rb") as handle:
                handle.seek(offset)
                return handle.read(length)

        return open_range_file(size, read_range)


def test_a_remote_style_source_reads_a_multi_gb_file_in_a_few_range_requests(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.pt"
    write_sparse_checkpoint(path, 5 * 2**30, epoch=2, step=2000, loss=0.5)
    source = RangeRequestSource()

    info = read_checkpoint(str(path), source=source)

    assert (info.status, info.epoch, info.step, info.loss) == ("ok", 2.0, 2000, 0.5)
    assert len(source.requests) <= 8, source.requests
    assert sum(length for _, length in source.requests) <= 8 * 64 * 1024


def test_the_reader_imports_no_torch_numpy_textual_or_boto3() -> None:
    code = (
        "import sys, app.checkpoints, app.checkpoint_report\n"
        "heavy = {'torch', 'numpy', 'textual', 'boto3', 'botocore', 'safetensors'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert done.stdout.strip() == "[]"


def test_local_source_is_the_default() -> None:
    assert isinstance(LOCAL, LocalCheckpointSource)
