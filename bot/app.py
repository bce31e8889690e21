"""`AtelierBot`: the discord.py `commands.Bot` with Atelier's services wired in.

One extension (cog) per feature is loaded from `EXTENSIONS` plus every module in `bot/commands`
(each has a `setup` function, python-discord/bot style), so a new command module needs no change
here. Errors of every command go through `bot.errors`; result buttons are `DynamicItem`s that
need no state in memory.

Plug-ins (metrics, the health endpoint) hook in through `Plugin`: they start once the bot's
services exist and before the pool takes back unfinished jobs, so they can subscribe to every
job event (`bot.pool.subscribe()`).
"""

from __future__ import annotations

import asyncio
import logging
import pkgutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import discord
from discord.ext import commands

import bot.commands
from bot.audit import AuditTrail
from bot.config import Settings
from bot.errors import install_error_handler
from bot.permissions import COMMAND_INSTALLS, AdmittingTree, command_contexts
from bot.studio import Studio
from bot.ui.buttons import ResultButton
from generation.pool import PoolObserver, WorkerPool
from generation.workers.config import discover_workers
from storage import Database

log = logging.getLogger(__name__)

EXTENSIONS: tuple[str, ...] = ("bot.reactions",)
GUILD_READY_TIMEOUT_S = 1.0


class Plugin(Protocol):
    """Something that runs alongside the bot (metrics, a health endpoint, ...)."""

    async def start(self, bot: AtelierBot) -> None: ...

    async def stop(self) -> None: ...


@dataclass(slots=True)
class Services:
    """The engine side of the bot: the database and the worker pool.

    The pool starts (taking back unfinished jobs) only once the studio listens to its events.
    """

    database: Database
    pool: WorkerPool
    started: bool = False

    async def start(self) -> None:
        if not self.started:
            self.started = True
            await self.pool.start()

    async def close(self) -> None:
        """Stop the workers now (running jobs go back to the queue for the next start)."""
        await self.pool.shutdown(drain=False)
        await self.database.close()


async def open_services(settings: Settings, *, observer: PoolObserver | None = None) -> Services:
    """Open the database and build the worker pool the settings describe (not started yet)."""
    database = await Database.open(settings.database_path, images_dir=settings.images_dir)
    try:
        pool = WorkerPool(
            settings.catalogue,
            database,
            list(settings.gpus) or discover_workers(settings.catalogue),
            settings=settings.limits,
            # Plain data: it crosses into the worker processes.
            engine_options={"speed": asdict(settings.speed), "loras": settings.loras.tables()},
            observer=observer,
            supervision=settings.workers,
        )
    except BaseException:
        await database.close()
        raise
    return Services(database, pool)


def extension_names() -> list[str]:
    """Every extension to load: `EXTENSIONS` plus each `bot.commands` module."""
    names = list(EXTENSIONS)
    for module in pkgutil.iter_modules(bot.commands.__path__, "bot.commands."):
        names.append(module.name)
    return names


class AtelierBot(commands.Bot):
    """The bot. `studio` is the one way commands, buttons and reactions reach the engine.

    Without `services`, the bot opens the database and starts the worker pool itself once
    Discord has accepted the token (so a bad token fails fast), and closes them on `close()`.
    `pool_observer` (metrics) sees model loads and worker restarts of a pool it opens.
    """

    def __init__(
        self,
        settings: Settings,
        services: Services | None = None,
        *,
        plugins: Sequence[Plugin] = (),
        pool_observer: PoolObserver | None = None,
    ) -> None:
        intents = discord.Intents.default()  # guilds, guild reactions, DMs: no privileged ones
        # Atelier never joins voice: skip discord.py's notices about missing voice libraries.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            guild_ready_timeout=GUILD_READY_TIMEOUT_S,
            allowed_mentions=discord.AllowedMentions.none(),
            tree_cls=AdmittingTree,
            allowed_contexts=command_contexts(settings),
            allowed_installs=COMMAND_INSTALLS,
        )
        self.settings = settings
        self.plugins = tuple(plugins)
        self._pool_observer = pool_observer
        self._given_services = services
        self._services: Services | None = None
        self._studio: Studio | None = None
        self._audit: AuditTrail | None = None
        self._closing: asyncio.Future[None] | None = None

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("The bot's services open in setup_hook (after login).")
        return self._services

    @property
    def studio(self) -> Studio:
        if self._studio is None:
            raise RuntimeError("The studio starts in setup_hook (after login).")
        return self._studio

    @property
    def audit_trail(self) -> AuditTrail:
        if self._audit is None:
            raise RuntimeError("The audit trail opens in setup_hook (after login).")
        return self._audit

    @property
    def database(self) -> Database:
        return self.services.database

    @property
    def pool(self) -> WorkerPool:
        return self.services.pool

    async def setup_hook(self) -> None:
        self._services = self._given_services or await open_services(
            self.settings, observer=self._pool_observer
        )
        self._audit = AuditTrail(self.database)
        self._studio = Studio(self, self.settings, self.database, self.pool)  # listens now
        for plugin in self.plugins:  # observability plugs in here, before jobs are taken back
            await plugin.start(self)
        await self.services.start()
        install_error_handler(self.tree)
        self.add_dynamic_items(ResultButton)
        for name in extension_names():
            await self.load_extension(name)
        await self.sync_commands()
        await self.studio.start()

    async def sync_commands(self) -> None:
        """Register the slash commands: per configured guild (instant) or globally."""
        if not self.settings.guild_ids:
            await self.tree.sync()
            return
        for guild_id in self.settings.guild_ids:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)

    async def close(self) -> None:
        """Stop plug-ins, the studio, the Discord connection, then the services the bot opened.

        Safe to call more than once, also concurrently: every caller waits for the one close."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close_everything())
        await asyncio.shield(self._closing)

    async def _close_everything(self) -> None:
        for plugin in reversed(self.plugins):
            try:
                await plugin.stop()
            except Exception:
                log.exception("Plug-in %r failed to stop", plugin)
        if self._studio is not None:
            await self._studio.stop()
        await super().close()
        if self._audit is not None:
            await self._audit.close()
        if self._services is not None and self._given_services is None:
            await self._services.close()
