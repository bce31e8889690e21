"""The pool's worker supervision: run each worker, restart it when it dies, settle the job it
ran, and handle what it reports (part of `WorkerPool`; its state is the pool's)."""

from __future__ import annotations

import logging
import time
from functools import partial

from generation.jobs import (
    JobFinished,
    JobProgress,
    JobQueued,
    JobState,
    JobStatus,
)
from generation.pool.live import CRASH_REASON, LiveJob, LiveWorker
from generation.pool.types import PoolError, WorkerMemory, WorkerState
from generation.workers.protocol import (
    JobDone,
    JobError,
    JobStopped,
    ModelLoaded,
    ModelLoadFailed,
    ModelUnloaded,
    StepDone,
    WorkerEvent,
    WorkerFailed,
    WorkerReady,
)

log = logging.getLogger(__name__)

_STABLE_AFTER_S = 30.0  # a worker up this long has recovered: restart the next crash at once


class WorkerSupervision:
    """Mixed into `WorkerPool`."""

    # ---- workers -----------------------------------------------------------------------------

    async def _supervise(self, worker: LiveWorker) -> None:
        """Run the worker, restarting it whenever it dies, until the pool stops."""
        health = worker.health
        assert health is not None
        while not self._stopping:
            if health.held_by_admin:
                worker.state = WorkerState.FAILED
                await worker.released.wait()
                continue
            worker.state = WorkerState.STARTING
            link = worker.link = self._link_factory(self._spec(worker))
            ready_at: float | None = None
            cannot_start: str | None = None
            try:
                await link.start()
                if self._stopping:  # shut down while the process started: nothing stopped it
                    continue  # (`finally` kills it, and the loop ends)
                async for event in link.events():
                    if isinstance(event, WorkerReady):
                        ready_at = time.monotonic()
                        worker.loaded = event.loaded
                        worker.memory = WorkerMemory.from_report(event.memory)
                        worker.state, worker.last_error = WorkerState.IDLE, None
                        health.ready()
                        worker.started.set()
                        self._dispatch()
                    elif isinstance(event, WorkerFailed):
                        cannot_start = worker.last_error = event.reason
                    else:
                        await self._handle(worker, event)
            except Exception as error:
                cannot_start = worker.last_error = f"could not start: {error}"
                log.warning("Worker %s could not start: %s", worker.id, error)
            finally:
                await link.kill()
            worker.state, worker.loaded = WorkerState.RESTARTING, ()
            self._fail_acks(worker, f"{worker.id} stopped before it could do that.")
            ran_a_job = await self._worker_lost(worker)
            if self._stopping:
                break
            if health.held_by_admin:
                continue  # stopped by `mark_failed`: waits for `restore` at the top
            if ready_at is None:
                worker.last_error = worker.last_error or "ended before it was ready (see its log)"
            stable = ready_at is not None and time.monotonic() - ready_at > _STABLE_AFTER_S
            was_failed = health.failed
            delay = health.died(
                worker.last_error or "it stopped",
                recovered=stable or ran_a_job,
                cannot_start=cannot_start is not None,
            )
            worker.restarts += 1
            if self._observer is not None:
                self._observer.record_worker_restart(worker.id)
            if health.failed:
                worker.state = WorkerState.FAILED
                log.warning("Worker %s failed: %s", worker.id, self._problem(worker))
                if not was_failed:
                    self._announce_stranded(worker)
            else:
                log.warning("Worker %s died; restarting in %.1f s", worker.id, delay)
            await self._wait_to_retry(worker, delay)
        worker.state = WorkerState.STOPPED

    async def _wait_to_retry(self, worker: LiveWorker, delay: float) -> None:
        """Sleep `delay` seconds, failing the stranded jobs when their time comes meanwhile."""
        health = worker.health
        assert health is not None
        if health.failed and not health.jobs_should_fail():
            assert health.failed_since is not None
            until = health.failed_since + self._supervision.fail_jobs_after_s - self._clock()
            if until < delay:
                await self._sleep(max(0.0, until))
                delay -= max(0.0, until)
        if health.jobs_should_fail():
            await self._fail_stranded(worker)
        await self._sleep(delay)

    async def _handle(self, worker: LiveWorker, event: WorkerEvent) -> None:
        try:
            await self._on_event(worker, event)
        except Exception:  # a store failure must not take the worker's supervision down
            log.exception("Worker %s: handling %s failed", worker.id, type(event).__name__)

    async def _on_event(self, worker: LiveWorker, event: WorkerEvent) -> None:
        match event:
            case StepDone(job_id=job_id):
                job = worker.job
                if job is not None and job.id == job_id:
                    job.step, job.total = event.step, event.total
                    job.preview = event.preview or job.preview
                    if job.state is JobState.LOADING:
                        job.state = JobState.RUNNING
                    progress = partial(JobProgress, job_id, event.step, event.total, event.preview)
                    if job.start_recorded.is_set():
                        self._publish(progress(job=self._snapshot(job)))
                    else:  # the GPU started before the store said so: keep the order
                        job.early_steps.append(progress)
            case JobDone():
                worker.memory = WorkerMemory.from_report(event.memory)
                if job := self._take(worker, event.job_id, event.gpu_seconds, measured=True):
                    job.image_count = len(event.images)
                    self._finish(
                        job,
                        JobStatus.DONE,
                        partial(self._store.mark_done, job.id, event.images, event.gpu_seconds),
                        partial(JobFinished, job.id, len(event.images), event.gpu_seconds),
                    )
            case JobError():
                if job := self._take(worker, event.job_id, event.gpu_seconds):
                    self._finish(
                        job,
                        JobStatus.FAILED,
                        partial(self._store.mark_failed, job.id, event.reason),
                        self._failure(job, event.reason, event.kind),
                    )
            case JobStopped():
                if job := self._take(worker, event.job_id, event.gpu_seconds):
                    self._finish(
                        job, JobStatus.CANCELLED, partial(self._store.mark_cancelled, job.id)
                    )
            case ModelLoaded(model=model):
                if model not in worker.loaded:
                    worker.model_loads += 1
                    self._scheduler.record_load(model, event.seconds)
                    if self._observer is not None:
                        self._observer.record_model_load(worker.id, model)
                worker.loaded = event.loaded
                job = worker.job
                if job is not None and job.request.model == model and job.state is JobState.LOADING:
                    job.state = JobState.RUNNING  # shown with its first step
                self._resolve_acks(worker, model)
            case ModelUnloaded(model=model):
                worker.loaded = event.loaded
                self._resolve_acks(worker, model)
            case ModelLoadFailed(model=model, reason=reason):
                self._resolve_acks(worker, model, PoolError(reason))

    def _take(
        self, worker: LiveWorker, job_id: int, gpu_seconds: float, *, measured: bool = False
    ) -> LiveJob | None:
        """Detach a finished job from its worker, settle its cost, and give the worker the
        next job at once (its store write can happen while the GPU works)."""
        job = worker.job
        if job is None or job.id != job_id:
            log.warning("Worker %s reported job %s, which it was not running", worker.id, job_id)
            return None
        worker.job, job.worker = None, None
        if worker.state is WorkerState.BUSY:
            worker.state = WorkerState.IDLE
        self._scheduler.finish(job_id, gpu_seconds, measured=measured)
        self._dispatch()
        return job

    async def _worker_lost(self, worker: LiveWorker) -> bool:
        """The worker's process ended: settle the job it was running (True if there was one)."""
        job, worker.job = worker.job, None
        if job is None:
            return False
        job.worker, job.run_sent = None, False
        elapsed = self._clock() - job.started_at
        if job.cancel_requested:
            self._scheduler.finish(job.id, elapsed, measured=False)
            await self._end(job, JobStatus.CANCELLED, partial(self._store.mark_cancelled, job.id))
            return True
        health = worker.health
        held = health is not None and health.held_by_admin  # stopped by `mark_failed`
        if not self._stopping and not held:
            job.crashes += 1
        if held and not self._servable(job.request.model, besides=worker):
            await job.start_recorded.wait()
            self._scheduler.finish(job.id, elapsed, measured=False)
            reason = self._stranded_reason(worker)
            await self._end(
                job,
                JobStatus.FAILED,
                partial(self._store.mark_failed, job.id, reason),
                self._failure(job, reason, "worker_failed"),
            )
            return True
        if job.crashes >= 2:
            log.error("Job %s crashed worker %s twice; failing it", job.id, worker.id)
            self._scheduler.finish(job.id, elapsed, measured=False)
            await self._end(
                job,
                JobStatus.FAILED,
                partial(self._store.mark_failed, job.id, CRASH_REASON),
                self._failure(job, CRASH_REASON, "worker_crash"),
            )
            return True
        # The store first: until the job is queued there again it must not be dispatched.
        await job.start_recorded.wait()
        await self._durably(job, partial(self._store.requeue, job.id))
        self._scheduler.requeue(job.id)
        job.state, job.step, job.preview = JobState.WAITING, 0, None
        job.queued_at = self._clock()
        if held and health is not None:
            job.waiting_for = f"{worker.id} was {health.describe()}; it starts again on another GPU"
        queued = self._queued_event(job.id)
        self._publish(queued)
        self._board.told(job.id, queued.position, queued.eta_s)
        if job.cancel_requested and self._scheduler.cancel(job.id):
            await self._end(job, JobStatus.CANCELLED, partial(self._store.mark_cancelled, job.id))
        self._dispatch()
        return True

    def _stranded(self, worker: LiveWorker) -> list[LiveJob]:
        """Waiting jobs that this worker may run and no other running or recovering one may."""
        return [
            job
            for job in self._jobs.values()
            if not job.ended
            and job.worker is None
            and worker.config.may_run(job.request.model)
            and not self._servable(job.request.model, besides=worker)
        ]

    def _announce_stranded(self, worker: LiveWorker) -> None:
        """Tell the people whose jobs wait for a failed worker why they wait."""
        reason = f"{worker.id} is not working ({self._problem(worker)}); your job waits for it."
        for job in self._stranded(worker):
            if (found := self._scheduler.position(job.id)) is not None:
                job.waiting_for = reason
                snapshot = job.snapshot(found)
                self._publish(JobQueued(job.id, *found, waiting_for=reason, job=snapshot))

    async def _fail_stranded(self, worker: LiveWorker) -> None:
        """Fail the waiting jobs that only this (failed) worker could run, with its reason."""
        reason = self._stranded_reason(worker)
        self._board.moved()
        for job in self._stranded(worker):
            if self._scheduler.cancel(job.id):
                await self._end(
                    job,
                    JobStatus.FAILED,
                    partial(self._store.mark_failed, job.id, reason),
                    self._failure(job, reason, "worker_failed"),
                )

    def _stranded_reason(self, worker: LiveWorker) -> str:
        assert worker.health is not None
        return (
            f"No GPU could run this job: {worker.id} is not working "
            f"({worker.health.reason or 'failed'})."
        )
