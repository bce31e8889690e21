"""The fake's recorded state and every change to it, echoed to the bot's gateway like Discord.

Messages the bot creates, edits or deletes and reactions anyone adds or removes are sent back as
MESSAGE_CREATE / MESSAGE_UPDATE / MESSAGE_DELETE / MESSAGE_REACTION_ADD / _REMOVE events (never
for ephemeral messages), so discord.py's message cache and ``on_reaction_add`` work as in
production. Note that, as on Discord, the bot also receives the events for its own reactions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from tests.discord.clock import FakeClock
from tests.discord.faults import RestError
from tests.discord.gateway import Gateway
from tests.discord.records import (
    Attachment,
    InteractionRecord,
    Message,
    MessageVersion,
    emoji_payload,
)
from tests.discord.world import UPLOAD_LIMITS, Channel, User, World

# docs/topics/opcodes-and-status-codes.md, JSON error 30010: "Maximum number of reactions
# reached (20)": at most 20 distinct emoji on one message.
MAX_DISTINCT_REACTIONS = 20


class FakeState:
    """Everything the fake Discord knows, shared by the REST API, the gateway and the tests."""

    def __init__(
        self,
        world: World,
        gateway: Gateway,
        base_url: Callable[[], str],
        changed: Callable[[], None],
    ) -> None:
        self.world = world
        self.gateway = gateway
        self._base_url = base_url
        self.changed = changed
        self.messages: dict[int, Message] = {}
        self.interactions: dict[int, InteractionRecord] = {}
        self.attachments: dict[int, Attachment] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.closed_dms: set[int] = set()
        self.attachment_size_limit = UPLOAD_LIMITS[world.premium_tier]
        self.clock = FakeClock()

    def upload_limit(self, channel: Channel) -> int:
        """The per-file upload limit in ``channel``: the server's (its boost), but in a DM the
        unboosted default whatever the server's boost (docs/resources/guild.md "Premium Tier":
        boosts raise the limit in that server only), and never above the server's limit when
        a test lowered it."""
        if channel.is_dm:
            return min(UPLOAD_LIMITS[0], self.attachment_size_limit)
        return self.attachment_size_limit

    def store_attachment(
        self, filename: str, data: bytes, content_type: str, description: str | None = None
    ) -> Attachment:
        """Keep a file and serve it at ``{base}/attachments/{id}/{filename}``."""
        attachment_id = self.world.ids.next()
        url = f"{self._base_url()}/attachments/{attachment_id}/{quote(filename)}"
        attachment = Attachment(attachment_id, filename, content_type, data, url, description)
        self.attachments[attachment_id] = attachment
        return attachment

    def users_by_id(self) -> dict[int, User]:
        return {user.id: user for user in self.world.users.values()}

    def message_payload(self, message: Message) -> dict[str, Any]:
        return message.payload(self.world.bot, self.users_by_id())

    def interaction_by_token(self, token: str) -> InteractionRecord | None:
        return next((ix for ix in self.interactions.values() if ix.token == token), None)

    def channel_messages(self, channel_id: int) -> list[Message]:
        """Messages visible in a channel (not deleted, not ephemeral), oldest first."""
        return [
            message
            for message in self.messages.values()
            if message.channel_id == channel_id and not message.deleted and not message.ephemeral
        ]

    async def create_message(
        self,
        channel: Channel,
        author: User,
        version: MessageVersion,
        *,
        interaction: InteractionRecord | None = None,
        webhook_id: int | None = None,
    ) -> Message:
        message = Message(
            id=self.world.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            versions=[version],
            interaction=interaction,
            webhook_id=webhook_id,
        )
        self.messages[message.id] = message
        self.changed()
        await self._echo_message("MESSAGE_CREATE", message)
        return message

    async def edit_message(self, message: Message, version: MessageVersion) -> None:
        message.versions.append(version)
        self.changed()
        await self._echo_message("MESSAGE_UPDATE", message)

    async def delete_message(self, message: Message) -> None:
        message.deleted = True
        self.changed()
        if not message.ephemeral:
            await self.gateway.dispatch("MESSAGE_DELETE", self._message_ids(message, "id"))

    async def add_reaction(self, message: Message, user: User, emoji: str) -> None:
        reactors = message.reactions.setdefault(emoji, [])
        if user in reactors:
            return
        distinct = sum(1 for users in message.reactions.values() if users)
        if not reactors and distinct >= MAX_DISTINCT_REACTIONS:
            raise RestError(400, 30010, "Maximum number of reactions reached (20)")
        reactors.append(user)
        self.changed()
        event = self._reaction_event(message, user, emoji)
        event["message_author_id"] = str(message.author.id)
        event["burst_colors"] = []
        if message.guild_id is not None:
            event["member"] = self.world.member_payload(user)
        await self.gateway.dispatch("MESSAGE_REACTION_ADD", event)

    async def remove_reaction(self, message: Message, user: User, emoji: str) -> None:
        reactors = message.reactions.get(emoji, [])
        if user not in reactors:
            return
        reactors.remove(user)
        self.changed()
        await self.gateway.dispatch(
            "MESSAGE_REACTION_REMOVE", self._reaction_event(message, user, emoji)
        )

    def _reaction_event(self, message: Message, user: User, emoji: str) -> dict[str, Any]:
        event = self._message_ids(message, "message_id")
        event.update(user_id=str(user.id), emoji=emoji_payload(emoji), type=0, burst=False)
        return event

    @staticmethod
    def _message_ids(message: Message, id_key: str) -> dict[str, Any]:
        ids = {id_key: str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            ids["guild_id"] = str(message.guild_id)
        return ids

    async def _echo_message(self, event: str, message: Message) -> None:
        if message.ephemeral:
            return
        data = self.message_payload(message)
        if message.guild_id is not None:
            data["member"] = self.world.member_payload(message.author, with_user=False)
        await self.gateway.dispatch(event, data)
