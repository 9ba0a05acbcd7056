"""The launch dialog: script (relative to the project root, with path completion), arguments,
target instance; a dry-run shows exactly what would run; pre-flight problems block the start."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", "runs", "checkpoints", ".tox"}
MAX_SUGGESTIONS = 5000


@dataclass(slots=True)
class LaunchRequest:
    script: str
    args: list[str]
    instance_key: str
    parent_run_id: str | None = None
    parent_checkpoint: str | None = None
    install_deps: bool = True  # on an SSH host: install dependencies before starting


def project_scripts(root: Path, limit: int = MAX_SUGGESTIONS) -> list[str]:
    """Relative paths of runnable scripts under the project root, for completion."""
    found: list[str] = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        rel_dir = os.path.relpath(directory, root)
        for name in sorted(files):
            if name.endswith((".py", ".sh")):
                found.append(name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/"))
                if len(found) >= limit:
                    return found
    return found


class LaunchScreen(ModalScreen[LaunchRequest | None]):
    DEFAULT_CSS = """
    LaunchScreen { align: center middle; }
    LaunchScreen > Vertical {
        width: 96; max-width: 95%; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    LaunchScreen #launch-title { text-style: bold; margin-bottom: 1; }
    LaunchScreen Label.field { color: $text-muted; margin-top: 1; }
    LaunchScreen #launch-output { height: auto; max-height: 14; margin-top: 1; }
    LaunchScreen #launch-output Static { padding: 0 1; }
    LaunchScreen #launch-output .-problem { color: $error; text-style: bold; }
    LaunchScreen Horizontal { height: auto; margin-top: 1; align: right middle; }
    LaunchScreen Button { margin-left: 2; }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="launch.cancel"),
        # Not ctrl+d: the inputs take it (delete right) while one has the focus.
        Binding("ctrl+t", "dry_run", "Dry run", id="launch.dry_run", priority=True),
    ]

    def __init__(
        self,
        project_root: Path,
        instances: Sequence[tuple[str, str]],
        check: Callable[[str, list[str], str], tuple[list[str], str]],
        script: str = "",
        args: str = "",
        instance_key: str | None = None,
        parent_run_id: str | None = None,
        parent_checkpoint: str | None = None,
        install_deps: bool = True,
    ) -> None:
        """`check(script, args, instance_key)` returns (problems, dry-run description); it runs
        in a worker because it compiles the script."""
        super().__init__()
        self.project_root = project_root
        self.instance_choices = list(instances)
        self.check = check
        self.initial_script = script
        self.initial_args = args
        self.initial_instance = instance_key or (instances[0][1] if instances else None)
        self.parent_run_id = parent_run_id
        self.parent_checkpoint = parent_checkpoint
        self.install_deps = install_deps
        # The field a user most likely edits: the script when none is known yet, else the
        # arguments (shift+tab reaches the script). Focused as the screen is composed, so a key
        # typed the moment the dialog shows already lands there.
        self.AUTO_FOCUS = "#args" if script else "#script"

    def compose(self) -> ComposeResult:
        with Vertical():
            title = "Resume training" if self.parent_checkpoint else "Start training"
            yield Label(f"{title} — project {self.project_root}", id="launch-title")
            yield Label("Script (relative to the project root)", classes="field")
            yield Input(self.initial_script, placeholder="training/train.py", id="script")
            yield Label("Arguments", classes="field")
            yield Input(self.initial_args, placeholder="--epochs 5", id="args")
            yield Label("Target instance", classes="field")
            yield Select(
                [(label, key) for label, key in self.instance_choices],
                value=self.initial_instance or Select.BLANK,
                allow_blank=False,
                id="target",
            )
            yield Checkbox(
                "On an SSH host: install dependencies first",
                value=self.install_deps,
                id="install-deps",
            )
            with VerticalScroll(id="launch-output"):
                yield Static("", id="launch-result", markup=False)
            with Horizontal():
                yield Button("Dry run (ctrl+t)", id="dry-run")
                yield Button("Start", variant="success", id="start")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.load_suggestions()

    @work(
        thread=True,
        exclusive=True,
        group="launch-suggest",
        exit_on_error=False,
        description="Listing the project's scripts",
    )
    def load_suggestions(self) -> None:
        scripts = project_scripts(self.project_root)
        self.app.call_from_thread(self._set_suggester, scripts)

    def _set_suggester(self, scripts: list[str]) -> None:
        self.query_one("#script", Input).suggester = SuggestFromList(scripts, case_sensitive=True)

    def _values(self) -> tuple[str, list[str], str] | None:
        script = self.query_one("#script", Input).value.strip()
        try:
            args = shlex.split(self.query_one("#args", Input).value)
        except ValueError as err:
            self._show([f"arguments: {err} (check your quotes)"], "")
            return None
        target = self.query_one("#target", Select).value
        return script, args, str(target)

    def _show(self, problems: list[str], description: str) -> None:
        result = self.query_one("#launch-result", Static)
        if problems:
            result.update("Cannot start:\n" + "\n".join(f"  • {p}" for p in problems))
            result.add_class("-problem")
        else:
            result.update(description)
            result.remove_class("-problem")

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#dry-run")
    def action_dry_run(self) -> None:
        values = self._values()
        if values is not None:
            self.run_check(*values, start=False)

    @on(Button.Pressed, "#start")
    @on(Input.Submitted)
    def start(self) -> None:
        values = self._values()
        if values is not None:
            self.run_check(*values, start=True)

    @work(
        thread=True,
        exclusive=True,
        group="launch-check",
        exit_on_error=False,
        description="The pre-flight check",
    )
    def run_check(self, script: str, args: list[str], target: str, start: bool) -> None:
        try:
            problems, description = self.check(script, args, target)
        except Exception as err:  # a check that fails must say so, not kill the dialog
            problems, description = [f"pre-flight check failed: {err}"], ""
        self.app.call_from_thread(
            self._after_check, problems, description, script, args, target, start
        )

    def _after_check(
        self,
        problems: list[str],
        description: str,
        script: str,
        args: list[str],
        target: str,
        start: bool,
    ) -> None:
        if problems or not start:
            self._show(problems, "Dry run — nothing started:\n" + description)
            return
        self.dismiss(
            LaunchRequest(
                script,
                args,
                target,
                self.parent_run_id,
                self.parent_checkpoint,
                install_deps=self.query_one("#install-deps", Checkbox).value,
            )
        )
