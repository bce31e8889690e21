"""`/admin gpus`, `/admin models list|load|unload|pin`, `/admin worker fail|restore`: the GPU
workers and the models they hold.

A mixin of the `/admin` cog (`bot.commands.admin.Admin`), so the cog's `interaction_check`
guards these commands like every admin command. What the worker pool does (load, unload, pin,
mark failed, restore) is audited once it is done, through `bot.permissions.audit_admin_action`;
the views (`gpus`, `models list`) are not changes and are not audited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.permissions import audit_admin_action
from bot.ui.choices import autocomplete_gpu, autocomplete_model
from bot.ui.fit import Name, echo
from bot.ui.listings import gpus_embed, models_embed
from storage.people import MAX_REASON_CHARS

if TYPE_CHECKING:
    from bot.app import AtelierBot


class AdminGpus:
    """The `/admin gpus`, `/admin models` and `/admin worker` subcommands."""

    bot: AtelierBot
    models = app_commands.Group(name="models", description="Models loaded on each GPU.")
    worker = app_commands.Group(name="worker", description="Take a GPU worker out of service.")

    @app_commands.command(name="gpus", description="Each GPU worker: state, job, models, memory.")
    async def gpus(self, interaction: discord.Interaction) -> None:
        embed = gpus_embed(self.bot.pool.snapshot(waiting_limit=0).workers)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @models.command(name="list", description="The models each GPU holds and may run.")
    async def models_list(self, interaction: discord.Interaction) -> None:
        workers = self.bot.pool.snapshot(waiting_limit=0).workers
        await interaction.response.send_message(embed=models_embed(workers), ephemeral=True)

    @models.command(name="load", description="Load a model on a GPU now.")
    @app_commands.describe(gpu="Which GPU worker.", model="Which model.")
    @app_commands.autocomplete(gpu=autocomplete_gpu, model=autocomplete_model)
    async def models_load(self, interaction: discord.Interaction, gpu: Name, model: Name) -> None:
        await self._model_command(interaction, "load", gpu, model)

    @models.command(name="unload", description="Unload a model from a GPU (unpinning it).")
    @app_commands.describe(gpu="Which GPU worker.", model="Which model.")
    @app_commands.autocomplete(gpu=autocomplete_gpu, model=autocomplete_model)
    async def models_unload(self, interaction: discord.Interaction, gpu: Name, model: Name) -> None:
        await self._model_command(interaction, "unload", gpu, model)

    @models.command(name="pin", description="Keep a model loaded on a GPU, across restarts too.")
    @app_commands.describe(gpu="Which GPU worker.", model="Which model.")
    @app_commands.autocomplete(gpu=autocomplete_gpu, model=autocomplete_model)
    async def models_pin(self, interaction: discord.Interaction, gpu: Name, model: Name) -> None:
        await self._model_command(interaction, "pin", gpu, model)

    async def _model_command(
        self, interaction: discord.Interaction, verb: str, gpu: str, model: str
    ) -> None:
        pool = self.bot.pool
        action = {"load": pool.load_model, "unload": pool.unload_model, "pin": pool.pin}[verb]
        await interaction.response.defer(ephemeral=True, thinking=True)  # loading takes a while
        await action(gpu, model)  # PoolError / ModelUnavailable: told as they are
        note = await audit_admin_action(
            self.bot, interaction, f"worker.{verb}_model", f"worker:{gpu}", {"model": model}
        )
        done = {"load": "Loaded", "unload": "Unloaded", "pin": "Pinned"}[verb]
        await interaction.followup.send(
            f"✅ {done} {echo(model)} on {echo(gpu)}.{note}", ephemeral=True
        )

    @worker.command(name="fail", description="Take a GPU out: its waiting jobs fail.")
    @app_commands.describe(gpu="Which GPU worker.", reason="Why (shown to those whose jobs fail).")
    @app_commands.autocomplete(gpu=autocomplete_gpu)
    async def worker_fail(
        self,
        interaction: discord.Interaction,
        gpu: app_commands.Range[str, 1, 100],
        reason: app_commands.Range[str, 1, MAX_REASON_CHARS],
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.bot.pool.mark_failed(gpu, reason)  # PoolError: told as it is
        note = await audit_admin_action(
            self.bot, interaction, "worker.mark_failed", f"worker:{gpu}", {"reason": reason}
        )
        await interaction.followup.send(
            f"✅ `{gpu}` is out of service; its waiting jobs that no other GPU can run have "
            f"failed with your reason. `/admin worker restore` brings it back.{note}",
            ephemeral=True,
        )

    @worker.command(name="restore", description="Start a GPU worker again (or try a failed one).")
    @app_commands.describe(gpu="Which GPU worker.")
    @app_commands.autocomplete(gpu=autocomplete_gpu)
    async def worker_restore(
        self, interaction: discord.Interaction, gpu: app_commands.Range[str, 1, 100]
    ) -> None:
        self.bot.pool.restore(gpu)  # PoolError: told as it is
        note = await audit_admin_action(
            self.bot, interaction, "worker.restore", f"worker:{gpu}", {}
        )
        await interaction.response.send_message(f"✅ Starting `{gpu}` again.{note}", ephemeral=True)
