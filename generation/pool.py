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

Front ends call `submit`, consume `subscribe()`, and use the admin methods (pause, cancel, load,
pin, snapshot). This module imports no torch: only the worker processes do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from generation.errors import EngineError, ModelUnavailable
from generation.jobs import (
    JobCancelled,
    JobEvent,
    JobFailed,
    JobFinished,
    JobOwner,
    JobProgress,
    JobQueued,
    JobStarted,
    JobStatus,
    JobStore,
    Priority,
)
from generation.models import Catalogue, UnknownModel
from generation.request import GenerationRequest
from generation.scheduler import (
    FairScheduler,
    NotAccepting,
    QueueFull,
    SchedulerSettings,
    WaitingJob,
    WorkerView,
    work_units,
)
from generation.workers.config import WorkerConfig
from generation.workers.process import ProcessWorker
from generation.workers.protocol import (
    DEFAULT_ENGINE,
    CancelJob,
    Command,
    JobDone,
    JobError,
    JobStopped,
    LinkFactory,
    LoadModel,
    ModelLoaded,
    ModelLoadFailed,
    ModelUnloaded,
    RunJob,
    StepDone,
    UnloadModel,
    WorkerEvent,
    WorkerFailed,
    WorkerGone,
    WorkerLink,
    WorkerReady,
    WorkerSpec,
)
from generation.workers.supervision import SupervisionSettings, WorkerHealth

__all__ = [
    "EventStream",
    "NotAccepting",
    "PoolError",
    "PoolObserver",
    "PoolSnapshot",
    "QueueFull",
    "WorkerPool",
    "WorkerState",
    "WorkerStatus",
]

log = logging.getLogger(__name__)

CRASH_REASON = (
    "This job made its GPU worker crash twice, so it was not tried again. "
    "Try a smaller size or fewer images."
)
_STABLE_AFTER_S = 30.0  # a worker up this long has recovered: restart the next crash at once


class PoolError(EngineError):
    """An admin request the pool cannot do (unknown worker, model not allowed there, ...)."""

    kind = "pool"


class PoolObserver(Protocol):
    """Receives counts for metrics (`bot.observability.Metrics` fits)."""

    def record_model_load(self, worker: str, model: str) -> None: ...

    def record_worker_restart(self, worker: str) -> None: ...


