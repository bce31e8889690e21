"""What the bot's tests share: the bot's test configuration, the `StudioWorld` they drive, and
small steps a person takes (run /imagine, read the bot's answer) or checks (a job's status)."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from bot.app import AtelierBot, Services
from bot.config import Settings, settings_from_mapping
from generation.jobs import JobStatus
from generation.tiny import catalogue_config
from storage import Database, StoredJob
from tests.discord import BotRunner, FakeDiscord, InteractionRecord, Message, World
from tests.discord.world import User

JOB_TIMEOUT_S = 30.0  # the first job of a module waits for its worker to import torch
FRESH_USERS = ("dave", "erin", "frank")
SLOW_JOB = {"width": 256, "height": 256, "steps": 100, "count": 4}  # runs until cancelled
FAST_PROGRESS = {"edit_interval_s": 0.2, "preview_interval_s": 0.5, "queue_refresh_s": 0.5}
T = TypeVar("T")


def bot_config(
    world: World, tiny_model_dirs: Mapping[str, Path], **overrides: Any
) -> dict[str, Any]:
    """A configuration table for the bot on tiny models: one CPU worker, commands synced to the
    fake's guild, the world's "Atelier Admin" role as admin role, fast progress edits."""
    table: dict[str, Any] = {
        "data_dir": "data",
        "guild_ids": [world.guild_id],
        "admin_role_ids": [world.roles["Atelier Admin"].id],
        "models": catalogue_config(tiny_model_dirs),
        "gpus": [{"device": "cpu", "max_models": 3}],
        "progress": FAST_PROGRESS,
        "observability": {"enabled": False},  # no fixed port shared by parallel test runs
    }
    table.update(overrides)
    return table


def bot_settings(
    fake: FakeDiscord, tiny_model_dirs: Mapping[str, Path], data_dir: Path, **overrides: Any
) -> Settings:
    table = bot_config(fake.world, tiny_model_dirs, **overrides)
    return settings_from_mapping(table, fake.child_env(), base_dir=data_dir)


def studio_people() -> World:
    """The default world plus `dave`, `erin` and `frank`, for tests that need users with no
    history (the fair scheduler remembers what each user was served)."""
    world = World.default()
    for name in FRESH_USERS:
        world.add_user(name)
    return world


@dataclass
class StudioWorld:
    """What a bot test drives and inspects."""

    fake: FakeDiscord
    settings: Settings
    services: Services
    runner: BotRunner

    @property
    def bot(self) -> AtelierBot:
        assert isinstance(self.runner.bot, AtelierBot)
        return self.runner.bot

    @property
    def database(self) -> Database:
        return self.services.database

    async def result_of(self, job_id: int) -> Message:
        """The message that shows job `job_id`'s images (waits up to `JOB_TIMEOUT_S`)."""
        return await self.fake.wait_for_message(
            lambda m: f"job `{job_id}`" in m.content and bool(m.attachments), timeout=JOB_TIMEOUT_S
        )

    async def delivered(self, job_id: int) -> StoredJob:
        """The job once storage records its result as delivered."""

        async def probe() -> StoredJob | None:
            stored = await self.database.get_job(job_id)
            return stored if stored is not None and stored.delivered_at is not None else None

        return await polled(probe)


async def polled(probe: Callable[[], Awaitable[T | None]]) -> T:
    """The first answer of `probe` that is not None (asked every 20 ms, for 30 s at most)."""
    async with asyncio.timeout(JOB_TIMEOUT_S):
        while True:
            found = await probe()
            if found is not None:
                return found
            await asyncio.sleep(0.02)


StudioFactory = Callable[..., AbstractAsyncContextManager[StudioWorld]]
"""The `studio_with` fixture: `async with studio_with(world, **config_overrides) as studio`."""


@asynccontextmanager
async def paused(studio: StudioWorld) -> AsyncIterator[None]:
    """Jobs queue up but none starts until the block ends."""
    studio.services.pool.pause()
    try:
        yield
    finally:
        studio.services.pool.resume()


def png_pixels(data: bytes) -> bytes:
    """An image's decoded RGB pixels (to compare images, not files)."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()


def job_id_of(message: Message) -> int:
    """The job id a progress or result message shows (`Job 12` title or `job `12`` text)."""
    for embed in message.embeds:
        title = embed.get("title", "")
        if title.startswith("Job "):
            return int(title.split()[1])
    marker = "job `"
    start = message.content.index(marker) + len(marker)
    return int(message.content[start : message.content.index("`", start)])


async def answer(fake: FakeDiscord, ix: InteractionRecord) -> Message:
    """The bot's latest answer to `ix` once there is one (not a "thinking…" placeholder)."""

    def latest() -> Message | None:
        shown = [m for m in ix.messages if not m.deleted and not m.loading]
        return shown[-1] if shown else None

    return await fake.wait_for(latest, what=f"the answer to /{ix.data.get('name')}")


def as_rendered(text: str) -> str:
    """`text` as Discord shows it: Markdown escapes (a backslash before a character) removed."""
    return re.sub(r"\\(.)", r"\1", text)


def text_of(message: Message) -> str:
    """Everything a person reads in a message: content, and each embed's texts."""
    parts = [message.content]
    for embed in message.embeds:
        parts += [embed.get("title", ""), embed.get("description", "")]
        for field in embed.get("fields", []):
            parts += [field["name"], field["value"]]
        parts.append(embed.get("footer", {}).get("text", ""))
    return "\n".join(part for part in parts if part)


async def private_reply(fake: FakeDiscord, ix: InteractionRecord) -> str:
    """The text of the bot's answer to `ix`, which must be ephemeral."""
    message = await answer(fake, ix)
    assert message.ephemeral, f"expected a private answer, got {text_of(message)!r}"
    return text_of(message)


async def imagine(fake: FakeDiscord, user: User, **options: Any) -> int:
    """Run /imagine as `user`; the new job's id (from the immediate reply)."""
    ix = await fake.slash(user, "imagine", {"prompt": "a lighthouse at dusk", **options})
    return job_id_of(await answer(fake, ix))


async def job_count(database: Database) -> int:
    """How many jobs storage holds (every user, every status)."""
    stats = await database.stats(0.0, 2**40)
    return sum(usage.jobs for usage in stats.by_user)


async def wait_for_status(database: Database, job_id: int, *statuses: JobStatus) -> JobStatus:
    """The job's status once it is one of `statuses`."""

    async def probe() -> JobStatus | None:
        stored = await database.get_job(job_id)
        return stored.record.status if stored and stored.record.status in statuses else None

    return await polled(probe)
