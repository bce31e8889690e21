"""What an interaction looks like on the gateway, and what a person's modal submission sends."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.discord.options import InvalidOptions
from tests.discord.records import InteractionType, walk_components
from tests.discord.world import Channel, User, World


def interaction_payload(
    world: World,
    attachment_size_limit: int,
    interaction_id: int,
    token: str,
    kind: InteractionType,
    user: User,
    channel: Channel,
) -> dict[str, Any]:
    """INTERACTION_CREATE as discord.py 2.7 parses it, without its ``data`` (the caller adds it);
    ``attachment_size_limit`` is required by discord.py (a KeyError without it)."""
    permissions = str(world.channel_permissions(user, channel))
    payload: dict[str, Any] = {
        "id": str(interaction_id),
        "application_id": str(world.application_id),
        "type": int(kind),
        "token": token,
        "version": 1,
        "channel_id": str(channel.id),
        "channel": {**channel.payload(), "permissions": permissions},
        "app_permissions": str(world.channel_permissions(world.bot, channel)),
        "locale": "en-US",
        "entitlements": [],
        "attachment_size_limit": attachment_size_limit,
    }
    if channel.is_dm:
        payload.update(
            user=user.payload(), context=1, authorizing_integration_owners={"1": str(user.id)}
        )
    else:
        member = {**world.member_payload(user), "permissions": permissions}
        payload.update(
            guild_id=str(world.guild_id),
            guild={"id": str(world.guild_id), "locale": "en-US", "features": []},
            guild_locale="en-US",
            member=member,
            context=0,
            authorizing_integration_owners={"0": str(world.guild_id)},
        )
    return payload


def modal_inputs(components: Any) -> list[dict[str, Any]]:
    """The inputs (components with a custom_id) of a modal."""
    return [c for c in walk_components(components) if "custom_id" in c]


def modal_answer(component: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """What a user's submission sends back for one modal component (rows and labels kept)."""
    kind = component["type"]
    if kind == 1:
        return {
            "type": 1,
            "components": [modal_answer(c, values) for c in component["components"]],
        }
    if kind == 18:
        return {"type": 18, "component": modal_answer(component["component"], values)}
    if "custom_id" not in component:
        return {"type": kind}
    custom_id = component["custom_id"]
    if kind == 4:
        value = values.get(custom_id, component.get("value") or "")
        if component.get("required", True) and not value:
            raise InvalidOptions(f"text input {custom_id!r} is required")
        return {"type": 4, "custom_id": custom_id, "value": value}
    return {"type": kind, "custom_id": custom_id, "values": list(values.get(custom_id, []))}
