"""`/edit job image instruction`: a new job that changes one of your images by an instruction,
with the editing model the owner configures (`bot.editing`). Like `/rerun` and `/vary` it takes
your own jobs only; the Edit button on a result (`bot.ui.edit_modal`) works for everyone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.commands.library import image_index, own_job
from bot.editing import MAX_INSTRUCTION_CHARS
from bot.targets import InteractionTarget
from generation.request import MAX_COUNT

if TYPE_CHECKING:
    from bot.app import AtelierBot


class Editing(commands.Cog):
    """`/edit`."""

    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    @app_commands.command(name="edit", description="Change one of your images by an instruction.")
    @app_commands.describe(
        job="The job id (every result message shows it).",
        instruction="What should change, like: make it a winter scene.",
        image=f"Which image of the job (1-{MAX_COUNT}); default 1.",
    )
    async def edit(
        self,
        interaction: discord.Interaction,
        job: app_commands.Range[int, 1],
        instruction: app_commands.Range[str, 1, MAX_INSTRUCTION_CHARS],
        image: app_commands.Range[int, 1, MAX_COUNT] = 1,
    ) -> None:
        record = await own_job(self.bot, interaction.user, job)
        await self.bot.studio.edit(
            record,
            image_index(record, image),
            instruction,
            interaction.user,
            InteractionTarget(self.bot, interaction),
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
        )


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Editing(bot))
