"""Installing a project's dependencies on the host where it will train, visibly.

`plan_deps` finds what the project declares, in this order: `requirements.txt` at the project
root, `pyproject.toml` (the project itself, editable, when it has a `[build-system]`; else
just its `[project].dependencies`), and PEP 723 inline metadata (`# /// script`) in the
script being launched. Their hash (content, not mtime) names the install.

`install_deps` works in `<remote_dir>/.venv` on the host (one venv per project), with `uv`
when the host has it, else `python3 -m venv` + `python -m pip`. It is skipped when the hash
matches the last successful install recorded on the host (`.runctl/deps.json`, written only
after every step succeeded) and the venv is still there. Output streams line by line to a
callback, each step announced as `[2/3] pip install -r requirements.txt`; a failure raises
`DepsInstallError` naming the step with pip's last lines. Any Transport will do; blocking and
cancellable, for a thread worker. No textual here.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
import threading
import time
import tomllib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from providers.base import ProviderError, Transport
from providers.streaming import stream_command

RECIPE_VERSION = "deps-1"  # part of the hash: a change in how we install reinstalls
VENV_DIR = ".venv"
RECORD = ".runctl/deps.json"
LAST_LINES = 15
PIP_QUIET_FLAGS = ["--progress-bar", "off", "--disable-pip-version-check", "--no-input"]

# PEP 723's reference regular expression.
INLINE_METADATA = re.compile(
    r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$"
)


class DepsInstallError(ProviderError):
    """A step failed; the message names it and ends with the installer's last lines."""

    def __init__(self, step: str, returncode: int, last_lines: list[str]):
        self.step = step
        self.returncode = returncode
        self.last_lines = last_lines
        shown = "\n".join(f"    {line}" for line in last_lines) or "    (no output)"
        super().__init__(
            f"installing dependencies failed at {step} (exit {returncode}); the run was not "
            f"started. Fix the dependency files and install again, or skip this step.\n{shown}"
        )


@dataclass(frozen=True, slots=True)
class DepSource:
    kind: str  # "requirements" | "pyproject" | "pep723"
    path: str  # relative to the project root
    content: bytes
    packages: tuple[str, ...] = ()  # what to install, when it is a list rather than a file


@dataclass(slots=True)
class DepsPlan:
    sources: list[DepSource]
    digest: str

    @property
    def empty(self) -> bool:
        return not self.sources

    def describe(self) -> str:
        return ", ".join(f"{s.path} ({s.kind})" for s in self.sources) or "no dependency files"


@dataclass(slots=True)
class DepsResult:
    skipped: bool
    tool: str | None  # "uv" | "pip" | None when skipped
    python: str  # the interpreter to start the training with (the venv's, or `python`)
    digest: str
    seconds: float
    steps: list[str] = field(default_factory=list)


def parse_inline_metadata(script_text: str) -> dict | None:
    """The `# /// script` block of a PEP 723 script as a dict, or None."""
    blocks = [m for m in INLINE_METADATA.finditer(script_text) if m.group("type") == "script"]
    if not blocks:
        return None
    if len(blocks) > 1:
        raise ValueError("more than one `# /// script` block (PEP 723 allows one)")
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in blocks[0].group("content").splitlines(keepends=True)
    )
    return tomllib.loads(content)


def plan_deps(project_root: Path, script: str | None = None) -> DepsPlan:
    """What to install for `script` (relative to the root) in this project, and its hash."""
    root = Path(project_root)
    sources: list[DepSource] = []
    requirements = root / "requirements.txt"
    if requirements.is_file():
        sources.append(DepSource("requirements", "requirements.txt", requirements.read_bytes()))
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        raw = pyproject.read_bytes()
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ProviderError(f"{pyproject}: not valid TOML ({err})") from None
        project = data.get("project")
        if isinstance(project, dict):
            if "build-system" in data:
                sources.append(DepSource("pyproject", "pyproject.toml", raw))
            elif project.get("dependencies"):
                packages = tuple(str(d) for d in project["dependencies"])
                sources.append(DepSource("pyproject", "pyproject.toml", raw, packages))
    if script:
        script_path = root / script
        if script_path.is_file():
            text = script_path.read_text(encoding="utf-8", errors="replace")
            try:
                metadata = parse_inline_metadata(text)
            except (ValueError, tomllib.TOMLDecodeError) as err:
                raise ProviderError(f"{script}: bad inline script metadata: {err}") from None
            packages = tuple(str(d) for d in (metadata or {}).get("dependencies", []))
            if packages:
                content = "\n".join(packages).encode()
                sources.append(DepSource("pep723", script, content, packages))
    digest = hashlib.sha256(RECIPE_VERSION.encode())
    for source in sources:
        for part in (source.kind, source.path, source.content, "\0".join(source.packages)):
            digest.update(part if isinstance(part, bytes) else part.encode())
            digest.update(b"\0")
    return DepsPlan(sources, digest.hexdigest())


def venv_python(remote_dir: str) -> str:
    """The interpreter a training on that host runs with once dependencies are installed."""
    return f"{remote_dir.rstrip('/')}/{VENV_DIR}/bin/python"


