"""The Edit button's modal: one text input for the instruction, then an edit job
(`Studio.edit`). The button carries the job and image in its custom_id, so it opens the modal
after a restart too; a modal left open across a restart is answered by Discord with "This
interaction failed", and clicking Edit again opens a new one.

Discord's limits (docs/interactions/receiving-and-responding.mdx, "Modal": title ≤ 45 characters,
custom_id ≤ 100; docs/components/reference.mdx, "Text Input": label ≤ 45, placeholder ≤ 100,
max_length ≤ 4000) hold by construction: the title is at most "Edit image 4 of job " and a
19-digit id (39 characters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from bot.editing import MAX_INSTRUCTION_CHARS, NO_EDITING_MODEL
from bot.errors import UserError, report_error
from bot.permissions import admit
from bot.targets import InteractionTarget

if TYPE_CHECKING:
    from bot.studio import Studio

MODAL_TIMEOUT_S = 15 * 60  # an interaction token's lifetime: the modal's answer needs one


class EditModal(discord.ui.Modal):
    """ "Edit image N of job J": what should change."""

    instruction: discord.ui.TextInput[EditModal] = discord.ui.TextInput(
        label="What should change?",
        style=discord.TextStyle.paragraph,
        placeholder="make it a winter scene; keep the fox as it is",
        max_length=MAX_INSTRUCTION_CHARS,
        custom_id="instruction",
    )

    def __init__(self, studio: Studio, job_id: int, index: int) -> None:
        super().__init__(
            title=f"Edit image {index + 1} of job {job_id}",
            custom_id=f"atelier:edit-modal:{job_id}:{index}",
            timeout=MODAL_TIMEOUT_S,
        )
        self.studio = studio
        self.job_id = job_id
        self.index = index

    async def on_submit(self, interaction: discord.Interaction) -> None:
        try:
            record = await self.studio.job(self.job_id, init_image=False)
            await self.studio.edit(
                record,
                self.index,
                self.instruction.value,
                interaction.user,
                InteractionTarget(interaction.client, interaction),
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id,
            )
        except Exception as error:
            await report_error(interaction, error)


async def open_edit_modal(
    studio: Studio, interaction: discord.Interaction, job_id: int, index: int
) -> None:
    """Answer an Edit button's click with the modal, or with why nobody may edit here."""
    try:
        await admit(studio, interaction.user, interaction.guild_id)
        if studio.editing_model() is None:  # the owner took it away since the result was posted
            raise UserError(NO_EDITING_MODEL)
        await interaction.response.send_modal(EditModal(studio, job_id, index))
    except Exception as error:
        await report_error(interaction, error)
