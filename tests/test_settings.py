"""Settings: defaults, files, environment, and errors that name the file, key and expectation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import SettingsError, load_settings, user_config_path


def test_every_key_has_a_default(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    assert settings.train.stop_grace_s == 30
    assert settings.train.resume_args == "--resume {path}"
    assert settings.logs.max_lines == 10_000
    assert settings.checkpoints.keep_newest == 5
    assert settings.hosts == []


def test_precedence_user_file_project_file_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = user_config_path()
    user.parent.mkdir(parents=True)
    user.write_text("[train]\nstop_grace_s = 10\npython = 'py-user'\n[logs]\nmax_lines = 500\n")
    (tmp_path / "runctl.toml").write_text("[train]\nstop_grace_s = 20\n")
    settings = load_settings(tmp_path)
    assert settings.train.stop_grace_s == 20  # project beats user
    assert settings.train.python == "py-user"  # untouched keys merge, not replace
    assert settings.logs.max_lines == 500
    monkeypatch.setenv("RUNCTL_TRAIN__STOP_GRACE_S", "7.5")
    assert load_settings(tmp_path).train.stop_grace_s == 7.5  # environment beats files


def test_runctl_home_moves_all_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNCTL_HOME", str(tmp_path / "elsewhere"))
    settings = load_settings(tmp_path)
    for path in (settings.store_path, settings.runs_root, settings.oplog_path, settings.cache_dir):
        assert path.is_relative_to(tmp_path / "elsewhere")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "[train]\nstop_grace_s = 'soon'\n",
            ["runctl.toml:2", "train.stop_grace_s", "valid number"],
        ),
        ("[train]\n\nstop_grace = 3\n", ["runctl.toml:3", "train.stop_grace", "unknown key"]),
        (
            "[logs]\nmax_lines = 5\n",
            ["runctl.toml:2", "logs.max_lines", "greater than or equal to 100"],
        ),
        ("[train\nx = 1\n", ["runctl.toml", "not valid TOML", "line 1"]),
        ("[[hosts]]\nname = 'gpu'\n", ["runctl.toml", "hosts[0].ssh", "missing"]),
    ],
)
def test_bad_file_gives_one_message_naming_file_key_and_expectation(
    tmp_path: Path, content: str, expected: list[str]
) -> None:
    (tmp_path / "runctl.toml").write_text(content)
    with pytest.raises(SettingsError) as err:
        load_settings(tmp_path)
    for fragment in expected:
        assert fragment in str(err.value)


def test_bad_environment_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNCTL_LOGS__MAX_LINES", "lots")
    with pytest.raises(SettingsError, match="RUNCTL_LOGS__MAX_LINES"):
        load_settings(tmp_path)


def test_bad_file_stops_the_app_before_it_starts(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "runctl.toml").write_text("[ui]\nrefresh_s = 'fast'\n")
    done = subprocess.run(
        [sys.executable, "-m", "app.cli"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "runctl.toml:2: key 'ui.refresh_s'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "environment",
    [
        {"RUNCTL_HOME": "/data/runctl"},
        {"runctl_home": "~/state", "RUNCTL_READ_ONLY": "true", "RUNCTL_DEBUG": "1"},
        {"RUNCTL_READ_ONLY": "off"},
    ],
)
def test_plain_variables_read_without_pydantic_settings_give_what_it_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]
) -> None:
    """The start-up shortcut (app.settings._simple_environment) must not change any value."""
    from app.settings import _settings_from_environment

    (tmp_path / "runctl.toml").write_text("home = '/from/file'\n[logs]\nmax_lines = 500\n")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    expected = _settings_from_environment()(home="/from/file", logs={"max_lines": 500})
    assert load_settings(tmp_path).model_dump() == expected.model_dump()


def test_a_bad_plain_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNCTL_READ_ONLY", "maybe")
    with pytest.raises(SettingsError, match="RUNCTL_READ_ONLY"):
        load_settings(tmp_path)


@pytest.mark.parametrize(
    ("variables", "loads_pydantic_settings", "max_lines"),
    [({"RUNCTL_HOME": "/tmp/h"}, False, 10_000), ({"RUNCTL_LOGS__MAX_LINES": "500"}, True, 500)],
)
def test_pydantic_settings_is_imported_only_for_variables_that_need_it(
    tmp_path: Path, variables: dict[str, str], loads_pydantic_settings: bool, max_lines: int
) -> None:
    code = (
        "import sys; from pathlib import Path; from app.settings import load_settings; "
        "s = load_settings(Path('.')); print(s.logs.max_lines, 'pydantic_settings' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RUNCTL_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**env, **variables, "PYTHONPATH": str(Path(__file__).parent.parent)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == [str(max_lines), str(loads_pydantic_settings)]
