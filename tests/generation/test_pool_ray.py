"""GPUs on other machines as Ray actors behind the one fair queue, on a real local Ray cluster
(CPU actors, the stand-in engine), real relay and worker processes and a real SQLite store:
jobs run on actors and local processes side by side, a running actor job is cancelled within a
step, an actor killed mid-job is replaced and its job retried once (and failed clearly the
second time), and a lost cluster requeues its running jobs, which run on local GPUs or once the
cluster is back, while the local GPUs keep working when the cluster cannot be reached at all.

Ray is a test dependency (`pip install '.[test,ray]'`, as the Makefile does): these tests are
never skipped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from generation.jobs import (
    JobCancelled,
    JobFailed,
    JobFinished,
    JobOwner,
    JobProgress,
    JobQueued,
    JobStarted,
    JobStatus,
)
from generation.models import Catalogue
from generation.pool import WorkerPool, WorkerState, WorkerStatus
from generation.pool.live import CRASH_REASON
from generation.workers.config import WorkerConfig
from generation.workers.ray_config import RayPlacement
from generation.workers.standin import run_record
from generation.workers.supervision import SupervisionSettings
from storage import Database
from tests.generation.helpers import STANDIN, Recorder, request
from tests.generation.ray_cluster import FAILS_WITH, LocalRayCluster, cluster, free_port

__all__ = ["cluster"]  # the fixture, imported

STEP_S = 0.05
ACTOR_START_S = 90.0  # an actor's first start on a busy CI machine (Ray starts a Python worker)
QUICK_RETRIES = SupervisionSettings(backoff_s=0.2, max_backoff_s=1.0)
CHECKOUT = Path(__file__).resolve().parents[2]
PLACE_S = 12.0  # enough to join the test cluster and place an actor on a busy CI machine


def pool_of(
    catalogue: Catalogue,
    database: Database,
    workers: list[WorkerConfig],
    step_s: float = STEP_S,
    **options: object,
) -> WorkerPool:
    return WorkerPool(
        catalogue,
        database,
        workers,
        engine_factory=STANDIN,
        engine_options={"step_seconds": step_s},
        supervision=QUICK_RETRIES,
        **options,  # type: ignore[arg-type]
    )


async def ready(pool: WorkerPool) -> None:
    await pool.start()
    await asyncio.wait_for(pool.wait_until_ready(), ACTOR_START_S)


def worker(pool: WorkerPool, worker_id: str) -> WorkerStatus:
    return next(w for w in pool.snapshot().workers if w.id == worker_id)


def started_on(recorder: Recorder, job_id: int) -> list[str]:
    return [e.worker for e in recorder.by_job[job_id] if isinstance(e, JobStarted)]


async def test_jobs_run_on_actors_and_local_processes_side_by_side_under_one_fair_queue(
    catalogue: Catalogue, database: Database, cluster: LocalRayCluster
) -> None:
    pool = pool_of(catalogue, database, [WorkerConfig("cpu:0", "cpu"), cluster.worker("remote")])
    recorder = Recorder(pool)
    await ready(pool)
    many = [(await pool.submit(request(catalogue), JobOwner(1))).job_id for _ in range(6)]
    late = [(await pool.submit(request(catalogue), JobOwner(2))).job_id for _ in range(2)]
    results = await recorder.finished(*many, *late)
    assert all(isinstance(result, JobFinished) for result in results)
    starts = [e.job_id for e in recorder.events if isinstance(e, JobStarted)]
    # fair: the person who came later is not behind all six of the first person's jobs
    assert starts.index(late[0]) < starts.index(many[4])
    assert starts.index(late[1]) < starts.index(many[5])
    on = {job: started_on(recorder, job)[0] for job in many + late}
    assert set(on.values()) == {"cpu:0", "remote"}
    remote_jobs = [job for job, where in on.items() if where == "remote"]
    actor_pid = worker(pool, "remote").pid
    for job in remote_jobs:  # images made in the actor's process, progress reported step by step
        finished = recorder.final(job)
        assert isinstance(finished, JobFinished)
        assert run_record(await database.read_image(job, 0))["pid"] == actor_pid
        steps = [e.step for e in recorder.by_job[job] if isinstance(e, JobProgress)]
        assert steps == [1, 2, 3, 4, 5]
        stored = await database.get_job(job)
        assert stored is not None
        assert stored.record.status is JobStatus.DONE
    assert actor_pid != os.getpid()
    assert "ray" not in sys.modules  # Ray lives in the relays and actors, not the pool's process
    await pool.shutdown()


async def test_a_running_actor_job_is_cancelled_within_a_step(
    catalogue: Catalogue, database: Database, cluster: LocalRayCluster
) -> None:
    pool = pool_of(catalogue, database, [cluster.worker("remote")], step_s=0.2)
    recorder = Recorder(pool)
    await ready(pool)
    actor_pid = worker(pool, "remote").pid
    job = (await pool.submit(request(catalogue, steps=100), JobOwner(1))).job_id  # 20 s
    await recorder.until(lambda: "JobProgress" in recorder.kinds(job))
    assert await pool.cancel(job)
    assert isinstance(recorder.final(job), JobCancelled)
    steps = [e.step for e in recorder.by_job[job] if isinstance(e, JobProgress)]
    assert max(steps) < 50  # stopped early, not run to the end
    assert worker(pool, "remote").pid == actor_pid  # the actor honoured it: nothing was killed
    assert worker(pool, "remote").restarts == 0
    again = (await pool.submit(request(catalogue), JobOwner(1))).job_id
    assert isinstance((await recorder.finished(again))[0], JobFinished)
    await pool.shutdown()


async def test_an_actor_killed_mid_job_is_replaced_and_the_job_retried_once_and_delivered(
    catalogue: Catalogue, database: Database, cluster: LocalRayCluster
) -> None:
    pool = pool_of(catalogue, database, [cluster.worker("remote")])
    recorder = Recorder(pool)
    await ready(pool)
    first_pid = worker(pool, "remote").pid
    assert first_pid is not None
    job = (await pool.submit(request(catalogue, steps=40), JobOwner(1))).job_id
    await recorder.until(lambda: "JobProgress" in recorder.kinds(job))
    os.kill(first_pid, signal.SIGKILL)
    (finished,) = await recorder.finished(job, timeout_s=ACTOR_START_S)
    assert isinstance(finished, JobFinished)
    assert run_record(await database.read_image(job, 0))["pid"] != first_pid  # new actor
    assert recorder.kinds(job).count("JobStarted") == 2
    assert worker(pool, "remote").restarts == 1
    await pool.shutdown()


async def test_a_job_that_kills_its_actor_twice_fails_clearly(
    catalogue: Catalogue, database: Database, cluster: LocalRayCluster
) -> None:
    pool = pool_of(catalogue, database, [cluster.worker("remote")])
    recorder = Recorder(pool)
    await ready(pool)
    bad = (await pool.submit(request(catalogue, "standin:crash"), JobOwner(1))).job_id
    (failed,) = await recorder.finished(bad, timeout_s=2 * ACTOR_START_S)
    assert isinstance(failed, JobFailed)
    assert failed.reason == CRASH_REASON
    assert failed.error_kind == "worker_crash"
    stored = await database.get_job(bad)
    assert stored is not None
    assert stored.record.status is JobStatus.FAILED
    await pool.shutdown()


async def test_a_cluster_that_cannot_be_reached_leaves_the_local_gpus_working(
    catalogue: Catalogue, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # the bot's side is right; nothing answers
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t0ken")
    nowhere = RayPlacement(address=f"127.0.0.1:{free_port()}", node="any", num_gpus=0)
    remote = WorkerConfig("remote", "cpu", ray=nowhere)
    pool = pool_of(catalogue, database, [WorkerConfig("cpu:0", "cpu"), remote])
    recorder = Recorder(pool)
    await pool.start()
    jobs = [(await pool.submit(request(catalogue), JobOwner(1))).job_id for _ in range(3)]
    results = await recorder.finished(*jobs)
    assert all(isinstance(result, JobFinished) for result in results)
    assert {started_on(recorder, job)[0] for job in jobs} == {"cpu:0"}
    await recorder.until(lambda: worker(pool, "remote").state is WorkerState.FAILED)
    problem = pool.worker_problems()["remote"]
    assert "does not answer" in problem
    await pool.shutdown()


async def test_a_lost_cluster_requeues_its_running_jobs_which_run_locally_or_when_it_returns(
    catalogue: Catalogue, database: Database, cluster: LocalRayCluster
) -> None:
    pool = pool_of(catalogue, database, [WorkerConfig("cpu:0", "cpu"), cluster.worker("remote")])
    recorder = Recorder(pool)
    await ready(pool)
    jobs = [(await pool.submit(request(catalogue, steps=60), JobOwner(1))).job_id for _ in range(2)]
    await recorder.until(lambda: all("JobProgress" in recorder.kinds(job) for job in jobs))
    (on_remote,) = [job for job in jobs if started_on(recorder, job) == ["remote"]]
    cluster.kill()
    results = await recorder.finished(*jobs, timeout_s=ACTOR_START_S)
    assert all(isinstance(result, JobFinished) for result in results)
    assert started_on(recorder, on_remote) == ["remote", "cpu:0"]  # requeued, run locally
    assert JobQueued in {type(e) for e in recorder.by_job[on_remote][2:]}
    await recorder.until(lambda: worker(pool, "remote").state is WorkerState.FAILED)
    assert "remote" in pool.worker_problems()
    cluster.start()  # the GPU comes back with its node
    await recorder.until(
        lambda: worker(pool, "remote").state is WorkerState.IDLE, timeout_s=ACTOR_START_S
    )
    await pool.shutdown()


async def test_jobs_of_a_lost_cluster_wait_and_run_when_it_returns(
    catalogue: Catalogue, database: Database, cluster: LocalRayCluster
) -> None:
    pool = pool_of(catalogue, database, [cluster.worker("remote")])
    recorder = Recorder(pool)
    await ready(pool)
    running = (await pool.submit(request(catalogue, steps=60), JobOwner(1))).job_id
    waiting = (await pool.submit(request(catalogue), JobOwner(2))).job_id
    await recorder.until(lambda: "JobProgress" in recorder.kinds(running))
    cluster.kill()
    await recorder.until(lambda: worker(pool, "remote").state is WorkerState.FAILED)
    assert "JobQueued" in recorder.kinds(running)[2:]  # requeued, not failed
    assert recorder.final(running) is None
    assert recorder.final(waiting) is None
    cluster.start()
    results = await recorder.finished(running, waiting, timeout_s=2 * ACTOR_START_S)
    assert all(isinstance(result, JobFinished) for result in results)
    await pool.shutdown()


async def test_a_lost_node_marks_its_gpu_failed_requeues_its_job_and_the_gpu_returns_with_it(
    catalogue: Catalogue, database: Database, cluster: LocalRayCluster
) -> None:
    node = cluster.add_node("second-box")
    remote = cluster.worker("box", node="second-box", start_timeout_s=15.0)
    pool = pool_of(catalogue, database, [WorkerConfig("cpu:0", "cpu"), remote])
    recorder = Recorder(pool)
    try:
        await ready(pool)
        jobs = [(await pool.submit(request(catalogue, steps=60), JobOwner(1))).job_id for _ in "ab"]
        await recorder.until(lambda: all("JobProgress" in recorder.kinds(job) for job in jobs))
        (on_box,) = [job for job in jobs if started_on(recorder, job) == ["box"]]
        cluster.kill_node(node)
        results = await recorder.finished(*jobs, timeout_s=ACTOR_START_S)
        assert all(isinstance(result, JobFinished) for result in results)
        assert started_on(recorder, on_box) == ["box", "cpu:0"]  # requeued, run on a local GPU
        await recorder.until(
            lambda: worker(pool, "box").state is WorkerState.FAILED, timeout_s=ACTOR_START_S
        )
        assert "box" in pool.worker_problems()  # what /admin gpus and /healthz show
        node = cluster.add_node("second-box")
        await recorder.until(
            lambda: worker(pool, "box").state is WorkerState.IDLE, timeout_s=2 * ACTOR_START_S
        )
        again = (await pool.submit(request(catalogue), JobOwner(2))).job_id
        assert isinstance((await recorder.finished(again))[0], JobFinished)
    finally:
        await pool.shutdown()
        cluster.kill_node(node)


async def test_a_pinned_model_slower_to_load_than_the_start_timeout_still_starts(
    catalogue: Catalogue, database: Database, cluster: LocalRayCluster
) -> None:
    """`start_timeout_s` bounds joining the cluster and placing the actor, not loading models:
    a big pinned model that takes longer than it to load is ready once it is loaded."""
    model = next(iter(catalogue))
    remote = cluster.worker("remote", start_timeout_s=PLACE_S, pinned=(model,))
    pool = WorkerPool(
        catalogue,
        database,
        [remote],
        engine_factory=STANDIN,
        engine_options={"step_seconds": STEP_S, "load_seconds": PLACE_S + 2},
        supervision=QUICK_RETRIES,
    )
    await ready(pool)
    status = worker(pool, "remote")
    assert status.restarts == 0
    assert status.loaded == (model,)
    await pool.shutdown()


@pytest.mark.parametrize(
    ("engine", "said"),
    [
        ("DiesWhileBuilt", "its worker process has died"),  # Ray's words: the process is gone
        ("FailsWhileBuilt", f"KeyError: '{FAILS_WITH}'"),  # the end of the actor's traceback
    ],
)
async def test_an_actor_that_stops_before_it_is_ready_says_why_in_the_gpus_problem(
    catalogue: Catalogue, database: Database, cluster: LocalRayCluster, engine: str, said: str
) -> None:
    pool = WorkerPool(
        catalogue,
        database,
        [cluster.worker("remote")],
        engine_factory=f"tests.generation.ray_cluster:{engine}",
        supervision=QUICK_RETRIES,
    )
    recorder = Recorder(pool)
    await pool.start()
    await recorder.until(
        lambda: worker(pool, "remote").state is WorkerState.FAILED, timeout_s=ACTOR_START_S
    )
    problem = pool.worker_problems()["remote"]  # what /admin gpus and /healthz show
    assert "remote: its actor stopped before it was ready: " in problem
    assert said in problem
    await pool.shutdown()


async def test_a_wrong_token_is_refused_in_one_sentence(
    catalogue: Catalogue,
    database: Database,
    cluster: LocalRayCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-clusters-token")
    pool = pool_of(catalogue, database, [cluster.worker("remote")])
    recorder = Recorder(pool)
    await pool.start()
    await recorder.until(
        lambda: worker(pool, "remote").state is WorkerState.FAILED, timeout_s=ACTOR_START_S
    )
    problem = pool.worker_problems()["remote"]
    assert f"cannot join the Ray cluster at {cluster.address}: the cluster refused the token" in (
        problem
    )
    await pool.shutdown()


async def test_a_gpu_machine_running_other_code_is_refused_with_both_versions(
    catalogue: Catalogue,
    database: Database,
    cluster: LocalRayCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = tmp_path / "other-checkout"  # another machine's checkout, one file newer
    shutil.copytree(CHECKOUT / "generation", other / "generation")
    (other / "generation" / "newer.py").write_text("# a later commit\n")
    node = cluster.add_node("other-code", project=other)
    monkeypatch.chdir(tmp_path)  # Ray puts its driver's directory on its workers' path
    pool = pool_of(catalogue, database, [cluster.worker("box", node="other-code")])
    recorder = Recorder(pool)
    try:
        await pool.start()
        await recorder.until(
            lambda: worker(pool, "box").state is WorkerState.FAILED, timeout_s=ACTOR_START_S
        )
        problem = pool.worker_problems()["box"]
        assert "box: the GPU machine runs Atelier code " in problem
        assert ", but the bot runs Atelier code " in problem
        assert "install the same checkout, Ray version and Python on both machines" in problem
    finally:
        await pool.shutdown()
        cluster.kill_node(node)
