"""Settings: defaults < ~/.config/runctl/config.toml < <project>/runctl.toml < RUNCTL_* env.

Every key has a default, so the app runs with no file at all. A file that is not valid TOML,
or that holds an unknown key or a value of the wrong type, stops the app before it starts with
one message naming the file, the line, the key and what was expected (`SettingsError`).
"""

from __future__ import annotations

import os
import re
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

PROJECT_FILE_NAME = "runctl.toml"


class SettingsError(Exception):
    """A settings file or variable is wrong; the message says where and what was expected."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainSettings(_Section):
    python: str = Field(
        "", description="interpreter for local runs; empty = the one running runctl-tui"
    )
    default_script: str = Field(
        "examples/train.py", description="script offered by the launch dialog"
    )
    stop_grace_s: float = Field(30.0, ge=0, description="SIGTERM, then SIGKILL after this long")
    resume_args: str = Field("--resume {path}", description="arguments added to resume a run")
    checkpoint_subdir: str = Field("checkpoints", description="checkpoint dir inside a run dir")
    sync_before_run: bool = Field(True, description="sync the project before a run on a host")
    install_deps: bool = Field(True, description="install dependencies before a run on a host")


class LogSettings(_Section):
    max_lines: int = Field(10_000, ge=100, description="lines the log view keeps")
    batch_ms: int = Field(
        100, ge=10, le=1000, description="log lines are shown in batches this long"
    )
    extra_patterns: list[str] = Field(default_factory=list, description="regexes with named groups")


class CheckpointSettings(_Section):
    globs: list[str] = Field(
        default_factory=lambda: [
            "*.pt",
            "*.pth",
            "*.ckpt",
            "*.safetensors",
            "*.bin",
            "*.keras",
            "*.h5",
            "checkpoint-*/",
            "*.ckpt.json",
        ]
    )
    keep_newest: int = Field(5, ge=1)
    stale_minutes: float = Field(
        60.0, gt=0, description="warn when a running run saved none this long"
    )


class CostSettings(_Section):
    uptime_warn_hours: float = 24.0
    accrued_warn_usd: float = 10.0
    idle_warn_minutes: float = 30.0
    idle_auto_stop: list[str] = Field(
        default_factory=list,
        description="EC2 instance ids stopped after idle_warn_minutes idle (checkpoints to S3 "
        "first); off for every instance by default",
    )
    ebs_usd_per_gb_month: float = Field(0.08, ge=0, description="EBS storage while stopped")
    refresh_prices: bool = Field(True, description="ask the AWS Pricing API, cache on disk")


class HostSettings(_Section):
    name: str
    ssh: str
    identity_file: str | None = None
    gpu: str | None = None
    price_per_hour: float = 0.0
    remote_root: str | None = None


class SyncSettings(_Section):
    include: list[str] = Field(default_factory=list, description="patterns synced even if ignored")
    exclude: list[str] = Field(default_factory=list, description="patterns never synced")
    remote_dir: str | None = Field(None, description="default ~/runctl/<project name>")


class SshSettings(_Section):
    config_file: str | None = Field(None, description="default ~/.ssh/config")
    refresh_s: float = Field(30.0, gt=0, description="how often hosts' reachability is checked")


class AwsSettings(_Section):
    enabled: bool = True
    profile: str | None = None
    regions: list[str] = Field(default_factory=list, description="empty = the profile's region")
    refresh_s: float = Field(15.0, gt=0)
    show_all: bool = False
    s3_bucket: str | None = None
    max_attempts: int = Field(5, ge=1, description="sends per call, botocore standard retries")
    # The launch dialog's defaults.
    instance_types: list[str] = Field(
        default_factory=list, description="types offered by the launch dialog; empty = catalog"
    )
    default_instance_type: str = "g5.xlarge"
    ami: str | None = Field(None, description="used when the Deep Learning AMI is unavailable")
    ami_parameter: str | None = Field(None, description="SSM parameter naming the AMI")
    key_name: str | None = None
    security_group_ids: list[str] = Field(default_factory=list)
    subnet_id: str | None = None
    instance_profile: str | None = Field(None, description="name or ARN; SSM and S3 need one")
    root_volume_gb: int = Field(100, ge=8)
    spot: bool = False
    spot_max_price: float | None = Field(None, gt=0, description="$/h; default on-demand price")
    # How the app reaches an instance for runs, sync, dependencies and logs.
    transport: Literal["auto", "ssh", "ssm"] = Field(
        "auto", description="auto: SSH with an address and key, else SSM with a profile"
    )
    ssh_user: str = "ubuntu"
    ssh_identity_file: str | None = None
    ssm_output_bucket: str | None = Field(None, description="default s3_bucket")
    ssm_run_as: str | None = Field(None, description="user SSM commands run as")
    spot_watch_s: float = Field(30.0, gt=0, description="how often spot hosts are checked")
    spot_auto_relaunch: bool = Field(False, description="relaunch and resume without asking")


class UiSettings(_Section):
    refresh_s: float = Field(1.0, gt=0, description="how often run states are re-read")


class SettingsFile(_Section):
    """Every key, as a file may hold it. Validating a file against this model reads no
    environment, so an error found here belongs to that file alone."""

    home: Path | None = Field(None, description="state dir; default ~/.local/share/runctl")
    read_only: bool = False
    debug: bool = False
    train: TrainSettings = Field(default_factory=TrainSettings)
    logs: LogSettings = Field(default_factory=LogSettings)
    checkpoints: CheckpointSettings = Field(default_factory=CheckpointSettings)
    costs: CostSettings = Field(default_factory=CostSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    ui: UiSettings = Field(default_factory=UiSettings)
    hosts: list[HostSettings] = Field(default_factory=list)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    ssh: SshSettings = Field(default_factory=SshSettings)


class Settings(SettingsFile):
    """All settings. `home` (RUNCTL_HOME) moves every piece of state the app writes."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    # -- derived paths -------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return state_dir(self.home)

    @property
    def runs_root(self) -> Path:
        return self.state_dir / "runs"

    @property
    def store_path(self) -> Path:
        return self.state_dir / "runctl.sqlite3"

    @property
    def oplog_path(self) -> Path:
        return self.state_dir / "operations.jsonl"

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"