class _LineSplitter:
    """Bytes in, whole lines out (a `\\r` progress update counts as a line)."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.partial = ""

    def feed(self, data: bytes) -> None:
        text = self.partial + self.decoder.decode(data)
        *lines, self.partial = re.split(r"\r\n|\n|\r", text)
        for line in lines:
            if line.strip():
                self.emit(line)

    def close(self) -> None:
        if self.partial.strip():
            self.emit(self.partial)
        self.partial = ""


def _host_state(transport: Transport, remote_dir: str) -> tuple[dict, bool, str | None]:
    """(the install record, whether the venv exists, the path of uv or None), one command."""
    script = (
        'cd "$1" 2>/dev/null || exit 0; '
        f"if [ -f {RECORD} ]; then cat {RECORD}; fi; echo; "
        f"if [ -x {VENV_DIR}/bin/python ]; then echo venv=yes; else echo venv=no; fi; "
        "uv=$(command -v uv 2>/dev/null); "
        'for p in "$HOME/.local/bin/uv" "$HOME/.cargo/bin/uv"; do '
        '[ -n "$uv" ] || { [ -x "$p" ] && uv=$p; }; done; echo "uv=$uv"'
    )
    result = transport.run(["sh", "-c", script, "sh", remote_dir], timeout=60)
    if not result.ok:
        raise ProviderError(
            f"cannot inspect {remote_dir} on {transport.label}: {result.describe_failure()}"
        )
    lines = result.text().splitlines()
    record: dict = {}
    if lines and lines[0].strip():
        try:
            record = json.loads(lines[0])
        except ValueError:
            record = {}
    venv = "venv=yes" in lines
    uv = next((line[3:] for line in lines if line.startswith("uv=")), "") or None
    return record if isinstance(record, dict) else {}, venv, uv


def install_deps(
    transport: Transport,
    remote_dir: str,
    plan: DepsPlan,
    *,
    on_output: Callable[[str], None] | None = None,
    on_step: Callable[[int, int, str], None] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    force: bool = False,
    python: str = "python3",
    step_timeout_s: float | None = 3600.0,
) -> DepsResult:
    """Make `<remote_dir>/.venv` hold what `plan` declares (see the module docstring).

    `on_output(line)` gets every line of output, step headers included; `on_step(i, n,
    title)` gets the step indicator alone. Raises DepsInstallError when a step fails and
    `providers.streaming.CommandCancelled` when cancelled (nothing is recorded either way)."""
    started = time.monotonic()
    emit = on_output or (lambda line: None)
    if plan.empty:
        emit("No requirements.txt, pyproject.toml or inline script metadata: nothing to install.")
        return DepsResult(True, None, python, plan.digest, time.monotonic() - started)
    record, venv_exists, uv = _host_state(transport, remote_dir)
    target = venv_python(remote_dir)
    if not force and venv_exists and record.get("digest") == plan.digest:
        emit(f"Dependencies unchanged since {record.get('installed_at', 'the last install')}; "
             "skipping the install.")  # fmt: skip
        return DepsResult(True, None, target, plan.digest, time.monotonic() - started)

    tool = "uv" if uv else "pip"
    steps: list[tuple[str, list[str]]] = []
    if not venv_exists:
        if uv:
            steps.append((f"uv venv {VENV_DIR}", [uv, "venv", "--python", python, VENV_DIR]))
        else:
            steps.append((f"{python} -m venv {VENV_DIR}", [python, "-m", "venv", VENV_DIR]))
    pip = [uv, "pip", "install", "--python", target] if uv else [
        target, "-m", "pip", "install", *PIP_QUIET_FLAGS
    ]  # fmt: skip
    name = "uv pip install" if uv else "pip install"
    for source in plan.sources:
        if source.kind == "requirements":
            steps.append((f"{name} -r {source.path}", [*pip, "-r", source.path]))
        elif source.packages:
            what = " ".join(source.packages)
            steps.append((f"{name} {what} (from {source.path})", [*pip, *source.packages]))
        else:
            steps.append((f"{name} -e . (from {source.path})", [*pip, "-e", "."]))

    done: list[str] = []
    for index, (title, argv) in enumerate(steps, start=1):
        header = f"[{index}/{len(steps)}] {title}"
        if on_step is not None:
            on_step(index, len(steps), title)
        emit(header)
        last = deque(maxlen=LAST_LINES)

        def line(text: str, last: deque = last) -> None:
            last.append(text)
            emit(text)

        splitter = _LineSplitter(line)
        result = stream_command(
            transport,
            ["env", "PYTHONUNBUFFERED=1", "PIP_NO_INPUT=1", *argv],
            on_output=splitter.feed,
            merge_stderr=True,
            cancel=cancel,
            timeout=step_timeout_s,
            cwd=remote_dir,
        )
        splitter.close()
        if not result.ok:
            lines = list(last)
            if argv[1:3] == ["-m", "venv"] and any("ensurepip" in text for text in lines):
                lines.append(
                    "hint: this host's Python has no venv support; install it "
                    "(Debian/Ubuntu: `sudo apt install python3-venv`) or install uv"
                )
            raise DepsInstallError(header, result.returncode, lines)
        done.append(title)

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    note = {"digest": plan.digest, "tool": tool, "installed_at": stamp, "sources": plan.describe()}
    transport.write_file(f"{remote_dir.rstrip('/')}/{RECORD}", json.dumps(note).encode())
    emit(f"Dependencies installed with {tool} in {time.monotonic() - started:.1f} s.")
    return DepsResult(False, tool, target, plan.digest, time.monotonic() - started, done)
