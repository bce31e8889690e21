"""`/admin loras list|enable|disable`: which configured LoRAs people may add to their jobs.

A mixin of the `/admin` cog (`bot.commands.admin.Admin`), so the cog's `interaction_check`
guards these commands like every admin command. Storage audits each change in the same
transaction; a disabled LoRA is no longer offered or accepted (jobs already queued keep it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.errors import UserError
from bot.ui.choices import Choices, named_choices
from bot.ui.fit import FittedEmbed, Name, echo, fit_lines
from bot.ui.listings import ADMIN_COLOUR

if TYPE_CHECKING:
    from bot.app import AtelierBot

LIST_CHARS = 3500  # of an embed description's 4096


class AdminLoras:
    """The `/admin loras` subcommands."""

    bot: AtelierBot
    loras = app_commands.Group(name="loras", description="The LoRAs people may use.")

    @loras.command(name="list", description="Every configured LoRA and whether it is offered.")
    async def loras_list(self, interaction: discord.Interaction) -> None:
        disabled = await self.bot.database.disabled_loras()
        lines = []
        for spec in self.bot.settings.loras.values():
            state = "off (configuration)" if not spec.enabled else "on"
            state = "off (admin)" if spec.name in disabled else state
            lines.append(
                f"**{spec.name}** · {spec.family.value} · weight {spec.weight:g} · {state}"
            )
        description = fit_lines(lines, LIST_CHARS, empty="No LoRA is configured ([loras] tables).")
        embed = FittedEmbed(title="LoRAs", description=description, colour=ADMIN_COLOUR)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @loras.command(name="enable", description="Offer a configured LoRA again.")
    @app_commands.describe(name="The LoRA's name.")
    async def loras_enable(self, interaction: discord.Interaction, name: Name) -> None:
        await self._switch(interaction, name, enabled=True)

    @loras.command(name="disable", description="Stop offering a LoRA (queued jobs keep it).")
    @app_commands.describe(name="The LoRA's name.")
    async def loras_disable(self, interaction: discord.Interaction, name: Name) -> None:
        await self._switch(interaction, name, enabled=False)

    @loras_enable.autocomplete("name")
    @loras_disable.autocomplete("name")
    async def _names(self, interaction: discord.Interaction, current: str) -> Choices:
        return named_choices(list(self.bot.settings.loras), current)

    async def _switch(self, interaction: discord.Interaction, name: str, *, enabled: bool) -> None:
        spec = self.bot.settings.loras.get(name)
        if spec is None:
            raise UserError(f"There is no LoRA called {echo(name)} in the configuration.")
        changed = await self.bot.database.set_lora_enabled(name, enabled, by=interaction.user.id)
        word = "on" if enabled else "off"
        if not changed:
            reply = f"The LoRA {name} was already {word}."
        else:
            reply = f"The LoRA {name} is now {word} for new jobs."
        if enabled and not spec.enabled:
            reply += " (The configuration sets `enabled = false` for it: it stays off there.)"
        await interaction.response.send_message(reply, ephemeral=True)
