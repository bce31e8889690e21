"""Turns a test's ``{"prompt": "...", "count": 2}`` into the option JSON Discord would send.

Types come from the command the bot synced, as Discord's client does: a value Discord would not
let a user submit (unknown option, missing required option, wrong type, not one of the choices,
outside min/max) raises ``InvalidOptions`` in the test instead of reaching the bot. Values:

- string / integer / number / boolean options: the Python value;
- user / mentionable: a ``world.User``; channel: a ``world.Channel``; role: a ``world.Role``;
- attachment: an ``Upload`` — ``(filename, bytes)`` or ``(filename, bytes, content_type)``.

For autocomplete every value is sent as typed (no checks) and the focused option is marked.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.discord.records import Attachment
from tests.discord.world import Channel, Role, User, World

SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = range(3, 12)

Upload = tuple[str, bytes] | tuple[str, bytes, str]
StoreUpload = Callable[[str, bytes, str], Attachment]


class InvalidOptions(ValueError):
    """The options given to ``FakeDiscord.slash`` are not something Discord would send."""


@dataclass
class ResolvedData:
    """The ``data.resolved`` block: objects referenced by user/channel/role/attachment options."""

    users: dict[str, Any] = field(default_factory=dict)
    members: dict[str, Any] = field(default_factory=dict)
    roles: dict[str, Any] = field(default_factory=dict)
    channels: dict[str, Any] = field(default_factory=dict)
    attachments: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {key: value for key, value in vars(self).items() if value}


def content_type_for(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


class OptionBuilder:
    """Builds ``data`` for one command invocation (type 2) or autocomplete (type 4)."""

    def __init__(self, world: World, store_upload: StoreUpload) -> None:
        self._world = world
        self._store_upload = store_upload

    def build(
        self,
        command: dict[str, Any],
        path: list[str],
        values: Mapping[str, Any],
        *,
        focused: str | None = None,
    ) -> dict[str, Any]:
        """The interaction ``data`` for ``command`` (as synced) invoked as ``path`` (sub-names)."""
        resolved = ResolvedData()
        options = self._level(command, path, values, resolved, focused)
        data: dict[str, Any] = {
            "id": command["id"],
            "name": command["name"],
            "type": command.get("type", 1),
            "options": options,
        }
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        if resolved.payload():
            data["resolved"] = resolved.payload()
        return data

    def _level(
        self,
        parent: dict[str, Any],
        path: list[str],
        values: Mapping[str, Any],
        resolved: ResolvedData,
        focused: str | None,
    ) -> list[dict[str, Any]]:
        declared = {option["name"]: option for option in parent.get("options", [])}
        if path:
            sub = declared.get(path[0])
            if sub is None or sub["type"] not in (SUB_COMMAND, SUB_COMMAND_GROUP):
                raise InvalidOptions(f"{parent['name']!r} has no subcommand {path[0]!r}")
            inner = self._level(sub, path[1:], values, resolved, focused)
            return [{"name": sub["name"], "type": sub["type"], "options": inner}]
        if any(option["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP) for option in declared.values()):
            raise InvalidOptions(f"{parent['name']!r} needs a subcommand: one of {list(declared)}")
        unknown = set(values) - set(declared)
        if unknown:
            raise InvalidOptions(
                f"unknown option(s) {sorted(unknown)}; {parent['name']!r} has {list(declared)}"
            )
        built = []
        for name, option in declared.items():
            if name not in values:
                if option.get("required") and focused is None:
                    raise InvalidOptions(f"required option {name!r} is missing")
                continue
            if focused is not None:
                entry = {"name": name, "type": option["type"], "value": values[name]}
                if name == focused:
                    entry.update(value=str(values[name]), focused=True)
            else:
                entry = {"name": name, "type": option["type"]}
                entry["value"] = self._value(option, values[name], resolved)
            built.append(entry)
        return built

    def _value(self, option: dict[str, Any], value: Any, resolved: ResolvedData) -> Any:
        kind, name = option["type"], option["name"]
        if kind == STRING:
            self._expect(isinstance(value, str), name, "a str", value)
            length = len(value)
            low, high = option.get("min_length", 0), option.get("max_length", 6000)
            if not low <= length <= high:
                raise InvalidOptions(f"{name!r} must be {low}-{high} characters, got {length}")
        elif kind in (INTEGER, NUMBER):
            allowed = int if kind == INTEGER else (int, float)
            self._expect(
                isinstance(value, allowed) and not isinstance(value, bool), name, "a number", value
            )
            low, high = option.get("min_value"), option.get("max_value")
            if (low is not None and value < low) or (high is not None and value > high):
                raise InvalidOptions(f"{name!r} must be between {low} and {high}, got {value}")
        elif kind == BOOLEAN:
            self._expect(isinstance(value, bool), name, "a bool", value)
        else:
            return self._reference(kind, name, value, resolved)
        choices = [choice["value"] for choice in option.get("choices") or ()]
        if choices and value not in choices:
            raise InvalidOptions(f"{name!r} must be one of {choices}, got {value!r}")
        return value

    def _reference(self, kind: int, name: str, value: Any, resolved: ResolvedData) -> str:
        if kind in (USER, MENTIONABLE) and isinstance(value, User):
            resolved.users[str(value.id)] = value.payload()
            member = self._world.member_payload(value, with_user=False)
            member["permissions"] = str(self._world.permissions(value))
            resolved.members[str(value.id)] = member
            return str(value.id)
        if kind in (ROLE, MENTIONABLE) and isinstance(value, Role):
            resolved.roles[str(value.id)] = value.payload()
            return str(value.id)
        if kind == CHANNEL and isinstance(value, Channel):
            channel = value.payload()
            channel["permissions"] = str(self._world.permissions(self._world.bot))
            resolved.channels[str(value.id)] = channel
            return str(value.id)
        if kind == ATTACHMENT and isinstance(value, tuple) and len(value) in (2, 3):
            filename, data = value[0], value[1]
            content_type = value[2] if len(value) == 3 else content_type_for(filename)
            attachment = self._store_upload(filename, data, content_type)
            resolved.attachments[str(attachment.id)] = attachment.payload()
            return str(attachment.id)
        expected = {USER: "a User", MENTIONABLE: "a User or Role", ROLE: "a Role"}.get(
            kind, "a Channel" if kind == CHANNEL else "an Upload (filename, bytes[, content_type])"
        )
        raise InvalidOptions(f"{name!r} must be {expected}, got {value!r}")

    @staticmethod
    def _expect(ok: bool, name: str, expected: str, value: Any) -> None:
        if not ok:
            raise InvalidOptions(f"{name!r} must be {expected}, got {value!r}")


def attachment_option_names(command: dict[str, Any], path: list[str]) -> list[str]:
    """Names of the attachment options of ``command`` invoked as ``path``, in declared order."""
    level = command
    for name in path:
        found = [option for option in level.get("options", []) if option["name"] == name]
        if not found:
            raise InvalidOptions(f"{level['name']!r} has no subcommand {name!r}")
        level = found[0]
    return [option["name"] for option in level.get("options", []) if option["type"] == ATTACHMENT]
