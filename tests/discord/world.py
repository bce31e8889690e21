"""The simulated server: one guild, its roles, text channels and people, as Discord JSON.

The default world (``World.default()``) is what every test gets unless it adds more:

- users (``world.user(name)``): ``owner`` (the guild owner), ``admin`` (role "Atelier Admin",
  which has no Discord permission of its own: the bot's configuration makes it an admin role),
  ``manager`` (role "Moderator", which has Manage Server), and plain users ``alice``, ``bob``,
  ``carol``. The bot's own user is ``world.bot`` (name "Atelier", role "Atelier Bot").
- channels (``world.channel(name)``): ``general``, ``art``, ``bot-log`` (text channels), with
  no permission overwrites: everyone, the bot included, may post, attach files and embed links.
  ``World.add_channel(name, overwrites)`` makes a channel where roles or members may not.

Everything here is plain data plus the JSON shapes discord.py 2.7 parses; nothing talks to the
network. Add people or channels with ``World.add_user`` / ``World.add_channel`` before the bot
connects (they are part of GUILD_CREATE).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

DISCORD_EPOCH_MS = 1420070400000
JOINED_AT = "2024-01-01T00:00:00+00:00"


class Permission:
    """Discord permission bits used by the fake (see Discord's permissions documentation)."""

    ADMINISTRATOR = 1 << 3
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    USE_EXTERNAL_EMOJIS = 1 << 18
    USE_APPLICATION_COMMANDS = 1 << 31
    ALL = (1 << 51) - 1
    # In a DM there are no roles: the bot may post, attach, embed and react.
    DM = (
        VIEW_CHANNEL
        | SEND_MESSAGES
        | ADD_REACTIONS
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | USE_EXTERNAL_EMOJIS
    )

    EVERYONE = (
        VIEW_CHANNEL
        | SEND_MESSAGES
        | ADD_REACTIONS
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | USE_EXTERNAL_EMOJIS
        | USE_APPLICATION_COMMANDS
    )


# docs/resources/guild.md, "Premium Tier" and Discord's help centre on boosting: the upload limit
# per file is 10 MiB at tiers 0 and 1, 50 MiB at tier 2 and 100 MiB at tier 3.
UPLOAD_LIMITS = {0: 10 * 2**20, 1: 10 * 2**20, 2: 50 * 2**20, 3: 100 * 2**20}


class Snowflakes:
    """Makes increasing Discord ids whose embedded timestamps are the current time."""

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._last = 0

    def next(self) -> int:
        """A new id, larger than every id made before."""
        now_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        candidate = (now_ms << 22) | (next(self._counter) & 0xFFF)
        self._last = max(candidate, self._last + 1)
        return self._last


@dataclass(frozen=True)
class Role:
    """A guild role; ``permissions`` is a bit set of ``Permission`` values."""

    id: int
    name: str
    permissions: int = 0
    position: int = 1
    managed: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }


@dataclass(frozen=True)
class User:
    """A Discord user who is also a member of the guild, with the given roles."""

    id: int
    name: str
    roles: tuple[Role, ...] = ()
    bot: bool = False

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name,
            "global_name": self.name.title(),
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
        }


@dataclass(frozen=True)
class Overwrite:
    """docs/resources/channel.md, "Overwrite Object": permissions allowed and denied in one
    channel to a role (``type`` 0; the guild id is @everyone) or a member (``type`` 1)."""

    id: int
    type: int
    allow: int = 0
    deny: int = 0

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "allow": str(self.allow),
            "deny": str(self.deny),
        }


@dataclass(frozen=True)
class Channel:
    """A text channel of the guild (``guild_id`` set) or a DM channel (``recipient`` set)."""

    id: int
    name: str
    guild_id: int | None = None
    recipient: User | None = None
    position: int = 0
    overwrites: tuple[Overwrite, ...] = ()

    @property
    def is_dm(self) -> bool:
        return self.guild_id is None

    def payload(self) -> dict[str, Any]:
        if self.recipient is not None:
            return {
                "id": str(self.id),
                "type": 1,
                "last_message_id": None,
                "recipients": [self.recipient.payload()],
            }
        return {
            "id": str(self.id),
            "type": 0,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [overwrite.payload() for overwrite in self.overwrites],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
        }


