"""`runctl-tui sync HOST [--dry-run] [--json]` end to end through the CLI, against a real sshd
configured as a `[[hosts]]` entry: the JSON a script reads, and exit 2 with one line when the
host cannot be used."""

# ruff: noqa: F811 - test functions take the imported `sshd` fixture by name

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from app.sync_report import known_hosts_path
from tests.sshd_server import SshdServer, sshd  # noqa: F401 (a fixture)


def configure(project: Path, sshd: SshdServer, ssh: str | None = None) -> None:
    with (project / "runctl.toml").open("a") as toml:
        toml.write(
            f'\n[[hosts]]\nname = "box"\nssh = "{ssh or sshd.target}"\n'
            f'identity_file = "{sshd.user_key}"\ngpu = "A10G"\nprice_per_hour = 1.25\n'
        )


def trust_server(isolated_home: Path, sshd: SshdServer) -> None:
    """What the dashboard's trust question leaves behind: the key in runctl's known_hosts."""
    path = known_hosts_path(isolated_home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sshd.known_hosts.read_text())


def run_cli(project: Path, *args: str) -> int:
    return main(["--project", str(project), "sync", "box", *args])


def test_sync_json_then_dry_run(
    sshd: SshdServer, project: Path, isolated_home: Path, capsys: pytest.CaptureFixture
) -> None:
    configure(project, sshd)
    trust_server(isolated_home, sshd)
    assert run_cli(project, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {
        "host", "remote_dir", "uploaded", "deleted", "bytes_sent", "files_scanned", "dry_run",
        "seconds",
    }  # fmt: skip
    assert report["host"] == "box"
    assert report["remote_dir"] == f"{sshd.remote_home}/runctl/proj"
    assert report["uploaded"] == ["runctl.toml", "training/train.py"]  # .git is never sent
    assert report["deleted"] == [] and report["dry_run"] is False
    assert report["files_scanned"] == 2 and report["bytes_sent"] > 0
    assert (sshd.remote_home / "runctl/proj/training/train.py").read_text() == (
        project / "training/train.py"
    ).read_text()

    (project / "training/new.py").write_text("print('new')\n")
    (project / "training/train.py").unlink()
    assert run_cli(project, "--dry-run", "--json") == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["uploaded"] == ["training/new.py"] and dry["deleted"] == ["training/train.py"]
    assert dry["dry_run"] is True and dry["bytes_sent"] == len("print('new')\n")
    assert (sshd.remote_home / "runctl/proj/training/train.py").exists()  # nothing changed

    assert run_cli(project) == 0
    text = capsys.readouterr().out
    assert "Sent 1 file(s), deleted 1 on box:" in text and "+ training/new.py" in text
    assert run_cli(project, "--json") == 0
    again = json.loads(capsys.readouterr().out)
    assert again["uploaded"] == [] and again["bytes_sent"] == 0


def test_unknown_host_key_exits_2_with_its_fingerprint(
    sshd: SshdServer, project: Path, capsys: pytest.CaptureFixture
) -> None:
    configure(project, sshd)
    assert run_cli(project, "--json") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert sshd.fingerprint() in line and "not known" in line
    assert not (sshd.remote_home / "runctl").exists()


def test_changed_host_key_exits_2(
    sshd: SshdServer, project: Path, isolated_home: Path, capsys: pytest.CaptureFixture
) -> None:
    configure(project, sshd)
    trust_server(isolated_home, sshd)
    sshd.new_host_key()
    assert run_cli(project, "--json") == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "CHANGED" in line and "refusing" in line


def test_unreachable_or_unconfigured_host_exits_2(
    sshd: SshdServer, project: Path, capsys: pytest.CaptureFixture
) -> None:
    configure(project, sshd, ssh="nobody@127.0.0.1:1")
    assert run_cli(project, "--json") == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "cannot connect to [127.0.0.1]:1" in line
    assert main(["--project", str(project), "sync", "nope"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "no host named 'nope'" in line and "box" in line
