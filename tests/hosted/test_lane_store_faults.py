"""API jobs while the store refuses writes (issue 14's rule for every job): the real pool, the
fake BFL API on real ports, a real SQLite store that refuses chosen writes as a read-only disk
does. The job is kept, its person is told (`JobStalled`), the write is retried, and nothing is
paid twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from generation.jobs import JobFinished, JobOwner, JobStalled, JobStatus
from generation.models import Catalogue
from storage import Database, StorageUnavailable
from tests.generation.helpers import Recorder, make_pool
from tests.hosted.test_pool_lane import HeldBfl, api, lane

READ_ONLY = "The database cannot be used right now (attempt to write a readonly database)."
NEVER = 3600.0  # the credit probe's period here: its sleep never ends in these tests


class RefusingStore:
    """The real store, except that the methods named in `refused` fail as on a read-only disk
    (the store's own `StorageUnavailable`) until they are taken out of it."""

    def __init__(self, store: Database) -> None:
        self._store = store
        self.refused: set[str] = set()
        self.refusals = 0

    def __getattr__(self, name: str) -> object:
        method = getattr(self._store, name)
        if not callable(method):
            return method

        async def call(*args: object, **kwargs: object) -> object:
            if name in self.refused:
                self.refusals += 1
                raise StorageUnavailable(READ_ONLY)
            return await method(*args, **kwargs)

        return call


@pytest.fixture
async def fake() -> AsyncIterator[HeldBfl]:
    server = HeldBfl()
    await server.start()
    yield server
    await server.close()


def stalled(events: Recorder, job_id: int) -> bool:
    return any(isinstance(event, JobStalled) for event in events.by_job[job_id])


def pool_on(store: RefusingStore | Database, fake: HeldBfl, catalogue: Catalogue, retry):
    async def sleep(seconds: float) -> None:  # the test's clock for store retries
        if seconds >= NEVER:
            await asyncio.Event().wait()
        await retry.wait()
        retry.clear()

    build = lane(fake, store, catalogue, [], probe_every_s=NEVER)  # type: ignore[arg-type]
    return make_pool(catalogue, store, hosted=build, sleep=sleep)  # type: ignore[arg-type]


@pytest.mark.parametrize("call", ["settle", "save_hosted_task", "hosted_tasks"])
async def test_an_api_job_waits_for_the_store_and_finishes_once_it_is_back(
    fake: HeldBfl, db: Database, catalogue: Catalogue, call: str, caplog
) -> None:
    store = RefusingStore(db)
    store.refused.add(call)
    retry = asyncio.Event()
    pool = pool_on(store, fake, catalogue, retry)
    events = Recorder(pool)
    await pool.start()
    try:
        job = (await pool.submit(api(catalogue), JobOwner(1))).job_id
        await events.until(lambda: stalled(events, job))
        told = next(e for e in events.by_job[job] if isinstance(e, JobStalled))
        assert told.job.problem == READ_ONLY  # what the person's progress message shows
        retry.set()  # a retry while the store still refuses: the job is still kept
        await events.until(lambda: store.refusals >= 2)
        assert events.final(job) is None
        store.refused.clear()
        retry.set()
        [done] = await events.finished(job)
        assert isinstance(done, JobFinished)
        assert len(fake.submitted) == 1  # never sent twice
        assert await db.spent(0, 1) == 4
        assert (await db.get_job(job)).record.status is JobStatus.DONE
    finally:
        await pool.shutdown(drain=False)
    assert "Pool task" not in caplog.text


async def test_a_shutdown_while_charging_waits_keeps_the_job_for_the_next_start(
    fake: HeldBfl, db: Database, catalogue: Catalogue, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    store = RefusingStore(db)
    store.refused.add("settle")
    pool = pool_on(store, fake, catalogue, asyncio.Event())
    events = Recorder(pool)
    await pool.start()
    job = (await pool.submit(api(catalogue), JobOwner(1))).job_id
    await events.until(lambda: stalled(events, job))
    await pool.shutdown(drain=False)
    assert "Pool task" not in caplog.text  # no task died with the store's error
    assert (await db.get_job(job)).record.status is JobStatus.RUNNING  # kept

    again = pool_on(db, fake, catalogue, asyncio.Event())
    events = Recorder(again)
    await again.start()
    try:
        [done] = await events.finished(job)
        assert isinstance(done, JobFinished)
        assert len(fake.submitted) == 1  # its stored task was polled, not sent again
        assert await db.spent(0, 1) == 4
    finally:
        await again.shutdown(drain=False)
