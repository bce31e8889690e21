"""Fixtures for the bot's end-to-end tests: the real bot (discord.py client, studio, SQLite,
worker pool on tiny CPU models) against the fake Discord of `tests.discord`.

Worker processes import torch (~5 s each), so a test module shares ONE `Studio` world: a fake
Discord, one database, one pool with one CPU worker, and a bot that tests may restart
(`world.runner.restart()`: a new bot object on the same database and pool, like a redeploy that
keeps the GPUs warm). Module-scoped async fixtures need the module's event loop::

    pytestmark = pytest.mark.asyncio(loop_scope="module")
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from bot.app import AtelierBot, Services, open_services
from bot.config import Settings, settings_from_mapping
from generation.tiny import catalogue_config
from storage import Database, StoredJob
from tests.discord import BotRunner, FakeDiscord, Message, World, run_bot
from tests.discord.plugin import fake_discord as fake_discord

JOB_TIMEOUT_S = 30.0  # the first job of a module waits for its worker to import torch
FRESH_USERS = ("dave", "erin", "frank")
FAST_PROGRESS = {"edit_interval_s": 0.2, "preview_interval_s": 0.5, "queue_refresh_s": 0.5}


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
        """The job once storage records its result as delivered (checked every 20 ms)."""
        async with asyncio.timeout(JOB_TIMEOUT_S):
            while True:
                stored = await self.database.get_job(job_id)
                if stored is not None and stored.delivered_at is not None:
                    return stored
                await asyncio.sleep(0.02)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def studio(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[StudioWorld]:
    """A running bot with its own fake Discord, database and one-worker pool (module-wide).

    Besides the default world's people, `dave`, `erin` and `frank` are there for tests that
    need users with no history (the fair scheduler remembers what each user was served)."""
    world = World.default()
    for name in FRESH_USERS:
        world.add_user(name)
    async with FakeDiscord(world) as fake:
        settings = bot_settings(fake, tiny_model_dirs, tmp_path_factory.mktemp("bot"))
        services = await open_services(settings)
        try:
            async with run_bot(fake, lambda: AtelierBot(settings, services)) as runner:
                yield StudioWorld(fake, settings, services, runner)
        finally:
            await services.close()


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


Predicate = Callable[[Message], bool]