class WorkerState(StrEnum):
    STARTING = "starting"  # process launched, engine loading
    IDLE = "idle"
    BUSY = "busy"
    RESTARTING = "restarting"  # died; waiting to start again
    FAILED = "failed"  # cannot start (see `WorkerStatus.problem`); retried with backoff
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One worker as an admin sees it."""

    id: str
    device: str
    state: WorkerState
    job_id: int | None
    loaded: tuple[str, ...]
    pinned: tuple[str, ...]
    models: tuple[str, ...] | None  # allowed; None: any
    pid: int | None
    restarts: int
    model_loads: int
    memory: Mapping[str, float]  # what is known: rss_mib, gpu_used_mib, gpu_total_mib, ...
    last_error: str | None
    problem: str | None = None  # a failed worker: why, and when it is tried next
    profiles: tuple[tuple[str, str], ...] = ()  # model → its memory profile here (absent: full)

    def profile_of(self, model: str) -> str:
        return dict(self.profiles).get(model, "full")

    def held(self, model: str) -> str:
        """`model` with the memory profile it is loaded with here: `flux-dev (fp8)`."""
        return f"{model} ({self.profile_of(model)})"


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """The queue and the workers at one moment."""

    paused: bool
    accepting: bool
    queued: int
    running: int
    queued_by_class: Mapping[Priority, int]
    waiting: tuple[WaitingJob, ...]  # the first ones, in projected order, with ETAs
    workers: tuple[WorkerStatus, ...]
    model_speeds: Mapping[str, float]  # measured seconds per work unit (see `work_units`)


@dataclass(eq=False)
class _Job:
    id: int
    request: GenerationRequest
    owner: JobOwner
    crashes: int = 0
    worker: _Worker | None = None
    started_at: float = 0.0
    run_sent: bool = False
    cancel_requested: bool = False
    ended: bool = False
    # Set while no `mark_running` for this job is in flight: later writes wait for it.
    start_recorded: asyncio.Event = field(default_factory=asyncio.Event)
    # Steps the worker reported before JobStarted could be announced; published right after it.
    early_steps: list[JobProgress] = field(default_factory=list)
    outcome: asyncio.Future[JobStatus] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def __post_init__(self) -> None:
        self.start_recorded.set()


@dataclass(eq=False)
class _Worker:
    config: WorkerConfig
    link: WorkerLink | None = None
    state: WorkerState = WorkerState.STARTING
    job: _Job | None = None
    loaded: tuple[str, ...] = ()
    restarts: int = 0
    model_loads: int = 0
    memory: Mapping[str, float] = field(default_factory=dict)
    last_error: str | None = None
    acks: dict[str, list[asyncio.Future[None]]] = field(default_factory=dict)
    started: asyncio.Event = field(default_factory=asyncio.Event)  # ready at least once
    supervisor: asyncio.Task[None] | None = None
    health: WorkerHealth | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)  # an admin's hold ended

    @property
    def id(self) -> str:
        return self.config.id


class EventStream:
    """One subscriber's job events, in order; iteration ends when the pool shuts down."""

    def __init__(self, subscribers: set[EventStream]) -> None:
        self._subscribers = subscribers
        self._queue: asyncio.Queue[JobEvent | None] = asyncio.Queue()

    def __aiter__(self) -> AsyncIterator[JobEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[JobEvent]:
        try:
            while (event := await self._queue.get()) is not None:
                yield event
        finally:
            self.close()

    def put(self, event: JobEvent | None) -> None:
        self._queue.put_nowait(event)

    def close(self) -> None:
        """Stop receiving events."""
        self._subscribers.discard(self)


class WorkerPool:
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
        link_factory: LinkFactory = ProcessWorker,
        observer: PoolObserver | None = None,
        cancel_timeout_s: float = 60.0,
        stop_timeout_s: float = 30.0,
        supervision: SupervisionSettings | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`workers`: one per GPU (see `generation.workers.config.discover_workers`).
        `engine_factory` (`"module:callable"`) and `engine_options` build each worker's engine.
        `cancel_timeout_s`: how long a running job may ignore a cancel before its worker is
        ended. `stop_timeout_s`: how long `shutdown` waits for a worker to exit.
        `supervision`: the policy for workers that are not running. `clock` (seconds) and
        `sleep` time the queue and the restart delays (tests pass their own)."""
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
            config.id: _Worker(config, health=WorkerHealth(self._supervision, clock))
            for config in workers
        }
        self._jobs: dict[int, _Job] = {}
        self._subscribers: set[EventStream] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._stopping = False

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
                self._publish(JobFailed(record.id, reason, ModelUnavailable.kind))
                continue
            self._enqueue(record.id, record.request, record.owner, record.queued_at)
            taken_back.append(record.id)
        listed = {waiting.job_id: waiting for waiting in self._scheduler.waiting()}
        for job_id in taken_back:  # one listing, not a position query per job
            self._publish(JobQueued(job_id, listed[job_id].position, listed[job_id].eta_s))
        for worker in self._workers.values():
            worker.supervisor = asyncio.create_task(
                self._supervise(worker), name=f"worker-{worker.id}"
            )

    async def shutdown(self, drain: bool = True) -> None:
        """Stop accepting jobs and stop the workers.

        `drain=True` lets running jobs finish first; `drain=False` stops them now and puts them
        back in the queue. Waiting jobs stay queued in the store for the next start.
        """
        self._scheduler.close()
        self._scheduler.pause()
        if drain:
            running = [w.job.outcome for w in self._workers.values() if w.job is not None]
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
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for stream in list(self._subscribers):
            stream.put(None)

    async def wait_until_ready(self) -> None:
        """Wait until every worker has started once (its engine built, pinned models loaded);
        a worker that cannot start never does."""
        await asyncio.gather(*(worker.started.wait() for worker in self._workers.values()))

    # ---- jobs --------------------------------------------------------------------------------

    async def submit(self, request: GenerationRequest, owner: JobOwner) -> JobQueued:
        """Queue a job: check the limits (raising `QueueFull` or `NotAccepting`, and
        `ModelUnavailable` when no worker may run the model, with nothing written), store it,
        then schedule it. Returns its `JobQueued` event (position and ETA), also published."""
        if not self.may_run(request.model):
            raise ModelUnavailable(f"No GPU here may run {request.model}.")
        if not self._servable(request.model):
            raise ModelUnavailable(
                f"No GPU can run {request.model} right now ({self._why_unservable(request.model)}"
                "). Try again later; the admins can see this with /admin gpus."
            )
        # the place is held while the job is written, so concurrent submits (of anyone)
        # cannot all pass the same last free place
        with self._scheduler.admission(owner):
            job_id = await self._store.create_job(request, owner)
            self._enqueue(job_id, request, owner)
        event = self._queued_event(job_id)
        self._publish(event)
        self._dispatch()
        return event

    def check_admission(self, owner: JobOwner) -> None:
        """Raise `QueueFull` (or `NotAccepting`) if `owner` may not queue one more job now: a
        cheap early check for front ends (`submit` checks again)."""
        self._scheduler.check_admission(owner)

    def subscribe(self) -> EventStream:
        """A stream of every job event from now on (`async for event in pool.subscribe()`)."""
        stream = EventStream(self._subscribers)
        self._subscribers.add(stream)
        return stream

    async def cancel(self, job_id: int) -> bool:
        """Cancel a waiting or running job. A running job stops within one denoising step (its
        worker is ended if it does not). True when the job ended cancelled."""
        job = self._jobs.get(job_id)
        if job is None or job.ended:
            return False
        job.cancel_requested = True
        if self._scheduler.cancel(job_id):
            await self._end(job, JobStatus.CANCELLED, self._store.mark_cancelled(job_id))
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

    def position(self, job_id: int) -> int | None:
        """A waiting job's place in the queue (1: next), or None when it is not waiting."""
        found = self._scheduler.position(job_id)
        return found[0] if found else None

    def eta(self, job_id: int) -> float | None:
        """Estimated seconds until a waiting job starts, or None when it is not waiting."""
        found = self._scheduler.position(job_id)
        return found[1] if found else None

    # ---- admin -------------------------------------------------------------------------------

    def pause(self) -> None:
        """Start no new jobs; running jobs finish."""
        self._scheduler.pause()

    def resume(self) -> None:
        self._scheduler.resume()
        self._dispatch()

    @property
    def paused(self) -> bool:
        return self._scheduler.paused

    def alive_workers(self) -> int:
        """Workers ready for jobs or running one."""
        return sum(w.state in (WorkerState.IDLE, WorkerState.BUSY) for w in self._workers.values())

    def worker_problems(self) -> dict[str, str]:
        """Worker id → why it is failed and when it is tried next, for each failed worker."""
        return {w.id: p for w in self._workers.values() if (p := self._problem(w)) is not None}

    async def mark_failed(self, worker_id: str, reason: str) -> None:
        """An admin takes a worker out of service: it is stopped and not restarted until
        `restore`, and the waiting jobs that no other worker may run fail with `reason`."""
        worker = self._worker(worker_id)
        assert worker.health is not None
        worker.health.hold(reason)
        worker.released.clear()
        if worker.link is not None:
            await worker.link.kill()
        await self._fail_stranded(worker)

    def restore(self, worker_id: str) -> None:
        """Start a worker again after `mark_failed`."""
        worker = self._worker(worker_id)
        assert worker.health is not None
        worker.health.release()
        worker.released.set()

    @property
    def scheduler(self) -> FairScheduler:
        """The scheduler (read-only use: speeds, counts)."""
        return self._scheduler

    def snapshot(self, waiting_limit: int = 25) -> PoolSnapshot:
        """The queue (first `waiting_limit` jobs with positions and ETAs) and every worker."""
        scheduler = self._scheduler
        return PoolSnapshot(
            paused=scheduler.paused,
            accepting=scheduler.accepting,
            queued=scheduler.queued_count,
            running=scheduler.running_count,
            queued_by_class=scheduler.queued_by_class(),
            waiting=tuple(scheduler.waiting(waiting_limit)),
            workers=tuple(self._status(worker) for worker in self._workers.values()),
            model_speeds=scheduler.model_speeds(),
        )

    async def load_model(self, worker_id: str, model: str) -> None:
        """Load `model` on a worker now (after its current job). Raises PoolError or
        ModelUnavailable with a message when it cannot."""
        await self._model_command(worker_id, model, LoadModel(model))

    async def unload_model(self, worker_id: str, model: str) -> None:
        """Unload `model` from a worker (after its current job), unpinning it."""
        worker = self._worker(worker_id)
        self._set_pinned(worker, tuple(m for m in worker.config.pinned if m != model))
        await self._model_command(worker_id, model, UnloadModel(model))

    async def pin(self, worker_id: str, model: str) -> None:
        """Load `model` on a worker and keep it loaded, also across worker restarts."""
        worker = self._worker(worker_id)
        if model in worker.config.pinned:
            return
        self._check_model_for(worker, model)
        if len(worker.config.pinned) >= worker.config.max_models:
            raise PoolError(
                f"{worker_id} already pins {', '.join(worker.config.pinned)} and may hold "
                f"{worker.config.max_models} model(s); unpin one first."
            )
        self._set_pinned(worker, (*worker.config.pinned, model))
        await self._model_command(worker_id, model, LoadModel(model, pin=True))

    # ---- scheduling --------------------------------------------------------------------------

    def _enqueue(
        self,
        job_id: int,
        request: GenerationRequest,
        owner: JobOwner,
        queued_at: float | None = None,
    ) -> None:
        self._jobs[job_id] = _Job(job_id, request, owner)
        self._scheduler.submit(
            job_id, owner, request.model, work_units(request), queued_at=queued_at
        )

    def _queued_event(self, job_id: int) -> JobQueued:
        position, eta = self._scheduler.position(job_id) or (1, None)
        return JobQueued(job_id, position, eta)

    def _dispatch(self) -> None:
        """Hand waiting jobs to idle workers until either runs out."""
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
            job.start_recorded.clear()
            self._spawn(self._start_job(worker, job), f"start-{job.id}")

    async def _start_job(self, worker: _Worker, job: _Job) -> None:
        # The command goes first so the GPU starts at once; JobStarted waits for the store.
        try:
            if await self._send(worker, RunJob(job.id, job.request)):
                job.run_sent = True
                if job.cancel_requested:
                    await self._send(worker, CancelJob(job.id))
            await self._store.mark_running(job.id, worker.id)
            self._publish(JobStarted(job.id, worker.id))
            for step in job.early_steps:
                self._publish(step)
        finally:
            job.early_steps.clear()
            job.start_recorded.set()

    # ---- workers -----------------------------------------------------------------------------

    async def _supervise(self, worker: _Worker) -> None:
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
                        worker.loaded, worker.memory = event.loaded, event.memory
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

    async def _wait_to_retry(self, worker: _Worker, delay: float) -> None:
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

    async def _handle(self, worker: _Worker, event: WorkerEvent) -> None:
        try:
            await self._on_event(worker, event)
        except Exception:  # a store failure must not take the worker's supervision down
            log.exception("Worker %s: handling %s failed", worker.id, type(event).__name__)

    async def _on_event(self, worker: _Worker, event: WorkerEvent) -> None:
        match event:
            case StepDone(job_id=job_id):
                job = worker.job
                if job is not None and job.id == job_id:
                    progress = JobProgress(job_id, event.step, event.total, event.preview)
                    if job.start_recorded.is_set():
                        self._publish(progress)
                    else:  # the GPU started before the store said so: keep the order
                        job.early_steps.append(progress)
            case JobDone():
                worker.memory = event.memory
                if job := self._take(worker, event.job_id, event.gpu_seconds, measured=True):
                    await self._end(
                        job,
                        JobStatus.DONE,
                        self._store.mark_done(job.id, event.images, event.gpu_seconds),
                        JobFinished(job.id, event.images, event.gpu_seconds),
                    )
            case JobError():
                if job := self._take(worker, event.job_id, event.gpu_seconds):
                    await self._end(
                        job,
                        JobStatus.FAILED,
                        self._store.mark_failed(job.id, event.reason),
                        JobFailed(job.id, event.reason, event.kind),
                    )
            case JobStopped():
                if job := self._take(worker, event.job_id, event.gpu_seconds):
                    await self._end(job, JobStatus.CANCELLED, self._store.mark_cancelled(job.id))
            case ModelLoaded(model=model):
                if model not in worker.loaded:
                    worker.model_loads += 1
                    self._scheduler.record_load(model, event.seconds)
                    if self._observer is not None:
                        self._observer.record_model_load(worker.id, model)
                worker.loaded = event.loaded
                self._resolve_acks(worker, model)
            case ModelUnloaded(model=model):
                worker.loaded = event.loaded
                self._resolve_acks(worker, model)
            case ModelLoadFailed(model=model, reason=reason):
                self._resolve_acks(worker, model, PoolError(reason))

    def _take(
        self, worker: _Worker, job_id: int, gpu_seconds: float, *, measured: bool = False
    ) -> _Job | None:
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

    async def _worker_lost(self, worker: _Worker) -> bool:
        """The worker's process ended: settle the job it was running (True if there was one)."""
        job, worker.job = worker.job, None
        if job is None:
            return False
        job.worker, job.run_sent = None, False
        elapsed = self._clock() - job.started_at
        if job.cancel_requested:
            self._scheduler.finish(job.id, elapsed, measured=False)
            await self._end(job, JobStatus.CANCELLED, self._store.mark_cancelled(job.id))
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
                self._store.mark_failed(job.id, reason),
                JobFailed(job.id, reason, "worker_failed"),
            )
            return True
        if job.crashes >= 2:
            log.error("Job %s crashed worker %s twice; failing it", job.id, worker.id)
            self._scheduler.finish(job.id, elapsed, measured=False)
            await self._end(
                job,
                JobStatus.FAILED,
                self._store.mark_failed(job.id, CRASH_REASON),
                JobFailed(job.id, CRASH_REASON, "worker_crash"),
            )
            return True
        # The store first: until the job is queued there again it must not be dispatched.
        await job.start_recorded.wait()
        await self._store.requeue(job.id)
        self._scheduler.requeue(job.id)
        queued = self._queued_event(job.id)
        if held and health is not None:
            why = f"{worker.id} was {health.describe()}; it starts again on another GPU"
            queued = dataclasses.replace(queued, waiting_for=why)
        self._publish(queued)
        if job.cancel_requested and self._scheduler.cancel(job.id):
            await self._end(job, JobStatus.CANCELLED, self._store.mark_cancelled(job.id))
        self._dispatch()
        return True

    async def _end(
        self,
        job: _Job,
        status: JobStatus,
        write: Awaitable[None],
        event: JobEvent | None = None,
    ) -> None:
        """Record a job's final state, then announce it (`JobCancelled` unless given)."""
        job.ended = True
        try:
            await job.start_recorded.wait()
            await write
            self._publish(event or JobCancelled(job.id))
        finally:
            self._jobs.pop(job.id, None)
            if not job.outcome.done():
                job.outcome.set_result(status)

    async def _send(self, worker: _Worker, command: Command) -> bool:
        """Deliver a command; False when the worker is gone (its supervisor handles that)."""
        if worker.link is None:
            return False
        try:
            await worker.link.send(command)
        except WorkerGone:
            return False
        return True

    # ---- model commands ----------------------------------------------------------------------

    async def _model_command(self, worker_id: str, model: str, command: Command) -> None:
        worker = self._worker(worker_id)
        self._check_model_for(worker, model)
        if worker.state not in (WorkerState.IDLE, WorkerState.BUSY):
            if isinstance(command, LoadModel) and command.pin:
                return  # taken into account when the worker starts
            raise PoolError(f"{worker_id} is {worker.state.value}; try again in a moment.")
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        worker.acks.setdefault(model, []).append(ack)
        if not await self._send(worker, command):
            self._resolve_acks(worker, model, PoolError(f"{worker_id} is restarting."))
        await ack

    def _resolve_acks(self, worker: _Worker, model: str, error: Exception | None = None) -> None:
        for ack in worker.acks.pop(model, []):
            if ack.done():
                continue
            if error is None:
                ack.set_result(None)
            else:
                ack.set_exception(error)

    def _fail_acks(self, worker: _Worker, reason: str) -> None:
        for model in list(worker.acks):
            self._resolve_acks(worker, model, PoolError(reason))

    # ---- helpers -----------------------------------------------------------------------------

    def _spec(self, worker: _Worker) -> WorkerSpec:
        return WorkerSpec(
            worker.config,
            tuple(self.catalogue.values()),
            self._engine_factory,
            self._engine_options,
        )

    def _worker(self, worker_id: str) -> _Worker:
        try:
            return self._workers[worker_id]
        except KeyError:
            known = ", ".join(self._workers)
            raise PoolError(f"There is no worker {worker_id!r}; workers: {known}.") from None

    def _check_model_for(self, worker: _Worker, model: str) -> None:
        try:
            self.catalogue[model]
        except UnknownModel as error:
            raise PoolError(str(error)) from None
        if not worker.config.may_run(model):
            raise PoolError(f"{worker.id} may not run {model} (see its `models` setting).")

    def _set_pinned(self, worker: _Worker, pinned: tuple[str, ...]) -> None:
        worker.config = dataclasses.replace(worker.config, pinned=pinned)

    def may_run(self, model: str) -> bool:
        """Whether the catalogue holds `model` and some worker may run it (its `models`),
        whatever the worker's state."""
        return model in self.catalogue and any(
            w.config.may_run(model) for w in self._workers.values()
        )

    def _servable(self, model: str, *, besides: _Worker | None = None) -> bool:
        """Some running or recovering worker (not failed; not `besides`) may run `model`."""
        return any(
            w.config.may_run(model) and w is not besides and w.state is not WorkerState.FAILED
            for w in self._workers.values()
        )

    def _why_unservable(self, model: str) -> str:
        return "; ".join(
            f"{w.id}: {self._problem(w) or w.state.value}"
            for w in self._workers.values()
            if w.config.may_run(model)
        )

    def _problem(self, worker: _Worker) -> str | None:
        if worker.state is not WorkerState.FAILED or worker.health is None:
            return None
        return worker.health.describe()

    def _stranded(self, worker: _Worker) -> list[_Job]:
        """Waiting jobs that this worker may run and no other running or recovering one may."""
        return [
            job
            for job in self._jobs.values()
            if not job.ended
            and job.worker is None
            and worker.config.may_run(job.request.model)
            and not self._servable(job.request.model, besides=worker)
        ]

    def _announce_stranded(self, worker: _Worker) -> None:
        """Tell the people whose jobs wait for a failed worker why they wait."""
        reason = f"{worker.id} is not working ({self._problem(worker)}); your job waits for it."
        for job in self._stranded(worker):
            if (found := self._scheduler.position(job.id)) is not None:
                self._publish(JobQueued(job.id, found[0], found[1], waiting_for=reason))

    async def _fail_stranded(self, worker: _Worker) -> None:
        """Fail the waiting jobs that only this (failed) worker could run, with its reason."""
        reason = self._stranded_reason(worker)
        for job in self._stranded(worker):
            if self._scheduler.cancel(job.id):
                await self._end(
                    job,
                    JobStatus.FAILED,
                    self._store.mark_failed(job.id, reason),
                    JobFailed(job.id, reason, "worker_failed"),
                )

    def _stranded_reason(self, worker: _Worker) -> str:
        assert worker.health is not None
        return (
            f"No GPU could run this job: {worker.id} is not working "
            f"({worker.health.reason or 'failed'})."
        )

    def _status(self, worker: _Worker) -> WorkerStatus:
        models = worker.config.models
        return WorkerStatus(
            id=worker.id,
            device=worker.config.device,
            state=worker.state,
            job_id=worker.job.id if worker.job else None,
            loaded=worker.loaded,
            pinned=worker.config.pinned,
            models=tuple(sorted(models)) if models is not None else None,
            pid=worker.link.pid if worker.link else None,
            restarts=worker.restarts,
            model_loads=worker.model_loads,
            memory=dict(worker.memory),
            last_error=worker.last_error,
            problem=self._problem(worker),
            profiles=worker.config.profiles,
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
