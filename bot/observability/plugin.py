"""The observability plug-in for `AtelierBot`: job events → metrics and log lines, and the
`/healthz` + `/metrics` endpoint. Logging itself is configured once, first, by `python -m bot`.

    metrics = Metrics()
    bot = AtelierBot(
        settings, plugins=[Observability(settings.observability, metrics)], pool_observer=metrics
    )
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING

from bot.observability.health import Degraded, HealthServer, sqlite_writable
from bot.observability.logs import log_job_event
from bot.observability.metrics import Metrics
from bot.observability.settings import ObservabilitySettings
from generation.jobs import JobEvent

if TYPE_CHECKING:
    from bot.app import AtelierBot
    from generation.pool import WorkerPool

log = logging.getLogger(__name__)
job_log = logging.getLogger("bot.jobs")  # one line per job event


class Observability:
    """Follows the pool's job events (one log line each, and the metrics) and serves the health
    endpoint while the bot runs. Start it before the pool so that jobs a previous run left
    queued are counted in the queue from the start."""

    def __init__(self, settings: ObservabilitySettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.server: HealthServer | None = None
        self._follower: asyncio.Task[None] | None = None

    async def start(self, bot: AtelierBot) -> None:
        pool = bot.pool
        self._follower = asyncio.create_task(
            self.metrics.feed(_logged(pool.subscribe())), name="observability-events"
        )
        if not self.settings.enabled:
            return
        checks = {
            "discord": lambda: bot.is_ready() and not bot.is_closed(),
            "database": sqlite_writable(bot.settings.database_path),
            "workers": lambda: workers_health(pool),
        }
        server = HealthServer(
            checks, self.metrics.registry, host=self.settings.host, port=self.settings.port
        )
        try:
            await server.start()
        except OSError as error:  # the bot runs on without its endpoint rather than not at all
            log.error(
                "The health endpoint cannot listen on %s:%s: %s",
                self.settings.host,
                self.settings.port,
                error,
            )
            return
        self.server = server
        log.info("Health and metrics at %s/healthz and %s/metrics", server.url, server.url)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None


async def _logged(events: AsyncIterable[JobEvent]) -> AsyncIterator[JobEvent]:
    async for event in events:
        log_job_event(job_log, event)
        yield event


def workers_health(pool: WorkerPool) -> bool | str:
    """Healthy when every worker runs; degraded, naming the failed ones and why, when some do;
    failing when none does (with the reasons known)."""
    problems = "; ".join(
        f"{worker}: {problem}" for worker, problem in pool.worker_problems().items()
    )
    if pool.alive_workers() == 0:
        return problems or False
    return Degraded(problems) if problems else True
