"""Dependencies with uv when the host has it: a venv made by `uv venv`, the requirements
installed by `uv pip install`, and the install skipped while nothing changed — on a real sshd,
with the uv binary from the test extra placed where a user's installer puts it."""

# ruff: noqa: F811 - test functions take the imported `sshd` fixture by name
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import sys
import zipfile
from pathlib import Path

from app.deps import install_deps, plan_deps
from app.sync import remote_project_dir, sync_project
from tests.sshd_server import SshdServer, sshd  # noqa: F401 (a fixture)

UV = Path(sys.executable).parent / "uv"


def write_wheel(directory: Path) -> Path:
    """A real, minimal wheel of `tinyuvpkg` (so no package index is needed to install it)."""
    files = {
        "tinyuvpkg/__init__.py": b"VALUE = 7\n",
        "tinyuvpkg-0.1.0.dist-info/METADATA": (
            b"Metadata-Version: 2.1\nName: tinyuvpkg\nVersion: 0.1.0\n"
        ),
        "tinyuvpkg-0.1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: runctl-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("tinyuvpkg-0.1.0.dist-info/RECORD,,")
    files["tinyuvpkg-0.1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / "tinyuvpkg-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def test_uv_makes_the_venv_installs_and_skips_on_an_unchanged_hash(
    sshd: SshdServer, project: Path
) -> None:
    assert UV.is_file(), f"{UV} missing: the test extra installs uv (bash tests/run.sh)"
    # Where uv's own installer puts it; install_deps looks there as well as on PATH.
    host_uv = sshd.remote_home / ".local" / "bin" / "uv"
    host_uv.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(UV, host_uv)
    os.chmod(host_uv, 0o755)
    write_wheel(project / "vendor")
    (project / "requirements.txt").write_text(
        "--no-index\n./vendor/tinyuvpkg-0.1.0-py3-none-any.whl\n"
    )
    transport = sshd.transport()
    remote_dir = remote_project_dir(transport.home(), "proj")
    sync_project(transport, project, remote_dir)
    plan = plan_deps(project, "training/train.py")

    lines: list[str] = []
    first = install_deps(transport, remote_dir, plan, on_output=lines.append)
    assert first.tool == "uv" and not first.skipped
    assert first.steps == ["uv venv .venv", "uv pip install -r requirements.txt"]
    assert lines[0] == "[1/2] uv venv .venv"
    check = transport.run([first.python, "-c", "import tinyuvpkg; print(tinyuvpkg.VALUE)"])
    assert check.text() == "7\n"

    again = install_deps(transport, remote_dir, plan)
    assert again.skipped and again.tool is None
