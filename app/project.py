"""The project root: one function decides it, and every feature (launch, sync, checkpoints,
settings) uses it, so a script is always known by the same path relative to that root."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

ROOT_MARKERS = ("pyproject.toml", "requirements.txt", "runctl.toml")


def find_project_root(start: Path | str | None = None) -> Path:
    """Nearest ancestor holding `.git`; else one holding a marker file; else `start` itself."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    if here.is_file():
        here = here.parent
    chain = [here, *here.parents]
    for directory in chain:
        if (directory / ".git").exists():
            return directory
    for directory in chain:
        if any((directory / marker).is_file() for marker in ROOT_MARKERS):
            return directory
    return here


def script_relative_path(project_root: Path, script: Path | str) -> str:
    """`script` as a POSIX path relative to the project root (`training/train.py`).

    Relative inputs are taken relative to the root. Raises ValueError for a script outside it:
    it would not be synced, so it could not run anywhere but here.
    """
    root = project_root.resolve()
    path = Path(script)
    absolute = (path if path.is_absolute() else root / path).resolve()
    try:
        relative = absolute.relative_to(root)
    except ValueError:
        raise ValueError(
            f"{script} is outside the project root {root}; move it into the project "
            "or start runctl-tui from the project that holds it"
        ) from None
    return str(PurePosixPath(*relative.parts))


def project_name(project_root: Path) -> str:
    return project_root.resolve().name or "project"
