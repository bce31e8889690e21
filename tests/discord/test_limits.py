"""The fake refuses what Discord refuses: one test per documented limit (``tests.discord.limits``),
each sent over real HTTP as a bot would send it, checked for Discord's status, code and errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import discord
import pytest
from discord import app_commands

from tests.discord import FakeDiscord, InteractionRecord, run_bot
from tests.discord.probes import Body, MiB, assert_message_refused, call, refused
from tests.discord.spec import spec_validator


def button(custom_id: str | None = "b", **extra: Any) -> Body:
    data: Body = {"type": 2, "style": 1, "label": "Go", **extra}
    if custom_id is not None:
        data["custom_id"] = custom_id
    return data


def row(*children: Body) -> Body:
    return {"type": 1, "components": list(children)}


def embed(**fields: Any) -> Body:
    return {"type": "rich", **fields}


def field(name: str = "n", value: str = "v") -> Body:
    return {"name": name, "value": value, "inline": False}


# (id, body, path of the error, expected code)
MESSAGE_CASES: list[tuple[str, Body, tuple[str | int, ...], str]] = [
    ("content-2000", {"content": "x" * 2001}, ("content",), "BASE_TYPE_MAX_LENGTH"),
    ("embeds-10", {"embeds": [embed(title="t")] * 11}, ("embeds",), "BASE_TYPE_MAX_LENGTH"),
    (
        "embed-title-256",
        {"embeds": [embed(title="x" * 257)]},
        ("embeds", 0, "title"),
        "BASE_TYPE_MAX_LENGTH",
    ),
    (
        "embed-description-4096",
        {"embeds": [embed(description="x" * 4097)]},
        ("embeds", 0, "description"),
        "BASE_TYPE_MAX_LENGTH",
    ),
    (
        "embed-fields-25",
        {"embeds": [embed(fields=[field()] * 26)]},
        ("embeds", 0, "fields"),
        "BASE_TYPE_MAX_LENGTH",
    ),
    (
        "field-name-256",
        {"embeds": [embed(fields=[field(name="x" * 257)])]},
        ("embeds", 0, "fields", 0, "name"),
        "BASE_TYPE_MAX_LENGTH",
    ),
    (
        "field-value-1024",
        {"embeds": [embed(fields=[field(), field(value="x" * 1025)])]},
        ("embeds", 0, "fields", 1, "value"),
        "BASE_TYPE_MAX_LENGTH",
    ),
    (
        "field-value-non-empty",
        {"embeds": [embed(fields=[field(value="")])]},
        ("embeds", 0, "fields", 0, "value"),
        "BASE_TYPE_REQUIRED",
    ),
    (
        "field-name-non-empty",
        {"embeds": [embed(fields=[field(name=" ")])]},
        ("embeds", 0, "fields", 0, "name"),
        "BASE_TYPE_REQUIRED",
    ),
    (
        "footer-2048",
        {"embeds": [embed(footer={"text": "x" * 2049})]},
        ("embeds", 0, "footer", "text"),
        "BASE_TYPE_MAX_LENGTH",
    ),
    (
        "author-name-256",
        {"embeds": [embed(author={"name": "x" * 257})]},
        ("embeds", 0, "author", "name"),
        "BASE_TYPE_MAX_LENGTH",
    ),
    (
        "embeds-total-6000",
        {"embeds": [embed(description="x" * 3000), embed(description="x" * 3000, title="t")]},
        ("embeds",),
        "MAX_EMBED_SIZE_EXCEEDED",
    ),
    (
        "attachments-10",
        {"content": "x", "attachments": [{"id": str(i)} for i in range(11)]},
        ("attachments",),
        "BASE_TYPE_MAX_LENGTH",
    ),
    (
        "allowed-mentions-parse-and-list",
        {"content": "x", "allowed_mentions": {"parse": ["users"], "users": ["1"]}},
        ("allowed_mentions",),
        "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
    ),
    (
        "flags-per-route",
        {"content": "x", "flags": 1 << 6},  # EPHEMERAL: only for interaction messages
        ("flags",),
        "MESSAGE_FLAGS_INVALID",
    ),
    (
        "action-rows-5",
        {"components": [row(button(f"b{i}")) for i in range(6)]},
        ("components",),
        "BASE_TYPE_MAX_LENGTH",
    ),
    (
        "buttons-per-row-5",
        {"components": [row(*(button(f"b{i}") for i in range(6)))]},
        ("components", 0, "components"),
        "BASE_TYPE_BAD_LENGTH",
    ),
    (
        "custom-id-100",
        {"components": [row(button("x" * 101))]},
        ("components", 0, "components", 0, "custom_id"),
        "BASE_TYPE_BAD_LENGTH",
    ),
    (
        "custom-id-non-empty",
        {"components": [row(button(""))]},
        ("components", 0, "components", 0, "custom_id"),
        "BASE_TYPE_BAD_LENGTH",
    ),
    (
        "custom-id-unique",
        {"components": [row(button("same")), row(button("same"))]},
        ("components", 1, "components", 0, "custom_id"),
        "COMPONENT_CUSTOM_ID_DUPLICATED",
    ),
    (
        "button-label-80",
        {"components": [row(button(label="x" * 81))]},
        ("components", 0, "components", 0, "label"),
        "BASE_TYPE_MAX_LENGTH",
    ),
    (
        "button-needs-custom-id",
        {"components": [row(button(None))]},
        ("components", 0, "components", 0, "custom_id"),
        "BASE_TYPE_REQUIRED",
    ),
]


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [case[1:] for case in MESSAGE_CASES],
    ids=[case[0] for case in MESSAGE_CASES],
)
async def test_message_limit_is_refused_like_discord(
    fake_discord: FakeDiscord, body: Body, path: tuple[str | int, ...], code: str
) -> None:
    await assert_message_refused(fake_discord, body, path, code)


async def test_a_message_at_every_limit_is_accepted(fake_discord: FakeDiscord) -> None:
    channel = fake_discord.channel("general")
    body = {
        "content": "x" * 2000,
        "embeds": [
            embed(title="t" * 256, description="d" * 1000, fields=[field("n" * 256, "v" * 1024)]),
            embed(footer={"text": "f" * 2000}, author={"name": "a" * 256}),
        ],
        "components": [row(*(button(f"{r}-{b}") for b in range(5))) for r in range(5)],
    }
    status, answer = await call(fake_discord, "POST", f"/channels/{channel.id}/messages", body)
    assert status == 200, answer
    assert len(fake_discord.channel_messages(channel)) == 1


async def test_each_file_is_limited_by_attachment_size_limit(fake_discord: FakeDiscord) -> None:
    fake_discord.attachment_size_limit = 1 * MiB
    path = f"/channels/{fake_discord.channel('general').id}/messages"
    body = {"attachments": [{"id": 0, "filename": "a.png"}]}
    status, answer = await call(fake_discord, "POST", path, body, [("a.png", b"x" * (MiB + 1))])
    assert (status, answer["code"]) == (413, 40005)
    status, _ = await call(fake_discord, "POST", path, body, [("a.png", b"x" * MiB)])
    assert status == 200


async def test_a_request_holds_at_most_25_mib(fake_discord: FakeDiscord) -> None:
    fake_discord.attachment_size_limit = 100 * MiB  # a boosted server: each file may be large
    path = f"/channels/{fake_discord.channel('general').id}/messages"
    files = [(f"{i}.png", b"x" * (9 * MiB)) for i in range(3)]
    body = {"attachments": [{"id": i, "filename": name} for i, (name, _) in enumerate(files)]}
    status, answer = await call(fake_discord, "POST", path, body, files)
    assert (status, answer["code"]) == (413, 40005)
    body["attachments"] = body["attachments"][:2]
    status, _ = await call(fake_discord, "POST", path, body, files[:2])
    assert status == 200


# ---- interactions ---------------------------------------------------------------------------


class HoldingBot(discord.Client):
    """Never answers: the test answers for it, over raw HTTP."""

    def __init__(self, guild_id: int) -> None:
        super().__init__(intents=discord.Intents.default())
        self.tree = app_commands.CommandTree(self)
        self.guild = discord.Object(guild_id)

        @self.tree.command(name="hold", description="Wait for the test")
        async def hold(interaction: discord.Interaction, what: str = "") -> None:
            return None

        @hold.autocomplete("what")
        async def what_choices(interaction: discord.Interaction, current: str) -> list[Any]:
            return []

    async def setup_hook(self) -> None:
        self.tree.copy_global_to(guild=self.guild)
        await self.tree.sync(guild=self.guild)


@pytest.fixture
async def held(fake_discord: FakeDiscord) -> AsyncIterator[InteractionRecord]:
    """A slash command the bot leaves unanswered."""
    async with run_bot(fake_discord, lambda: HoldingBot(fake_discord.world.guild_id)):
        yield await fake_discord.slash(fake_discord.user("alice"), "hold")


def callback_path(ix: InteractionRecord) -> str:
    return f"/interactions/{ix.id}/{ix.token}/callback?with_response=1"


def webhook_path(ix: InteractionRecord, suffix: str = "?wait=1") -> str:
    return f"/webhooks/{ix.application_id}/{ix.token}{suffix}"


async def test_first_answer_after_3_seconds_is_unknown_interaction(
    fake_discord: FakeDiscord, held: InteractionRecord
) -> None:
    fake_discord.advance(3.01)
    status, answer = await call(fake_discord, "POST", callback_path(held), {"type": 5})
    assert (status, answer["code"]) == (404, 10062)
    assert held.response is None


async def test_first_answer_within_3_seconds_is_accepted(
    fake_discord: FakeDiscord, held: InteractionRecord
) -> None:
    fake_discord.advance(2.99)
    status, _ = await call(fake_discord, "POST", callback_path(held), {"type": 5})
    assert status == 200
    assert held.response is not None


async def test_token_older_than_15_minutes_is_refused(
    fake_discord: FakeDiscord, held: InteractionRecord
) -> None:
    await call(fake_discord, "POST", callback_path(held), {"type": 4, "data": {"content": "hi"}})
    fake_discord.advance(14 * 60 + 59)
    status, _ = await call(fake_discord, "POST", webhook_path(held), {"content": "in time"})
    assert status == 200
    fake_discord.advance(1)
    status, answer = await call(fake_discord, "POST", webhook_path(held), {"content": "late"})
    assert (status, answer["code"]) == (401, 50027)
    edit = webhook_path(held, "/messages/@original")
    status, answer = await call(fake_discord, "PATCH", edit, {"content": "late edit"})
    assert (status, answer["code"]) == (401, 50027)


@pytest.mark.parametrize("kind", [6, 7, 8], ids=["deferred-update", "update", "autocomplete"])
async def test_callback_type_must_suit_the_interaction(
    fake_discord: FakeDiscord, held: InteractionRecord, kind: int
) -> None:
    status, answer = await call(
        fake_discord, "POST", callback_path(held), {"type": kind, "data": {"content": "x"}}
    )
    assert "INTERACTION_CALLBACK_TYPE_INVALID" in refused(status, answer, "type")


async def test_interaction_message_follows_message_limits(
    fake_discord: FakeDiscord, held: InteractionRecord
) -> None:
    body = {"type": 4, "data": {"content": "x" * 2001, "flags": 1 << 6}}
    status, answer = await call(fake_discord, "POST", callback_path(held), body)
    assert "BASE_TYPE_MAX_LENGTH" in refused(status, answer, "data", "content")
    body["data"]["content"] = "fits"  # type: ignore[index]
    status, _ = await call(fake_discord, "POST", callback_path(held), body)
    assert status == 200


async def test_follow_up_follows_message_limits(
    fake_discord: FakeDiscord, held: InteractionRecord
) -> None:
    await call(fake_discord, "POST", callback_path(held), {"type": 5})
    body = {"embeds": [embed(fields=[field(value="x" * 1025)])]}
    status, answer = await call(fake_discord, "POST", webhook_path(held), body)
    assert "BASE_TYPE_MAX_LENGTH" in refused(status, answer, "embeds", 0, "fields", 0, "value")


def choices(count: int, name: Callable[[int], str] = str) -> Body:
    return {
        "type": 8,
        "data": {"choices": [{"name": name(i), "value": str(i)} for i in range(count)]},
    }


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [
        (choices(26), ("data", "choices"), "BASE_TYPE_MAX_LENGTH"),
        (choices(1, lambda i: "x" * 101), ("data", "choices", 0, "name"), "BASE_TYPE_BAD_LENGTH"),
        (choices(1, lambda i: ""), ("data", "choices", 0, "name"), "BASE_TYPE_BAD_LENGTH"),
        (
            {"type": 8, "data": {"choices": [{"name": "a", "value": 5}]}},  # `what` is a string
            ("data", "choices", 0, "value"),
            "APPLICATION_COMMAND_OPTION_CHOICE_TYPE_INVALID",
        ),
    ],
    ids=["choices-25", "choice-name-100", "choice-name-non-empty", "choice-value-type"],
)
async def test_autocomplete_limits(
    fake_discord: FakeDiscord, body: Body, path: tuple[str | int, ...], code: str
) -> None:
    async with run_bot(fake_discord, lambda: HoldingBot(fake_discord.world.guild_id)):
        held = fake_discord.autocomplete(
            fake_discord.user("alice"), "hold", {"what": "x"}, focused="what"
        )
        assert await held == []  # the bot's own (empty) answer went through
        ix = fake_discord.interactions[-1]
        ix.callbacks.clear()  # answer it again, as if for the first time
        status, answer = await call(fake_discord, "POST", callback_path(ix), body)
    assert code in refused(status, answer, *path)


def modal(title: str = "Feedback", inputs: int = 1, custom_id: str = "m") -> Body:
    rows = [
        row({"type": 4, "custom_id": f"i{i}", "label": "Text", "style": 1}) for i in range(inputs)
    ]
    return {"type": 9, "data": {"custom_id": custom_id, "title": title, "components": rows}}


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [
        (modal(title="x" * 46), ("data", "title"), "BASE_TYPE_BAD_LENGTH"),
        (modal(inputs=6), ("data", "components"), "BASE_TYPE_BAD_LENGTH"),
        (modal(custom_id="x" * 101), ("data", "custom_id"), "BASE_TYPE_BAD_LENGTH"),
    ],
    ids=["modal-title-45", "modal-components-5", "modal-custom-id-100"],
)
async def test_modal_limits(
    fake_discord: FakeDiscord,
    held: InteractionRecord,
    body: Body,
    path: tuple[str | int, ...],
    code: str,
) -> None:
    status, answer = await call(fake_discord, "POST", callback_path(held), body)
    assert code in refused(status, answer, *path)


async def test_body_against_the_openapi_spec(fake_discord: FakeDiscord) -> None:
    if spec_validator() is None:
        pytest.skip("no copy of Discord's OpenAPI spec at ../shared/discord-spec/openapi.json")
    channel = fake_discord.channel("general")
    status, answer = await call(
        fake_discord, "POST", f"/channels/{channel.id}/messages", {"content": "x", "tts": "yes"}
    )
    assert "SCHEMA_INVALID" in refused(status, answer, "tts")
