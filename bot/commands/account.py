"""Your account: `/settings` (personal defaults for `/imagine`) and `/info` (the studio and you).

Personal defaults live in the users table (`Database.set_defaults`); `/imagine` uses them for
every option left out, before the server's `[defaults]`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import UserError
from bot.ui.choices import autocomplete_aspect, autocomplete_model
from bot.ui.fit import MAX_OPTION_CHARS, FittedEmbed, Name
from bot.ui.listings import info_embed
from bot.ui.text import plain
from generation.request import parse_aspect
from generation.text import clean_text
from storage import UserSettings
from storage.credits import Period, period_start

if TYPE_CHECKING:
    from bot.app import AtelierBot

USAGE_PERIOD_S = 30 * 86_400
Resettable = Literal["model", "aspect", "negative", "all"]


class Account(commands.Cog):
    """`/settings` and `/info`."""

    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    @app_commands.command(
        name="settings", description="Your defaults for /imagine (no options: show them)."
    )
    @app_commands.describe(
        model="Your default model.",
        aspect="Your default aspect ratio, such as 16:9.",
        negative="Your default negative prompt (for models that take one).",
        reset="Go back to the server's default for this setting.",
    )
    @app_commands.autocomplete(model=autocomplete_model, aspect=autocomplete_aspect)
    async def settings(
        self,
        interaction: discord.Interaction,
        model: Name | None = None,
        aspect: Name | None = None,
        negative: app_commands.Range[str, 1, MAX_OPTION_CHARS] | None = None,
        reset: Resettable | None = None,
    ) -> None:
        catalogue = self.bot.settings.catalogue
        changes: dict[str, str | None] = {}
        if reset is not None:
            names = ("model", "aspect", "negative") if reset == "all" else (reset,)
            changes = {_COLUMNS[name]: None for name in names}
        if model is not None:
            changes["model"] = catalogue[model].name  # UnknownModel: told with the models there are
        if aspect is not None:
            width, height = parse_aspect(aspect)
            changes["aspect"] = f"{width}:{height}"
        if negative is not None:
            text = clean_text(negative)
            limit = catalogue.default.limits.max_prompt_chars
            if not text or len(text) > limit:
                raise UserError(f"A negative prompt has 1 to {limit:,} characters.")
            await self.bot.studio.check_text(
                interaction.guild_id, text, what="That negative prompt"
            )
            changes["negative_prompt"] = text
        user_id = interaction.user.id
        if changes:
            standing = await self.bot.database.set_defaults(user_id, **changes)  # type: ignore[arg-type]
        else:
            standing = await self.bot.database.get_user(user_id)
        title = "Your defaults are saved" if changes else "Your defaults"
        await interaction.response.send_message(
            embed=self._defaults_embed(standing, title), ephemeral=True
        )

    @app_commands.command(name="info", description="GPUs, models, the queue, and your usage.")
    async def info(self, interaction: discord.Interaction) -> None:
        pool, user_id = self.bot.pool, interaction.user.id
        # The usage query reads the caller's jobs of 30 days, however many: answer first.
        await interaction.response.defer(ephemeral=True, thinking=True)
        snapshot = pool.snapshot(waiting_limit=0)
        waiting, running = pool.user_counts(user_id)
        now = time.time()
        usage = await self.bot.database.user_usage(user_id, now - USAGE_PERIOD_S, now + 1)
        recent = (
            f"last 30 days: {usage.jobs} jobs, {usage.images} images, "
            f"{usage.gpu_seconds:.0f} GPU-seconds"
            if usage
            else "no job in the last 30 days"
        )
        you = f"{waiting} waiting, {running} running now · {recent}"
        if self.bot.settings.catalogue.hosted:
            today = await self.bot.database.spent(period_start(now, Period.DAY), user_id)
            you += f" · API credits today (UTC): {today:g}"
        catalogue = self.bot.settings.catalogue
        embed = info_embed(snapshot, catalogue.values(), you, catalogue.hosted.values())
        await interaction.followup.send(embed=embed, ephemeral=True)

    def _defaults_embed(self, standing: UserSettings, title: str) -> discord.Embed:
        server = self.bot.settings.defaults
        model = server.model or self.bot.settings.catalogue.default.name
        embed = FittedEmbed(
            title=title,
            colour=discord.Colour.blurple(),
            footer="/imagine uses these for every option you leave out.",
        )
        embed.add_field(name="Model", value=_own_or_server(standing.default_model, model))
        embed.add_field(name="Aspect", value=_own_or_server(standing.default_aspect, server.aspect))
        negative = standing.default_negative_prompt
        embed.add_field(
            name="Negative prompt",
            value=plain(negative, 200)  # as text: what a person wrote is never markup
            if negative
            else f"server default ({plain(server.negative_prompt or 'none', 200)})",
            inline=False,
        )
        return embed


_COLUMNS = {"model": "model", "aspect": "aspect", "negative": "negative_prompt"}


def _own_or_server(own: str | None, server: str) -> str:
    return f"`{own}`" if own else f"server default (`{server}`)"  # checked names and ratios


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Account(bot))
