"""The scripts the SSM transport sends, executed here under a real `sh`.

moto's SSM executes nothing, so `LocalShellSSM` replaces only the AWS round trip
(`execute`) with `sh -c SCRIPT` on this machine: everything else — the quoting, the base64
framing, the helper scripts, the inline-size limits — is the transport's own code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from providers.base import TransportError
from providers.runproto import RunProtocol, RunSpec
from providers.ssm import (
    INLINE_OUTPUT_CHARS,
    INLINE_READ_BYTES,
    SSMTransport,
    command_script,
    parse_command_output,
)
from tests.conftest import wait_until


class LocalShellSSM(SSMTransport):
    """The SSM transport with this machine's `sh` in place of the SSM agent."""

    def __init__(self, output_limit: int | None = None) -> None:
        super().__init__("i-local", "us-east-1", clients=None)  # type: ignore[arg-type]
        self.output_limit = output_limit
        self.scripts: list[str] = []

    def execute(self, script: str, timeout: float | None) -> str:
        self.scripts.append(script)
        done = subprocess.run(["sh", "-c", script], capture_output=True, timeout=timeout or 60)
        text = done.stdout.decode()
        # SSM returns at most INLINE_OUTPUT_CHARS characters inline.
        return text[: self.output_limit] if self.output_limit else text


@pytest.fixture
def ssm() -> LocalShellSSM:
    return LocalShellSSM(output_limit=INLINE_OUTPUT_CHARS)


def test_argv_is_quoted_never_interpolated(ssm, tmp_path):
    tricky = ["it's", "$(touch pwned)", "a b", "`id`", "*", "; rm -rf /", "\n", ""]
    result = ssm.run(
        [sys.executable, "-c", "import json,sys; print(json.dumps(sys.argv[1:]))", *tricky],
        cwd=str(tmp_path),
    )
    assert result.ok, result.stderr
    assert json.loads(result.stdout) == tricky
    assert not (tmp_path / "pwned").exists()


def test_exit_status_stderr_stdin_cwd_and_binary_output(ssm, tmp_path):
    script = "import sys,os; data=sys.stdin.buffer.read(); sys.stdout.buffer.write(data[::-1] + bytes(range(256))); sys.stderr.write(os.getcwd()); sys.exit(7)"
    result = ssm.run([sys.executable, "-c", script], input=b"\x00abc\xff", cwd=str(tmp_path))
    assert result.returncode == 7
    assert result.stdout == b"\xffcba\x00" + bytes(range(256))
    assert result.stderr.decode() == str(tmp_path)


def test_file_operations_through_helper_scripts(ssm, tmp_path):
    target = tmp_path / "a dir" / "it's a file.txt"
    ssm.write_file(str(target), b"hello\nworld\n", mode=0o600)
    assert target.read_bytes() == b"hello\nworld\n"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temp file left
    assert ssm.file_size(str(target)) == 12
    assert ssm.file_size(str(tmp_path / "missing")) is None
    assert ssm.read_from(str(target), 6, 100) == b"world\n"
    assert ssm.read_from(str(target), 0, 5) == b"hello"
    assert ssm.read_from(str(target), 12, 100) == b""
    with pytest.raises(FileNotFoundError):
        ssm.read_from(str(tmp_path / "missing"), 0, 10)
    (tmp_path / "a dir" / "sub").mkdir()
    entries = {e.name: e for e in ssm.list_dir(str(tmp_path / "a dir"))}
    assert set(entries) == {"it's a file.txt", "sub"}
    assert entries["sub"].is_dir and not entries["it's a file.txt"].is_dir
    assert entries["it's a file.txt"].size == 12
    assert abs(entries["it's a file.txt"].mtime - target.stat().st_mtime) < 1
    assert ssm.list_dir(str(tmp_path / "nope")) == []
    assert ssm.home() == os.environ["HOME"]


def test_reads_stay_under_the_inline_output_limit(ssm, tmp_path):
    big = tmp_path / "output.log"
    big.write_bytes(os.urandom(200_000))
    chunk = ssm.read_from(str(big), 1000, 1_000_000)
    assert chunk == big.read_bytes()[1000 : 1000 + INLINE_READ_BYTES]
    # Following the whole file chunk by chunk returns every byte.
    offset, parts = 0, []
    while data := ssm.read_from(str(big), offset, 1 << 20):
        parts.append(data)
        offset += len(data)
    assert b"".join(parts) == big.read_bytes()


def test_output_cut_by_the_inline_limit_is_an_error_not_a_partial_result(ssm):
    with pytest.raises(TransportError, match=r"set aws.ssm_output_bucket"):
        ssm.run(["head", "-c", "100000", "/dev/zero"])


def test_the_run_protocol_works_over_the_ssm_scripts(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # the launcher is installed under ~/.runctl
    transport = LocalShellSSM()
    protocol = RunProtocol(transport)
    run_dir = str(tmp_path / "runs" / "r1")
    spec = RunSpec(
        run_id="r1",
        run_dir=run_dir,
        workdir=str(tmp_path),
        checkpoint_dir=str(tmp_path / "ckpt"),
        argv=[sys.executable, "-c", "print('trained over ssm')"],
    )
    pgid = protocol.start(spec)
    assert pgid > 0
    wait_until(lambda: protocol.status(run_dir).kind == "exited")
    assert protocol.status(run_dir).exit_code == 0
    log = transport.read_from(spec.log_path, 0, 1000)
    assert b"trained over ssm" in log
    [launcher] = (home / ".runctl").glob("launcher-*.sh")
    assert launcher.stat().st_mode & 0o111


def test_parse_rejects_incomplete_output():
    script = command_script(["echo", "hi"])
    full = subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout
    assert parse_command_output(full) == (0, b"hi\n", b"")
    assert parse_command_output(full[: len(full) // 2]) is None
    assert parse_command_output("") is None


def test_large_input_needs_the_bucket(ssm):
    with pytest.raises(TransportError, match=r"too many to send inline over SSM"):
        ssm.write_file("/tmp/never-written", b"x" * 100_000)
    assert not Path("/tmp/never-written").exists()
