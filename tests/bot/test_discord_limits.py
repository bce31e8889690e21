"""Regression tests, end to end through the real bot against the strict fake Discord, for the
faults the strict fake found: a `/admin queue` field over 1024 characters, error replies that
echoed long input past 2000 characters, and results whose PNGs exceed 25 MiB per request.

The module runs on a boosted server (tier 3: 100 MiB per file), where four 2048² PNGs are each
allowed but not together in one request.
"""

from __future__ import annotations

import dataclasses
import io
import random
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from PIL import Image

from generation.jobs import GeneratedImage, JobOwner
from generation.request import build_request
from tests.bot.helpers import (
    StudioFactory,
    StudioWorld,
    answer,
    paused,
    private_reply,
    studio_people,
    text_of,
)
from tests.discord import InvalidOptions, Message
from tests.discord.limits import MAX_CONTENT, MAX_REQUEST_BYTES

pytestmark = pytest.mark.asyncio(loop_scope="module")
SIDE = 2048
LONG = "y" * 100  # the longest name Discord's client lets a person type (max_length)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def studio(studio_with: StudioFactory) -> AsyncIterator[StudioWorld]:
    world = studio_people()
    world.premium_tier = 3
    async with studio_with(world) as running:
        yield running


def noise_png(seed: int) -> bytes:
    """A 2048² PNG that does not compress (about 12 MiB), like a detailed photo would."""
    pixels = random.Random(seed).randbytes(SIDE * SIDE * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (SIDE, SIDE), pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


async def finished_large_job(studio: StudioWorld, user_id: int, channel_id: int | None) -> int:
    """A done job of four 2048² images, recorded as a worker records one (not yet delivered)."""
    catalogue = studio.settings.catalogue
    small = build_request(catalogue, prompt="a very detailed city at night", count=4, seed=7)
    request = dataclasses.replace(small, width=SIDE, height=SIDE)
    owner = JobOwner(user_id, guild_id=studio.fake.world.guild_id, channel_id=channel_id)
    database = studio.database
    job_id = await database.create_job(request, owner)
    await database.mark_running(job_id, "cpu")
    images = [
        GeneratedImage(i, seed, noise_png(seed), SIDE, SIDE) for i, seed in enumerate(request.seeds)
    ]
    assert sum(len(image.png) for image in images) > MAX_REQUEST_BYTES
    await database.mark_done(job_id, images, gpu_seconds=1.0)
    return job_id


def result_parts(messages: list[Message], job_id: int) -> list[Message]:
    return [m for m in messages if f"job `{job_id}`" in m.content and m.attachments]


async def check_spread_result(studio: StudioWorld, parts: list[Message], job_id: int) -> None:
    """Every image once, as the stored PNG, each message within Discord's limits (the fake
    refuses anything else) and with the buttons of its own images and of the job."""
    stored = [await studio.database.read_image(job_id, index) for index in range(4)]
    shown = [attachment.data for part in parts for attachment in part.attachments]
    assert shown == stored  # kept as PNG: each file is under this server's 100 MiB
    assert len(parts) >= 2
    for part in parts:
        assert sum(a.size for a in part.attachments) <= MAX_REQUEST_BYTES
        labels = [c.get("label") for row in part.components for c in row["components"]]
        numbers = [int(a.filename.rsplit("-", 1)[1].split(".")[0]) for a in part.attachments]
        # 2048² is Playground's largest size: no U, but V for each image of this message
        varies = [label for label in labels if label.endswith("subtle")]
        assert [f"V{n} subtle" for n in numbers] == varies
        assert not [label for label in labels if label[0] == "U"]
        # The tiny models stop at 256 pixels: no exact rerun of 2048², a reroll fitted to it.
        assert {"Reroll", "Parameters"} <= set(labels)
        assert "Rerun" not in labels


async def test_admin_queue_lists_many_waiting_jobs_within_discord_limits(
    studio: StudioWorld,
) -> None:
    fake, pool = studio.fake, studio.services.pool
    people = [fake.user(name) for name in ("alice", "bob", "carol", "dave", "erin", "frank")]
    prompt = "an extremely long and detailed prompt about a lighthouse at dusk " * 20
    request = build_request(studio.settings.catalogue, prompt=prompt)
    async with paused(studio):
        for index in range(40):
            owner = JobOwner(people[index % len(people)].id, max_queued=100)
            await pool.submit(request, owner)
        ix = await fake.slash(fake.user("admin"), "admin queue")
        reply = await answer(fake, ix)
        for person in people:
            await pool.cancel_user(person.id)

    assert "Something went wrong" not in text_of(reply)
    (embed,) = reply.embeds
    waiting = embed["description"]
    listed = waiting.count("· job `")
    assert listed == 15  # the first 15, as the pool ranks them, then a count
    assert waiting.endswith("… and 25 more")
    assert "40 waiting" in waiting


async def test_a_too_long_name_never_reaches_the_bot(studio: StudioWorld) -> None:
    """`/imagine model:` with 1,990 characters: Discord's client refuses it (max_length)."""
    fake = studio.fake
    with pytest.raises(InvalidOptions, match="1-100 characters"):
        await fake.slash(fake.user("alice"), "imagine", {"prompt": "a cat", "model": "y" * 1990})
    options = {o["name"]: o for o in fake.command("imagine")["options"]}
    assert [options[name]["max_length"] for name in ("model", "aspect", "scheduler")] == [100] * 3


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("imagine", {"prompt": "a cat", "model": LONG}),
        ("imagine", {"prompt": "a cat", "aspect": LONG}),
        ("imagine", {"prompt": "a cat", "scheduler": LONG}),
        ("imagine", {"prompt": "z" * 6000}),
        ("settings", {"model": LONG}),
        ("settings", {"aspect": LONG}),
        ("history", {"model": LONG}),
    ],
    ids=["model", "aspect", "scheduler", "prompt", "settings-model", "settings-aspect", "history"],
)
async def test_error_replies_fit_whatever_was_typed(
    studio: StudioWorld, command: str, options: dict[str, str]
) -> None:
    fake = studio.fake
    ix = await fake.slash(fake.user("carol"), command, options)
    reply = await private_reply(fake, ix)  # answered (not "The application did not respond")
    assert len(reply) <= MAX_CONTENT
    assert "Something went wrong" not in reply


