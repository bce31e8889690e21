"""Who may do what, decided by the bot itself on every call (Discord's own command permissions
and command contexts are only a hint to its client, and a server can change them).

`admit` is the one place that decides whether someone may act at all, for slash commands (the
command tree's `interaction_check`), result buttons, history buttons and reactions alike:
- only people act: a bot's reaction (or any event from a bot account) starts nothing;
- commands work in servers; in DMs only when the owner sets `allow_dms` (`require_place`);
- a banned person is refused, with the ban's reason.

Admin commands also need `require_admin`, in two reaches:
- installation-wide actions (the queue, cancelling others' jobs, pause and resume, bans, limits,
  GPUs, models, stats) act on everyone the bot serves, in every server: only the installation's
  admins may, the configuration's `owner_ids` and members holding one of its `admin_role_ids`
  (`is_installation_admin`);
- a server's own settings (`/admin blocklist …`, `/admin channels …`) change only that server:
  its managers (Manage Server there) may too (`may_manage_server`), as may installation admins.
A refused attempt is written to the audit log. Autocomplete passes the same decisions (it
suggests nothing to whoever may not run the command), without an audit entry per keystroke.

Refusals are `bot.errors.UserError`s; the central error handler turns them into a private reply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.errors import Banned, NotAllowedHere, NotAPerson, UserError, report_error
from bot.ui.text import plain

if TYPE_CHECKING:
    from bot.app import AtelierBot
    from bot.config import Settings
    from bot.studio import Studio
    from storage import UserSettings

DM_REFUSAL = "I only work in servers: use my commands in a server we share."

REFUSED_ACTION = "admin.refused"


# Admin commands that change only the server they are used in (its managers may use them).
SERVER_COMMANDS = ("admin blocklist", "admin channels")


class NotAdmin(app_commands.CheckFailure):
    """Someone who is not an admin called an admin command (or pressed an admin button)."""


def command_name(interaction: discord.Interaction) -> str:
    """`/admin ban`: the full name of the command being run (for the audit log and replies)."""
    command = interaction.command
    return f"/{command.qualified_name}" if command is not None else "an admin action"


def is_installation_admin(settings: Settings, user: discord.abc.User) -> bool:
    """Whether `user` administers the whole installation: one of `owner_ids`, or a member
    holding one of `admin_role_ids`."""
    if user.id in settings.owner_ids:
        return True
    return isinstance(user, discord.Member) and any(
        role.id in settings.admin_role_ids for role in user.roles
    )


def may_manage_server(settings: Settings, user: discord.abc.User, guild_id: int | None) -> bool:
    """Whether `user` may change what belongs to server `guild_id` alone (its blocklist and
    channels, its members' jobs): an installation admin, or a member with Manage Server there."""
    if is_installation_admin(settings, user):
        return True
    return (
        guild_id is not None
        and isinstance(user, discord.Member)
        and user.guild.id == guild_id
        and user.guild_permissions.manage_guild
    )


def _may_run(settings: Settings, interaction: discord.Interaction) -> bool:
    name = command_name(interaction).removeprefix("/")
    if name.startswith(SERVER_COMMANDS):
        return may_manage_server(settings, interaction.user, interaction.guild_id)
    return is_installation_admin(settings, interaction.user)


async def require_admin(bot: AtelierBot, interaction: discord.Interaction) -> None:
    """Return if `interaction.user` may run this admin command (see the module); otherwise
    audit the attempt and raise `NotAdmin`. Nothing else changes."""
    user = interaction.user
    if _may_run(bot.settings, interaction):
        return
    await bot.audit_trail.record(
        user.id,
        REFUSED_ACTION,
        f"command:{command_name(interaction)}",
        {"guild_id": interaction.guild_id, "channel_id": interaction.channel_id},
    )
    name = command_name(interaction)
    if name.removeprefix("/").startswith(SERVER_COMMANDS):
        raise NotAdmin(
            f"{name} is for this server's managers (Manage Server) and this bot's admins."
        )
    if may_manage_server(bot.settings, user, interaction.guild_id):
        raise NotAdmin(
            f"{name} acts on every server this bot serves, so it is for this bot's admins only "
            "(the owner's `owner_ids` and `admin_role_ids`); Manage Server covers this server's "
            "`/admin blocklist` and `/admin channels`."
        )
    raise NotAdmin(f"{name} is for this bot's admins only.")


async def admit(studio: Studio, user: discord.abc.User, guild_id: int | None) -> UserSettings:
    """The standing (limits, defaults) of `user` acting in server `guild_id` (None: a DM).

    Raises `NotAPerson` for a bot account, `NotAllowedHere` for a DM that the configuration
    does not allow, and `Banned` for a banned person; nothing else changes.
    """
    if user.bot:
        raise NotAPerson(f"{user.id} is a bot; only people act.")
    require_place(studio.settings, guild_id)
    standing = await studio.database.get_user(user.id)
    if standing.banned:
        reason = f" ({plain(standing.ban_reason, 400)})" if standing.ban_reason else ""
        raise Banned(f"You are banned from using this bot{reason}.")
    return standing


def require_place(settings: Settings, guild_id: int | None) -> None:
    """Raise `NotAllowedHere` for a DM (`guild_id` None) unless `allow_dms` is set."""
    if guild_id is None and not settings.allow_dms:
        raise NotAllowedHere(DM_REFUSAL)


def command_contexts(settings: Settings) -> app_commands.AppCommandContext:
    """Where Discord offers the commands (declared when they are synced): servers, and DMs
    with the bot when `allow_dms` is set; never group DMs."""
    return app_commands.AppCommandContext(
        guild=True, dm_channel=settings.allow_dms, private_channel=False
    )


# Installed to servers only: a user install would offer the commands in servers without the bot.
COMMAND_INSTALLS = app_commands.AppInstallationType(guild=True, user=False)


async def audit_admin_action(
    bot: AtelierBot,
    interaction: discord.Interaction,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> str:
    """Write what an admin did (it has happened): `action` such as "pool.pause", `target` such
    as "job:42". Returns what to add to the admin's reply: "" once written, or a sentence
    saying the entry is kept for when the database takes writes again (`bot.audit`)."""
    note = await bot.audit_trail.record(interaction.user.id, action, target, details)
    return f"\n{note}" if note else ""


class AdmittingTree(app_commands.CommandTree):
    """The command tree: every slash command, and every autocomplete, passes `admit` before it
    runs (a new command cannot forget it); an `/admin` autocomplete also needs the reach its
    command needs. Whoever may not gets an error reply, or no suggestions."""

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        studio: Studio = self.client.studio  # type: ignore[attr-defined]
        completing = interaction.type is discord.InteractionType.autocomplete
        try:
            await admit(studio, interaction.user, interaction.guild_id)
        except UserError as error:
            if completing:
                await interaction.response.autocomplete([])
            else:
                await report_error(interaction, error)
            return False
        admin = command_name(interaction).startswith("/admin ")
        if completing and admin and not _may_run(studio.settings, interaction):
            await interaction.response.autocomplete([])
            return False
        return True


# What posting a result in a channel takes: the message, its image files and its embed
# (Discord answers 403 / 50013 Missing Permissions otherwise; docs/topics/permissions.md).
_POSTING = {
    "view_channel": "View Channel",
    "send_messages": "Send Messages",
    "attach_files": "Attach Files",
    "embed_links": "Embed Links",
}


def require_posting(client: discord.Client, channel_id: int, guild_id: int | None) -> None:
    """`UserError` naming what the bot lacks to post results in a server channel (from its
    roles and the channel's overwrites, as cached); nothing to check in a DM or an unknown
    channel."""
    guild = client.get_guild(guild_id) if guild_id else None
    channel = guild.get_channel_or_thread(channel_id) if guild else None
    if guild is None or channel is None:
        return
    have = channel.permissions_for(guild.me)
    missing = [label for name, label in _POSTING.items() if not getattr(have, name)]
    if missing:
        raise UserError(
            f"I can't post results in {channel.mention}: I lack {', '.join(missing)} there. "
            "A server admin can grant it."
        )
