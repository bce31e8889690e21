"""`WorkerPool`: runs queued jobs on one worker per GPU and reports every step as job events.

The pool owns the `FairScheduler` (who is next) and one supervised `WorkerLink` per worker (a
child process per GPU). It keeps three promises:

- **Durable before announced.** Every state change goes to the `JobStore` before its event is
  published; on `start()` jobs left queued or running are taken back in their original order.
- **Nothing wedges.** A worker that dies (segfault, CUDA error, out-of-memory kill) is restarted;
  the job it ran is retried once, and fails with a clear reason if it kills a worker again. A
  cancel that a worker does not honour within `cancel_timeout_s` ends that worker. A worker that
  cannot start is failed and retried with backoff; what happens to jobs meanwhile is the policy
  of `generation.workers.supervision`.
- **No idle GPU while a job it may run waits** (the scheduler decides which job; the pool prefers
  an idle worker that already holds the job's model).

The pool is the one owner of live job state: each job's `JobState` and progress live in its
`LiveJob`, `job(id)` returns a frozen `JobSnapshot`, and every change is published as an event
carrying the job's complete snapshot (`event.job`; places of the first 20 waiting jobs included,
by `PositionBoard`: nothing polls). A store write that fails for a passing reason is retried with
backoff and announced (`JobStalled`); a shutdown wakes a retry that sleeps.

Front ends call `submit`, consume `subscribe()`, and use the admin methods (pause, cancel, load,
pin, snapshot). This module imports no torch: only the worker processes do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

from generation.errors import ModelUnavailable
from generation.jobs import (
    JobCancelled,
    JobEvent,
    JobFailed,
    JobOwner,
    JobQueued,
    JobSnapshot,
    JobStarted,
    JobState,
    JobStatus,
    JobStore,
    StoreUnavailable,
)
from generation.models import Catalogue
from generation.pool.commands import ModelCommands
from generation.pool.durable import ERASED, StoreRetries
from generation.pool.hosted import HostedJobs, HostedLane
from generation.pool.live import LiveJob, LiveWorker
from generation.pool.positions import PositionBoard
from generation.pool.stream import STREAM_LIMIT, EventStream
from generation.pool.supervision import WorkerSupervision
from generation.pool.types import PoolObserver, PoolSnapshot, WorkerState
from generation.request import GenerationRequest
from generation.scheduler import FairScheduler, SchedulerSettings, WorkerView
from generation.workers.config import WorkerConfig
from generation.workers.links import make_link
from generation.workers.protocol import (
    DEFAULT_ENGINE,
    CancelJob,
    Command,
    LinkFactory,
    RunJob,
    WorkerGone,
    WorkerSpec,
)
from generation.workers.supervision import SupervisionSettings, WorkerHealth

log = logging.getLogger(__name__)


class WorkerPool(WorkerSupervision, ModelCommands, StoreRetries, HostedJobs):
    """Schedules jobs fairly onto supervised workers; see the module docstring."""

    def __init__(
        self,
        catalogue: Catalogue,
        store: JobStore,
        workers: Sequence[WorkerConfig],
        *,
        settings: SchedulerSettings | None = None,
        engine_factory: str = DEFAULT_ENGINE,
        engine_options: Mapping[str, Any] | None = None,
        link_factory: LinkFactory = make_link,
        observer: PoolObserver | None = None,
        cancel_timeout_s: float = 60.0,
        stop_timeout_s: float = 30.0,
        supervision: SupervisionSettings | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        hosted: Callable[[Callable[[], float]], HostedLane] | None = None,
    ) -> None:
        """`workers`: one per GPU (see `generation.workers.config.discover_workers`).
        `engine_factory` (`"module:callable"`) and `engine_options` build each worker's engine.
        `cancel_timeout_s`: how long a running job may ignore a cancel before its worker is
        ended. `stop_timeout_s`: how long `shutdown` waits for a worker to exit.
        `supervision`: the policy for workers that are not running. `clock` (seconds) and
        `sleep` time the queue and the restart delays (tests pass their own). `hosted` builds
        the lane of API jobs (`generation.pool.hosted`) on the pool's clock."""
        if not workers:
            raise ValueError("The pool needs at least one worker.")
        ids = [config.id for config in workers]
        if len(set(ids)) != len(ids):
            raise ValueError(f"Worker ids must be unique (got {', '.join(ids)}).")
        for config in workers:
            config.check_models(catalogue)
        self.catalogue = catalogue
        self._store = store
        self._engine_factory = engine_factory
        self._engine_options = dict(engine_options or {})
        self._link_factory = link_factory
        self._observer = observer
        self._cancel_timeout_s = cancel_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._clock = clock
        self._sleep = sleep
        self._supervision = supervision or SupervisionSettings()
        self._scheduler = FairScheduler(
            settings,
            cost_factors={name: spec.cost_factor for name, spec in catalogue.items()},
            capacity=len(workers),
            clock=clock,
        )
        self._workers = {
            config.id: LiveWorker(config, health=WorkerHealth(self._supervision, clock))
            for config in workers
        }
        self._jobs: dict[int, LiveJob] = {}
        self._hosted = self._bind_hosted(hosted(clock)) if hosted is not None else None
        board = partial(PositionBoard, tell=self._tell_place)  # one per scheduler
        self._board = board(self._scheduler)
        self._hosted_board = board(self._hosted.scheduler) if self._hosted else None
        self._subscribers: set[EventStream] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._stopping = False
        self._closing = asyncio.Event()  # set when shutdown begins: wakes store retries

    # ---- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Take back the jobs a previous run left queued or running (oldest first), then start
        the workers."""
        if self._started:
            raise RuntimeError("The pool has already been started.")
        self._started = True
        taken_back = []
        for record in await self._store.unfinished_jobs():
            if record.status is JobStatus.RUNNING:
                await self._store.requeue(record.id)
            if not self.may_run(record.request.model):
                reason = f"{record.request.model} is no longer offered here."
                await self._store.mark_failed(record.id, reason)
                kind = ModelUnavailable.kind
                gone = JobSnapshot(
                    record.id,
                    record.owner,
                    record.request.model,
                    JobState.FAILED,
                    error=reason,
                    error_kind=kind,
                    queued_at=record.queued_at,
                )
                self._publish(JobFailed(record.id, reason, kind, job=gone))
                continue
            self._enqueue(record.id, record.request, record.owner, record.queued_at)
            taken_back.append(record.id)
        listed = {w.job_id: w for s in self._schedulers() for w in s.waiting()}
        for job_id in taken_back:  # one listing, not a position query per job
            place = listed[job_id]
            self._publish(self._queued_event(job_id, (place.position, place.eta_s)))
            self._told(job_id, place.position, place.eta_s)
        self._start_hosted()
        for worker in self._workers.values():
            worker.supervisor = asyncio.create_task(
                self._supervise(worker), name=f"worker-{worker.id}"
            )

    async def shutdown(self, drain: bool = True) -> None:
        """Stop accepting jobs and stop the workers.

        `drain=True` lets running jobs finish first; `drain=False` stops them now and puts them
        back in the queue. Waiting jobs stay queued in the store for the next start.
        """
        for scheduler in self._schedulers():
            scheduler.close()
            scheduler.pause()
        self._closing.set()
        hosted = self._stop_hosted(drain)
        if drain:
            running = [w.job.outcome for w in self._workers.values() if w.job is not None]
            running += hosted
            if running:
                await asyncio.wait([asyncio.shield(outcome) for outcome in running])
        self._stopping = True
        for worker in self._workers.values():
            if worker.link is not None:
                stop = worker.link.stop(self._stop_timeout_s) if drain else worker.link.kill()
                await stop
            elif worker.supervisor is not None:
                worker.supervisor.cancel()
            worker.released.set()
        supervisors = [w.supervisor for w in self._workers.values() if w.supervisor]
        await asyncio.gather(*supervisors, return_exceptions=True)
        await asyncio.gather(*self._tasks, *hosted, return_exceptions=True)
        await self._close_hosted()
        for stream in list(self._subscribers):
            stream.put(None)

    async def wait_until_ready(self) -> None:
        """Wait until every worker has started once (its engine built, pinned models loaded);
        a worker that cannot start never does."""
        await asyncio.gather(*(worker.started.wait() for worker in self._workers.values()))

    # ---- jobs --------------------------------------------------------------------------------

    async def submit(
        self, request: GenerationRequest, owner: JobOwner, *, reply_to: object | None = None
    ) -> JobQueued:
        """Queue a job: check the limits (raising `QueueFull` or `NotAccepting`,
        `ModelUnavailable` when no worker may run the model, and `OverBudget` for an API job
        no credit budget can take, with nothing written), store it,
        then schedule it. Returns its `JobQueued` event (position and ETA), also published,
        carrying `reply_to` (the submitter's handle for its reply, kept with the job)."""
        if not self.may_run(request.model):
            raise ModelUnavailable(f"No GPU here may run {request.model}.")
        if self.hosted_offers(request.model):
            self.check_hosted(request.model)
        elif not self._servable(request.model):
            raise ModelUnavailable(
                f"No GPU can run {request.model} right now ({self._why_unservable(request.model)}"
                "). Try again later; the admins can see this with /admin gpus."
            )
        # the place is held while the job is written, so concurrent submits (of anyone)
        # cannot all pass the same last free place
        async with self._hosted_admission(request, owner):  # an API job: within budgets
            with self._scheduler_for(request.model).admission(owner):
                job_id = await self._store.create_job(request, owner)
                self._enqueue(job_id, request, owner)
                self._jobs[job_id].reply_to = reply_to
        event = self._queued_event(job_id)
        self._publish(event)
        self._told(job_id, event.position, event.eta_s)
        self._dispatch()
        return event

    def check_admission(self, owner: JobOwner, model: str) -> None:
        """Raise `QueueFull` (or `NotAccepting`) if `owner` may not queue one more job of
        `model` (on its own queue: the GPUs' or the API's): a cheap early check (`submit` too)."""
        self._scheduler_for(model).check_admission(owner)

    def subscribe(self, limit: int = STREAM_LIMIT) -> EventStream:
        """Every job event from now on (`async for event in pool.subscribe()`); past `limit`
        unread events, a job's steps, places and stalls coalesce (see `EventStream`)."""
        stream = EventStream(self._subscribers, limit)
        self._subscribers.add(stream)
        return stream

    async def cancel(self, job_id: int) -> bool:
        """Cancel a waiting or running job. A running job stops within one denoising step (its
        worker is ended if it does not). True only for the call that cancelled it: another
        cancel of the same job (while the first is under way) waits for the job's end and
        returns False, so a cancel is reported and audited once."""
        job = self._jobs.get(job_id)
        if job is None:
            return False
        if job.ended or job.cancel_requested:
            await asyncio.shield(job.outcome)
            return False
        job.cancel_requested = True
        self._restate_stall(job)  # a cancel asked for while the store refuses: shown at once
        if self._scheduler_for(job.request.model).cancel(job_id):
            self._moved()
            await self._end(job, JobStatus.CANCELLED, partial(self._store.mark_cancelled, job_id))
        elif job.id in (self._hosted.running if self._hosted else ()):
            self._hosted.running[job.id].cancel()
        elif job.worker is not None and job.run_sent:
            await self._send(job.worker, CancelJob(job_id))
        try:
            outcome = await asyncio.wait_for(asyncio.shield(job.outcome), self._cancel_timeout_s)
        except TimeoutError:
            worker = job.worker
            if worker is not None and worker.link is not None:
                log.warning("Job %s ignored its cancel; ending worker %s", job_id, worker.id)
                await worker.link.kill()
            outcome = await asyncio.shield(job.outcome)
        return outcome is JobStatus.CANCELLED

    async def cancel_user(self, user_id: int) -> int:
        """Cancel all of a user's waiting and running jobs; how many were cancelled."""
        mine = [job.id for job in self._jobs.values() if job.owner.user_id == user_id]
        results = await asyncio.gather(*(self.cancel(job_id) for job_id in mine))
        return sum(results)

    def job(self, job_id: int) -> JobSnapshot | None:
        """A live (waiting or running) job as it stands now; None once it has ended."""
        job = self._jobs.get(job_id)
        return None if job is None else self._snapshot(job)

    # ---- admin -------------------------------------------------------------------------------

    def pause(self) -> None:
        """Start no new jobs; running jobs finish."""
        for scheduler in self._schedulers():
            scheduler.pause()
        self._moved()

    def resume(self) -> None:
        self._scheduler.resume()
        self._resume_hosted_queue()
        self._dispatch()

    @property
    def paused(self) -> bool:
        return self._scheduler.paused

    def user_counts(self, user_id: int) -> tuple[int, int]:
        """(waiting, running) jobs of one user, GPU and API jobs together."""
        waiting, running = zip(*(s.user_counts(user_id) for s in self._schedulers()), strict=True)
        return sum(waiting), sum(running)

    def waiting_of(self, user_id: int, limit: int) -> list[JobSnapshot]:
        """A user's first `limit` waiting jobs, with their places (in their own queue: the GPUs'
        or the API's) and ETAs, GPU jobs first."""
        listed = [w for s in self._schedulers() for w in s.waiting_of(user_id, limit)]
        return [self._jobs[w.job_id].snapshot((w.position, w.eta_s)) for w in listed[:limit]]

    def snapshot(self, waiting_limit: int = 25) -> PoolSnapshot:
        """The queue (first `waiting_limit` jobs with positions and ETAs) and every worker."""
        scheduler = self._scheduler
        return PoolSnapshot(
            paused=scheduler.paused,
            accepting=scheduler.accepting,
            queued=scheduler.queued_count,
            running=scheduler.running_count,
            queued_by_class=scheduler.queued_by_class(),
            waiting=tuple(
                self._jobs[w.job_id].snapshot((w.position, w.eta_s))
                for w in scheduler.waiting(waiting_limit)
            ),
            workers=tuple(self._status(worker) for worker in self._workers.values()),
            model_speeds=scheduler.model_speeds(),
            **self._hosted_counts(),
        )

    # ---- scheduling --------------------------------------------------------------------------

    def _enqueue(
        self,
        job_id: int,
        request: GenerationRequest,
        owner: JobOwner,
        queued_at: float | None = None,
    ) -> None:
        job = LiveJob(job_id, request, owner, queued_at if queued_at is not None else self._clock())
        self._jobs[job_id] = job
        scheduler, work = self._scheduler_for(request.model), self._work(request)
        scheduler.submit(job_id, owner, request.model, work, queued_at=queued_at)

    def _queued_event(
        self, job_id: int, place: tuple[int, float | None] | None = None
    ) -> JobQueued:
        """The `JobQueued` of a job entering the queue (`place`: its known place)."""
        job = self._jobs[job_id]
        scheduler = self._scheduler_for(job.request.model)
        position, eta = place or scheduler.position(job_id) or (1, None)
        return JobQueued(
            job_id,
            position,
            eta,
            job.waiting_for,
            entered=True,
            reply_to=job.reply_to,
            job=job.snapshot((position, eta)),
        )

    def _tell_place(self, job_id: int, position: int, eta_s: float | None) -> None:
        """Announce a waiting job's new place (for `PositionBoard`)."""
        job = self._jobs.get(job_id)
        if job is not None:
            snapshot = job.snapshot((position, eta_s))
            self._publish(JobQueued(job_id, position, eta_s, job.waiting_for, job=snapshot))

    def _dispatch(self) -> None:
        """Hand waiting jobs to idle workers until either runs out; the places shown move."""
        self._moved()
        self._dispatch_hosted()
        while not self._stopping:
            idle = [w for w in self._workers.values() if w.state is WorkerState.IDLE]
            views = [WorkerView(w.id, w.config.models, frozenset(w.loaded)) for w in idle]
            assignment = self._scheduler.assign(views)
            if assignment is None:
                return
            worker = self._workers[assignment.worker_id]
            job = self._jobs[assignment.job_id]
            worker.state, worker.job = WorkerState.BUSY, job
            job.worker, job.started_at = worker, self._clock()
            job.state, job.ran_on, job.step = JobState.STARTING, worker.id, 0
            job.waiting_for = job.preview = None
            job.start_recorded.clear()
            self._spawn(self._start_job(worker, job), f"start-{job.id}")

    async def _start_job(self, worker: LiveWorker, job: LiveJob) -> None:
        # The command goes first so the GPU starts at once; JobStarted waits for the store.
        try:
            if await self._send(worker, RunJob(job.id, job.request)):
                job.run_sent = True
                if job.cancel_requested:
                    await self._send(worker, CancelJob(job.id))
            await self._durably(job, partial(self._store.mark_running, job.id, worker.id))
        except StoreUnavailable as error:  # shutting down: the job stays queued in storage
            log.warning("Job %s: %s Left to run on the next start.", job.id, error)
        except LookupError:  # erased while it waited: stopped; its end says so (`_end`)
            await self._send(worker, CancelJob(job.id))
        else:
            if job.state is JobState.STARTING:  # no step yet: is its model still loading?
                loaded = job.early_steps or job.request.model in worker.loaded
                job.state = JobState.RUNNING if loaded else JobState.LOADING
            self._publish(JobStarted(job.id, worker.id, job=self._snapshot(job)))
            for step in job.early_steps:
                self._publish(step(job=self._snapshot(job)))
        finally:
            job.early_steps.clear()
            job.start_recorded.set()

    async def _end(
        self,
        job: LiveJob,
        status: JobStatus,
        write: Callable[[], Awaitable[None]],
        event: Callable[..., JobEvent] | None = None,
    ) -> None:
        """Record a job's final state (`write`, retried while the store is unavailable), then
        announce it: `event(job=snapshot)` (`JobCancelled` unless given). If a shutdown ends the
        retries first, the job stays unfinished in storage (the next start runs it again)."""
        job.ended, job.state = True, JobState.SAVING
        try:
            await job.start_recorded.wait()
            await self._durably(job, write)
            job.state = JobState(status.value)
            self._publish((event or partial(JobCancelled, job.id))(job=self._snapshot(job)))
        except StoreUnavailable as error:
            log.warning("Job %s: %s Left to rerun on the next start.", job.id, error)
        except LookupError:  # erased while it ran (`delete-user`): nothing is kept of it
            log.info("Job %s was erased while it ran; its result is dropped.", job.id)
            job.state = JobState.FAILED
            self._publish(self._failure(job, ERASED, "erased")(job=self._snapshot(job)))
        finally:
            self._jobs.pop(job.id, None)
            if not job.outcome.done():
                job.outcome.set_result(status)

    def _finish(
        self,
        job: LiveJob,
        status: JobStatus,
        write: Callable[[], Awaitable[None]],
        event: Callable[..., JobEvent] | None = None,
    ) -> None:
        """`_end` in a task of its own: a worker's events keep being read (its next job's
        steps, a cancel's answer) while this job's store write waits for the store."""
        self._spawn(self._end(job, status, write, event), f"end-{job.id}")

    async def _send(self, worker: LiveWorker, command: Command) -> bool:
        """Deliver a command; False when the worker is gone (its supervisor handles that)."""
        if worker.link is None:
            return False
        try:
            await worker.link.send(command)
        except WorkerGone:
            return False
        return True

    # ---- helpers -----------------------------------------------------------------------------

    def _spec(self, worker: LiveWorker) -> WorkerSpec:
        return WorkerSpec(
            worker.config,
            tuple(self.catalogue.values()),
            self._engine_factory,
            self._engine_options,
        )

    def may_run(self, model: str) -> bool:
        """Whether the catalogue holds `model` and some worker (or the API lane) may run it
        (its `models`), whatever the worker's state."""
        if self.hosted_offers(model):
            return True
        return model in self.catalogue and any(
            w.config.may_run(model) for w in self._workers.values()
        )

    def _publish(self, event: JobEvent) -> None:
        for stream in list(self._subscribers):
            stream.put(event)

    def _spawn(self, coroutine: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coroutine)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Pool task %s failed", task.get_name(), exc_info=task.exception())
