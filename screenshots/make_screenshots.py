"""Regenerate the SVG screenshots that README.md shows: `python screenshots/make_screenshots.py`.

They are taken from the same scene as the snapshot tests (tests/dashboard_scene.py): a project
with history and a training in progress, at 120x36.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from textual._doc import take_svg_screenshot  # noqa: E402

from tests.dashboard_scene import (  # noqa: E402
    SCENE_HOSTNAME,
    build_scene,
    show_launch_dry_run,
    show_stop_dialog,
    stop_scene,
    wait_until_painted,
)

SIZE = (120, 36)


SHOTS = {
    "dashboard.svg": wait_until_painted,
    "launch-dialog.svg": show_launch_dry_run,
    "stop-confirmation.svg": show_stop_dialog,
}


def main() -> None:
    socket.gethostname = lambda: SCENE_HOSTNAME  # the same pictures on any machine
    for name, before in SHOTS.items():
        app, service, _project = build_scene()
        try:
            svg = take_svg_screenshot(app=app, terminal_size=SIZE, run_before=before)
        finally:
            stop_scene(service)
        (HERE / name).write_text(svg)
        print(f"wrote screenshots/{name}")


if __name__ == "__main__":
    main()
