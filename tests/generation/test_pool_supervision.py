"""The policy for a worker that is not running (generation/workers/supervision.py), with real
worker processes and a real SQLite store: a worker on a GPU this machine does not have is failed
with its reason and retried with growing delays on a clock the test controls; jobs already
accepted wait and are told why, new ones are refused, and the waiting ones fail once the worker
has been failed for the configured time or an admin marks it failed."""

from __future__ import annotations

import asyncio

import pytest

from generation.errors import ModelUnavailable
from generation.jobs import JobFailed, JobOwner, JobProgress, JobQueued, JobStatus
from generation.models import Catalogue
from generation.pool import WorkerPool, WorkerState
from generation.workers.config import WorkerConfig
from generation.workers.supervision import SupervisionSettings
from storage import Database
from tests.generation.helpers import Recorder, make_pool, request

ENGINE = "generation.engine:Engine"  # the real engine: it is the one that checks the device


class ControlledTime:
    """A clock and a sleep the test controls: each sleep is recorded and moves the clock on by
    its length when it ends; from the `stop_after`th sleep on the sleeper waits for `released`."""

    def __init__(self, stop_after: int) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []
        self.stop_after = stop_after
        self.released = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if len(self.sleeps) >= self.stop_after:
            await self.released.wait()
        self.now += seconds
        await asyncio.sleep(0)


def dead_gpu_pool(
    catalogue: Catalogue, database: Database, time: ControlledTime, **settings: float
) -> WorkerPool:
    return WorkerPool(
        catalogue,
        database,
        [WorkerConfig("cuda:0", "cuda:0")],
        engine_factory=ENGINE,
        supervision=SupervisionSettings(**settings),  # type: ignore[arg-type]
        clock=time.clock,
        sleep=time.sleep,
    )


async def test_a_worker_on_a_missing_gpu_is_failed_retried_with_growing_delays_and_its_jobs_wait(
    tiny_catalogue: Catalogue, database: Database
) -> None:
    time = ControlledTime(stop_after=3)
    pool = dead_gpu_pool(tiny_catalogue, database, time, fail_jobs_after_s=1_000)
    recorder = Recorder(pool)
    accepted = await database.create_job(request(tiny_catalogue), JobOwner(1))  # a previous run's
    await pool.start()

    await recorder.until(lambda: len(time.sleeps) >= 3, timeout_s=120)

    assert time.sleeps == [4.0, 8.0, 16.0]  # doubling from backoff_s, never a tight loop
    (worker,) = pool.snapshot().workers
    assert worker.state is WorkerState.FAILED
    assert worker.last_error == "Device cuda:0 is not available: this machine has 0 CUDA GPU(s)."
    assert worker.problem == f"{worker.last_error} (next try in 16 s)"
    assert pool.worker_problems() == {"cuda:0": worker.problem}
    told = [e for e in recorder.by_job[accepted] if isinstance(e, JobQueued)]
    assert told[-1].waiting_for is not None
    assert "cuda:0 is not working (Device cuda:0 is not available" in told[-1].waiting_for
    assert (await database.get_job(accepted)).record.status is JobStatus.QUEUED
    with pytest.raises(ModelUnavailable, match=r"No GPU can run playground-v2.5 right now"):
        await pool.submit(request(tiny_catalogue), JobOwner(2))
    time.released.set()
    await pool.shutdown()


async def test_waiting_jobs_fail_once_the_worker_has_been_failed_for_the_configured_time(
    tiny_catalogue: Catalogue, database: Database
) -> None:
    time = ControlledTime(stop_after=3)
    pool = dead_gpu_pool(tiny_catalogue, database, time, fail_jobs_after_s=10)
    recorder = Recorder(pool)
    accepted = await database.create_job(request(tiny_catalogue), JobOwner(1))  # a previous run's
    await pool.start()

    (failed,) = await recorder.finished(accepted, timeout_s=120)

    assert isinstance(failed, JobFailed)
    assert failed.reason.startswith("No GPU could run this job: cuda:0 is not working (Device")
    assert time.sleeps[:2] == [4.0, 6.0]  # woken when the 10 s were up, inside the 8 s wait
    stored = (await database.get_job(accepted)).record
    assert (stored.status, stored.error) == (JobStatus.FAILED, failed.reason)
    time.released.set()
    await pool.shutdown()


