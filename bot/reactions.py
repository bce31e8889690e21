"""Reactions on result messages: 🔁 rerun, 🎲 reroll, ✨ subtle variation, ✉️ parameters by DM,
❌ delete. `on_raw_reaction_add` fires for every message, cached or not, and the message → job
mapping is in the database, so reactions work on results posted before a restart.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.actions import REACTIONS, Action
from bot.errors import NotAPerson, describe
from bot.permissions import require_posting
from bot.targets import ChannelTarget, Message

if TYPE_CHECKING:
    from bot.app import AtelierBot

log = logging.getLogger(__name__)


# Actions that post nothing in the channel: deleting, and the parameters by DM.
_PRIVATE_ACTIONS = frozenset({Action.DELETE, Action.SEND_DM})


class Reactions(commands.Cog):
    """Turns reactions on result messages into jobs and replies."""

    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        action = REACTIONS.get(str(payload.emoji))
        if action is None or payload.user_id == self.bot.user.id:  # type: ignore[union-attr]
            return
        job_id = await self.bot.database.job_for_message(payload.message_id)
        if job_id is None:
            return  # not a result message
        user = payload.member or await self._user(payload.user_id)
        target = ChannelTarget(
            self.bot, payload.channel_id, payload.user_id, guild_id=payload.guild_id
        )
        channel = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
        try:
            if action not in _PRIVATE_ACTIONS:
                # a reaction's job posts in the channel itself (no interaction to answer through)
                require_posting(self.bot, payload.channel_id, payload.guild_id)
            await self.bot.studio.act(
                action,
                job_id,
                0,
                user,
                target,
                guild_id=payload.guild_id,
                channel_id=payload.channel_id,
                message=channel.get_partial_message(payload.message_id),
            )
        except NotAPerson:
            return  # a bot's reaction: nothing happens, and nobody is told
        except Exception as error:
            await self._tell(target, describe(error).message)

    async def _user(self, user_id: int) -> discord.abc.User:
        return self.bot.get_user(user_id) or await self.bot.fetch_user(user_id)

    async def _tell(self, target: ChannelTarget, text: str) -> None:
        """A reaction has no reply of its own: errors go by DM (or are logged if DMs are shut)."""
        try:
            await target.reply_private(Message(content=text))
        except discord.HTTPException:
            log.info("Could not DM user %s about a reaction: %s", target.user_id, text)


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Reactions(bot))
