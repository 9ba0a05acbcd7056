"""The arrows of DESIGN.md point one way: providers import neither app nor textual, the domain
services in app/ import no textual, widgets import no providers. Checked by importing each
group in a fresh interpreter and looking at what got loaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOMAIN_SERVICES = [
    "app.checkpoints",
    "app.costs",
    "app.cost_tracking",
    "app.deps",
    "app.eta",
    "app.gc_pauses",
    "app.log_history",
    "app.log_index",
    "app.logfollow",
    "app.logparse",
    "app.oplog",
    "app.project",
    "app.remote_logfollow",
    "app.remote_sources",
    "app.run_metrics",
    "app.runs",
    "app.s3_backup",
    "app.settings",
    "app.spot_interruptions",
    "app.store",
    "app.sync",
    "app.uncopied_checkpoints",
]


def modules_of(package: str) -> list[str]:
    return sorted(
        f"{package}.{path.stem}"
        for path in (REPO / package).glob("*.py")
        if path.stem != "__init__"
    )


def loaded_after_importing(modules: list[str]) -> set[str]:
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('\\n'.join(sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    return set(done.stdout.split())


def top_level(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def test_providers_import_neither_app_nor_textual() -> None:
    providers = modules_of("providers")
    assert "providers.aws" in providers and "providers.ssh" in providers
    loaded = top_level(loaded_after_importing(providers))
    assert "textual" not in loaded
    assert "app" not in loaded and "widgets" not in loaded


def test_domain_services_import_no_textual_and_no_boto3() -> None:
    loaded = top_level(loaded_after_importing(DOMAIN_SERVICES))
    assert "textual" not in loaded
    assert "boto3" not in loaded  # the cloud client loads when AWS is used, not before


def test_widgets_import_no_providers() -> None:
    loaded = top_level(loaded_after_importing(modules_of("widgets")))
    assert "providers" not in loaded
    assert "boto3" not in loaded
