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
from bot.permissions import require_not_banned
from bot.ui.choices import autocomplete_aspect, autocomplete_model
from bot.ui.embeds import short_prompt
from generation.pool import WorkerStatus
from generation.request import clean_text, parse_aspect
from storage import UserSettings

if TYPE_CHECKING:
    from bot.app import AtelierBot

USAGE_PERIOD_S = 30 * 86_400
Resettable = Literal["model", "aspect", "negative", "all"]


def worker_line(worker: WorkerStatus) -> str:
    """`cpu` · busy with job `12` · holds playground-v2.5; a failed worker says why."""
    if worker.problem:
        return f"`{worker.id}` · ⚠️ not working: {short_prompt(worker.problem, 300)}"
    state = f"busy with job `{worker.job_id}`" if worker.job_id else worker.state.value
    holds = ", ".join(worker.loaded) or "no model"
    return f"`{worker.id}` · {state} · holds {holds}"


class Account(commands.Cog):
    """`/settings` and `/info`."""

    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        await require_not_banned(self.bot, interaction.user)
        return True

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
        model: str | None = None,
        aspect: str | None = None,
        negative: str | None = None,
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
        snapshot = pool.snapshot(waiting_limit=0)
        loaded_on: dict[str, list[str]] = {}
        for worker in snapshot.workers:
            for name in worker.loaded:
                loaded_on.setdefault(name, []).append(worker.id)
        models = [
            f"`{spec.name}` — {spec.title}"
            + (f" · loaded on {', '.join(loaded_on[spec.name])}" if spec.name in loaded_on else "")
            for spec in self.bot.settings.catalogue.values()
        ]
        paused = " · **paused** by an admin" if snapshot.paused else ""
        waiting, running = pool.scheduler.user_counts(user_id)
        now = time.time()
        stats = await self.bot.database.stats(now - USAGE_PERIOD_S, now + 1)
        usage = next((u for u in stats.by_user if u.key == user_id), None)
        recent = (
            f"last 30 days: {usage.jobs} jobs, {usage.images} images, "
            f"{usage.gpu_seconds:.0f} GPU-seconds"
            if usage
            else "no job in the last 30 days"
        )
        embed = discord.Embed(title="Atelier", colour=discord.Colour.blurple())
        embed.add_field(
            name="GPUs", value="\n".join(worker_line(w) for w in snapshot.workers), inline=False
        )
        embed.add_field(name="Models", value="\n".join(models)[:1024], inline=False)
        embed.add_field(
            name="Queue",
            value=f"{snapshot.queued} waiting, {snapshot.running} running{paused}",
            inline=False,
        )
        embed.add_field(
            name="You", value=f"{waiting} waiting, {running} running now · {recent}", inline=False
        )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    def _defaults_embed(self, standing: UserSettings, title: str) -> discord.Embed:
        server = self.bot.settings.defaults
        model = server.model or self.bot.settings.catalogue.default.name
        embed = discord.Embed(title=title, colour=discord.Colour.blurple())
        embed.add_field(name="Model", value=_own_or_server(standing.default_model, model))
        embed.add_field(name="Aspect", value=_own_or_server(standing.default_aspect, server.aspect))
        negative = standing.default_negative_prompt
        embed.add_field(
            name="Negative prompt",
            value=_own_or_server(
                negative and short_prompt(negative, 200), server.negative_prompt or "none"
            ),
            inline=False,
        )
        embed.set_footer(text="/imagine uses these for every option you leave out.")
        return embed


_COLUMNS = {"model": "model", "aspect": "aspect", "negative": "negative_prompt"}


def _own_or_server(own: str | None, server: str) -> str:
    return f"`{own}`" if own else f"server default (`{server}`)"


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Account(bot))
