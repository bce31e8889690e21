"""Where a job's messages go: the interaction that asked for it, or a channel.

A job started by a slash command or a button follows its interaction: the first reply is the
progress message, edited as the job moves and finally turned into the result. Interaction tokens
die after 15 minutes, so a late result falls back to a channel message that mentions the author.
Jobs started by a reaction, and jobs picked up again after a restart, go to the channel directly
(a job picked up again edits its old progress message, whoever posted it, and removes it with the
result).
"""

from __future__ import annotations

import datetime
import io
import logging
from dataclasses import dataclass, replace
from typing import Protocol

import aiohttp
import discord

from bot.attachments import Upload
from bot.ui.fit import fit_content

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 2**20  # unboosted servers, since 2025
TOKEN_LIFETIME = datetime.timedelta(minutes=14)  # Discord says 15; keep a margin for slow edits
# Discord's JSON error codes (docs/topics/opcodes-and-status-codes, "JSON Error Codes")
_UNKNOWN_CHANNEL = 10003
_UNKNOWN_MESSAGE = 10008
_UNKNOWN_WEBHOOK = 10015
_INVALID_WEBHOOK_TOKEN = 50027


@dataclass(slots=True)
class Message:
    """A message to send or an edit to make.

    `uploads` None leaves an edited message's attachments as they are; an empty tuple removes
    them. `mention` is the user the message may ping (nobody else can be pinged).
    """

    content: str | None = None
    embed: discord.Embed | None = None
    uploads: tuple[Upload, ...] | None = None
    view: discord.ui.View | None = None
    mention: int | None = None

    def files(self) -> list[discord.File]:
        """Fresh file objects (a File is consumed by a request, so retries need new ones)."""
        return [discord.File(io.BytesIO(u.data), filename=u.filename) for u in self.uploads or ()]

    def allowed_mentions(self) -> discord.AllowedMentions:
        users = [discord.Object(self.mention)] if self.mention else False
        return discord.AllowedMentions(everyone=False, roles=False, users=users)

    def send_kwargs(self) -> dict[str, object]:
        kwargs: dict[str, object] = {
            "allowed_mentions": self.allowed_mentions(),
            "files": self.files(),
        }
        if self.content is not None:
            kwargs["content"] = self.content
        if self.embed is not None:
            kwargs["embed"] = self.embed
        if self.view is not None:
            kwargs["view"] = self.view
        return kwargs

    def edit_kwargs(self) -> dict[str, object]:
        kwargs: dict[str, object] = {
            "content": self.content,
            "embed": self.embed,
            "view": self.view,
            "allowed_mentions": self.allowed_mentions(),
        }
        if self.uploads is not None:
            kwargs["attachments"] = self.files()
        return kwargs


class Target(Protocol):
    """Where one job's progress and result go."""

    user_id: int
    channel_id: int | None

    @property
    def upload_limit(self) -> int: ...

    @property
    def progress_message_id(self) -> int | None:
        """The message showing the job's progress, once there is one."""

    async def open(self, message: Message) -> None:
        """Post the job's first (progress) message."""

    async def edit(self, message: Message) -> None:
        """Update the progress message (posting it first where there is none)."""

    async def deliver(self, message: Message) -> discord.Message:
        """Show the result; return the message that holds it."""

    async def deliver_more(self, message: Message) -> discord.Message:
        """Post a further message of the result (its next images); return it."""

    async def reply_private(self, message: Message) -> None:
        """Tell only this user something (an ephemeral reply, or a DM)."""


# Discord could not be reached: the connection dropped or failed (discord.py retries only a few
# of these itself, and raises the rest as they are)
UNREACHABLE = (aiohttp.ClientError, OSError)


def is_dead_token(error: discord.HTTPException) -> bool:
    """True when Discord refused an interaction follow-up because its token is gone."""
    return error.status == 401 or error.code in (_INVALID_WEBHOOK_TOKEN, _UNKNOWN_WEBHOOK)


def is_message_gone(error: discord.HTTPException) -> bool:
    """True when the message to edit was deleted (404 Unknown Message); its channel may be
    fine: a new message takes its place."""
    return error.code == _UNKNOWN_MESSAGE


def is_channel_refusal(error: discord.HTTPException) -> bool:
    """True when the channel itself refuses the bot: any 403 (Missing Access, Missing
    Permissions...) or 404 Unknown Channel; never a deleted message (`is_message_gone`)."""
    return error.status == 403 or error.code == _UNKNOWN_CHANNEL