async def test_a_worker_an_admin_marks_failed_fails_the_jobs_only_it_could_run(
    catalogue: Catalogue, database: Database
) -> None:
    pool = make_pool(catalogue, database, workers=1, step_seconds=0.02)
    recorder = Recorder(pool)
    await pool.start()
    await pool.wait_until_ready()
    pool.pause()  # so that the job is still waiting when the worker is taken out
    waiting = await pool.submit(request(catalogue), JobOwner(1))

    await pool.mark_failed("cpu:0", "its fan is broken")

    (failed,) = await recorder.finished(waiting.job_id)
    assert isinstance(failed, JobFailed)
    assert failed.reason == "No GPU could run this job: cpu:0 is not working (its fan is broken)."
    assert pool.snapshot().workers[0].problem == "marked failed by an admin: its fan is broken"
    with pytest.raises(ModelUnavailable):
        await pool.submit(request(catalogue), JobOwner(1))
    pool.restore("cpu:0")
    pool.resume()
    await recorder.until(lambda: pool.alive_workers() == 1)
    again = await pool.submit(request(catalogue), JobOwner(1))
    assert not isinstance((await recorder.finished(again.job_id))[0], JobFailed)
    await pool.shutdown()


async def test_a_job_running_on_a_worker_an_admin_marks_failed_fails_with_the_reason(
    catalogue: Catalogue, database: Database
) -> None:
    pool = make_pool(catalogue, database, workers=1, step_seconds=5)  # one step: 5 s
    recorder = Recorder(pool)
    await pool.start()
    running = await pool.submit(request(catalogue, steps=50), JobOwner(1))
    await recorder.until(lambda: "JobStarted" in recorder.kinds(running.job_id))

    await pool.mark_failed("cpu:0", "its fan is broken")

    (failed,) = await recorder.finished(running.job_id)
    assert isinstance(failed, JobFailed)
    assert failed.reason == "No GPU could run this job: cpu:0 is not working (its fan is broken)."
    stored = (await database.get_job(running.job_id)).record
    assert (stored.status, stored.error) == (JobStatus.FAILED, failed.reason)
    await pool.shutdown()


async def test_a_job_running_on_a_worker_an_admin_marks_failed_moves_to_another_and_says_why(
    catalogue: Catalogue, database: Database
) -> None:
    pool = make_pool(catalogue, database, workers=2, step_seconds=0.5)
    recorder = Recorder(pool)
    await pool.start()
    await pool.wait_until_ready()
    running = await pool.submit(request(catalogue, steps=8), JobOwner(1))
    await recorder.until(lambda: "JobStarted" in recorder.kinds(running.job_id))
    (first,) = [w.id for w in pool.snapshot().workers if w.job_id == running.job_id]

    await pool.mark_failed(first, "its fan is broken")

    (done,) = await recorder.finished(running.job_id)
    assert not isinstance(done, JobFailed)
    told = [e for e in recorder.by_job[running.job_id] if isinstance(e, JobQueued)]
    assert told[-1].waiting_for == (
        f"{first} was marked failed by an admin: its fan is broken; it starts again on another GPU"
    )
    await pool.shutdown()


class SlowToRecordStarts:
    """The real store, slow to record that a job started (as under a busy disk)."""

    def __init__(self, store: Database) -> None:
        self._store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def mark_running(self, job_id: int, worker: str) -> None:
        await asyncio.sleep(0.3)  # the worker reports several 20 ms steps meanwhile
        await self._store.mark_running(job_id, worker)


async def test_steps_reported_before_the_start_is_recorded_are_not_lost(
    catalogue: Catalogue, database: Database
) -> None:
    pool = make_pool(catalogue, SlowToRecordStarts(database), step_seconds=0.02)  # type: ignore[arg-type]
    recorder = Recorder(pool)
    await pool.start()
    queued = await pool.submit(request(catalogue), JobOwner(1))

    await recorder.finished(queued.job_id)

    kinds = recorder.kinds(queued.job_id)
    assert kinds[:2] == ["JobQueued", "JobStarted"]
    steps = [e.step for e in recorder.by_job[queued.job_id] if isinstance(e, JobProgress)]
    assert steps == [1, 2, 3, 4, 5]
    await pool.shutdown()
