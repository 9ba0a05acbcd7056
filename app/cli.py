"""The `runctl-tui` command: the dashboard by default, plus headless subcommands.

Imports are lazy so `--version`, `--help` and the headless commands stay fast, and the
dashboard paints before boto3 or any cloud client exists.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from app import __version__, gc_pauses

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runctl-tui",
        description=(
            "A keyboard-driven dashboard for ML training runs: instances, runs, live logs with "
            "parsed metrics and ETA, checkpoints and costs. Without a subcommand it opens the "
            "dashboard for the project that holds the current directory."
        ),
    )
    parser.add_argument("--version", action="version", version=f"runctl-tui {__version__}")
    parser.add_argument(
        "--read-only",
        action="store_true",
        default=None,
        help="hide and disable every action that stops, deletes or terminates anything",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=None,
        help="record commands and API calls in the operations log",
    )
    parser.add_argument(
        "--project",
        type=Path,
        default=None,
        help="a directory inside the project (default: the current directory)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    runs = sub.add_parser("runs", help="print the run history")
    runs.add_argument("--json", action="store_true", help="a JSON list of runs")

    metrics = sub.add_parser("metrics", help="parse a training log and print its metrics")
    metrics.add_argument("logfile")
    metrics.add_argument("--json", action="store_true")

    checkpoints = sub.add_parser("checkpoints", help="list checkpoints with their metadata")
    checkpoints.add_argument("path")
    checkpoints.add_argument("--json", action="store_true")

    instances = sub.add_parser("instances", help="list machines of every provider")
    instances.add_argument("--all", action="store_true", help="also instances not managed by us")
    instances.add_argument("--json", action="store_true")

    sync = sub.add_parser("sync", help="sync the project to a configured SSH host")
    sync.add_argument("host")
    sync.add_argument("--dry-run", action="store_true")
    sync.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    gc_pauses.pause_for_startup()
    from app.project import find_project_root

    project_root = find_project_root(args.project)
    with _no_pydantic_plugin_scan():  # the settings' models are built on import
        from app.settings import SettingsError, load_settings

        try:
            settings = load_settings(project_root, read_only=args.read_only, debug=args.debug)
        except SettingsError as err:
            gc_pauses.end_startup_pause()
            print(f"runctl-tui: {err}", file=sys.stderr)
            return EXIT_USAGE
    if args.command is not None:
        gc_pauses.end_startup_pause()

    if args.command is None:
        return run_dashboard(settings, project_root)  # it ends the pause after its first frame
    if args.command == "runs":
        return runs_command(settings, project_root, args.json)
    if args.command == "metrics":
        from app.metrics_report import metrics_main

        return metrics_main(args.logfile, args.json, settings.logs.extra_patterns)
    if args.command == "checkpoints":
        from app.checkpoint_report import checkpoints_main

        return checkpoints_main(args.path, args.json, settings.checkpoints.globs)
    if args.command == "instances":
        from app.instances_report import instances_main

        return instances_main(settings, args.all, args.json)
    if args.command == "sync":
        from app.sync_report import sync_main

        return sync_main(settings, project_root, args.host, args.dry_run, args.json)
    return EXIT_USAGE


@contextlib.contextmanager
def _no_pydantic_plugin_scan() -> Iterator[None]:
    """pydantic scans every installed distribution's entry points for plugins when the first
    model is built (tens of ms before the dashboard can paint); we use none. The variable is
    restored afterwards so training scripts started from here inherit the user's environment."""
    before = os.environ.get("PYDANTIC_DISABLE_PLUGINS")
    os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYDANTIC_DISABLE_PLUGINS"]
        else:
            os.environ["PYDANTIC_DISABLE_PLUGINS"] = before


def run_dashboard(settings, project_root: Path) -> int:
    from app.store import StoreError

    try:
        from app.tui import RunctlApp

        app = RunctlApp(settings=settings, project_root=project_root)
    except StoreError as err:
        gc_pauses.end_startup_pause()
        print(f"runctl-tui: {err}", file=sys.stderr)
        return EXIT_USAGE
    app.run()
    return app.return_code or 0


def runs_command(settings, project_root: Path, as_json: bool) -> int:
    from app.oplog import OperationLog
    from app.runs import RunService
    from app.store import RunStore, StoreError

    try:
        store = RunStore(settings.store_path)
    except StoreError as err:
        print(f"runctl-tui: {err}", file=sys.stderr)
        return EXIT_USAGE
    service = RunService(settings, store, OperationLog(settings.oplog_path), project_root)
    service.refresh(service.local.list_instances()[0])  # statuses as the host says now
    runs = store.runs(limit=100_000)
    if as_json:
        print(json.dumps([run.to_json() for run in runs], indent=2))
        return 0
    if not runs:
        print("No runs yet. Start one from the dashboard: runctl-tui, then press t.")
        return 0
    header = f"{'ID':<23} {'HOST':<16} {'SCRIPT':<28} {'STATUS':<9} {'STARTED':<20} {'ENDED':<20} {'EXIT':>4} {'EPOCH':>7} {'LOSS':>9}"
    print(header)
    for run in runs:
        print(
            f"{run.id:<23} {run.host[:16]:<16} {run.script[:28]:<28} {run.status:<9} "
            f"{_clock(run.started_at):<20} {_clock(run.ended_at):<20} "
            f"{'' if run.exit_code is None else run.exit_code:>4} "
            f"{_epoch(run):>7} {'' if run.last_loss is None else f'{run.last_loss:.4g}':>9}"
        )
    return 0


def _clock(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _epoch(run) -> str:
    if run.last_epoch is None:
        return ""
    epoch = f"{run.last_epoch:g}"
    return f"{epoch}/{run.total_epochs}" if run.total_epochs else epoch


if __name__ == "__main__":
    sys.exit(main())
