"""`runctl-tui instances [--all] [--json]`: every machine of every provider, headless.

AWS that is unconfigured, refused or unreachable never fails the command: its rows are
left out, one line on stderr says why and what to do, and the other providers are listed.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from app.aws_session import aws_provider
from app.cost_tracking import track_costs
from app.store import RunStore, StoreError
from providers.base import Instance, ProviderError
from providers.local import LocalProvider


def collect_instances(settings: Any, show_all: bool) -> tuple[list[Instance], list[str]]:
    """(rows of every provider, one-line problems of the providers that could not answer)."""
    from app.sync_report import hosts_provider

    rows: list[Instance] = list(LocalProvider().list_instances())
    problems: list[str] = []
    rows.extend(hosts_provider(settings).list_instances(check=False))
    try:
        provider = aws_provider(settings, show_all=show_all)
        aws_rows = provider.list_instances()
        problems.extend(
            f"AWS {result.region}: {result.error}"
            for result in provider.last_results.values()
            if result.error is not None
        )
        problems.extend(_track_costs(settings, aws_rows, provider))
        rows.extend(aws_rows)
    except ProviderError as err:
        problems.append(f"AWS: {err}")
    return rows, problems


def _track_costs(settings: Any, aws_rows: list[Instance], provider: Any) -> list[str]:
    """Accrued $ and cost warnings from the store's state intervals, as the dashboard has them
    (this listing records the states it sees too)."""
    try:
        store = RunStore(settings.store_path)
    except StoreError as err:
        return [f"costs: {err}"]
    try:
        report = track_costs(
            store, aws_rows, now=time.time(), costs=settings.costs, provider=provider
        )
    finally:
        store.close()
    return report.problems


def _money(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"${value:.{digits}f}"


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m"


def render_table(rows: list[Instance]) -> str:
    header = ("PROVIDER", "ID", "NAME", "TYPE", "GPU", "STATE", "MARKET", "UPTIME", "$/H", "SPENT")
    lines = [header]
    for row in rows:
        lines.append(
            (
                row.provider,
                row.id,
                row.name or "-",
                row.type or "-",
                row.gpu or "-",
                row.state,
                row.lifecycle or "-",
                _uptime(row.uptime_s),
                _money(row.price_per_hour, 3),
                _money(row.accrued_usd),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    for row in rows:
        for warning in row.warnings:
            text.append(f"! {row.id}: {warning}")
    return "\n".join(text)


def instances_main(settings: Any, show_all: bool, as_json: bool) -> int:
    rows, problems = collect_instances(settings, show_all)
    for problem in problems:
        print(f"runctl-tui: {problem}", file=sys.stderr)
    if as_json:
        print(json.dumps([row.to_json() for row in rows], indent=2))
    else:
        print(render_table(rows))
    return 0
