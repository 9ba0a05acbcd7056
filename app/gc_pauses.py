"""Keeping the cyclic garbage collector's pauses off the dashboard's main thread.

A collection walks the objects of its generations holding the GIL, so the main thread (keys,
frames) waits for it whichever thread set it off. Measured with 1,500 EC2 instances
(bench/refresh_key_latency.py), full collections stalled keys by 30-160 ms, several times per
refresh, and found next to nothing to free:

- `freeze_startup_heap()`, once after start-up, leaves what start-up made (Textual, the panes,
  boto3 and its service models: it lives as long as the app) out of every later collection;
- `paused()` around a refresh: botocore's XML tree and dicts of 1,500 instances are acyclic and
  dropped when the refresh ends, yet while they were alive each full collection walked them.

No textual here: the module only decides when the collector runs.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


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
    parser has its own) can only end it early, never leave it off."""
    pause = gc.isenabled()
    if pause:
        gc.disable()
    try:
        yield
    finally:
        if pause:
            gc.enable()
