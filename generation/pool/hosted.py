"""API jobs in the pool: the hosted API's concurrent-task slots, a second fairly shared resource.

An API job (a model of `generation.hosted`) never uses a GPU. It waits for the key's
concurrent-task slots (BFL limits a key's *active tasks*, one per image: 24 at once, 6 for Kontext
[max]: `HostedModel.active_limit`; both configurable) in a second `FairScheduler` whose "workers"
are the free slots. A job starts when one slot its model may use is free and holds as many as it
has images, up to those free then (at least one): it never has more tasks active at BFL than it
holds slots, so the key never has more active tasks than `slots` (nor a model than its own).
People share the slots fairly by credits, as the GPUs are shared by GPU-seconds:
a job's work is its estimated cost, and its charge is settled to the cost BFL's reply gave. What
someone spends on one resource does not count on the other, and neither waits for the other.
Places and ETAs work as for GPU jobs; ETAs come from the API's latency measured per model.

Budgets: a job is accepted only where its estimate fits every budget beside the ledger and the
API jobs already waiting (`_hosted_admission`); before it is sent, its estimated cost is
reserved (`Budgets.reserve`: budgets may have changed meanwhile); a job no budget can take then
fails with the sentence naming what is left. The reply's cost settles it. A
job that a restart left running is queued again and polls its stored tasks (the backend never
resubmits them, nor an image whose submit was under way: that one ends UNCONFIRMED at its
estimate; its reservation is kept). After a 402 the lane pauses (waiting jobs stay
queued, new ones are refused) until an admin resumes it or the periodic probe finds credits.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Protocol

from generation.errors import ModelUnavailable
from generation.hosted.outcomes import SENTENCES, Outcome
from generation.jobs import (
    JobFinished,
    JobOwner,
    JobProgress,
    JobSnapshot,
    JobStarted,
    JobState,
    JobStatus,
    StoreUnavailable,
)
from generation.pool.durable import ERASED
from generation.request import GenerationRequest
from generation.scheduler import FairScheduler, SchedulerSettings, WorkerView, work_units

if TYPE_CHECKING:
    from generation.hosted.backend import HostedBackend, HostedProgress
    from generation.hosted.catalogue import HostedModel
    from generation.hosted.tasks import HostedTask
    from generation.pool.live import LiveJob
    from generation.pool.positions import PositionBoard
    from generation.scheduler.core import Job

log = logging.getLogger(__name__)

API_WORKER = "bfl-api"  # what a job's "worker" reads while it is on the API
ETA_LOOKAHEAD = 256  # waiting jobs an API job's ETA counts one by one (see `SlotScheduler._eta`)


class Budgets(Protocol):
    """The credit ledger (`storage.Database` implements it). `reserve` raises an exception
    whose text is the sentence for the person (`storage.credits.BudgetExceeded`)."""

    async def reserve(self, job_id: int, user_id: int, model: str, credits: float) -> None: ...

    async def settle(self, job_id: int, spent: float) -> None: ...

    async def hosted_tasks(self, job_id: int) -> list[HostedTask]: ...

    async def save_hosted_task(self, job_id: int, task: HostedTask) -> None: ...

    async def forget_hosted_task(self, job_id: int, index: int) -> None: ...

    async def check_budgets(
        self, user_id: int, credits: float, waiting: Sequence[tuple[int, int, float]] = ()
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class HostedSettings:
    """`slots`: the key's concurrent tasks in all (BFL: 24). `model_slots`: a lower limit per
    model (default: the model's `active_limit`, 6 for flux-kontext-max). `latency_s`: the ETA's
    seconds per job until the API has been measured (a guess; BFL does not publish one).
    `probe_every_s`: how often a paused lane asks the API for credits."""

    slots: int = 24
    model_slots: Mapping[str, int] = field(default_factory=dict)
    latency_s: float = 10.0
    probe_every_s: float = 300.0

    def __post_init__(self) -> None:
        if self.slots < 1 or any(limit < 1 for limit in self.model_slots.values()):
            raise ValueError("API slots must be at least 1.")


class SlotScheduler(FairScheduler):
    """The `FairScheduler`, sharing API slots by credits; its ETAs come from measured latency.

    Work units are credits (speed 1 credit per unit, never re-measured), so a person's finish
    tag grows by the credits their jobs cost."""

    def __init__(
        self,
        settings: SchedulerSettings | None,
        lane: HostedLane,
        latency_s: float,
        clock: Callable[[], float],
    ) -> None:
        factors = dict.fromkeys(lane.models, 1.0)
        super().__init__(settings, cost_factors=factors, capacity=lane.settings.slots, clock=clock)
        self._lane = lane
        self._prior_s = latency_s
        self._latency: dict[str, float] = {}

    def measure_latency(self, model: str, seconds: float) -> None:
        """One round of tasks of `model` took `seconds` from sending to images (a moving
        average; a job of more images than slots runs in several rounds)."""
        before = self._latency.get(model)
        smoothing = self.settings.speed_smoothing
        if before is not None:
            seconds = before + smoothing * (seconds - before)
        self._latency[model] = seconds

    def latency(self, model: str) -> float:
        return self._latency.get(model, self._prior_s)

    def _eta(self, job: Job, ahead: int, now: float) -> float | None:
        """0 while a slot is free for it; else one latency per round of slots that the tasks
        before it (the running jobs' images and the `ahead` waiting jobs') fill, counting the
        key's slots and, where lower, its model's own: the later of the two. The first
        `ETA_LOOKAHEAD` jobs ahead are counted one by one, any further ones as their mean, so
        an ETA costs O(min(ahead, ETA_LOOKAHEAD))."""
        if self.paused:
            return None
        lane, model = self._lane, job.model
        listed = itertools.chain.from_iterable(book.order for book in self._books)
        seen = min(ahead, ETA_LOOKAHEAD)
        tasks = [
            (self._queued[i].model, lane.count_of(i)) for _, i in itertools.islice(listed, seen)
        ]
        scale = ahead / seen if seen else 1.0
        running = [(held_model, lane.count_of(i)) for i, (held_model, _) in lane.held.items()]

        def count(of: str | None) -> float:
            chosen = [n for m, n in tasks if of in (None, m)]
            return sum(chosen) * scale + sum(n for m, n in running if of in (None, m))

        rounds = count(None) // self.capacity
        limit = lane.limit(model)
        if limit < self.capacity:
            rounds = max(rounds, count(model) // limit)
        return rounds * self.latency(model)


class HostedLane:
    """What the pool keeps for API jobs: the backend, the slot scheduler, the budgets, the
    running jobs' asyncio tasks and the model and slots each holds (`held`).
    `on_admin_note(sentence)` tells the admins (once per 402); `count_of(job_id)` is a known
    job's number of images (the pool sets it)."""

    def __init__(
        self,
        backend: HostedBackend,
        models: Mapping[str, HostedModel],
        budgets: Budgets,
        settings: HostedSettings | None = None,
        *,
        scheduler_settings: SchedulerSettings | None = None,
        clock: Callable[[], float],
        on_admin_note: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings or HostedSettings()
        self.backend = backend
        self.models = dict(models)
        self.budgets = budgets
        self.on_admin_note = on_admin_note
        self.count_of: Callable[[int], int] = lambda _job_id: 1
        self.running: dict[int, asyncio.Task[None]] = {}
        self.held: dict[int, tuple[str, int]] = {}
        self.scheduler = SlotScheduler(scheduler_settings, self, self.settings.latency_s, clock)
        self.probe: asyncio.Task[None] | None = None
        self.admitting = asyncio.Lock()  # one accept at a time: each sees the one before
        self._clock = clock

    def limit(self, model: str) -> int:
        default = self.models[model].active_limit
        return min(self.settings.slots, self.settings.model_slots.get(model, default))

    def _used(self) -> tuple[int, Counter[str]]:
        """Slots held in all and per model."""
        per_model: Counter[str] = Counter()
        for model, slots in self.held.values():
            per_model[model] += slots
        return per_model.total(), per_model

    def free_slots(self) -> list[WorkerView]:
        """One view per free slot; slot i takes the models that still have more than i of
        their own slots free (so Kontext [max] never runs more than its limit)."""
        used, per_model = self._used()
        views = []
        for i in range(self.settings.slots - used):
            models = frozenset(m for m in self.models if i < self.limit(m) - per_model[m])
            views.append(WorkerView(f"api-slot-{i}", models, models))  # nothing to load
        return views

    def take(self, job_id: int, model: str) -> int:
        """Give a starting job its slots: its images' worth, up to those free (at least one,
        as `free_slots` offered one)."""
        used, per_model = self._used()
        free = min(self.settings.slots - used, self.limit(model) - per_model[model])
        slots = max(1, min(self.count_of(job_id), free))
        self.held[job_id] = (model, slots)
        return slots

    @property
    def paused(self) -> bool:
        return self.backend.gate.paused


class HostedJobs:
    """The `WorkerPool`'s API side (a mixin: the pool owns every `LiveJob`)."""

    _hosted: HostedLane | None
    _board: PositionBoard
    _hosted_board: PositionBoard | None

    def _told(self, job_id: int, position: int, eta_s: float | None) -> None:
        """The pool announced a job's place: note it on its scheduler's `PositionBoard`."""
        board = self._hosted_board
        if board is None or not self.hosted_offers(self._jobs[job_id].request.model):
            board = self._board
        board.told(job_id, position, eta_s)

    def _moved(self) -> None:
        self._board.moved()
        if self._hosted_board is not None:
            self._hosted_board.moved()

    def _scheduler_for(self, model: str) -> FairScheduler:
        if self._hosted is not None and model in self._hosted.models:
            return self._hosted.scheduler
        return self._scheduler

    def _work(self, request: GenerationRequest) -> float:
        """A job's work units on its scheduler: estimated credits for an API job (API slots
        are shared by credits), else `work_units` (GPU work)."""
        if self.hosted_offers(request.model):
            return self._hosted.models[request.model].estimate(request)
        return work_units(request)

    @asynccontextmanager
    async def _hosted_admission(
        self, request: GenerationRequest, owner: JobOwner
    ) -> AsyncIterator[None]:
        """Around accepting a job: for an API job, one accept at a time, refused with
        `OverBudget` (nothing written) where its estimate, on top of the ledger and the API
        jobs accepted and not yet ended at their estimates, would pass a budget. The check
        is made again when the job is sent (`Budgets.reserve`): budgets may change."""
        lane = self._hosted
        if lane is None or request.model not in lane.models:
            yield
            return
        async with lane.admitting:
            waiting = [
                (job.id, job.owner.user_id, self._work(job.request))
                for job in self._jobs.values()
                if not job.ended and job.request.model in lane.models
            ]
            await lane.budgets.check_budgets(owner.user_id, self._work(request), waiting)
            yield

    def _snapshot(self, job: LiveJob) -> JobSnapshot:
        """What every event carries: the job now, with its place while it waits."""
        waiting = job.state is JobState.WAITING
        scheduler = self._scheduler_for(job.request.model)
        return job.snapshot(scheduler.position(job.id) if waiting else None)

    def _schedulers(self) -> list[FairScheduler]:
        return [self._scheduler] + ([self._hosted.scheduler] if self._hosted else [])

    def hosted_offers(self, model: str) -> bool:
        return self._hosted is not None and model in self._hosted.models

    def check_hosted(self, model: str) -> None:
        """Raise `ModelUnavailable` while API jobs are refused (after a 402)."""
        if self._hosted is not None and self._hosted.paused:
            raise ModelUnavailable(SENTENCES[Outcome.NO_CREDITS])

    @property
    def hosted_paused(self) -> bool:
        return self._hosted is not None and self._hosted.paused

    def resume_hosted(self) -> bool:
        """An admin (or the credit probe) resumes API jobs after a 402; False when none are
        offered. While an admin has paused the pool they stay queued until it resumes."""
        if self._hosted is None:
            return False
        self._hosted.backend.gate.resume()
        if not self._scheduler.paused:
            self._hosted.scheduler.resume()
        self._dispatch()
        return True

    def _bind_hosted(self, lane: HostedLane) -> HostedLane:
        lane.count_of = lambda job_id: self._jobs[job_id].request.count
        return lane

    def _hosted_counts(self) -> dict[str, int]:
        """`PoolSnapshot`'s API fields."""
        scheduler = self._hosted.scheduler if self._hosted is not None else None
        return {
            "api_queued": scheduler.queued_count if scheduler else 0,
            "api_running": scheduler.running_count if scheduler else 0,
        }

    def hosted_running(self) -> list[int]:
        """The ids of the jobs on the API now."""
        return list(self._hosted.running) if self._hosted is not None else []

    def hosted_latency(self, model: str) -> float | None:
        return self._hosted.scheduler.latency(model) if self.hosted_offers(model) else None

    def _dispatch_hosted(self) -> None:
        lane = self._hosted
        if lane is None or self._stopping:
            return
        while True:
            assignment = lane.scheduler.assign(lane.free_slots())
            if assignment is None:
                return
            job = self._jobs[assignment.job_id]
            job.state, job.ran_on, job.started_at = JobState.HOSTED, API_WORKER, self._clock()
            slots = lane.take(job.id, job.request.model)
            task = asyncio.ensure_future(self._run_hosted(lane, job, slots))
            task.set_name(f"hosted-{job.id}")
            lane.running[job.id] = task
            task.add_done_callback(self._task_done)

    async def _run_hosted(self, lane: HostedLane, job: LiveJob, slots: int) -> None:
        """Run an API job. Every store write is retried while the store is unavailable (the
        job kept, its person told: `_durably`); a shutdown during such a wait leaves the job
        unfinished in storage, and the next start polls its stored tasks again."""
        try:
            await self._hosted_job(lane, job, slots)
        except StoreUnavailable as error:
            lane.running.pop(job.id, None)
            log.warning("Job %s: %s Left to run on the next start.", job.id, error)

    async def _hosted_job(self, lane: HostedLane, job: LiveJob, slots: int) -> None:
        model = lane.models[job.request.model]
        tasks = _DurableTasks(self, job, lane.budgets)
        try:
            estimate = model.estimate(job.request)
            reserve = partial(lane.budgets.reserve, job.id, job.owner.user_id, model.name, estimate)
            try:
                await self._durably(job, reserve)
            except StoreUnavailable:
                raise
            except Exception as refused:  # over a budget: its text is the sentence
                await self._hosted_ended(lane, job, 0.0)
                await self._end(
                    job,
                    JobStatus.FAILED,
                    partial(self._store.mark_failed, job.id, str(refused)),
                    self._failure(job, str(refused), "budget"),
                )
                return
            try:
                await self._durably(job, partial(self._store.mark_running, job.id, API_WORKER))
            except LookupError:  # erased while it waited: nothing sent, nothing to keep
                await self._hosted_ended(lane, job, 0.0)
                await self._end(
                    job, JobStatus.FAILED, partial(self._store.mark_failed, job.id, ERASED)
                )
                return
            self._publish(JobStarted(job.id, API_WORKER, job=self._snapshot(job)))
            sent = self._clock()
            step = partial(self._api_step, job)
            result = await lane.backend.run(job.id, job.request, step, tasks, slots=slots)
        except asyncio.CancelledError:
            if not job.cancel_requested:  # a shutdown: the next start polls its tasks again
                raise
            sent_tasks = await tasks.hosted_tasks(job.id)  # what was sent is charged
            charged = sum(model.charged(job.request, task.cost) for task in sent_tasks)
            await self._hosted_ended(lane, job, charged)
            await self._end(job, JobStatus.CANCELLED, partial(self._store.mark_cancelled, job.id))
            return
        await self._hosted_ended(lane, job, result.cost)
        if result.admin_note and lane.on_admin_note is not None:
            lane.on_admin_note(result.admin_note)
        if lane.paused:  # a 402: waiting API jobs wait for a resume
            lane.scheduler.pause()
        if result.outcome is Outcome.READY:  # some images may be missing: `reason` says why
            rounds = -(-job.request.count // slots)  # the job's tasks ran `slots` at a time
            lane.scheduler.measure_latency(model.name, (self._clock() - sent) / rounds)
            images = result.images
            job.image_count = len(images)
            await self._end(
                job,
                JobStatus.DONE,
                partial(self._store.mark_done, job.id, images, 0.0, result.reason),
                partial(JobFinished, job.id, len(images), 0.0),
            )
        else:
            reason = result.reason or SENTENCES[result.outcome]
            await self._end(
                job,
                JobStatus.FAILED,
                partial(self._store.mark_failed, job.id, reason),
                self._failure(job, reason, f"api_{result.outcome.value}"),
            )

    async def _hosted_ended(self, lane: HostedLane, job: LiveJob, cost: float) -> None:
        """Free the job's slot, charge its person `cost` credits, settle the ledger to it,
        and start the next API job."""
        lane.running.pop(job.id, None)
        lane.held.pop(job.id, None)
        lane.scheduler.finish(job.id, cost, measured=False)
        self._dispatch()
        await self._durably(job, partial(lane.budgets.settle, job.id, cost))

    def _api_step(self, job: LiveJob, progress: HostedProgress) -> None:
        """BFL's progress (0-1, where it gives one) as steps of 100."""
        if progress.progress is None or not job.start_recorded.is_set():
            return
        job.step, job.total = round(progress.progress * 100), 100
        self._publish(JobProgress(job.id, job.step, job.total, job=self._snapshot(job)))

    def _start_hosted(self) -> None:
        if self._hosted is not None:
            self._hosted.probe = asyncio.ensure_future(self._probe_credits())

    async def _probe_credits(self) -> None:
        """While API jobs are paused by a 402, ask the API for credits every `probe_every_s`."""
        lane = self._hosted
        assert lane is not None
        while not self._stopping:
            await self._sleep(lane.settings.probe_every_s)
            if lane.paused and await lane.backend.probe():
                log.info("The credit probe found credits: API jobs resume")
                self.resume_hosted()

    def _resume_hosted_queue(self) -> None:
        """The pool resumes: API jobs start again too, unless a 402 paused them."""
        if self._hosted is not None and not self._hosted.paused:
            self._hosted.scheduler.resume()

    async def _close_hosted(self) -> None:
        if self._hosted is not None:
            await self._hosted.backend.close()

    def _stop_hosted(self, drain: bool) -> list[asyncio.Future]:
        """The running API jobs' ends to wait for (`drain`), else cancel them (their tasks
        are polled again on the next start)."""
        if self._hosted is None:
            return []
        if self._hosted.probe is not None:
            self._hosted.probe.cancel()
        tasks = list(self._hosted.running.values())
        if not drain:
            for task in tasks:
                task.cancel()
        return tasks


class _DurableTasks:
    """A job's `TaskStore` (`generation.hosted.tasks`) on the pool's store, each call retried
    while the store is unavailable (`StoreRetries._durably`: the job kept, its person told)."""

    def __init__(self, pool: HostedJobs, job: LiveJob, store: Budgets) -> None:
        self._pool, self._job, self._store = pool, job, store

    async def save_hosted_task(self, job_id: int, task: HostedTask) -> None:
        await self._pool._durably(self._job, partial(self._store.save_hosted_task, job_id, task))

    async def hosted_tasks(self, job_id: int) -> list[HostedTask]:
        found: list[HostedTask] = []

        async def read() -> None:
            found[:] = await self._store.hosted_tasks(job_id)

        await self._pool._durably(self._job, read)
        return found

    async def forget_hosted_task(self, job_id: int, index: int) -> None:
        await self._pool._durably(self._job, partial(self._store.forget_hosted_task, job_id, index))
