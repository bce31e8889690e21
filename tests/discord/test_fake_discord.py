"""The fake Discord drives the REAL discord.py client: a tiny demo bot defined in this file.

Run as ``python -m tests.discord.test_fake_discord`` it is the demo bot in its own process,
configured from the environment the way the real bot is (``DISCORD_API_BASE`` ...).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.ext import commands
from discord.gateway import DiscordWebSocket

from tests.discord import (
    BotCrashed,
    BotProcess,
    BotRunner,
    CallbackType,
    FakeDiscord,
    InvalidOptions,
    point_discord_at,
    run_bot,
)
from tests.discord.faults import DROPPED

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
MODELS = ["playground-v2.5", "flux-dev", "flux-schnell"]
REPO_ROOT = Path(__file__).resolve().parents[2]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


class RerunButton(discord.ui.DynamicItem[discord.ui.Button], template=r"demo:rerun:(?P<n>\d+)"):
    """A persistent button: its state lives in the custom_id, so it survives restarts."""

    def __init__(self, n: int) -> None:
        super().__init__(discord.ui.Button(label="Rerun", custom_id=f"demo:rerun:{n}"))
        self.n = n

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> RerunButton:
        return cls(int(match["n"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        text = f"rerun {self.n} by {interaction.user.mention}"
        await interaction.response.send_message(text, ephemeral=True)


class PageButton(discord.ui.DynamicItem[discord.ui.Button], template=r"demo:page:(?P<page>\d+)"):
    """Turns the page by editing the message it is on (callback type 7, UPDATE)."""

    def __init__(self, page: int) -> None:
        super().__init__(discord.ui.Button(label="Next", custom_id=f"demo:page:{page}"))
        self.page = page

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> PageButton:
        return cls(int(match["page"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        view = discord.ui.View(timeout=None).add_item(PageButton(self.page + 1))
        await interaction.response.edit_message(content=f"page {self.page}", view=view)


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    text = discord.ui.TextInput(label="Your feedback", custom_id="feedback:text")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"thanks: {self.text.value}")


@app_commands.command(description="Make images")
async def imagine(
    interaction: discord.Interaction,
    prompt: str,
    count: app_commands.Range[int, 1, 4] = 1,
    model: str = MODELS[0],
    image: discord.Attachment | None = None,
) -> None:
    text = f"{prompt} x{count} on {model}"
    files = []
    if image is not None:
        data = await image.read()  # a real HTTP download from the fake
        text += f"; got {image.filename} {len(data)} bytes sha {sha(data)}"
        files.append(discord.File(io.BytesIO(data), "echo.png"))
    await interaction.response.send_message(text, files=files)


@imagine.autocomplete("model")
async def model_choices(interaction: discord.Interaction, current: str) -> list:
    return [app_commands.Choice(name=m, value=m) for m in MODELS if current in m]


@app_commands.command(description="Defer, then deliver a file with a persistent button")
async def render(interaction: discord.Interaction, prompt: str) -> None:
    await interaction.response.defer(thinking=True)
    view = discord.ui.View(timeout=None).add_item(RerunButton(7)).add_item(PageButton(1))
    file = discord.File(io.BytesIO(PNG), "render.png")
    await interaction.followup.send(f"rendered {prompt}", file=file, view=view)


@app_commands.command(description="Reply, then edit the reply")
async def status(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("working")
    await interaction.edit_original_response(content="done")


@app_commands.command(description="Post to the channel and react")
async def post(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("posting", ephemeral=True)
    message = await interaction.channel.send(
        "react here", file=discord.File(io.BytesIO(PNG), "p.png")
    )
    await message.add_reaction("🔁")


@app_commands.command(description="DM me")
async def dm_me(interaction: discord.Interaction) -> None:
    try:
        await interaction.user.send("your seeds: 1 2 3")
    except discord.Forbidden as error:
        await interaction.response.send_message(f"DMs closed ({error.code})", ephemeral=True)
    else:
        await interaction.response.send_message("sent", ephemeral=True)


@app_commands.command(description="Defer, wait to be released, then follow up")
async def slow(interaction: discord.Interaction) -> None:
    bot: DemoBot = interaction.client  # type: ignore[assignment]
    await interaction.response.defer()
    await bot.release_slow.wait()
    try:
        await interaction.followup.send("late result")
    except discord.HTTPException as error:
        bot.followup_errors.append(error.code)
        await interaction.channel.send(f"{interaction.user.mention} here is your late result")


@app_commands.command(description="Open a modal")
async def feedback(interaction: discord.Interaction) -> None:
    await interaction.response.send_modal(FeedbackModal())


admin = app_commands.Group(name="admin", description="Admin commands")


@admin.command(description="Ban someone")
async def ban(interaction: discord.Interaction, user: discord.User, reason: str) -> None:
    await interaction.response.send_message(f"banned {user.mention}: {reason}", ephemeral=True)


class DemoBot(commands.Bot):
    """Records what reaches it so the tests can check the client really saw it."""

    def __init__(self, guild_id: int) -> None:
        super().__init__(
            command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.01
        )
        self.guild_object = discord.Object(guild_id)
        self.raw_reactions: list[tuple[int, str]] = []
        self.cached_reactions: list[tuple[int, str, int]] = []
        self.followup_errors: list[int] = []
        self.release_slow = asyncio.Event()

    async def setup_hook(self) -> None:
        self.add_dynamic_items(RerunButton, PageButton)
        for command in (imagine, render, status, post, dm_me, slow, feedback, admin):
            self.tree.add_command(command, guild=self.guild_object)
        await self.tree.sync(guild=self.guild_object)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if payload.user_id == self.user.id:
            return
        self.raw_reactions.append((payload.user_id, str(payload.emoji)))
        channel = self.get_channel(payload.channel_id)
        message = await channel.fetch_message(payload.message_id)  # works for old messages too
        if str(payload.emoji) == "🔁":
            await channel.send(f"again: {message.content}")
        elif str(payload.emoji) == "❌":
            await message.delete()

    async def on_reaction_add(self, reaction: discord.Reaction, user: discord.User) -> None:
        if not user.bot:
            self.cached_reactions.append((user.id, str(reaction.emoji), reaction.count))


@pytest.fixture
async def runner(fake_discord: FakeDiscord) -> AsyncIterator[BotRunner]:
    async with run_bot(fake_discord, lambda: DemoBot(fake_discord.world.guild_id)) as running:
        yield running


async def test_login_and_command_sync(fake_discord: FakeDiscord, runner: BotRunner) -> None:
    assert runner.bot.user.id == fake_discord.world.bot.id
    assert runner.bot.application_id == fake_discord.world.application_id
    synced = fake_discord.commands[fake_discord.world.guild_id]
    assert sorted(c["name"] for c in synced) == sorted(
        ["imagine", "render", "status", "post", "dm_me", "slow", "feedback", "admin"]
    )
    ban_command = fake_discord.command("admin")["options"][0]
    assert ban_command["name"] == "ban"
    assert [(o["name"], o["type"]) for o in ban_command["options"]] == [("user", 6), ("reason", 3)]


async def test_slash_command_with_options_and_attachment(
    fake_discord: FakeDiscord, runner: BotRunner
) -> None:
    alice = fake_discord.user("alice")
    ix = await fake_discord.slash(
        alice, "imagine", {"prompt": "a fox", "count": 2}, attachments=[("init.png", PNG)]
    )
    response = await fake_discord.interaction_response(ix)

    assert response.type == CallbackType.MESSAGE
    assert ix.original.content == (
        f"a fox x2 on playground-v2.5; got init.png {len(PNG)} bytes sha {sha(PNG)}"
    )
    assert [a.data for a in ix.original.attachments] == [PNG]
    assert ix.latency is not None
    assert ix.latency > 0
    assert ix.original in fake_discord.channel_messages(fake_discord.channel("general"))


async def test_options_discord_would_refuse_never_reach_the_bot(
    fake_discord: FakeDiscord, runner: BotRunner
) -> None:
    alice = fake_discord.user("alice")
    with pytest.raises(InvalidOptions, match="between 1 and 4"):
        await fake_discord.slash(alice, "imagine", {"prompt": "x", "count": 9})
    with pytest.raises(InvalidOptions, match="'reason' is missing"):
        await fake_discord.slash(alice, "admin ban", {"user": alice})
    assert fake_discord.interactions == []


async def test_autocomplete(fake_discord: FakeDiscord, runner: BotRunner) -> None:
    choices = await fake_discord.autocomplete(
        fake_discord.user("alice"), "imagine", {"prompt": "x", "model": "flux"}, focused="model"
    )
    assert [c["value"] for c in choices] == ["flux-dev", "flux-schnell"]


async def test_subcommand_with_user_option(fake_discord: FakeDiscord, runner: BotRunner) -> None:
    bob = fake_discord.user("bob")
    ix = await fake_discord.slash(
        fake_discord.user("admin"), "admin ban", {"user": bob, "reason": "spam"}
    )
    await fake_discord.interaction_response(ix)
    assert ix.original.content == f"banned {bob.mention}: spam"
    assert ix.original.ephemeral
    assert ix.original.mentions == [bob.id]


async def test_defer_then_followup_with_file_fills_the_thinking_message(
    fake_discord: FakeDiscord, runner: BotRunner
) -> None:
    ix = await fake_discord.slash(fake_discord.user("bob"), "render", {"prompt": "owl"})
    response = await fake_discord.interaction_response(ix)
    assert response.type == CallbackType.DEFERRED_MESSAGE

    result = await fake_discord.wait_for(lambda: not ix.original.loading and ix.original)
    assert result.content == "rendered owl"
    assert [(a.filename, a.data) for a in result.attachments] == [("render.png", PNG)]
    assert result.custom_ids == ["demo:rerun:7", "demo:page:1"]
    assert [v.content for v in result.versions] == ["", "rendered owl"]
    assert ix.followups == []


async def test_edit_original_response(fake_discord: FakeDiscord, runner: BotRunner) -> None:
    ix = await fake_discord.slash(fake_discord.user("carol"), "status")
    await fake_discord.wait_for(lambda: ix.original and ix.original.edits)
    assert [v.content for v in ix.original.versions] == ["working", "done"]


async def test_persistent_button_works_after_a_restart(
    fake_discord: FakeDiscord, runner: BotRunner
) -> None:
    ix = await fake_discord.slash(fake_discord.user("bob"), "render", {"prompt": "owl"})
    result = await fake_discord.wait_for(
        lambda: ix.followups or (ix.original and ix.original.edits)
    )
    result = ix.original
    first_bot = runner.bot

    second_bot = await runner.restart()
    carol = fake_discord.user("carol")
    click = await fake_discord.click(carol, result, "demo:rerun:7")
    await fake_discord.interaction_response(click)

    assert second_bot is not first_bot
    assert click.original.content == f"rerun 7 by {carol.mention}"
    assert click.original.ephemeral


async def test_button_that_edits_its_own_message(
    fake_discord: FakeDiscord, runner: BotRunner
) -> None:
    bob = fake_discord.user("bob")
    ix = await fake_discord.slash(bob, "render", {"prompt": "owl"})
    result = await fake_discord.wait_for(lambda: ix.original and ix.original.edits and ix.original)

    click = await fake_discord.click(bob, result, "demo:page:1")
    assert (await fake_discord.interaction_response(click)).type == CallbackType.UPDATE
    assert click.original is result
    assert result.content == "page 1"
    assert result.custom_ids == ["demo:page:2"]
    assert [a.data for a in result.attachments] == [PNG]  # an edit keeps the files


async def test_reactions_raw_and_cached_also_after_a_restart(
    fake_discord: FakeDiscord, runner: BotRunner
) -> None:
    alice, bob = fake_discord.user("alice"), fake_discord.user("bob")
    general = fake_discord.channel("general")
    await fake_discord.slash(alice, "post")
    posted = await fake_discord.wait_for_message(
        lambda m: m.content == "react here" and m.reactions, channel=general
    )
    assert posted.reaction_users("🔁") == [fake_discord.world.bot]

    await fake_discord.react(alice, posted, "🔁")
    await fake_discord.wait_for(lambda: len(fake_discord.channel_messages(general)) == 2)
    assert runner.bot.raw_reactions == [(alice.id, "🔁")]
    assert runner.bot.cached_reactions == [(alice.id, "🔁", 2)]

    bot = await runner.restart()  # the new bot has never seen the message: raw events only
    await fake_discord.react(bob, posted, "🔁")
    again = await fake_discord.wait_for(lambda: fake_discord.channel_messages(general)[2:])
    assert [m.content for m in again] == ["again: react here"]
    assert bot.raw_reactions == [(bob.id, "🔁")]
    assert bot.cached_reactions == []

    await fake_discord.react(alice, posted, "❌")
    await fake_discord.wait_for(lambda: posted.deleted)
    assert posted not in fake_discord.channel_messages(general)


async def test_direct_messages(fake_discord: FakeDiscord, runner: BotRunner) -> None:
    alice, bob = fake_discord.user("alice"), fake_discord.user("bob")
    fake_discord.close_dms(bob)
    for user in (alice, bob):
        await fake_discord.interaction_response(await fake_discord.slash(user, "dm_me"))

    assert [m.content for m in fake_discord.dms(alice)] == ["your seeds: 1 2 3"]
    assert fake_discord.dms(bob) == []
    assert fake_discord.interactions[1].original.content == "DMs closed (50007)"


async def test_modal_submit(fake_discord: FakeDiscord, runner: BotRunner) -> None:
    alice = fake_discord.user("alice")
    opened = await fake_discord.slash(alice, "feedback")
    assert (await fake_discord.interaction_response(opened)).type == CallbackType.MODAL
    submitted = await fake_discord.submit_modal(alice, opened, {"feedback:text": "love it"})
    await fake_discord.interaction_response(submitted)
    assert submitted.original.content == "thanks: love it"


async def test_rate_limited_upload_is_waited_out(
    fake_discord: FakeDiscord, runner: BotRunner
) -> None:
    fault = fake_discord.fail_next("POST", r"^/channels/\d+/messages$", times=2, retry_after=0.05)
    await fake_discord.slash(fake_discord.user("alice"), "post")
    posted = await fake_discord.wait_for_message(
        lambda m: m.content == "react here" and m.reactions
    )

    assert [a.data for a in posted.attachments] == [PNG]
    assert fault.served == 2
    statuses = [r.status for r in fake_discord.requests if r.path.endswith("/messages")]
    assert statuses == [429, 429, 200]


async def test_server_error_is_retried(fake_discord: FakeDiscord, runner: BotRunner) -> None:
    fake_discord.fail_next("PATCH", r"/messages/@original$", status=500)
    ix = await fake_discord.slash(fake_discord.user("carol"), "status")
    await fake_discord.wait_for(lambda: ix.original and ix.original.edits)
    assert ix.original.content == "done"
    statuses = [r.status for r in fake_discord.requests if r.path.endswith("@original")]
    assert statuses == [500, 200]


async def test_a_dropped_connection_is_closed_unanswered(fake_discord: FakeDiscord) -> None:
    fault = fake_discord.fail_next("POST", r"^/channels/\d+/messages$", status=DROPPED)
    async with aiohttp.ClientSession() as session:
        # not retried by aiohttp (POST is not idempotent), as discord.py's posts and edits
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await session.post(fake_discord.api_base + "/channels/1/messages", json={})
    assert fault.served == 1
    assert not [r for r in fake_discord.requests if r.path.startswith("/channels/1/")]


async def test_expired_token_gives_50027(fake_discord: FakeDiscord, runner: BotRunner) -> None:
    alice = fake_discord.user("alice")
    ix = await fake_discord.slash(alice, "slow")
    await fake_discord.interaction_response(ix)
    fake_discord.expire_tokens()
    runner.bot.release_slow.set()

    fallback = await fake_discord.wait_for_message(lambda m: "late result" in m.content)
    assert runner.bot.followup_errors == [50027]
    assert fallback.mentions == [alice.id]
    assert fallback.interaction is None


async def test_gateway_crash_fails_the_test_at_once(fake_discord: FakeDiscord) -> None:
    with point_discord_at(fake_discord):
        runner = BotRunner(fake_discord, lambda: DemoBot(fake_discord.world.guild_id))
        await runner.start()
        await fake_discord.dispatch("INTERACTION_CREATE", {"type": 2})  # unparseable
        with pytest.raises(BotCrashed, match="KeyError"):
            await fake_discord.wait_for(lambda: False, timeout=60)
        await runner.stop()


async def test_bot_in_a_child_process_survives_sigkill(fake_discord: FakeDiscord) -> None:
    args = [sys.executable, "-m", "tests.discord.test_fake_discord"]
    env = {"DEMO_GUILD_ID": str(fake_discord.world.guild_id)}
    bot = BotProcess(fake_discord, args, env=env, cwd=REPO_ROOT)
    alice = fake_discord.user("alice")
    await bot.start()
    await fake_discord.interaction_response(await fake_discord.slash(alice, "status"))

    assert await bot.kill() == -signal.SIGKILL
    await bot.start()
    ix = await fake_discord.slash(alice, "imagine", {"prompt": "after restart"})
    await fake_discord.interaction_response(ix)
    await bot.terminate()

    assert ix.original.content == "after restart x1 on playground-v2.5"
    assert fake_discord.gateway.identify_count == 2


def main() -> None:
    """The demo bot as its own process, pointed at a fake Discord by the environment."""
    discord.http.Route.BASE = os.environ["DISCORD_API_BASE"]
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["DISCORD_GATEWAY_URL"])
    DemoBot(int(os.environ["DEMO_GUILD_ID"])).run(os.environ["DISCORD_TOKEN"], log_handler=None)


if __name__ == "__main__":
    main()
