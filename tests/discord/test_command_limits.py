"""The fake refuses application commands Discord refuses on sync (``tests.discord.command_limits``),
one test per documented rule, sent over real HTTP as discord.py's ``CommandTree.sync`` sends them.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.discord import FakeDiscord
from tests.discord.probes import Body, call, refused


def command(**fields: Any) -> Body:
    return {"name": "imagine", "type": 1, "description": "Make images", **fields}


def option(name: str = "prompt", kind: int = 3, **fields: Any) -> Body:
    return {"name": name, "type": kind, "description": "An option", **fields}


COMMAND_CASES: list[tuple[str, Body, tuple[str | int, ...], str]] = [
    ("name-lowercase", command(name="Imagine"), (0, "name"), "APPLICATION_COMMAND_INVALID_NAME"),
    ("name-32", command(name="x" * 33), (0, "name"), "APPLICATION_COMMAND_INVALID_NAME"),
    (
        "name-characters",
        command(name="make images"),
        (0, "name"),
        "APPLICATION_COMMAND_INVALID_NAME",
    ),
    ("description-100", command(description="x" * 101), (0, "description"), "BASE_TYPE_BAD_LENGTH"),
    ("description-non-empty", command(description=""), (0, "description"), "BASE_TYPE_BAD_LENGTH"),
    (
        "options-25",
        command(options=[option(f"o{i}") for i in range(26)]),
        (0, "options"),
        "BASE_TYPE_MAX_LENGTH",
    ),
    (
        "choices-25",
        command(options=[option(choices=[{"name": str(i), "value": str(i)} for i in range(26)])]),
        (0, "options", 0, "choices"),
        "BASE_TYPE_MAX_LENGTH",
    ),
    (
        "option-description-100",
        command(options=[option(description="x" * 101)]),
        (0, "options", 0, "description"),
        "BASE_TYPE_BAD_LENGTH",
    ),
    (
        "required-first",
        command(options=[option("a"), option("b", required=True)]),
        (0, "options"),
        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
    ),
    (
        "subcommand-nesting",
        command(options=[option("sub", 1, options=[option("inner", 1)])]),
        (0, "options", 0, "options", 0, "type"),
        "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
    ),
    (
        "subcommands-not-mixed",
        command(options=[option("sub", 1), option("plain")]),
        (0, "options"),
        "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
    ),
    (
        "max-length-6000",
        command(options=[option(max_length=6001)]),
        (0, "options", 0, "max_length"),
        "NUMBER_TYPE_OUT_OF_RANGE",
    ),
    (
        "combined-size-8000",
        command(
            options=[
                option(
                    f"o{i}",
                    description="d" * 100,
                    choices=[{"name": "n" * 100, "value": "v" * 100} for _ in range(2)],
                )
                for i in range(20)
            ]
        ),
        (0,),
        "APPLICATION_COMMAND_TOO_LARGE",
    ),
]


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [case[1:] for case in COMMAND_CASES],
    ids=[case[0] for case in COMMAND_CASES],
)
async def test_command_limits_on_sync(
    fake_discord: FakeDiscord, body: Body, path: tuple[str | int, ...], code: str
) -> None:
    world = fake_discord.world
    route = f"/applications/{world.application_id}/guilds/{world.guild_id}/commands"
    status, answer = await call(fake_discord, "PUT", route, [body])
    assert code in refused(status, answer, *path)
    assert fake_discord.commands == {}
