"""What the fake records: messages (with every version and reaction), attachments, interactions.

Tests read these objects directly. A ``Message``'s current state is its last ``MessageVersion``;
``message.edits`` lists the versions that edits produced, oldest first. An ``InteractionRecord`` is
one INTERACTION_CREATE the fake sent, with the bot's callbacks, its original response message and
follow-ups, real monotonic timestamps (``dispatched_at``, ``responded_at``: for benchmarks) and
``created_at`` on the fake's own clock (``tests.discord.clock``: for Discord's time rules).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from tests.discord.world import DISCORD_EPOCH_MS, User


class CallbackType(IntEnum):
    """Interaction callback (response) types."""

    PONG = 1
    MESSAGE = 4
    DEFERRED_MESSAGE = 5
    DEFERRED_UPDATE = 6
    UPDATE = 7
    AUTOCOMPLETE = 8
    MODAL = 9


class InteractionType(IntEnum):
    """INTERACTION_CREATE types the fake sends."""

    COMMAND = 2
    COMPONENT = 3
    AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


class MessageFlag:
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7
    COMPONENTS_V2 = 1 << 15


MENTION = re.compile(r"<@!?(\d+)>")


def emoji_payload(emoji: str) -> dict[str, Any]:
    """``"🔁"`` → unicode emoji; ``"name:123"`` (as discord.py puts it in URLs) → custom emoji."""
    name, _, emoji_id = emoji.partition(":")
    if emoji_id.isdigit():
        return {"id": emoji_id, "name": name, "animated": False}
    return {"id": None, "name": emoji}


def iso_timestamp(snowflake: int) -> str:
    millis = (snowflake >> 22) + DISCORD_EPOCH_MS
    return datetime.datetime.fromtimestamp(millis / 1000, tz=datetime.UTC).isoformat()


@dataclass(frozen=True)
class Attachment:
    """A stored file, served at ``url`` by the fake (user uploads and the bot's files alike)."""

    id: int
    filename: str
    content_type: str
    data: bytes
    url: str
    description: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
            "description": self.description,
        }


def walk_components(components: Any) -> Iterator[dict[str, Any]]:
    """Every component dict in a (possibly nested, Components V2) component tree."""
    if isinstance(components, dict):
        yield components
        for key in ("components", "component", "accessory"):
            if key in components:
                yield from walk_components(components[key])
    elif isinstance(components, list | tuple):
        for child in components:
            yield from walk_components(child)


@dataclass(frozen=True)
class MessageVersion:
    """One state of a message: what it showed after its creation or after an edit."""

    content: str
    embeds: tuple[dict[str, Any], ...]
    attachments: tuple[Attachment, ...]
    components: tuple[dict[str, Any], ...]
    flags: int


