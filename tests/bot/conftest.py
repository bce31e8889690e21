"""Fixtures for the bot's end-to-end tests: the real bot (discord.py client, studio, SQLite,
worker pool on tiny CPU models) against the fake Discord of `tests.discord`.

Worker processes import torch (~5 s each), so a test module shares ONE `Studio` world: a fake
Discord, one database, one pool with one CPU worker, and a bot that tests may restart
(`world.runner.restart()`: a new bot object on the same database and pool, like a redeploy that
keeps the GPUs warm). A module that needs another configuration or other people overrides
`studio` with `studio_with`. Module-scoped async fixtures need the module's event loop::

    pytestmark = pytest.mark.asyncio(loop_scope="module")

Shared helpers live in `tests.bot.helpers`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.app import AtelierBot, open_services
from tests.bot.helpers import StudioFactory, StudioWorld, bot_settings, studio_people
from tests.discord import FakeDiscord, World, run_bot
from tests.discord.plugin import fake_discord as fake_discord


@pytest.fixture(scope="module")
def studio_with(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> StudioFactory:
    """`async with studio_with(world, **config_overrides) as studio:` a running bot with its
    own fake Discord (on `world`, default `studio_people()`), database and one-worker pool."""

    @asynccontextmanager
    async def start(world: World | None = None, **overrides: Any) -> AsyncIterator[StudioWorld]:
        async with FakeDiscord(world or studio_people()) as fake:
            data_dir = tmp_path_factory.mktemp("bot")
            settings = bot_settings(fake, tiny_model_dirs, data_dir, **overrides)
            services = await open_services(settings)
            try:
                async with run_bot(fake, lambda: AtelierBot(settings, services)) as runner:
                    yield StudioWorld(fake, settings, services, runner)
            finally:
                await services.close()

    return start


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def studio(studio_with: StudioFactory) -> AsyncIterator[StudioWorld]:
    """A running bot with the default configuration (module-wide)."""
    async with studio_with() as world:
        yield world