@dataclass
class World:
    """The guild, its roles, channels and members, plus DM channels opened by the bot."""

    ids: Snowflakes
    guild_id: int
    guild_name: str
    bot: User
    owner: User
    everyone: Role
    roles: dict[str, Role] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    dm_channels: dict[int, Channel] = field(default_factory=dict)
    application_id: int = 0
    premium_tier: int = 0  # the server's boost level: its upload limit (``UPLOAD_LIMITS``)

    @classmethod
    def default(cls, ids: Snowflakes | None = None) -> World:
        """The standard test server described in the module docstring."""
        ids = ids or Snowflakes()
        guild_id = ids.next()
        everyone = Role(guild_id, "@everyone", Permission.EVERYONE, position=0)
        bot_role = Role(
            ids.next(),
            "Atelier Bot",
            Permission.EVERYONE | Permission.MANAGE_MESSAGES,
            position=3,
            managed=True,
        )
        bot = User(ids.next(), "atelier", (bot_role,), bot=True)
        owner = User(ids.next(), "owner")
        world = cls(ids, guild_id, "Atelier Test Server", bot, owner, everyone)
        world.application_id = bot.id
        world.roles = {
            role.name: role
            for role in (
                bot_role,
                Role(ids.next(), "Atelier Admin", 0, position=2),
                Role(ids.next(), "Moderator", Permission.MANAGE_GUILD, position=1),
            )
        }
        world.users = {"owner": owner, "atelier": bot}
        world.add_user("admin", roles=("Atelier Admin",))
        world.add_user("manager", roles=("Moderator",))
        for name in ("alice", "bob", "carol"):
            world.add_user(name)
        for name in ("general", "art", "bot-log"):
            world.add_channel(name)
        return world

    def add_user(self, name: str, roles: tuple[str, ...] = ()) -> User:
        """Add a guild member holding the named roles (``world.roles`` keys)."""
        user = User(self.ids.next(), name, tuple(self.roles[role] for role in roles))
        self.users[name] = user
        return user

    def add_role(self, name: str, permissions: int = 0) -> Role:
        """Add a role with the given ``Permission`` bits."""
        role = Role(self.ids.next(), name, permissions, position=len(self.roles) + 1)
        self.roles[name] = role
        return role

    def add_channel(self, name: str, overwrites: tuple[Overwrite, ...] = ()) -> Channel:
        """Add a text channel to the guild, with permission ``overwrites``."""
        channel = Channel(
            self.ids.next(), name, self.guild_id, position=len(self.channels), overwrites=overwrites
        )
        self.channels[name] = channel
        return channel

    def user(self, name: str) -> User:
        return self.users[name]

    def channel(self, name: str) -> Channel:
        return self.channels[name]

    def user_by_id(self, user_id: int) -> User | None:
        return next((user for user in self.users.values() if user.id == user_id), None)

    def channel_by_id(self, channel_id: int) -> Channel | None:
        if channel_id in self.dm_channels:
            return self.dm_channels[channel_id]
        return next((ch for ch in self.channels.values() if ch.id == channel_id), None)

    def dm_channel(self, user: User) -> Channel:
        """The DM channel between the bot and ``user`` (opened on first use, like Discord)."""
        for channel in self.dm_channels.values():
            if channel.recipient == user:
                return channel
        channel = Channel(self.ids.next(), f"dm-{user.name}", recipient=user)
        self.dm_channels[channel.id] = channel
        return channel

    def permissions(self, user: User) -> int:
        """The member's guild permissions: the owner and administrators have all of them."""
        if user.id == self.owner.id:
            return Permission.ALL
        bits = self.everyone.permissions
        for role in user.roles:
            bits |= role.permissions
        return Permission.ALL if bits & Permission.ADMINISTRATOR else bits

    def channel_permissions(self, user: User, channel: Channel) -> int:
        """The member's permissions in ``channel`` (docs/topics/permissions.md, "Permission
        Overwrites"): guild permissions, then the @everyone overwrite, then the member's roles'
        overwrites together (deny, then allow), then the member's own. A DM: ``Permission.DM``."""
        if channel.is_dm:
            return Permission.DM
        bits = self.permissions(user)
        if bits == Permission.ALL:  # the owner and administrators: overwrites do not apply
            return bits
        role_ids = {role.id for role in user.roles}
        for stage in ({self.guild_id}, role_ids):
            matching = [o for o in channel.overwrites if o.type == 0 and o.id in stage]
            deny = allow = 0
            for overwrite in matching:
                deny, allow = deny | overwrite.deny, allow | overwrite.allow
            bits = (bits & ~deny) | allow
        for overwrite in channel.overwrites:
            if overwrite.type == 1 and overwrite.id == user.id:
                bits = (bits & ~overwrite.deny) | overwrite.allow
        return bits

    def member_payload(self, user: User, *, with_user: bool = True) -> dict[str, Any]:
        member: dict[str, Any] = {
            "roles": [str(role.id) for role in user.roles],
            "joined_at": JOINED_AT,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
            "avatar": None,
            "pending": False,
            "premium_since": None,
            "communication_disabled_until": None,
        }
        if with_user:
            member["user"] = user.payload()
        return member

    def guild_payload(self) -> dict[str, Any]:
        """The GUILD_CREATE payload: all roles, channels and members (no chunking needed)."""
        members = list(self.users.values())
        return {
            "id": str(self.guild_id),
            "name": self.guild_name,
            "icon": None,
            "description": None,
            "owner_id": str(self.owner.id),
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": self.premium_tier,
            "system_channel_flags": 0,
            "preferred_locale": "en-US",
            "features": [],
            "roles": [self.everyone.payload()] + [role.payload() for role in self.roles.values()],
            "channels": [channel.payload() for channel in self.channels.values()],
            "members": [self.member_payload(user) for user in members],
            "member_count": len(members),
            "emojis": [],
            "stickers": [],
            "threads": [],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "large": False,
            "unavailable": False,
            "joined_at": JOINED_AT,
        }
