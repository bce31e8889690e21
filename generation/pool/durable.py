"""How the pool records a job's state changes when the store refuses them for a while (part of
`WorkerPool`; its state is the pool's)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from functools import partial

from generation.jobs import JobEvent, JobFailed, JobStalled, StoreUnavailable
from generation.pool.live import LiveJob

log = logging.getLogger(__name__)

# Seconds between tries of a store write that failed for a passing reason; then every 60 s.
STORE_RETRY_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
# A job the store no longer holds (`delete-user` while the bot runs) ends with this.
ERASED = "This job was erased (its person's data was deleted) before it finished; nothing was kept."


class StoreRetries:
    """Mixed into `WorkerPool`."""

    def _failure(self, job: LiveJob, reason: str, kind: str) -> Callable[..., JobEvent]:
        """Note why `job` fails; its `JobFailed` for `_end`."""
        job.error, job.error_kind = reason, kind
        return partial(JobFailed, job.id, reason, kind)

    async def _durably(self, job: LiveJob, write: Callable[[], Awaitable[None]]) -> None:
        """Run a store write until it succeeds. While the store is unavailable (a read-only
        database, an unwritable image folder) the job is kept, its followers are told why and
        when the next try is (`JobStalled`), and the write is tried again after
        `STORE_RETRY_DELAYS_S`; no restart is needed once the fault is fixed. A shutdown wakes
        a waiting retry, which tries once more and then gives up, saying so (a `JobStalled`
        without a next try): the job stays unfinished in storage and runs again on start."""
        for attempt in itertools.count():
            try:
                await write()
                job.problem = job.retry_in_s = None
                return
            except StoreUnavailable as error:
                job.problem = str(error)
                if not self._scheduler.accepting:  # shutting down: the next start reruns it
                    job.retry_in_s = None
                    self._publish(JobStalled(job.id, job.problem, None, job=self._snapshot(job)))
                    raise
                delay = STORE_RETRY_DELAYS_S[min(attempt, len(STORE_RETRY_DELAYS_S) - 1)]
                log.warning("Job %s: %s Trying again in %.0f s", job.id, error, delay)
                job.retry_in_s = delay
                self._publish(JobStalled(job.id, job.problem, delay, job=self._snapshot(job)))
                await self._rest(delay)

    def _restate_stall(self, job: LiveJob) -> None:
        """While the store refuses `job`'s writes, publish its stall again with the job as it
        stands now (say, a cancel asked for meanwhile), rather than at the next try."""
        if job.problem is not None:
            self._publish(JobStalled(job.id, job.problem, job.retry_in_s, job=self._snapshot(job)))

    async def _rest(self, delay: float) -> None:
        """Sleep `delay` seconds (on the pool's `sleep`), or until a shutdown begins."""
        rest = asyncio.ensure_future(self._sleep(delay))
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait((rest, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            rest.cancel()
            closing.cancel()