@dataclass(eq=False)
class Message:
    """A message the fake knows: sent by the bot (channel, DM, interaction) or seeded by a test."""

    id: int
    channel_id: int
    guild_id: int | None
    author: User
    versions: list[MessageVersion]
    interaction: InteractionRecord | None = None
    webhook_id: int | None = None
    deleted: bool = False
    reactions: dict[str, list[User]] = field(default_factory=dict)

    @property
    def current(self) -> MessageVersion:
        return self.versions[-1]

    @property
    def content(self) -> str:
        return self.current.content

    @property
    def embeds(self) -> tuple[dict[str, Any], ...]:
        return self.current.embeds

    @property
    def attachments(self) -> tuple[Attachment, ...]:
        return self.current.attachments

    @property
    def components(self) -> tuple[dict[str, Any], ...]:
        return self.current.components

    @property
    def flags(self) -> int:
        return self.current.flags

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlag.EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True while this is a deferred response's "thinking…" placeholder."""
        return bool(self.flags & MessageFlag.LOADING)

    @property
    def edits(self) -> list[MessageVersion]:
        """The versions produced by edits, oldest first (empty if never edited)."""
        return self.versions[1:]

    @property
    def custom_ids(self) -> list[str]:
        """custom_ids of every button / select on the message, in display order."""
        return [c["custom_id"] for c in walk_components(self.components) if "custom_id" in c]

    def component(self, custom_id: str) -> dict[str, Any]:
        """The component with this custom_id (``KeyError`` listing the ones present if none)."""
        for candidate in walk_components(self.components):
            if candidate.get("custom_id") == custom_id:
                return candidate
        raise KeyError(f"no component {custom_id!r} on message {self.id}; has {self.custom_ids}")

    @property
    def mentions(self) -> list[int]:
        return [int(user_id) for user_id in MENTION.findall(self.content)]

    def reaction_users(self, emoji: str) -> list[User]:
        return list(self.reactions.get(emoji, ()))

    def payload(self, bot: User, users: dict[int, User]) -> dict[str, Any]:
        """The message as Discord's REST API and MESSAGE_CREATE return it."""
        version = self.current
        data: dict[str, Any] = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "author": self.author.payload(),
            "content": version.content,
            "timestamp": iso_timestamp(self.id),
            "edited_timestamp": iso_timestamp(self.id) if self.edits else None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [users[uid].payload() for uid in self.mentions if uid in users],
            "mention_roles": [],
            "attachments": [attachment.payload() for attachment in version.attachments],
            "embeds": list(version.embeds),
            "components": list(version.components),
            "pinned": False,
            "type": 0,
            "flags": version.flags,
            "reactions": [
                {
                    "emoji": emoji_payload(emoji),
                    "count": len(reactors),
                    "count_details": {"normal": len(reactors), "burst": 0},
                    "me": bot in reactors,
                    "me_burst": False,
                    "burst_colors": [],
                }
                for emoji, reactors in self.reactions.items()
                if reactors
            ],
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        if self.interaction is not None:
            data["type"] = 20 if self.interaction.type == InteractionType.COMMAND else 19
            data["application_id"] = str(self.interaction.application_id)
            data["interaction_metadata"] = {
                "id": str(self.interaction.id),
                "type": int(self.interaction.type),
                "user": self.interaction.user.payload(),
                "authorizing_integration_owners": {},
            }
        return data


@dataclass(frozen=True)
class Callback:
    """One interaction callback the bot sent: its type, its JSON ``data`` and when it came."""

    type: CallbackType
    data: dict[str, Any]
    at: float


@dataclass(eq=False)
class InteractionRecord:
    """One INTERACTION_CREATE sent to the bot and everything the bot answered to it."""

    id: int
    application_id: int
    token: str
    type: InteractionType
    user: User
    channel_id: int
    payload: dict[str, Any]
    dispatched_at: float
    created_at: float = 0.0
    message: Message | None = None
    callbacks: list[Callback] = field(default_factory=list)
    original: Message | None = None
    followups: list[Message] = field(default_factory=list)
    expired: bool = False

    @property
    def data(self) -> dict[str, Any]:
        return self.payload["data"]

    @property
    def response(self) -> Callback | None:
        """The first callback (Discord accepts only one), or None while unanswered."""
        return self.callbacks[0] if self.callbacks else None

    @property
    def responded_at(self) -> float | None:
        return self.response.at if self.response else None

    @property
    def latency(self) -> float | None:
        """Seconds from dispatching INTERACTION_CREATE to the bot's first callback."""
        return None if self.responded_at is None else self.responded_at - self.dispatched_at

    @property
    def modal(self) -> dict[str, Any] | None:
        """The modal the bot opened in response (callback type 9), if any."""
        response = self.response
        return response.data if response and response.type == CallbackType.MODAL else None

    @property
    def choices(self) -> list[dict[str, Any]] | None:
        """Autocomplete choices the bot returned (callback type 8), if any."""
        response = self.response
        if response and response.type == CallbackType.AUTOCOMPLETE:
            return response.data.get("choices", [])
        return None

    @property
    def messages(self) -> list[Message]:
        """The original response message (if any) followed by the follow-ups."""
        return ([self.original] if self.original else []) + self.followups
