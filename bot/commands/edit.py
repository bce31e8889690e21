"""`/edit job image instruction`: a new job that changes one of your images by an instruction,
with the editing model the owner configures (`bot.editing`). Like `/rerun` and `/vary` it takes
your own jobs only; the Edit button on a result (`bot.ui.edit_modal`) works for everyone. The
option takes up to Discord's 4,000 characters; the editing model's own prompt limit is checked
with a sentence, as `/imagine`'s prompt is (the Edit modal sets it as its box's `max_length`).
The cog also answers the Edit modal's submissions (`bot.ui.edit_modal.submit_edit_modal`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.commands.library import image_index, own_job
from bot.editing import MAX_TEXT_INPUT_CHARS
from bot.targets import InteractionTarget
from bot.ui.edit_modal import submit_edit_modal
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
        # the editing model's own limit is checked with a sentence, as /imagine's prompt is
        instruction: app_commands.Range[str, 1, MAX_TEXT_INPUT_CHARS],
        image: app_commands.Range[int, 1, MAX_COUNT] = 1,
    ) -> None:
        record = await own_job(self.bot, interaction.user, job, init_image=True)
        await self.bot.studio.edit(
            record,
            image_index(record, image),
            instruction,
            interaction.user,
            InteractionTarget(self.bot, interaction),
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            answer_first=functools.partial(interaction.response.defer, thinking=True),
        )

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await submit_edit_modal(self.bot.studio, interaction)


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Editing(bot))