def state_dir(home: Path | str | None = None) -> Path:
    if home:
        return Path(home).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "runctl"


def user_config_path() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "runctl" / "config.toml"


def load_settings(project_root: Path | None = None, **overrides: Any) -> Settings:
    """Merge the user file, the project file, the environment and `overrides` (CLI flags)."""
    merged: dict[str, Any] = {}
    files = [user_config_path()]
    if project_root is not None:
        files.append(project_root / PROJECT_FILE_NAME)
    for path in files:
        data = _read_toml(path)
        if data is None:
            continue
        _check_file(path, data)
        _deep_merge(merged, data)
    _deep_merge(merged, {k: v for k, v in overrides.items() if v is not None})
    simple = _simple_environment()
    if simple is not None:
        try:
            return Settings(**{**merged, **simple})
        except ValidationError:
            pass  # pydantic-settings reads it again below and names the variable
    try:
        return _settings_from_environment()(**merged)
    except ValidationError as err:
        raise SettingsError(_describe_env_error(err)) from None


# -- the environment ----------------------------------------------------------------------------
ENV_PREFIX = "RUNCTL_"
# Top-level keys whose variable is one plain value (RUNCTL_HOME=/data/runctl), read as
# pydantic-settings reads it: the string, validated by the field (lax: "true", "1", a path).
SIMPLE_VARIABLES = ("home", "read_only", "debug")


def _simple_environment() -> dict[str, str] | None:
    """The RUNCTL_ variables as keys when each is one of SIMPLE_VARIABLES (none at all is the
    usual case), else None: then pydantic-settings reads the environment. Importing it costs
    tens of ms of every start (20-50 ms measured here), for what these variables never need."""
    found: dict[str, str] = {}
    for name, value in os.environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in SIMPLE_VARIABLES or not value:
            return None
        found[key] = value
    return found


@cache
def _settings_from_environment() -> type[BaseSettings]:
    """`Settings` that also reads RUNCTL_* variables (nested with `__`), over what it is given."""
    from pydantic_settings import (
        BaseSettings,
        PydanticBaseSettingsSource,
        SettingsConfigDict,
    )

    class EnvironmentSettings(BaseSettings, Settings):
        model_config = SettingsConfigDict(
            env_prefix=ENV_PREFIX,
            env_nested_delimiter="__",
            extra="forbid",
            validate_default=True,
        )

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            # Files are read and checked by `load_settings` and arrive as init kwargs, so an
            # error can name its file; only the environment is read here.
            return (env_settings, init_settings)

    return EnvironmentSettings


# -- file reading and error messages ------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise SettingsError(f"{path}: cannot read settings file: {err}") from None
    import tomllib  # only when there is a file: its import is ~10 ms of every start-up

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"{path}: not valid TOML: {err}") from None


def _check_file(path: Path, data: dict[str, Any]) -> None:
    try:
        SettingsFile.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        key = _dotted(first["loc"])
        line = _line_of(path, first["loc"])
        where = f"{path}:{line}" if line else str(path)
        raise SettingsError(f"{where}: key '{key}': {_expected(first)}") from None


def _describe_env_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"] if not isinstance(p, int)]
    var = "RUNCTL_" + "__".join(p.upper() for p in loc)
    return f"environment variable {var}: {_expected(first)}"


def _expected(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (check its spelling; see README 'Settings')"
    if kind == "missing":
        return "required key is missing"
    got = error.get("input")
    return f"{error['msg'].lower()} (got {got!r})"


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(path: Path, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number of the key named by `loc` (the last string part) in `path`."""
    names = [p for p in loc if isinstance(p, str)]
    if not names:
        return None
    key = re.escape(names[-1])
    sections = names[:-1]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    pattern = re.compile(rf"^\s*(?:{key}|\"{key}\")\s*=")
    section_re = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?")
    current: list[str] = []
    fallback = None
    for number, text in enumerate(lines, start=1):
        match = section_re.match(text)
        if match:
            current = match.group(1).split(".")
            if current == names:  # a whole section that is wrong (e.g. unknown table)
                fallback = fallback or number
            continue
        if pattern.match(text):
            if current == sections:
                return number
            fallback = fallback or number
    return fallback


def _deep_merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def python_for_local_runs(settings: Settings) -> str:
    return settings.train.python or sys.executable
