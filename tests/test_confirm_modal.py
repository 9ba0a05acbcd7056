"""The confirmation dialog: Cancel has the focus from its first frame, so an Enter that
arrives the moment it shows never confirms."""

from __future__ import annotations

import pytest
from textual.app import App

from widgets.confirm_modal import ConfirmModal


@pytest.mark.parametrize("require_typing", [None, "i-0abc"])
async def test_enter_the_moment_the_dialog_shows_cancels(require_typing: str | None) -> None:
    answers: list[bool | None] = []
    app = App()
    async with app.run_test() as pilot:
        dialog = ConfirmModal(
            "Terminate i-0abc?", "Destroys i-0abc.", require_typing=require_typing
        )
        await app.push_screen(dialog, answers.append)
        assert dialog.focused is not None and dialog.focused.id == "cancel"
        await pilot.press("enter")
        await pilot.pause()
    assert answers == [False]
