"""Keeping the cyclic garbage collector's pauses off the dashboard's main thread.

A collection walks the objects of its generations holding the GIL, so the main thread (keys,
frames) waits for it whichever thread set it off. Measured with 1,500 EC2 instances
(bench/refresh_key_latency.py), full collections stalled keys by 30-160 ms, several times per
refresh, and found next to nothing to free:

- `freeze_startup_heap()`, once after start-up, leaves what start-up made (Textual, the panes,
  boto3 and its service models: it lives as long as the app) out of every later collection;
- `paused()` around a refresh: botocore's XML tree and dicts of 1,500 instances are acyclic and
  dropped when the refresh ends, yet while they were alive each full collection walked them;
- `pause_for_startup()` / `end_startup_pause()`: from the command's start to the dashboard's
  first frame, imports and widgets allocate a lot and free almost nothing, so collections then
  are pure cost (~10% of the time to the first frame, measured with bench/startup.py).

No textual here: the module only decides when the collector runs.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_startup_paused = False


def pause_for_startup() -> None:
    """No collections until `end_startup_pause()` (the dashboard calls it after its first
    frame; other commands right after their settings are read)."""
    global _startup_paused
    if gc.isenabled():
        gc.disable()
        _startup_paused = True


def end_startup_pause() -> None:
    """Collections again, if `pause_for_startup` stopped them (and only then)."""
    global _startup_paused
    if _startup_paused:
        _startup_paused = False
        gc.enable()


def freeze_startup_heap() -> None:
    """Collect what start-up left behind, then freeze the rest (gc.freeze: kept out of all
    later collections)."""
    gc.collect()
    gc.freeze()


def thaw() -> None:
    """When the app ends: what was frozen can be collected again (a process that starts
    another app, as the tests do, would otherwise keep every earlier one)."""
    gc.unfreeze()


@contextmanager
def paused() -> Iterator[None]:
    """The collector off for the block, as it was after. Pauses in other threads (the log
    parser pauses it too) can only end it early, never leave it off."""
    pause = gc.isenabled()
    if pause:
        gc.disable()
    try:
        yield
    finally:
        if pause:
            gc.enable()
