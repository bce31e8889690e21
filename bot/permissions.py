"""Who may do what, decided by the bot itself on every call (Discord's own command permissions
are only a hint in its client, and a server can change them).

- Admin commands: owner ids from the configuration, members holding a configured admin role, or
  members with Manage Server (`Studio.is_admin`). A refused attempt is written to the audit log.
- Every other command: anyone who is not banned.

Both checks raise `app_commands.CheckFailure` subclasses, which the central error handler turns
into an ephemeral reply; used as a cog's `interaction_check`, they guard every command in it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.errors import Banned

if TYPE_CHECKING:
    from bot.app import AtelierBot

REFUSED_ACTION = "admin.refused"


class NotAdmin(app_commands.CheckFailure):
    """Someone who is not an admin called an admin command (or pressed an admin button)."""


class BannedUser(app_commands.CheckFailure):
    """A banned person called a command."""


def command_name(interaction: discord.Interaction) -> str:
    """`/admin ban`: the full name of the command being run (for the audit log and replies)."""
    command = interaction.command
    return f"/{command.qualified_name}" if command is not None else "an admin action"


async def require_admin(bot: AtelierBot, interaction: discord.Interaction) -> None:
    """Return if `interaction.user` is an admin; otherwise audit the attempt and raise
    `NotAdmin`. Nothing else changes."""
    user = interaction.user
    if bot.studio.is_admin(user):
        return
    await bot.database.audit(
        user.id,
        REFUSED_ACTION,
        f"command:{command_name(interaction)}",
        {"guild_id": interaction.guild_id, "channel_id": interaction.channel_id},
    )
    raise NotAdmin(f"{command_name(interaction)} is for this bot's admins only.")


async def require_not_banned(bot: AtelierBot, user: discord.abc.User) -> None:
    """Raise `BannedUser` (with the ban's reason) if `user` is banned from the bot."""
    try:
        await bot.studio.standing(user)
    except Banned as error:
        raise BannedUser(error.message) from None


async def audit_admin_action(
    bot: AtelierBot,
    interaction: discord.Interaction,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Write what an admin did: `action` such as "pool.pause", `target` such as "job:42"."""
    await bot.database.audit(interaction.user.id, action, target, details)