class ChannelTarget:
    """Messages in a channel, mentioning the author; private replies by DM."""

    def __init__(
        self,
        client: discord.Client,
        channel_id: int,
        user_id: int,
        *,
        guild_id: int | None = None,
        progress_message_id: int | None = None,
    ) -> None:
        self._client = client
        self.channel = client.get_partial_messageable(channel_id, guild_id=guild_id)
        self.channel_id: int | None = channel_id
        self.user_id = user_id
        self.guild_id = guild_id
        self._progress_id = progress_message_id

    @property
    def upload_limit(self) -> int:
        guild = self._client.get_guild(self.guild_id) if self.guild_id else None
        return guild.filesize_limit if guild else DEFAULT_UPLOAD_LIMIT

    @property
    def progress_message_id(self) -> int | None:
        return self._progress_id

    async def open(self, message: Message) -> None:
        sent = await self.channel.send(**self._mentioning(message).send_kwargs())
        self._progress_id = sent.id

    async def edit(self, message: Message) -> None:
        """Edit the progress message; post a new one where there is none (or it was deleted)."""
        if self._progress_id is not None:
            try:
                await self.channel.get_partial_message(self._progress_id).edit(
                    **message.edit_kwargs()
                )
                return
            except discord.HTTPException as error:
                if not is_message_gone(error):
                    raise
                log.info("Progress message %s is gone; posting a new one", self._progress_id)
        await self.open(message)

    async def deliver(self, message: Message) -> discord.Message:
        """A new message (so the author is pinged); the progress message is then removed, or,
        where Discord refuses that, turned into a link to the result (never left showing
        progress that has ended)."""
        sent = await self.channel.send(**self._mentioning(message).send_kwargs())
        if self._progress_id is not None:
            progress = self.channel.get_partial_message(self._progress_id)
            try:
                await progress.delete()
            except (discord.HTTPException, *UNREACHABLE) as error:
                log.info("Could not remove progress message %s (%s)", progress.id, error)
                if not is_message_gone(error):  # someone deleted it already
                    await self._point_to(progress, sent)
            self._progress_id = None
        return sent

    @staticmethod
    async def _point_to(progress: discord.PartialMessage, result: discord.Message) -> None:
        note = Message(content=f"⬇️ This job has ended; see {result.jump_url}", uploads=())
        try:
            await progress.edit(**note.edit_kwargs())
        except (discord.HTTPException, *UNREACHABLE) as error:
            log.warning("Progress message %s still shows the job (%s)", progress.id, error)

    async def deliver_more(self, message: Message) -> discord.Message:
        return await self.channel.send(**message.send_kwargs())  # the first one pinged

    def _mentioning(self, message: Message) -> Message:
        mention = f"<@{self.user_id}>"
        content = message.content or ""
        if not content.startswith(mention):
            content = fit_content(f"{mention} {content}".strip())
        return replace(message, content=content, mention=self.user_id)

    async def reply_private(self, message: Message) -> None:
        user = self._client.get_user(self.user_id) or await self._client.fetch_user(self.user_id)
        await user.send(**message.send_kwargs())


class InteractionTarget:
    """The interaction's own reply, with a channel fallback once its token has died."""

    def __init__(self, client: discord.Client, interaction: discord.Interaction) -> None:
        self._client = client
        self._interaction = interaction
        self.user_id = interaction.user.id
        self.channel_id = interaction.channel_id
        self._fallback: ChannelTarget | None = None
        self._progress_id: int | None = None

    @property
    def upload_limit(self) -> int:
        return self._interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT

    @property
    def progress_message_id(self) -> int | None:
        return self._fallback.progress_message_id if self._fallback else self._progress_id

    async def open(self, message: Message) -> None:
        response = self._interaction.response
        if response.is_done():  # deferred (say, while an attachment was downloaded)
            sent = await self._interaction.edit_original_response(**message.edit_kwargs())
            self._progress_id = sent.id
        else:
            answer = await response.send_message(**message.send_kwargs())
            self._progress_id = answer.message_id

    async def edit(self, message: Message) -> None:
        fallback = self._live_fallback()
        if fallback is None:
            try:
                await self._interaction.edit_original_response(**message.edit_kwargs())
                return
            except discord.HTTPException as error:
                fallback = self._fallback_after(error)
        await fallback.edit(message)

    async def deliver(self, message: Message) -> discord.Message:
        fallback = self._live_fallback()
        if fallback is None:
            try:
                return await self._interaction.edit_original_response(**message.edit_kwargs())
            except discord.HTTPException as error:
                fallback = self._fallback_after(error)
        return await fallback.deliver(message)

    async def deliver_more(self, message: Message) -> discord.Message:
        fallback = self._live_fallback()
        if fallback is None:
            try:
                followup = self._interaction.followup
                return await followup.send(wait=True, **message.send_kwargs())  # type: ignore[arg-type]
            except discord.HTTPException as error:
                if not is_dead_token(error):
                    raise
                fallback = self._switch_to_channel()
        return await fallback.deliver_more(message)

    async def reply_private(self, message: Message) -> None:
        kwargs = message.send_kwargs()
        if self._interaction.response.is_done():
            await self._interaction.followup.send(ephemeral=True, **kwargs)  # type: ignore[arg-type]
        else:
            await self._interaction.response.send_message(ephemeral=True, **kwargs)  # type: ignore[arg-type]

    def _live_fallback(self) -> ChannelTarget | None:
        age = discord.utils.utcnow() - self._interaction.created_at
        if self._fallback is None and age >= TOKEN_LIFETIME:
            return self._switch_to_channel()
        return self._fallback

    def _fallback_after(self, error: discord.HTTPException) -> ChannelTarget:
        """The channel to go on in after Discord refused an edit of the reply: its token died,
        or someone deleted the reply (then a new message takes its place); else `error`."""
        if is_message_gone(error):
            log.info("The reply of interaction %s was deleted", self._interaction.id)
            self._progress_id = None
        elif not is_dead_token(error):
            raise error
        return self._switch_to_channel()

    def _switch_to_channel(self) -> ChannelTarget:
        if self._fallback is None:
            log.info("Interaction %s expired; continuing in its channel", self._interaction.id)
            self._fallback = ChannelTarget(
                self._client,
                self._interaction.channel_id or 0,
                self.user_id,
                guild_id=self._interaction.guild_id,
                progress_message_id=self._progress_id,
            )
        return self._fallback
