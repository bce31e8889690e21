"""The result message's buttons. Their state lives in the custom_id (`atelier:ACTION:JOB[:IMAGE]`)
and the database, so a click works on any result message, also after a restart.

Layout, within Discord's 5 action rows of at most 5 buttons (docs/components/reference.mdx,
"Action Row") by construction: one row per image action (U, V subtle, V strong, Edit), its
buttons one per image (at most `MAX_COUNT`), then one row of job buttons (🔁 🎲 ℹ️ 🗑️).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, cast

import discord

from bot.actions import Action
from bot.errors import report_error
from bot.targets import InteractionTarget
from bot.ui.edit_modal import open_edit_modal
from generation.request import MAX_COUNT

if TYPE_CHECKING:
    from bot.studio import Studio

_JOB_BUTTONS = (
    (Action.RERUN, "🔁", "Rerun"),
    (Action.REROLL, "🎲", "Reroll"),
    (Action.FINAL, "✅", "Final"),
    (Action.INFO, "ℹ️", "Parameters"),
    (Action.DELETE, "🗑️", "Delete"),
)
_IMAGE_BUTTONS = (
    (Action.UPSCALE, "U{n}", discord.ButtonStyle.primary),
    (Action.VARY_SUBTLE, "V{n} subtle", discord.ButtonStyle.secondary),
    (Action.VARY_STRONG, "V{n} strong", discord.ButtonStyle.secondary),
    (Action.EDIT, "✏️ Edit {n}", discord.ButtonStyle.secondary),
)
MAX_ACTION_ROWS = 5  # docs/components/reference.mdx, "Action Row": 5 rows a message,
MAX_ROW_BUTTONS = 5  # 5 buttons a row
if len(_IMAGE_BUTTONS) + 1 > MAX_ACTION_ROWS or max(MAX_COUNT, len(_JOB_BUTTONS)) > MAX_ROW_BUTTONS:
    raise RuntimeError("The result buttons no longer fit Discord's 5 rows of 5 buttons.")


def custom_id(action: Action, job_id: int, index: int | None = None) -> str:
    """`atelier:vary-subtle:42:0` (image buttons) or `atelier:rerun:42` (job buttons)."""
    suffix = "" if index is None else f":{index}"
    return f"atelier:{action.value}:{job_id}{suffix}"


class ResultButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"atelier:(?P<action>[a-z-]+):(?P<job>\d{1,19})(?::(?P<index>\d))?",
):
    """One button of a result message; clicking it asks the studio to do its action."""

    def __init__(
        self,
        action: Action,
        job_id: int,
        index: int | None = None,
        *,
        label: str | None = None,
        emoji: str | None = None,
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
        row: int | None = None,
    ) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=style,
                custom_id=custom_id(action, job_id, index),
                row=row,
            )
        )
        self.action = action
        self.job_id = job_id
        self.index = index

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Button[Any],
        match: re.Match[str],
        /,
    ) -> ResultButton:
        index = match["index"]
        return cls(
            Action(match["action"]),  # ValueError for an unknown action: discord.py ignores it
            int(match["job"]),
            None if index is None else int(index),
            label=item.label,
            emoji=str(item.emoji) if item.emoji else None,
            style=item.style,
        )

    async def callback(self, interaction: discord.Interaction) -> None:
        studio = cast("Studio", interaction.client.studio)  # type: ignore[attr-defined]
        if self.action is Action.EDIT:
            await open_edit_modal(studio, interaction, self.job_id, self.index or 0)
            return
        try:
            await studio.act(
                self.action,
                self.job_id,
                self.index or 0,
                interaction.user,
                InteractionTarget(interaction.client, interaction),
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id,
                message=interaction.message,
            )
        except Exception as error:
            await report_error(interaction, error)


def result_view(
    job_id: int,
    count: int,
    actions: Collection[Action] = (),
    images: Sequence[int] | None = None,
) -> discord.ui.View:
    """Per image U (upscale), V (vary subtle / strong) and Edit, per job 🔁 🎲 ✅: those in
    `actions` (the ones that make a valid job: `bot.derived.offered_actions`, and Edit where an
    editing model runs and the image makes a valid edit: `bot.editing.edit_offered`); per job
    ℹ️ 🗑️ always. `images` (default: all `count`) are the 0-based images of the message the view
    is on (a result spread over several messages has the buttons of its own images on each)."""
    view = discord.ui.View(timeout=None)
    offered = [button for button in _IMAGE_BUTTONS if button[0] in actions]
    for row, (action, label, style) in enumerate(offered):
        for index in range(count) if images is None else images:
            view.add_item(
                ResultButton(
                    action, job_id, index, label=label.format(n=index + 1), style=style, row=row
                )
            )
    for action, emoji, label in _JOB_BUTTONS:
        if action in (Action.RERUN, Action.REROLL, Action.FINAL) and action not in actions:
            continue
        danger = action is Action.DELETE
        view.add_item(
            ResultButton(
                action,
                job_id,
                label=label,
                emoji=emoji,
                style=discord.ButtonStyle.danger if danger else discord.ButtonStyle.secondary,
                row=len(offered),
            )
        )
    return view
