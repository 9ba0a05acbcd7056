"""How durations, ages, sizes and money are written everywhere in the dashboard."""

from __future__ import annotations

import math


def duration(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "—"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def age(seconds: float | None) -> str:
    return "—" if seconds is None else f"{duration(seconds)} ago"


def size(num_bytes: int | None) -> str:
    if num_bytes is None:
        return "—"
    value = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def money(usd: float | None, per_hour: bool = False) -> str:
    if usd is None:
        return "—"
    text = f"${usd:,.2f}" if usd >= 0.01 or usd == 0 else f"${usd:.4f}"
    return f"{text}/h" if per_hour else text


def number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "—"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.{digits}g}"
