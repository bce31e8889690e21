"""The audit log of admin actions, written even when the database refuses writes for a while.

An admin action that the bot's own state carries out (a cancel, a pause, a worker taken out)
has happened by the time it is audited, so a refused audit write must neither be reported as
the action failing nor be dropped: the entry (with the time of the action) is logged at once,
tried again after `STORE_RETRY_DELAYS_S` like the pool's own store writes, and the admin is told
that it is kept. Actions that storage carries out (bans, limits, channels, the blocklist) are
audited in the same transaction as the change instead, and need none of this.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from generation.jobs import StoreUnavailable
from generation.pool import STORE_RETRY_DELAYS_S
from storage import Database

log = logging.getLogger(__name__)


class AuditTrail:
    """Writes audit entries to `database`, keeping those it cannot write yet until it can.

    `clock` (Unix seconds) stamps the entries; `sleep` waits between tries (tests pass their
    own)."""

    def __init__(
        self,
        database: Database,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._database = database
        self._clock = clock
        self._sleep = sleep
        self._pending: set[asyncio.Task[None]] = set()

    async def record(
        self,
        actor_id: int,
        action: str,
        target: str,
        details: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Write an entry (`action` such as "job.cancel", `target` such as "job:42"). None once
        written; when the database cannot take it right now, a sentence for the admin saying
        so: the entry is kept and written as soon as the database takes it."""
        at = self._clock()
        try:
            await self._database.audit(actor_id, action, target, details, at=at)
        except StoreUnavailable as error:
            log.warning(
                "Audit entry kept until the database takes it (%s): actor=%s action=%s "
                "target=%s details=%s at=%.3f",
                error,
                actor_id,
                action,
                target,
                dict(details or {}),
                at,
            )
            task = asyncio.create_task(self._retry(actor_id, action, target, details, at))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return (
                f"⚠️ The audit log could not be written: {error} The entry is kept and "
                "written as soon as the database takes it."
            )
        return None

    async def _retry(
        self,
        actor_id: int,
        action: str,
        target: str,
        details: Mapping[str, Any] | None,
        at: float,
    ) -> None:
        for attempt in itertools.count():
            await self._sleep(STORE_RETRY_DELAYS_S[min(attempt, len(STORE_RETRY_DELAYS_S) - 1)])
            try:
                await self._database.audit(actor_id, action, target, details, at=at)
            except StoreUnavailable as error:
                log.warning("Audit entry %s %s still not written: %s", action, target, error)
                continue
            log.info("Audit entry %s %s written late", action, target)
            return

    async def close(self) -> None:
        """Stop retrying; what is still unwritten was logged when it was kept (and again here)."""
        for task in list(self._pending):
            task.cancel()
        if self._pending:
            log.error(
                "%d audit entries could not be written; see the log above", len(self._pending)
            )
        await asyncio.gather(*self._pending, return_exceptions=True)
