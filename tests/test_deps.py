"""Dependencies on the host: a tiny local package installed into the project's venv over a real
sshd with pip's output streaming line by line, skipped while the files' hash is unchanged,
installed again when it changes, and a failure that shows pip's last lines."""

# ruff: noqa: F811 - test functions take the imported `sshd` fixture by name

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from app.deps import DepsInstallError, install_deps, parse_inline_metadata, plan_deps
from app.sync import remote_project_dir, sync_project
from tests.sshd_server import SshdServer, sshd  # noqa: F401 (a fixture)

USER_PIP_CONF = Path.home() / ".config" / "pip" / "pip.conf"


def tiny_package(project: Path) -> None:
    package = project / "vendor" / "tinypkg"
    (package / "tinypkg").mkdir(parents=True)
    (package / "tinypkg" / "__init__.py").write_text("VALUE = 42\n")
    (package / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "tinypkg"
            version = "0.1.0"
            """
        )
    )
    (project / "requirements.txt").write_text("./vendor/tinypkg\n")


def host_like_this_machine(sshd: SshdServer) -> None:
    """The host's user has this machine's pip settings (its package index mirror), as a
    real host's user would have theirs; pip then needs no network beyond that registry."""
    if USER_PIP_CONF.exists():
        target = sshd.remote_home / ".config" / "pip" / "pip.conf"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(USER_PIP_CONF, target)


def test_install_streams_then_skips_on_unchanged_hash(sshd: SshdServer, project: Path) -> None:
    host_like_this_machine(sshd)
    tiny_package(project)
    transport = sshd.transport()
    remote_dir = remote_project_dir(transport.home(), "proj")
    sync_project(transport, project, remote_dir)
    plan = plan_deps(project, "training/train.py")
    assert [s.kind for s in plan.sources] == ["requirements"]

    lines: list[str] = []
    steps: list[tuple[int, int, str]] = []
    first = install_deps(
        transport,
        remote_dir,
        plan,
        on_output=lines.append,
        on_step=lambda i, n, title: steps.append((i, n, title)),
    )
    assert not first.skipped and first.tool == "pip"  # no uv on this host
    assert steps == [
        (1, 2, "python3 -m venv .venv"),
        (2, 2, "pip install -r requirements.txt"),
    ]
    assert lines[0] == "[1/2] python3 -m venv .venv"
    assert "[2/2] pip install -r requirements.txt" in lines
    assert any("Successfully installed tinypkg" in line for line in lines)
    check = transport.run([first.python, "-c", "import tinypkg; print(tinypkg.VALUE)"])
    assert check.text() == "42\n"

    again_lines: list[str] = []
    again = install_deps(transport, remote_dir, plan, on_output=again_lines.append)
    assert again.skipped and again.python == first.python
    assert len(again_lines) == 1 and "skipping" in again_lines[0]
    assert again.seconds < 2

    (project / "requirements.txt").write_text("./vendor/tinypkg\n# pinned later\n")
    sync_project(transport, project, remote_dir)
    changed = plan_deps(project, "training/train.py")
    assert changed.digest != plan.digest
    third = install_deps(transport, remote_dir, changed)
    assert not third.skipped and third.steps == ["pip install -r requirements.txt"]  # venv kept


def test_failure_shows_pips_last_lines_and_records_nothing(sshd: SshdServer, project: Path) -> None:
    (project / "requirements.txt").write_text("./vendor/does-not-exist\n")
    transport = sshd.transport()
    remote_dir = remote_project_dir(transport.home(), "proj")
    sync_project(transport, project, remote_dir)
    plan = plan_deps(project, None)
    with pytest.raises(DepsInstallError) as failed:
        install_deps(transport, remote_dir, plan)
    error = failed.value
    assert error.step == "[2/2] pip install -r requirements.txt"
    assert any("does-not-exist" in line for line in error.last_lines)
    assert "does-not-exist" in str(error) and "failed at [2/2]" in str(error)
    assert not (Path(remote_dir) / ".runctl" / "deps.json").exists()
    with pytest.raises(DepsInstallError):  # not skipped the next time
        install_deps(transport, remote_dir, plan)


def test_sources_pyproject_and_inline_metadata(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "tools").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "1"\ndependencies = ["numpy>=1.26", "tqdm"]\n'
    )
    (root / "tools" / "job.py").write_text(
        "# /// script\n# requires-python = '>=3.11'\n"
        '# dependencies = [\n#   "rich",\n# ]\n# ///\nprint("hi")\n'
    )
    plan = plan_deps(root, "tools/job.py")
    assert [(s.kind, s.path, s.packages) for s in plan.sources] == [
        ("pyproject", "pyproject.toml", ("numpy>=1.26", "tqdm")),
        ("pep723", "tools/job.py", ("rich",)),
    ]
    assert plan_deps(root, "tools/job.py").digest == plan.digest
    (root / "tools" / "job.py").write_text("print('no metadata')\n")
    assert plan_deps(root, "tools/job.py").digest != plan.digest
    assert plan_deps(tmp_path / "empty").empty


def test_parse_inline_metadata() -> None:
    script = '# /// script\n# dependencies = ["a", "b<2"]\n# ///\n'
    assert parse_inline_metadata(script) == {"dependencies": ["a", "b<2"]}
    assert parse_inline_metadata("print(1)\n") is None
