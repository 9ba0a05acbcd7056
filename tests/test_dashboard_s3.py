"""Checkpoints to S3 from the dashboard, against moto running as a real HTTP server: `B` copies a
local run of the example training to s3://<bucket>/runctl/<project>/<run id>/ with its progress
shown and recorded; the Checkpoints pane marks the rows that are in S3; `b` shows the S3 copy,
where `c` cleans up with the keep-newest-and-best rule and its confirmation, and `w` downloads.
Without a bucket, the keys say which setting is missing."""

# ruff: noqa: F811 - test functions take the imported `moto` fixture by name
from __future__ import annotations

from pathlib import Path

import boto3

from app.s3_checkpoints import list_objects, run_prefix
from app.settings import load_settings
from app.tui import RunctlApp
from tests.moto_server import REGION, MotoServer, moto  # noqa: F401 (a fixture)
from tests.test_dashboard_pilot import confirmation, launch_from_dialog, until
from tests.test_ec2_transport import configure_aws

BUCKET = "ada-checkpoints"


def said(app: RunctlApp, text: str) -> bool:
    return any(text in str(n.message) for n in app._notifications)


def listed(body: str, mark: str) -> set[str]:
    """Names a cleanup confirmation deletes ("-") or keeps ("+")."""
    return {line.split()[1] for line in body.splitlines() if line.startswith(f"  {mark} ")}


def name_cells(app: RunctlApp) -> list[str]:
    table = app.checkpoints_table
    return [str(table.get_row(key.value)[1]) for key in table.rows]


async def test_copy_a_local_run_to_s3_then_mark_clean_up_and_download_there(
    moto: MotoServer, project: Path, isolated_home: Path
) -> None:
    with (project / "runctl.toml").open("a") as toml:
        toml.write("[checkpoints]\nkeep_newest = 1\n")
    configure_aws(project, s3_bucket=BUCKET)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    app = RunctlApp(load_settings(project), project)
    async with app.run_test(size=(120, 36)) as pilot:
        await launch_from_dialog(pilot, app, "--epochs 3 --steps-per-epoch 5 --step-delay 0")
        run = await until(
            pilot,
            lambda: next((r for r in app.store.runs() if r.status == "finished"), None),
            timeout=60,
        )
        table = app.checkpoints_table
        await until(pilot, lambda: app.selected_run_id == run.id and table.row_count == 3)
        assert not any(cell.endswith(" S3") for cell in name_cells(app))

        await pilot.press("B")
        await until(pilot, lambda: said(app, "3 file(s)"), timeout=30)
        prefix = run_prefix(project.name, run.id)
        local = Path(run.checkpoint_dir)
        assert {o.key: o.size for o in list_objects(s3, BUCKET, prefix)} == {
            prefix + p.name: p.stat().st_size for p in local.iterdir()
        }
        progress = app.last_copy_progress
        assert (progress.files_done, progress.files_total) == (3, 3)
        assert (
            progress.bytes_done
            == progress.bytes_total
            == sum(p.stat().st_size for p in local.iterdir())
        )
        [copy] = [op for op in app.oplog.recent if op.name == "checkpoints-to-s3"]
        assert copy.result == "ok" and f"s3://{BUCKET}/{prefix}" in copy.message
        # The rows are marked once the copy is listed.
        await until(pilot, lambda: all(cell.endswith(" S3") for cell in name_cells(app)))

        # The S3 copy in the pane: c keeps the newest (also the best) and deletes the rest.
        await pilot.press("b")
        tab = app.query_one("#lower-tabs").get_tab("tab-checkpoints")
        await until(pilot, lambda: "in S3" in str(tab.label) and table.row_count == 3)
        assert all(key.value.startswith(f"s3://{BUCKET}/{prefix}") for key in table.rows)
        await pilot.press("c")
        _, body = await confirmation(pilot, app)
        # In S3 a file's time is its upload's, so which one was "written last" is up to the
        # clock: epoch 2 goes in any case, epoch 1 unless it was uploaded last.
        deleted, kept = listed(body, "-"), listed(body, "+")
        assert "epoch-0002.ckpt.json" in deleted and "epoch-0003.ckpt.json" in kept
        assert deleted | kept == {f"epoch-000{e}.ckpt.json" for e in (1, 2, 3)}
        await pilot.press("y")
        await until(pilot, lambda: table.row_count == len(kept))
        assert {o.key for o in list_objects(s3, BUCKET, prefix)} == {prefix + n for n in kept}
        assert sorted(p.name for p in local.iterdir()) == [  # the run's own copies stay
            "epoch-0001.ckpt.json",
            "epoch-0002.ckpt.json",
            "epoch-0003.ckpt.json",
        ]

        # w downloads the selected S3 checkpoint where downloads from hosts go.
        table.focus()
        table.move_cursor(row=table.get_row_index(f"s3://{BUCKET}/{prefix}epoch-0003.ckpt.json"))
        await pilot.press("w")
        target = isolated_home / "downloads" / run.host / run.id / "epoch-0003.ckpt.json"
        await until(pilot, target.is_file)
        assert target.read_bytes() == (local / "epoch-0003.ckpt.json").read_bytes()

        # r refuses the S3 copy (the run reads local files); b goes back to the run's own.
        await pilot.press("r")
        await until(pilot, lambda: said(app, "download it first"))
        await pilot.press("b")
        await until(pilot, lambda: "in S3" not in str(tab.label) and table.row_count == 3)


async def test_without_a_bucket_the_keys_say_which_setting_to_set(project: Path) -> None:
    app = RunctlApp(load_settings(project), project)
    async with app.run_test(size=(120, 36)) as pilot:
        await launch_from_dialog(pilot, app, "--epochs 1 --steps-per-epoch 5 --step-delay 0")
        await until(pilot, lambda: app.selected_run is not None, timeout=60)
        await pilot.press("B")
        await until(pilot, lambda: said(app, "No S3 bucket is set"))
        assert said(app, "s3_bucket") and said(app, "[aws]")
        await pilot.press("b")
        assert not app.s3_view
        assert not [op for op in app.oplog.recent if op.name == "checkpoints-to-s3"]
