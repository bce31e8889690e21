"""The fake refuses what Discord refuses in the content of messages, interaction answers and
reactions (``tests.discord.message_rules``, ``interaction_rules``), and the bot's own channel
permissions and DM upload limit: one test per rule, sent over real HTTP as a bot would send it.
(Split from ``test_limits``, which checks the sizes, to keep each module small.)
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.discord import FakeDiscord, InteractionRecord, run_bot
from tests.discord.probes import Body, assert_message_refused, call, refused
from tests.discord.test_limits import HoldingBot, button, callback_path, embed, held, row
from tests.discord.world import UPLOAD_LIMITS, Overwrite, Permission

__all__ = ["held"]  # the fixture, used here by name

URL_ERROR = "URL_TYPE_INVALID_URL"

# (id, body, path of the error, expected code)
CONTENT_CASES: list[tuple[str, Body, tuple[str | int, ...], str]] = [
    (
        "embed-url-not-a-url",
        {"embeds": [embed(title="t", url="not a url")]},
        ("embeds", 0, "url"),
        URL_ERROR,
    ),
    (
        "embed-url-javascript",
        {"embeds": [embed(title="t", url="javascript:alert(1)")]},
        ("embeds", 0, "url"),
        URL_ERROR,
    ),
    (
        "author-url",
        {"embeds": [embed(author={"name": "a", "url": "nope"})]},
        ("embeds", 0, "author", "url"),
        URL_ERROR,
    ),
    (
        "author-icon-url",
        {"embeds": [embed(author={"name": "a", "icon_url": "ftp://x/a.png"})]},
        ("embeds", 0, "author", "icon_url"),
        URL_ERROR,
    ),
    (
        "footer-icon-url",
        {"embeds": [embed(footer={"text": "a", "icon_url": "nope"})]},
        ("embeds", 0, "footer", "icon_url"),
        URL_ERROR,
    ),
    (
        "thumbnail-scheme",
        {"embeds": [embed(title="t", thumbnail={"url": "ftp://x/y.png"})]},
        ("embeds", 0, "thumbnail", "url"),
        URL_ERROR,
    ),
    (
        "thumbnail-needs-url",
        {"embeds": [embed(title="t", thumbnail={})]},
        ("embeds", 0, "thumbnail", "url"),
        "BASE_TYPE_REQUIRED",
    ),
    (
        "image-url",
        {"embeds": [embed(title="t", image={"url": "http://"})]},
        ("embeds", 0, "image", "url"),
        URL_ERROR,
    ),
    (
        "timestamp-iso8601",
        {"embeds": [embed(title="t", timestamp="yesterday")]},
        ("embeds", 0, "timestamp"),
        "DATE_TIME_TYPE_PARSE",
    ),
    (
        "footer-empty-object",
        {"embeds": [embed(title="t", footer={})]},
        ("embeds", 0, "footer", "text"),
        "BASE_TYPE_REQUIRED",
    ),
    (
        "author-empty-object",
        {"embeds": [embed(title="t", author={})]},
        ("embeds", 0, "author", "name"),
        "BASE_TYPE_REQUIRED",
    ),
    (
        "link-button-url",
        {"components": [row({"type": 2, "style": 5, "label": "x", "url": "notaurl"})]},
        ("components", 0, "components", 0, "url"),
        URL_ERROR,
    ),
    (
        "premium-button-fields",
        {
            "components": [
                row({"type": 2, "style": 6, "label": "x", "custom_id": "p", "sku_id": "1"})
            ]
        },
        ("components", 0, "components", 0, "label"),
        "BUTTON_PREMIUM_FIELD_INVALID",
    ),
    (
        "premium-button-sku",
        {"components": [row({"type": 2, "style": 6})]},
        ("components", 0, "components", 0, "sku_id"),
        "BASE_TYPE_REQUIRED",
    ),
    (
        "button-emoji-name",
        {"components": [row(button(emoji={"name": "notanemoji"}))]},
        ("components", 0, "components", 0, "emoji", "name"),
        "COMPONENT_INVALID_EMOJI",
    ),
    (
        "button-emoji-id",
        {"components": [row(button(emoji={"id": "123", "name": "x"}))]},
        ("components", 0, "components", 0, "emoji", "id"),
        "COMPONENT_INVALID_EMOJI",
    ),
    (
        "v2-with-content",
        {"flags": 1 << 15, "content": "hi", "components": [row(button())]},
        ("content",),
        "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
    ),
    (
        "v2-with-embeds",
        {"flags": 1 << 15, "embeds": [embed(title="t")], "components": [row(button())]},
        ("embeds",),
        "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
    ),
]


def select(**fields: Any) -> Body:
    options = [{"label": c, "value": c} for c in "abc"]
    return {"components": [row({"type": 3, "custom_id": "s", "options": options, **fields})]}


SELECT = ("components", 0, "components", 0)
CONTENT_CASES += [
    (
        "select-min-gt-max",
        select(min_values=3, max_values=2),
        (*SELECT, "min_values"),
        "SELECT_COMPONENT_MIN_VALUES_GT_MAX",
    ),
    (
        "select-max-gt-options",
        select(max_values=4),
        (*SELECT, "max_values"),
        "SELECT_COMPONENT_TOO_FEW_OPTIONS",
    ),
    (
        "select-duplicate-values",
        select(options=[{"label": "a", "value": "a"}, {"label": "b", "value": "a"}]),
        (*SELECT, "options", 1, "value"),
        "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED",
    ),
    (
        "select-defaults-over-max",
        select(options=[{"label": c, "value": c, "default": True} for c in "ab"]),
        (*SELECT, "options"),
        "SELECT_COMPONENT_TOO_MANY_DEFAULTS",
    ),
    (
        "user-select-options",
        {
            "components": [
                row({"type": 5, "custom_id": "s", "options": [{"label": "a", "value": "a"}]})
            ]
        },
        (*SELECT, "options"),
        "COMPONENT_SELECT_OPTIONS_INVALID",
    ),
]


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [case[1:] for case in CONTENT_CASES],
    ids=[case[0] for case in CONTENT_CASES],
)
async def test_content_rule_is_refused_like_discord(
    fake_discord: FakeDiscord, body: Body, path: tuple[str | int, ...], code: str
) -> None:
    await assert_message_refused(fake_discord, body, path, code)


async def test_well_formed_links_emoji_and_selects_are_accepted(fake_discord: FakeDiscord) -> None:
    channel = fake_discord.channel("general")
    body = {
        "embeds": [
            embed(
                title="t",
                url="https://example.com/a?b=c",
                timestamp="2026-11-30T11:00:00.123456+00:00",
                author={"name": "a", "icon_url": "attachment://a.png"},
                thumbnail={"url": "attachment://a.png"},
                footer={"text": "f", "icon_url": "https://cdn.example.com/i.png"},
            )
        ],
        "components": [
            row(button("r", emoji={"name": "🔁"}), button("k", emoji={"name": "1️⃣"})),
            row({"type": 2, "style": 5, "label": "site", "url": "https://example.com"}),
            select(min_values=1, max_values=3)["components"][0],
        ],
    }
    status, answer = await call(fake_discord, "POST", f"/channels/{channel.id}/messages", body)
    assert status == 200, answer


async def test_whitespace_alone_is_an_empty_message(fake_discord: FakeDiscord) -> None:
    channel = fake_discord.channel("general")
    status, answer = await call(
        fake_discord, "POST", f"/channels/{channel.id}/messages", {"content": " \n\t "}
    )
    assert (status, answer) == (400, {"message": "Cannot send an empty message", "code": 50006})


async def test_at_most_10_files_even_without_an_attachments_list(
    fake_discord: FakeDiscord,
) -> None:
    channel = fake_discord.channel("general")
    files = [(f"{i}.png", b"x") for i in range(11)]
    path = f"/channels/{channel.id}/messages"
    status, answer = await call(fake_discord, "POST", path, {"content": "x"}, files)
    assert "BASE_TYPE_MAX_LENGTH" in refused(status, answer, "attachments")
    status, _ = await call(fake_discord, "POST", path, {"content": "x"}, files[:10])
    assert status == 200


async def test_a_reply_needs_its_message_in_the_same_channel(fake_discord: FakeDiscord) -> None:
    general, art = fake_discord.channel("general"), fake_discord.channel("art")
    path = f"/channels/{general.id}/messages"
    _, other = await call(fake_discord, "POST", f"/channels/{art.id}/messages", {"content": "o"})
    _, here = await call(fake_discord, "POST", path, {"content": "h"})
    for reference in ({"message_id": "999999"}, {"message_id": other["id"]}):
        status, answer = await call(
            fake_discord, "POST", path, {"content": "x", "message_reference": reference}
        )
        assert "MESSAGE_REFERENCE_UNKNOWN_MESSAGE" in refused(status, answer, "message_reference")
    lenient = {"message_id": "999999", "fail_if_not_exists": False}
    for reference in ({"message_id": here["id"]}, lenient):
        status, _ = await call(
            fake_discord, "POST", path, {"content": "x", "message_reference": reference}
        )
        assert status == 200


async def test_reactions_need_a_known_emoji_and_stop_at_20(fake_discord: FakeDiscord) -> None:
    channel = fake_discord.channel("general")
    _, message = await call(
        fake_discord, "POST", f"/channels/{channel.id}/messages", {"content": "m"}
    )
    base = f"/channels/{channel.id}/messages/{message['id']}/reactions"
    for emoji in ("notanemoji", "x", "abc:123", "😀😀"):
        status, answer = await call(fake_discord, "PUT", f"{base}/{emoji}/@me")
        assert (status, answer["code"]) == (400, 10014), emoji
    emoji = [chr(0x1F600 + i) for i in range(21)]
    for one in emoji[:20]:
        status, _ = await call(fake_discord, "PUT", f"{base}/{one}/@me")
        assert status == 204
    status, answer = await call(fake_discord, "PUT", f"{base}/{emoji[20]}/@me")
    assert (status, answer["code"]) == (400, 30010)


async def test_the_bot_needs_its_channel_permissions() -> None:
    async with FakeDiscord() as fake:
        world = fake.world
        bot_role = world.roles["Atelier Bot"].id
        deny = {
            "quiet": Permission.SEND_MESSAGES,
            "no-files": Permission.ATTACH_FILES,
            "no-embeds": Permission.EMBED_LINKS,
        }
        channels = {
            name: world.add_channel(name, (Overwrite(bot_role, 0, deny=bits),))
            for name, bits in deny.items()
        }
        everyone_denied = world.add_channel(
            "closed", (Overwrite(world.guild_id, 0, deny=Permission.SEND_MESSAGES),)
        )
        allowed_back = world.add_channel(
            "open-to-bot",
            (
                Overwrite(world.guild_id, 0, deny=Permission.SEND_MESSAGES),
                Overwrite(world.bot.id, 1, allow=Permission.SEND_MESSAGES),
            ),
        )

        async def post(channel: Any, body: Body, files: list[tuple[str, bytes]] = []) -> int:  # noqa: B006
            status, answer = await call(
                fake, "POST", f"/channels/{channel.id}/messages", body, files
            )
            assert status == 200 or (status, answer["code"]) == (403, 50013), answer
            return status

        assert await post(channels["quiet"], {"content": "x"}) == 403
        assert await post(everyone_denied, {"content": "x"}) == 403
        assert await post(allowed_back, {"content": "x"}) == 200
        assert await post(channels["no-files"], {"content": "x"}) == 200
        assert await post(channels["no-files"], {"content": "x"}, [("a.png", b"x")]) == 403
        assert await post(channels["no-embeds"], {"embeds": [embed(title="t")]}) == 403
        assert await post(channels["no-embeds"], {"content": "x"}) == 200
        assert (
            await post(world.channel("general"), {"embeds": [embed(title="t")]}, [("a.png", b"x")])
            == 200
        )


async def test_dm_uploads_keep_the_default_limit_whatever_the_boost(
    fake_discord: FakeDiscord,
) -> None:
    fake_discord.attachment_size_limit = UPLOAD_LIMITS[3]  # a server at boost level 3
    alice = fake_discord.user("alice")
    dm = fake_discord.world.dm_channel(alice)
    big = [("a.png", b"x" * (UPLOAD_LIMITS[0] + 1))]
    status, answer = await call(
        fake_discord, "POST", f"/channels/{dm.id}/messages", {"content": "x"}, big
    )
    assert (status, answer["code"]) == (413, 40005)
    general = fake_discord.channel("general")
    status, _ = await call(
        fake_discord, "POST", f"/channels/{general.id}/messages", {"content": "x"}, big
    )
    assert status == 200
    async with run_bot(fake_discord, lambda: GlobalHoldingBot(fake_discord.world.guild_id)):
        in_dm = await fake_discord.slash(alice, "hold", channel=dm)
        in_guild = await fake_discord.slash(alice, "hold")
    assert in_dm.payload["attachment_size_limit"] == UPLOAD_LIMITS[0]
    assert in_guild.payload["attachment_size_limit"] == UPLOAD_LIMITS[3]


class GlobalHoldingBot(HoldingBot):
    """``HoldingBot`` with ``/hold`` also global, so it can be used in a DM."""

    async def setup_hook(self) -> None:
        await super().setup_hook()
        await self.tree.sync()


# ---- interaction answers --------------------------------------------------------------------


def text_input(custom_id: str = "t", **fields: Any) -> Body:
    return {"type": 4, "custom_id": custom_id, "style": 1, "label": "L", **fields}


def modal(components: list[Body], title: str = "T") -> Body:
    return {"type": 9, "data": {"custom_id": "m", "title": title, "components": components}}


INPUT = ("data", "components", 0, "components", 0)
MODAL_CASES: list[tuple[str, Body, tuple[str | int, ...], str]] = [
    (
        "one-input-per-row",
        modal([row(text_input("a"), text_input("b"))]),
        ("data", "components", 0, "components"),
        "BASE_TYPE_BAD_LENGTH",
    ),
    (
        "input-in-row-needs-label",
        modal([row({"type": 4, "custom_id": "t", "style": 1})]),
        (*INPUT, "label"),
        "BASE_TYPE_REQUIRED",
    ),
    (
        "min-length-gt-max",
        modal([row(text_input(min_length=10, max_length=5))]),
        (*INPUT, "min_length"),
        "TEXT_INPUT_MIN_LENGTH_GT_MAX",
    ),
    (
        "value-over-max-length",
        modal([row(text_input(max_length=3, value="abcdef"))]),
        (*INPUT, "value"),
        "BASE_TYPE_MAX_LENGTH",
    ),
    (
        "value-under-min-length",
        modal([row(text_input(min_length=5, value="ab"))]),
        (*INPUT, "value"),
        "BASE_TYPE_MIN_LENGTH",
    ),
    (
        "title-whitespace",
        modal([row(text_input())], title="   "),
        ("data", "title"),
        "BASE_TYPE_REQUIRED",
    ),
    (
        "label-input-with-label",
        modal([{"type": 18, "label": "x", "component": text_input()}]),
        ("data", "components", 0, "component", "label"),
        "COMPONENT_LABEL_NOT_ALLOWED",
    ),
    (
        "no-input",
        modal([{"type": 10, "content": "hi"}]),
        ("data", "components"),
        "MODAL_REQUIRES_INTERACTIVE_COMPONENT",
    ),
]


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [case[1:] for case in MODAL_CASES],
    ids=[case[0] for case in MODAL_CASES],
)
async def test_modal_rule_is_refused_like_discord(
    fake_discord: FakeDiscord,
    held: InteractionRecord,
    body: Body,
    path: tuple[str | int, ...],
    code: str,
) -> None:
    status, answer = await call(fake_discord, "POST", callback_path(held), body)
    assert code in refused(status, answer, *path)
    assert held.response is None


async def test_a_modal_with_a_label_around_its_input_is_accepted(
    fake_discord: FakeDiscord, held: InteractionRecord
) -> None:
    inner = {
        "type": 4,
        "custom_id": "t",
        "style": 1,
        "min_length": 1,
        "max_length": 5,
        "value": "abc",
    }
    body = modal([{"type": 18, "label": "Name", "component": inner}])
    status, answer = await call(fake_discord, "POST", callback_path(held), body)
    assert status == 200, answer
