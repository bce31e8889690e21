"""The worker pool with real child processes and a real SQLite store.

Workers run `StandInEngine` (no torch: a child starts in a fraction of a second; each step
sleeps) so that crashes, cancels and restarts can be staged; `test_pool_tiny.py` runs the real
engine on tiny models. Waits are bounded by `TIMEOUT_S` only to fail instead of hanging.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from generation.errors import ModelUnavailable
from generation.jobs import (
    JobCancelled,
    JobFailed,
    JobFinished,
    JobOwner,
    JobProgress,
    JobQueued,
    JobStalled,
    JobStarted,
    JobState,
    JobStatus,
    Priority,
)
from generation.models import Catalogue
from generation.pool import PoolError, QueueFull, WorkerPool, WorkerState
from generation.scheduler import SchedulerSettings
from generation.workers.config import WorkerConfig
from generation.workers.standin import run_record
from storage import Database
from tests.generation.helpers import (
    STANDIN,
    TIMEOUT_S,
    Recorder,
    make_pool,
    request,
    stored_pngs,
)


async def status_of(db: Database, job_id: int) -> JobStatus:
    stored = await db.get_job(job_id)
    assert stored is not None
    return stored.record.status


async def test_jobs_from_three_users_complete_on_two_workers(
    catalogue: Catalogue, database: Database
) -> None:
    pool = make_pool(catalogue, database, workers=2)
    recorder = Recorder(pool)
    await pool.start()
    queued = [await pool.submit(request(catalogue), JobOwner(user)) for user in (1, 2, 3, 1, 2, 3)]
    assert [q.position for q in queued[:3]] == [1, 2, 3]
    ids = [q.job_id for q in queued]
    results = await recorder.finished(*ids)
    assert all(isinstance(r, JobFinished) for r in results)
    for job_id in ids:
        kinds = recorder.kinds(job_id)
        # queued, its place pushed as the queue moved (no polling), then started
        moving = kinds[: kinds.index("JobStarted")]
        assert moving
        assert set(moving) == {"JobQueued"}
        assert kinds[-1] == "JobFinished"
        steps = [e.step for e in recorder.by_job[job_id] if isinstance(e, JobProgress)]
        assert steps == [1, 2, 3, 4, 5]
        assert await status_of(database, job_id) is JobStatus.DONE
    workers = {e.worker for e in recorder.events if isinstance(e, JobStarted)}
    assert workers == {"cpu:0", "cpu:1"}
    pids = {run_record((await stored_pngs(database, job_id))[0])["pid"] for job_id in ids}
    assert len(pids) == 2  # two processes did the work
    snapshot = pool.snapshot()
    assert all(w.state is WorkerState.IDLE and w.model_loads == 1 for w in snapshot.workers)
    assert snapshot.model_speeds["playground-v2.5"] > 0
    await pool.shutdown()


async def test_a_killed_worker_restarts_and_its_job_still_completes(
    catalogue: Catalogue, database: Database
) -> None:
    restarts: list[str] = []

    class Observer:
        def record_model_load(self, worker: str, model: str) -> None:
            pass

        def record_worker_restart(self, worker: str) -> None:
            restarts.append(worker)

    pool = make_pool(catalogue, database, step_seconds=0.05, observer=Observer())
    recorder = Recorder(pool)
    await pool.start()
    job = (await pool.submit(request(catalogue, steps=20), JobOwner(1))).job_id
    await recorder.until(
        lambda: any(isinstance(e, JobProgress) and e.step >= 2 for e in recorder.by_job[job])
    )
    first_pid = pool.snapshot().workers[0].pid
    assert first_pid is not None
    os.kill(first_pid, signal.SIGKILL)
    (result,) = await recorder.finished(job)
    assert isinstance(result, JobFinished)
    assert run_record((await stored_pngs(database, job))[0])["pid"] != first_pid
    assert recorder.kinds(job).count("JobStarted") == 2  # put back in the queue, run again
    assert "JobQueued" in recorder.kinds(job)[2:]
    assert await status_of(database, job) is JobStatus.DONE
    assert restarts == ["cpu:0"]
    assert pool.snapshot().workers[0].restarts == 1
    await pool.shutdown()


async def test_a_job_that_crashes_its_worker_twice_fails_with_a_clear_reason(
    catalogue: Catalogue, database: Database
) -> None:
    pool = make_pool(catalogue, database)
    recorder = Recorder(pool)
    await pool.start()
    bad = (await pool.submit(request(catalogue, "standin:crash"), JobOwner(1))).job_id
    good = (await pool.submit(request(catalogue), JobOwner(2))).job_id
    failed, finished = await recorder.finished(bad, good)
    assert isinstance(failed, JobFailed)
    assert failed.error_kind == "worker_crash"
    assert "crash twice" in failed.reason
    stored = await database.get_job(bad)
    assert stored is not None
    assert stored.record.status is JobStatus.FAILED
    assert stored.record.error == failed.reason
    assert isinstance(finished, JobFinished)  # the restarted worker carries on
    assert pool.snapshot().workers[0].restarts == 2
    await pool.shutdown()


async def test_an_engine_error_fails_only_that_job(
    catalogue: Catalogue, database: Database
) -> None:
    pool = make_pool(catalogue, database)
    recorder = Recorder(pool)
    await pool.start()
    oom = (await pool.submit(request(catalogue, "standin:oom"), JobOwner(1))).job_id
    (failed,) = await recorder.finished(oom)
    assert isinstance(failed, JobFailed)
    assert failed.error_kind == "out_of_memory"
    assert "ran out of memory" in failed.reason
    assert pool.snapshot().workers[0].restarts == 0
    await pool.shutdown()


async def test_cancel_a_waiting_and_a_running_job(catalogue: Catalogue, database: Database) -> None:
    pool = make_pool(catalogue, database)
    recorder = Recorder(pool)
    await pool.start()
    running = (await pool.submit(request(catalogue, steps=100), JobOwner(1))).job_id
    waiting = (await pool.submit(request(catalogue), JobOwner(2))).job_id
    await recorder.until(lambda: any(isinstance(e, JobProgress) for e in recorder.by_job[running]))

    assert await pool.cancel(waiting) is True
    *queued, last = recorder.kinds(waiting)
    assert set(queued) == {"JobQueued"}
    assert last == "JobCancelled"
    assert await status_of(database, waiting) is JobStatus.CANCELLED

    assert await pool.cancel(running) is True
    assert isinstance(recorder.final(running), JobCancelled)
    steps = [e.step for e in recorder.by_job[running] if isinstance(e, JobProgress)]
    assert steps[-1] < 100  # stopped part-way, not run to the end
    assert await status_of(database, running) is JobStatus.CANCELLED
    assert await pool.cancel(running) is False  # already over

    after = (await pool.submit(request(catalogue), JobOwner(1))).job_id
    (result,) = await recorder.finished(after)
    assert isinstance(result, JobFinished)  # the worker was freed, not restarted
    assert pool.snapshot().workers[0].restarts == 0
    await pool.shutdown()


async def test_cancel_all_of_a_users_jobs(catalogue: Catalogue, database: Database) -> None:
    pool = make_pool(catalogue, database, settings=SchedulerSettings(max_queued=10))
    await pool.start()
    pool.pause()
    mine = [(await pool.submit(request(catalogue), JobOwner(1))).job_id for _ in range(3)]
    theirs = (await pool.submit(request(catalogue), JobOwner(2))).job_id
    assert await pool.cancel_user(1) == 3
    for job_id in mine:
        assert await status_of(database, job_id) is JobStatus.CANCELLED
    assert pool.job(theirs).position == 1
    await pool.shutdown(drain=False)


async def test_queue_full_refuses_and_stores_nothing(
    catalogue: Catalogue, database: Database
) -> None:
    pool = make_pool(catalogue, database, settings=SchedulerSettings(max_queued=1))
    await pool.start()
    pool.pause()
    await pool.submit(request(catalogue), JobOwner(1))
    with pytest.raises(QueueFull, match="waiting"):
        await pool.submit(request(catalogue), JobOwner(1))
    assert len(await database.unfinished_jobs()) == 1
    await pool.shutdown(drain=False)


async def test_pause_holds_jobs_and_resume_runs_them(
    catalogue: Catalogue, database: Database
) -> None:
    pool = make_pool(catalogue, database)
    recorder = Recorder(pool)
    await pool.start()
    pool.pause()
    job = (await pool.submit(request(catalogue), JobOwner(1))).job_id
    await pool.wait_until_ready()
    assert pool.paused
    assert pool.job(job).position == 1
    assert pool.snapshot().waiting[0].job_id == job
    pool.resume()
    (result,) = await recorder.finished(job)
    assert isinstance(result, JobFinished)
    await pool.shutdown()


async def test_models_can_be_pinned_loaded_and_unloaded(
    catalogue: Catalogue, database: Database
) -> None:
    loads: list[tuple[str, str]] = []

    class Observer:
        def record_model_load(self, worker: str, model: str) -> None:
            loads.append((worker, model))

        def record_worker_restart(self, worker: str) -> None:
            pass

    worker = WorkerConfig(
        "cpu:0", "cpu", models=frozenset({"flux-dev", "flux-schnell"}), max_models=2
    )
    pool = WorkerPool(catalogue, database, [worker], engine_factory=STANDIN, observer=Observer())
    recorder = Recorder(pool)
    await pool.start()
    await pool.wait_until_ready()
    await pool.pin("cpu:0", "flux-dev")
    await pool.load_model("cpu:0", "flux-schnell")
    status = pool.snapshot().workers[0]
    assert status.loaded == ("flux-dev", "flux-schnell")
    assert status.pinned == ("flux-dev",)
    assert loads == [("cpu:0", "flux-dev"), ("cpu:0", "flux-schnell")]
    await pool.unload_model("cpu:0", "flux-schnell")
    assert pool.snapshot().workers[0].loaded == ("flux-dev",)
    with pytest.raises(PoolError, match="may not run playground"):
        await pool.load_model("cpu:0", "playground-v2.5")
    with pytest.raises(PoolError, match="no worker 'cuda:7'"):
        await pool.pin("cuda:7", "flux-dev")
    # A pinned model survives a restart of the worker.
    pid = pool.snapshot().workers[0].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await recorder.until(lambda: pool.snapshot().workers[0].pid not in (pid, None))
    await recorder.until(lambda: pool.alive_workers() == 1)
    assert pool.snapshot().workers[0].loaded == ("flux-dev",)
    await pool.shutdown()


async def test_a_model_no_worker_may_run_is_refused(
    catalogue: Catalogue, database: Database
) -> None:
    worker = WorkerConfig("cpu:0", "cpu", models=frozenset({"flux-schnell"}))
    pool = WorkerPool(catalogue, database, [worker], engine_factory=STANDIN)
    with pytest.raises(ModelUnavailable, match=r"No GPU here may run playground-v2\.5"):
        await pool.submit(request(catalogue), JobOwner(1))
    assert await database.unfinished_jobs() == []


async def test_shutdown_without_drain_puts_running_jobs_back_and_a_restart_finishes_all(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    path = tmp_path / "atelier.sqlite3"
    async with await Database.open(path) as first_db:
        pool = make_pool(catalogue, first_db, settings=SchedulerSettings(max_queued=5))
        recorder = Recorder(pool)
        await pool.start()
        ids = [
            (await pool.submit(request(catalogue, steps=50), JobOwner(1))).job_id for _ in range(3)
        ]
        await recorder.until(lambda: "JobStarted" in recorder.kinds(ids[0]))
        await pool.shutdown(drain=False)
        assert [r.id for r in await first_db.unfinished_jobs()] == ids
        assert {r.status for r in await first_db.unfinished_jobs()} == {JobStatus.QUEUED}

    async with await Database.open(path) as second_db:
        pool = make_pool(catalogue, second_db, step_seconds=0.005)
        recorder = Recorder(pool)
        await pool.start()
        results = await recorder.finished(*ids)
        assert all(isinstance(r, JobFinished) for r in results)
        started = [e.job_id for e in recorder.events if isinstance(e, JobStarted)]
        assert started == ids  # in their original order
        assert [type(recorder.by_job[i][0]) for i in ids] == [JobQueued] * 3
        await pool.shutdown()


async def test_places_are_pushed_as_the_queue_moves(
    catalogue: Catalogue, database: Database
) -> None:
    pool = make_pool(catalogue, database, settings=SchedulerSettings(max_queued=30))
    recorder = Recorder(pool)
    await pool.start()
    pool.pause()
    ids = [(await pool.submit(request(catalogue), JobOwner(1))).job_id for _ in range(25)]

    def places(job_id: int) -> list[int]:
        return [e.position for e in recorder.by_job[job_id] if isinstance(e, JobQueued)]

    await recorder.until(lambda: len(places(ids[-1])) == 1)
    assert await pool.cancel(ids[0])  # nobody asks for places: they come
    await recorder.until(lambda: places(ids[20]) == [21, 20])

    assert places(ids[1]) == [2, 1]
    assert places(ids[19]) == [20, 19]
    assert places(ids[24]) == [25]  # beyond the first 20, a move is not an edit per job
    await pool.shutdown(drain=False)


async def test_a_live_job_is_one_snapshot_from_waiting_to_running(
    catalogue: Catalogue, database: Database
) -> None:
    pool = make_pool(catalogue, database)
    recorder = Recorder(pool)
    await pool.start()
    pool.pause()
    owner = JobOwner(5, priority=Priority.RELAX)
    job = (await pool.submit(request(catalogue, steps=100), owner)).job_id

    waiting = pool.job(job)
    assert waiting is not None
    assert (waiting.state, waiting.position, waiting.eta_s) == (JobState.WAITING, 1, None)
    assert (waiting.owner, waiting.priority, waiting.model) == (
        owner,
        Priority.RELAX,
        "playground-v2.5",
    )

    pool.resume()
    await recorder.until(
        lambda: any(isinstance(e, JobProgress) and e.step >= 2 for e in recorder.by_job[job])
    )
    running = pool.job(job)
    assert running is not None
    assert running.state is JobState.RUNNING
    assert (running.worker, running.position, running.total) == ("cpu:0", None, 100)
    assert running.step >= 2
    assert await pool.cancel(job)
    assert pool.job(job) is None  # ended: history is storage's
    await pool.shutdown()


class ReadOnlyForAWhile:
    """The real store, whose first `failures` attempts to record a finish fail as SQLite's do
    on a read-only disk (mapped to `StorageUnavailable` by the store itself)."""

    def __init__(self, store: Database, failures: int) -> None:
        self._store = store
        self.failures = failures

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def mark_done(self, *args: object) -> None:
        if self.failures:
            self.failures -= 1
            await self._store._conn.execute("PRAGMA query_only = ON")
            try:
                await self._store.mark_done(*args)  # type: ignore[arg-type]
            finally:
                await self._store._conn.execute("PRAGMA query_only = OFF")
        await self._store.mark_done(*args)  # type: ignore[arg-type]


async def test_a_finish_the_store_refuses_is_announced_retried_with_backoff_and_kept(
    catalogue: Catalogue, database: Database
) -> None:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:  # the test's clock: no real waiting
        delays.append(seconds)

    store = ReadOnlyForAWhile(database, failures=3)
    pool = make_pool(catalogue, store, sleep=sleep)  # type: ignore[arg-type]
    recorder = Recorder(pool)
    await pool.start()
    job = (await pool.submit(request(catalogue), JobOwner(1))).job_id

    (result,) = await recorder.finished(job)

    assert isinstance(result, JobFinished)
    stalls = [e for e in recorder.by_job[job] if isinstance(e, JobStalled)]
    assert [s.retry_in_s for s in stalls] == [1.0, 2.0, 5.0]
    assert all("attempt to write a readonly database" in s.problem for s in stalls)
    assert delays[-3:] == [1.0, 2.0, 5.0]
    assert await status_of(database, job) is JobStatus.DONE
    assert len(await stored_pngs(database, job)) == 1
    await pool.shutdown()


async def test_every_event_carries_the_jobs_snapshot_from_loading_its_model_to_done(
    catalogue: Catalogue, database: Database
) -> None:
    """A fresh worker loads the job's model first (the stand-in takes 3 s): the job's
    snapshot says so, then runs, then is done with its image count; each event's snapshot is
    the job right after that event's change."""
    pool = WorkerPool(
        catalogue,
        database,
        [WorkerConfig("cpu:0", "cpu")],
        engine_factory=STANDIN,
        engine_options={"step_seconds": 0.02, "load_seconds": 3.0},
    )
    recorder = Recorder(pool)
    await pool.start()
    owner = JobOwner(3, priority=Priority.RELAX)
    job = (await pool.submit(request(catalogue, steps=4), owner)).job_id
    (finished,) = await recorder.finished(job)

    events = recorder.by_job[job]
    assert all(e.job.job_id == job and e.job.owner == owner for e in events)
    assert events[0].job.state is JobState.WAITING
    assert events[0].job.position == 1
    started = next(e for e in events if isinstance(e, JobStarted))
    assert (started.job.state, started.job.worker, started.job.step) == (
        JobState.LOADING,
        "cpu:0",
        0,
    )
    steps = [e for e in events if isinstance(e, JobProgress)]
    assert [(e.job.state, e.job.step) for e in steps] == [(JobState.RUNNING, e.step) for e in steps]
    assert isinstance(finished, JobFinished)
    done = finished.job
    assert (done.state, done.image_count, done.step, done.total) == (JobState.DONE, 1, 4, 4)
    assert done.started_at is not None
    assert done.queued_at is not None
    await pool.shutdown()


class NeverWritable(ReadOnlyForAWhile):
    """The real store, which never records a finish (the disk stays read-only)."""

    def __init__(self, store: Database) -> None:
        super().__init__(store, failures=10**9)


async def test_a_shutdown_wakes_a_sleeping_store_retry_and_says_the_job_is_kept(
    catalogue: Catalogue, database: Database
) -> None:
    async def sleep(seconds: float) -> None:  # a retry that would sleep for ever
        await asyncio.Event().wait()

    pool = make_pool(catalogue, NeverWritable(database), sleep=sleep)
    recorder = Recorder(pool)
    await pool.start()
    job = (await pool.submit(request(catalogue), JobOwner(1))).job_id
    await recorder.until(lambda: any(isinstance(e, JobStalled) for e in recorder.by_job[job]))

    await asyncio.wait_for(pool.shutdown(), TIMEOUT_S)  # not held by the sleeping retry

    last = recorder.by_job[job][-1]
    assert isinstance(last, JobStalled)
    assert last.retry_in_s is None
    assert last.job.retry_in_s is None
    assert "attempt to write a readonly database" in (last.job.problem or "")
    assert await status_of(database, job) is JobStatus.RUNNING  # rerun on the next start
