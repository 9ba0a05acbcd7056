"""Textual's `Lazy` (a widget mounted just after the first frame), safe to quit before that.

`Lazy` defers the mount with `call_after_refresh`; when the app is quit in between (a key
pressed as the dashboard opens, or a script that quits at once), its container is already
detached and the deferred mount raised MountError, shown as a traceback on the way out.
"""

from __future__ import annotations

from textual.lazy import Lazy
from textual.widget import Widget


class AfterFirstFrame(Lazy):
    """Mounts the wrapped widget after the first frame, or not at all if the app is closing."""

    async def mount_composed_widgets(self, widgets: list[Widget]) -> None:
        parent = self.parent
        if not isinstance(parent, Widget):
            return

        async def mount() -> None:
            if not (parent.is_attached and self.is_attached):
                return  # closing: nothing to show it in
            await parent.mount(self._replace_widget, after=self)
            await self.remove()

        self.call_after_refresh(mount)
