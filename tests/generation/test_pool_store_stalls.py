"""A store that refuses writes, seen from the pool (stand-in engine, real worker processes, real
SQLite): a stalled finish neither holds up the next job on its GPU nor a shutdown."""

from __future__ import annotations

import asyncio

from generation.jobs import (
    JobCancelled,
    JobFinished,
    JobOwner,
    JobProgress,
    JobStalled,
    JobStatus,
)
from generation.models import Catalogue
from storage import Database, StorageUnavailable
from tests.generation.helpers import TIMEOUT_S, Recorder, make_pool, request, stored_pngs

READ_ONLY = "The database cannot be used right now (attempt to write a readonly database)."


class RefusesFinishes:
    """The real store, except that recording the finish of the jobs in `refused` fails as on a
    read-only disk (the store's own `StorageUnavailable`) until `refused` is emptied."""

    def __init__(self, store: Database) -> None:
        self._store = store
        self.refused: set[int] = set()

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def mark_done(self, job_id: int, *args: object) -> None:
        if job_id in self.refused:
            raise StorageUnavailable(READ_ONLY)
        await self._store.mark_done(job_id, *args)  # type: ignore[arg-type]


async def status_of(db: Database, job_id: int) -> JobStatus:
    stored = await db.get_job(job_id)
    assert stored is not None
    return stored.record.status


def stalled(recorder: Recorder, job_id: int) -> bool:
    return any(isinstance(e, JobStalled) for e in recorder.by_job[job_id])


async def test_a_stalled_finish_does_not_hold_up_the_next_job_on_its_gpu(
    catalogue: Catalogue, database: Database
) -> None:
    retry = asyncio.Event()  # the test's clock: a store retry waits until the test says

    async def sleep(seconds: float) -> None:
        await retry.wait()

    store = RefusesFinishes(database)
    pool = make_pool(catalogue, store, step_seconds=0.2, sleep=sleep)  # type: ignore[arg-type]
    recorder = Recorder(pool)
    await pool.start()
    first = (await pool.submit(request(catalogue, steps=2), JobOwner(1))).job_id
    store.refused.add(first)
    second = (await pool.submit(request(catalogue, steps=100), JobOwner(2))).job_id

    await recorder.until(lambda: stalled(recorder, first))
    # the one worker's events keep flowing while the first job's finish waits for the store
    await recorder.until(lambda: any(isinstance(e, JobProgress) for e in recorder.by_job[second]))
    assert await pool.cancel(second)  # honoured by the worker, which is not ended for it
    assert isinstance(recorder.final(second), JobCancelled)
    assert await status_of(database, second) is JobStatus.CANCELLED
    (worker,) = pool.snapshot().workers
    assert worker.restarts == 0
    assert recorder.final(first) is None
    assert await status_of(database, first) is JobStatus.RUNNING

    store.refused.clear()
    retry.set()
    (result,) = await recorder.finished(first)
    assert isinstance(result, JobFinished)
    assert await status_of(database, first) is JobStatus.DONE
    assert len(await stored_pngs(database, first)) == 1
    await pool.shutdown()


async def test_a_shutdown_ends_a_store_retry_at_once_and_the_job_reruns_on_the_next_start(
    catalogue: Catalogue, database: Database
) -> None:
    async def sleep(seconds: float) -> None:  # a retry that would never come by itself
        await asyncio.Event().wait()

    store = RefusesFinishes(database)
    pool = make_pool(catalogue, store, sleep=sleep)  # type: ignore[arg-type]
    recorder = Recorder(pool)
    await pool.start()
    job = (await pool.submit(request(catalogue, steps=2), JobOwner(1))).job_id
    store.refused.add(job)
    await recorder.until(lambda: stalled(recorder, job))

    await asyncio.wait_for(pool.shutdown(), TIMEOUT_S)  # bounded only to fail, not hang

    assert recorder.final(job) is None  # nobody is told it ended: it did not
    assert await status_of(database, job) is JobStatus.RUNNING
    again = make_pool(catalogue, database)
    recorder = Recorder(again)
    await again.start()
    (result,) = await recorder.finished(job)
    assert isinstance(result, JobFinished)
    assert await status_of(database, job) is JobStatus.DONE
    await again.shutdown()


class RefusesStarts(RefusesFinishes):
    """As `RefusesFinishes`, for recording that the jobs in `refused` started."""

    async def mark_running(self, job_id: int, worker: str) -> None:
        if job_id in self.refused:
            raise StorageUnavailable(READ_ONLY)
        await self._store.mark_running(job_id, worker)

    async def mark_done(self, job_id: int, *args: object) -> None:
        await self._store.mark_done(job_id, *args)  # type: ignore[arg-type]


async def test_a_cancel_during_a_stall_is_told_at_once_not_at_the_next_try(
    catalogue: Catalogue, database: Database
) -> None:
    retry = asyncio.Event()  # the test's clock: the store retry waits until the test says

    async def sleep(seconds: float) -> None:
        await retry.wait()

    store = RefusesStarts(database)
    pool = make_pool(catalogue, store, step_seconds=0.2, sleep=sleep)  # type: ignore[arg-type]
    recorder = Recorder(pool)
    await pool.start()
    await pool.wait_until_ready()
    pool.pause()
    job = (await pool.submit(request(catalogue, steps=100), JobOwner(1))).job_id
    store.refused.add(job)
    pool.resume()
    await recorder.until(lambda: stalled(recorder, job))
    assert not recorder.by_job[job][-1].job.cancelling

    cancel = asyncio.create_task(pool.cancel(job))
    await recorder.until(lambda: recorder.by_job[job][-1].job.cancelling)  # before any retry
    last = recorder.by_job[job][-1]
    assert isinstance(last, JobStalled)
    assert last.problem == READ_ONLY

    store.refused.clear()
    retry.set()
    assert await cancel
    assert isinstance(recorder.final(job), JobCancelled)
    assert not recorder.final(job).job.cancelling  # type: ignore[union-attr]
    assert await status_of(database, job) is JobStatus.CANCELLED
    await pool.shutdown()
