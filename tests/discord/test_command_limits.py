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
    (
        "option-names-unique",
        command(options=[option("a"), option("a")]),
        (0, "options", 1, "name"),
        "APPLICATION_COMMAND_OPTION_NAME_ALREADY_EXISTS",
    ),
    (
        "min-length-at-most-max",
        command(options=[option(min_length=10, max_length=5)]),
        (0, "options", 0, "min_length"),
        "APPLICATION_COMMAND_OPTION_MIN_GT_MAX",
    ),
    (
        "min-value-at-most-max",
        command(options=[option("n", 4, min_value=10, max_value=1)]),
        (0, "options", 0, "min_value"),
        "APPLICATION_COMMAND_OPTION_MIN_GT_MAX",
    ),
    (
        "min-value-only-for-numbers",
        command(options=[option(min_value=1)]),
        (0, "options", 0, "min_value"),
        "APPLICATION_COMMAND_OPTION_INVALID_FOR_TYPE",
    ),
    (
        "max-length-only-for-strings",
        command(options=[option("n", 4, max_length=5)]),
        (0, "options", 0, "max_length"),
        "APPLICATION_COMMAND_OPTION_INVALID_FOR_TYPE",
    ),
    (
        "no-choices-on-boolean",
        command(options=[option("b", 5, choices=[{"name": "a", "value": True}])]),
        (0, "options", 0, "choices"),
        "APPLICATION_COMMAND_OPTION_INVALID_FOR_TYPE",
    ),
    (
        "no-autocomplete-on-boolean",
        command(options=[option("b", 5, autocomplete=True)]),
        (0, "options", 0, "autocomplete"),
        "APPLICATION_COMMAND_OPTION_INVALID_FOR_TYPE",
    ),
    (
        "channel-types-only-for-channels",
        command(options=[option(channel_types=[0])]),
        (0, "options", 0, "channel_types"),
        "APPLICATION_COMMAND_OPTION_INVALID_FOR_TYPE",
    ),
    (
        "group-not-empty",
        command(options=[option("g", 2, options=[])]),
        (0, "options", 0, "options"),
        "BASE_TYPE_BAD_LENGTH",
    ),
    (
        "description-not-blank",
        command(description="   "),
        (0, "description"),
        "BASE_TYPE_REQUIRED",
    ),
    (
        "user-command-no-description",
        {"type": 2, "name": "Info", "description": "nope"},
        (0, "description"),
        "APPLICATION_COMMAND_DESCRIPTION_INVALID",
    ),
    (
        "user-command-no-options",
        {"type": 2, "name": "Info", "description": "", "options": [option()]},
        (0, "options"),
        "APPLICATION_COMMAND_OPTIONS_INVALID",
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


@pytest.mark.parametrize("kind", [2, 3], ids=["user", "message"])
async def test_at_most_15_user_and_15_message_commands(
    fake_discord: FakeDiscord, kind: int
) -> None:
    world = fake_discord.world
    route = f"/applications/{world.application_id}/guilds/{world.guild_id}/commands"
    commands = [{"type": kind, "name": f"Do {i}", "description": ""} for i in range(16)]
    status, answer = await call(fake_discord, "PUT", route, commands)
    assert "APPLICATION_COMMANDS_TOO_MANY" in refused(status, answer)
    status, _ = await call(fake_discord, "PUT", route, commands[:15])
    assert status == 200


async def test_only_the_longest_localization_counts_toward_the_size(
    fake_discord: FakeDiscord,
) -> None:
    """25 options of 100-character descriptions, each also in three languages: about 2,600
    characters as Discord counts them (the longest version of each field), though over 10,000
    if every version counted."""
    world = fake_discord.world
    route = f"/applications/{world.application_id}/guilds/{world.guild_id}/commands"
    localized = {"fr": "d" * 100, "de": "x" * 100, "es-ES": "y" * 100}
    options = [
        option(f"o{i}", description="d" * 100, description_localizations=localized)
        for i in range(25)
    ]
    status, answer = await call(fake_discord, "PUT", route, [command(options=options)])
    assert status == 200, answer