async def test_a_long_file_name_is_not_echoed_in_full(studio: StudioWorld) -> None:
    fake = studio.fake
    name = "n" * 900 + ".txt"
    ix = await fake.slash(
        fake.user("carol"), "imagine", {"prompt": "a cat"}, attachments=[(name, b"hello")]
    )
    reply = await private_reply(fake, ix)
    assert "not a PNG, JPEG or WebP image" in reply
    assert "n" * 100 not in reply


async def test_show_spreads_a_large_result_over_several_messages(studio: StudioWorld) -> None:
    fake = studio.fake
    alice = fake.user("alice")
    job_id = await finished_large_job(studio, alice.id, fake.channel("general").id)
    await studio.database.mark_delivered(job_id)
    ix = await fake.slash(alice, "show", {"job": job_id})

    def shown() -> list[Message] | None:
        parts = result_parts([m for m in ix.messages if not m.loading], job_id)
        return parts if sum(len(p.attachments) for p in parts) == 4 else None

    parts = await fake.wait_for(shown, what="all four images")
    await check_spread_result(studio, parts, job_id)
    last = parts[-1]
    info = await fake.click(alice, last, next(i for i in last.custom_ids if ":info:" in i))
    assert f"Job {job_id} — parameters" in await private_reply(fake, info)
    recorded = {m.message_id for m in await studio.database.messages_of(job_id)}
    assert {p.id for p in parts} <= recorded  # reactions on each message act on the job


async def test_delivery_spreads_a_large_result_over_several_messages(
    studio: StudioWorld,
) -> None:
    """A finished job the bot had not posted yet (a restart in between) is delivered to its
    channel in several messages, all recorded."""
    fake = studio.fake
    bob = fake.user("bob")
    job_id = await finished_large_job(studio, bob.id, fake.channel("art").id)
    await studio.runner.restart()

    def posted() -> list[Message] | None:
        parts = result_parts(fake.channel_messages(fake.channel("art")), job_id)
        return parts if sum(len(p.attachments) for p in parts) == 4 else None

    parts = await fake.wait_for(posted, what="all four images", timeout=30)
    await check_spread_result(studio, parts, job_id)
    assert parts[0].mentions == [bob.id]
    stored = await studio.delivered(job_id)
    assert stored.delivered_at is not None
    recorded = {m.message_id for m in await studio.database.messages_of(job_id)}
    assert {p.id for p in parts} <= recorded
