"""One function decides the project root; scripts are known relative to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.project import find_project_root, script_relative_path


def test_nearest_git_ancestor_wins_over_marker_files(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    inner = tmp_path / "pkg" / "training"
    inner.mkdir(parents=True)
    (tmp_path / "pkg" / "pyproject.toml").write_text("")
    assert find_project_root(inner) == tmp_path.resolve()


def test_marker_file_when_there_is_no_git(tmp_path: Path) -> None:
    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    (tmp_path / "a" / "requirements.txt").write_text("numpy\n")
    assert find_project_root(inner) == (tmp_path / "a").resolve()


def test_current_directory_when_nothing_marks_a_project(tmp_path: Path) -> None:
    assert find_project_root(tmp_path) == tmp_path.resolve()


def test_scripts_are_relative_to_the_root_never_bare_names(tmp_path: Path) -> None:
    assert script_relative_path(tmp_path, tmp_path / "training" / "train.py") == "training/train.py"
    assert script_relative_path(tmp_path, "training/train.py") == "training/train.py"
    with pytest.raises(ValueError, match="outside the project root"):
        script_relative_path(tmp_path / "sub", tmp_path / "train.py")
