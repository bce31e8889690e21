"""`FairScheduler`: which waiting job runs next, and on which idle GPU.

A pure, synchronous core (no asyncio, torch or discord) so a simulation can drive it and each
decision is easy to test. The policy, in order:

1. **Strict priority classes** (admin, normal, relax), with ageing: a job moves up one class for
   every `ageing_s` it has waited, so the lowest class cannot starve.
2. **Soft running cap**: a user already running `max_running` jobs waits behind everyone else,
   but still gets a GPU that nobody else can use (no GPU idles while a runnable job waits).
3. **Fair share**: per-user FIFO; across users the one with the least weighted GPU time served
   goes next (a virtual-time fair queue, like start-time fair queuing or the "virtual token
   counter" of LLM servers). A job's cost is an estimate of its GPU-seconds, charged at dispatch
   and settled with the measured time at completion. A user who was idle is lifted to the least
   counter among those waiting, so nobody banks credit by staying away.
4. **Model affinity**: among the next `1 + lookahead` jobs in fair order, the first whose model an
   idle GPU already holds runs first; a job passed over `max_bypass` times is never passed again.

Every operation is O(log n) in the number of waiting jobs (users sit in heaps keyed by their
counter, one heap per class and model), except the position and ETA queries.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from generation.errors import EngineError
from generation.jobs import JobOwner, Priority
from generation.request import GenerationRequest

_CLASSES = tuple(Priority)  # highest first
_RANK = {priority: rank for rank, priority in enumerate(_CLASSES)}
_UNDER_CAP, _AT_CAP = 0, 1


class QueueFull(EngineError):
    """The user (or the whole queue) has as many waiting jobs as allowed."""

    kind = "queue_full"


class NotAccepting(EngineError):
    """The queue is closed because Atelier is shutting down."""

    kind = "not_accepting"

    def __init__(self) -> None:
        super().__init__("Atelier is shutting down and takes no new jobs; try again in a minute.")


def work_units(request: GenerationRequest) -> float:
    """The size of a request, in denoising steps x megapixels x images.

    Multiplied by a model's speed (seconds per unit) it estimates the job's GPU-seconds; img2img
    runs only `strength` of the steps.
    """
    steps = request.steps * (request.strength if request.init_image is not None else 1.0)
    return max(steps, 1.0) * request.megapixels * request.count


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """The limits and knobs an owner can set (per-user values can be overridden in `JobOwner`)."""

    max_queued: int = 5  # waiting jobs per user; beyond it a submission is refused
    max_running: int = 1  # running jobs per user while others wait (soft: never idles a GPU)
    queue_capacity: int | None = None  # waiting jobs of all users together (None: no limit)
    ageing_s: float | None = 600.0  # a waiting job moves up one class per ageing_s (None: never)
    lookahead: int = 4  # jobs beyond the fairest one considered to avoid a model swap
    max_bypass: int = 2  # times a job may be passed over for another job's loaded model
    speed_smoothing: float = 0.3  # weight of each new measurement in a model's measured speed

    def __post_init__(self) -> None:
        if self.max_queued < 1 or self.max_running < 1:
            raise ValueError("max_queued and max_running must be at least 1.")
        if self.queue_capacity is not None and self.queue_capacity < 1:
            raise ValueError("queue_capacity must be at least 1 (or unset for no limit).")
        if self.ageing_s is not None and self.ageing_s <= 0:
            raise ValueError("ageing_s must be positive (or unset to turn ageing off).")
        if self.lookahead < 0 or self.max_bypass < 0:
            raise ValueError("lookahead and max_bypass cannot be negative.")
        if not 0.0 < self.speed_smoothing <= 1.0:
            raise ValueError("speed_smoothing must be in (0, 1].")


@dataclass(frozen=True, slots=True)
class WorkerView:
    """What the scheduler needs to know of an idle worker."""

    id: str
    models: frozenset[str] | None = None  # models it may run; None: any
    loaded: frozenset[str] = frozenset()

    def may_run(self, model: str) -> bool:
        return self.models is None or model in self.models


@dataclass(frozen=True, slots=True)
class Assignment:
    """A dispatch decision: run `job_id` on `worker_id`; it is now running."""

    job_id: int
    worker_id: str
    estimate_s: float


@dataclass(frozen=True, slots=True)
class WaitingJob:
    """A waiting job as a queue listing shows it."""

    job_id: int
    user_id: int
    model: str
    priority: Priority  # its class now, ageing included
    position: int  # 1 = next to run
    eta_s: float  # estimated seconds until it starts


@dataclass(slots=True, eq=False)
class _Job:
    id: int
    user: _User
    model: str
    work: float
    rank: int
    queued_at: float
    seq: int
    bypassed: int = 0
    charged: float = 0.0
    started_at: float = 0.0


@dataclass(slots=True, eq=False)
class _User:
    id: int
    weight: float = 1.0
    max_running: int = 1
    served: float = 0.0  # weighted GPU-seconds charged: this user's virtual time
    running: int = 0
    queue: deque[_Job] = field(default_factory=deque)
    entry: int | None = None  # id of the live heap entry for the head job


# A heap entry: (served, head job seq, entry id, user). Entry ids are unique, so tuples never
# compare users; an entry is live while its id equals `user.entry` (lazy deletion).
_Entry = tuple[float, int, int, _User]
_Tag = tuple[int, float, int]


class FairScheduler:
    """Orders waiting jobs; see the module docstring for the policy."""

    def __init__(
        self,
        settings: SchedulerSettings | None = None,
        *,
        cost_factors: Mapping[str, float] | None = None,
        capacity: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`cost_factors`: each model's prior speed in seconds per work unit (the catalogue's
        `cost_factor`), replaced by measurements as jobs finish. `capacity`: how many workers run
        jobs (for ETAs). `clock`: seconds; a simulation passes its own."""
        self.settings = settings or SchedulerSettings()
        self.capacity = capacity
        self._clock = clock
        self._priors = dict(cost_factors or {})
        self._measured: dict[str, float] = {}
        self._users: dict[int, _User] = {}
        self._queued: dict[int, _Job] = {}
        self._running: dict[int, _Job] = {}
        self._queued_by_class = [0] * len(_CLASSES)
        self._heaps: dict[tuple[int, int], dict[str, list[_Entry]]] = {}
        self._ageing: list[tuple[float, int, _User]] = []
        self._entries = itertools.count()
        self._seqs = itertools.count()
        self._entry_count = 0  # entries pushed and not yet popped, live or not
        self._virtual_time = 0.0
        self._paused = False
        self._accepting = True

    # ---- admission and submission -----------------------------------------------------------

    def check_admission(self, owner: JobOwner) -> None:
        """Raise `QueueFull` (or `NotAccepting`) if `owner` may not queue one more job now."""
        if not self._accepting:
            raise NotAccepting()
        limit = owner.max_queued or self.settings.max_queued
        user = self._users.get(owner.user_id)
        waiting = len(user.queue) if user else 0
        if waiting >= limit:
            raise QueueFull(
                f"You already have {waiting} job{'s' if waiting != 1 else ''} waiting, the most "
                f"allowed at once. Wait for one to start, or cancel one."
            )
        capacity = self.settings.queue_capacity
        if capacity is not None and len(self._queued) >= capacity:
            raise QueueFull(
                f"The queue is full ({capacity:,} jobs waiting); try again in a few minutes."
            )

    def submit(
        self,
        job_id: int,
        owner: JobOwner,
        model: str,
        work: float,
        *,
        queued_at: float | None = None,
    ) -> None:
        """Queue a job at the back of its user's queue. Limits are not checked here (see
        `check_admission`): a job accepted before a restart is always taken back."""
        if job_id in self._queued or job_id in self._running:
            raise ValueError(f"Job {job_id} is already in the scheduler.")
        user = self._user(owner)
        if not user.queue:
            user.served = max(user.served, self._lift_floor())
        rank = _RANK[owner.priority]
        queued_at = self._clock() if queued_at is None else queued_at
        job = _Job(job_id, user, model, work, rank, queued_at, next(self._seqs))
        user.queue.append(job)
        self._queued[job_id] = job
        self._queued_by_class[rank] += 1
        if len(user.queue) == 1:
            self._place(user, self._clock())

    # ---- dispatch -------------------------------------------------------------------------

    def assign(self, idle: Sequence[WorkerView]) -> Assignment | None:
        """Pick the next job for one of the `idle` workers and mark it running.

        Returns None when paused or when none of these workers may run any waiting job. Call it
        again (without the chosen worker) while workers are idle.
        """
        if self._paused or not idle:
            return None
        now = self._clock()
        self._promote_aged(now)
        everything = any(worker.models is None for worker in idle)
        allowed = set().union(*(w.models for w in idle if w.models is not None))
        for tier in (_UNDER_CAP, _AT_CAP):
            for rank in range(len(_CLASSES)):
                by_model = self._heaps.get((tier, rank))
                if not by_model:
                    continue
                heaps = [h for m, h in by_model.items() if h and (everything or m in allowed)]
                job = self._choose(heaps, idle) if heaps else None
                if job is not None:
                    return self._start(job, idle, now)
        return None

    def _choose(self, heaps: list[list[_Entry]], idle: Sequence[WorkerView]) -> _Job | None:
        """The fairest job, or a later one within the lookahead whose model an idle GPU holds."""
        looked: list[tuple[_Entry, list[_Entry]]] = []
        chosen = 0
        while len(looked) <= self.settings.lookahead:
            popped = self._pop_fairest(heaps)
            if popped is None:
                break
            looked.append(popped)
            head = popped[0][3].queue[0]
            if head.bypassed >= self.settings.max_bypass or any(
                head.model in w.loaded and w.may_run(head.model) for w in idle
            ):
                chosen = len(looked) - 1
                break
        if not looked:
            return None
        for index, (entry, heap) in enumerate(looked):
            if index != chosen:
                heapq.heappush(heap, entry)
                self._entry_count += 1
            if index < chosen:
                entry[3].queue[0].bypassed += 1
        return looked[chosen][0][3].queue[0]

    def _pop_fairest(self, heaps: list[list[_Entry]]) -> tuple[_Entry, list[_Entry]] | None:
        best: list[_Entry] | None = None
        for heap in heaps:
            top = self._live_top(heap)
            if top is not None and (best is None or top < best[0]):
                best = heap
        if best is None:
            return None
        self._entry_count -= 1
        return heapq.heappop(best), best

    def _start(self, job: _Job, idle: Sequence[WorkerView], now: float) -> Assignment:
        user = job.user
        user.queue.popleft()
        del self._queued[job.id]
        self._queued_by_class[job.rank] -= 1
        candidates = [w for w in idle if w.may_run(job.model)]
        worker = min(candidates, key=lambda w: (job.model not in w.loaded, len(w.loaded)))
        estimate = self.estimate(job.model, job.work)
        self._virtual_time = max(self._virtual_time, user.served)
        user.served += estimate / user.weight
        user.running += 1
        job.charged, job.started_at = estimate, now
        self._running[job.id] = job
        self._place(user, now)
        return Assignment(job.id, worker.id, estimate)

    # ---- completion ------------------------------------------------------------------------

    def finish(self, job_id: int, gpu_seconds: float, *, measured: bool = True) -> None:
        """A running job ended. Its charge is settled to `gpu_seconds`; a `measured` run (a
        normal completion) also updates its model's measured speed."""
        job = self._running.pop(job_id)
        user = job.user
        user.running -= 1
        user.served += (gpu_seconds - job.charged) / user.weight
        if measured and job.work > 0:
            self._measure(job.model, gpu_seconds / job.work)
        self._settle(user)

    def requeue(self, job_id: int) -> None:
        """Put a running job back at the head of its user's queue (its worker died); the charge
        is refunded and taken again when it runs."""
        job = self._running.pop(job_id)
        user = job.user
        user.running -= 1
        user.served -= job.charged / user.weight
        job.bypassed = 0
        user.queue.appendleft(job)
        self._queued[job.id] = job
        self._queued_by_class[job.rank] += 1
        self._place(user, self._clock())

    def cancel(self, job_id: int) -> bool:
        """Remove a waiting job. False when it is not waiting (running, finished or unknown)."""
        job = self._queued.pop(job_id, None)
        if job is None:
            return False
        user = job.user
        was_head = user.queue[0] is job
        user.queue.remove(job)
        self._queued_by_class[job.rank] -= 1
        if was_head:
            self._settle(user)
        return True

    def cancel_user(self, user_id: int) -> list[int]:
        """Remove all of a user's waiting jobs; their ids, oldest first."""
        user = self._users.get(user_id)
        ids = [job.id for job in user.queue] if user else []
        for job_id in ids:
            self.cancel(job_id)
        return ids

    # ---- pause, resume, close --------------------------------------------------------------

    def pause(self) -> None:
        """Stop dispatching; running jobs finish and waiting jobs keep their places."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def close(self) -> None:
        """Refuse new submissions from now on (shutdown); what is queued stays queued."""
        self._accepting = False

    @property
    def accepting(self) -> bool:
        return self._accepting

    # ---- speeds, estimates and the queue as people see it ----------------------------------

    def speed(self, model: str) -> float:
        """Seconds per work unit for `model`: measured when any job has finished, else the prior."""
        return self._measured.get(model) or self._priors.get(model, 1.0)

    def model_speeds(self) -> dict[str, float]:
        """Each known model's speed in seconds per work unit (see `work_units`)."""
        return {model: self.speed(model) for model in {*self._priors, *self._measured}}

    def estimate(self, model: str, work: float) -> float:
        """Estimated GPU-seconds of a job of `work` units on `model`."""
        return self.speed(model) * work

    def is_queued(self, job_id: int) -> bool:
        return job_id in self._queued

    def is_running(self, job_id: int) -> bool:
        return job_id in self._running

    @property
    def queued_count(self) -> int:
        return len(self._queued)

    @property
    def running_count(self) -> int:
        return len(self._running)

    def queued_by_class(self) -> dict[Priority, int]:
        """Waiting jobs per priority class (the class each was submitted with)."""
        return dict(zip(_CLASSES, self._queued_by_class, strict=True))

    def user_counts(self, user_id: int) -> tuple[int, int]:
        """(waiting, running) jobs of a user."""
        user = self._users.get(user_id)
        return (len(user.queue), user.running) if user else (0, 0)

    def served(self, user_id: int) -> float:
        """The user's weighted GPU-seconds counter (their virtual time)."""
        user = self._users.get(user_id)
        return user.served if user else 0.0

    def position(self, job_id: int) -> tuple[int, float] | None:
        """(position, ETA in seconds) of a waiting job, or None when it is not waiting.

        Jobs run in the order of their projected start tags (class, then the user's counter plus
        the cost of their earlier jobs); this counts the jobs whose tag comes first. Soft caps
        and affinity are left out: it is an estimate. Costs O(users + position).
        """
        job = self._queued.get(job_id)
        if job is None:
            return None
        now = self._clock()
        target = next(key for key, queued, _ in self._tags(job.user, now) if queued is job)
        ahead, ahead_cost = 0, 0.0
        for user in self._users.values():
            for key, _, cost in self._tags(user, now):
                if key >= target:
                    break
                ahead += 1
                ahead_cost += cost
        return ahead + 1, self._eta(ahead + 1, ahead_cost, now)

    def waiting(self, limit: int | None = None) -> list[WaitingJob]:
        """The first `limit` waiting jobs (all when None) in projected order, with ETAs."""
        now = self._clock()
        merged = heapq.merge(*(self._tags(user, now) for user in self._users.values()))
        listing, ahead_cost = [], 0.0
        for position, (key, job, cost) in enumerate(itertools.islice(merged, limit), start=1):
            eta = self._eta(position, ahead_cost, now)
            listing.append(
                WaitingJob(job.id, job.user.id, job.model, _CLASSES[key[0]], position, eta)
            )
            ahead_cost += cost
        return listing

    # ---- internals -------------------------------------------------------------------------

    def _user(self, owner: JobOwner) -> _User:
        user = self._users.get(owner.user_id)
        if user is None:
            user = self._users[owner.user_id] = _User(owner.user_id)
        user.weight = owner.weight if owner.weight > 0 else 1.0
        user.max_running = owner.max_running or self.settings.max_running
        return user

    def _lift_floor(self) -> float:
        """Where a user returning from idle starts: the system's virtual time, that is the
        counter the latest dispatched job started at (as in start-time fair queuing), or the
        least counter among waiting users if that is lower."""
        floor = self._virtual_time
        for by_model in self._heaps.values():
            for heap in by_model.values():
                top = self._live_top(heap)
                if top is not None:
                    floor = min(floor, top[0])
        return floor

    def _live_top(self, heap: list[_Entry]) -> _Entry | None:
        """The heap's least live entry, after dropping the stale ones above it."""
        while heap and heap[0][2] != heap[0][3].entry:
            heapq.heappop(heap)
            self._entry_count -= 1
        return heap[0] if heap else None

    def _effective_rank(self, job: _Job, now: float) -> int:
        ageing = self.settings.ageing_s
        if ageing is None or job.rank == 0:
            return job.rank
        return max(0, job.rank - int(max(0.0, now - job.queued_at) // ageing))

    def _place(self, user: _User, now: float) -> None:
        """(Re)index the user under its head job's class, cap tier and model."""
        if not user.queue:
            user.entry = None
            return
        head = user.queue[0]
        tier = _AT_CAP if user.running >= user.max_running else _UNDER_CAP
        rank = self._effective_rank(head, now)
        entry = user.entry = next(self._entries)
        by_model = self._heaps.setdefault((tier, rank), {})
        heapq.heappush(by_model.setdefault(head.model, []), (user.served, head.seq, entry, user))
        self._entry_count += 1
        if rank > 0 and self.settings.ageing_s is not None:
            promote_at = head.queued_at + self.settings.ageing_s * (head.rank - rank + 1)
            heapq.heappush(self._ageing, (promote_at, entry, user))
        self._compact_if_bloated()

    def _settle(self, user: _User) -> None:
        """After a user's counter, cap or head changed: re-index it, or forget an idle user
        whose counter the lift would restore anyway."""
        self._place(user, self._clock())
        if not user.queue and user.running == 0 and user.served <= self._lift_floor():
            del self._users[user.id]

    def _promote_aged(self, now: float) -> None:
        while self._ageing and self._ageing[0][0] <= now:
            _, entry, user = heapq.heappop(self._ageing)
            if user.entry == entry:
                self._place(user, now)

    def _compact_if_bloated(self) -> None:
        # Live entries are at most one per user: rebuilding after `users + 1024` stale pushes
        # keeps the amortised cost O(1) per push.
        if self._entry_count <= 2 * len(self._users) + 1024:
            return
        for by_model in self._heaps.values():
            for model, heap in by_model.items():
                by_model[model] = [e for e in heap if e[2] == e[3].entry]
                heapq.heapify(by_model[model])
        self._ageing = [a for a in self._ageing if a[2].entry == a[1]]
        heapq.heapify(self._ageing)
        self._entry_count = sum(len(h) for m in self._heaps.values() for h in m.values())

    def _measure(self, model: str, seconds_per_unit: float) -> None:
        previous = self._measured.get(model)
        alpha = self.settings.speed_smoothing
        self._measured[model] = (
            seconds_per_unit
            if previous is None
            else alpha * seconds_per_unit + (1 - alpha) * previous
        )

    def _tags(self, user: _User, now: float) -> Iterator[tuple[_Tag, _Job, float]]:
        """A user's waiting jobs with their projected start tags (ascending) and costs.

        A tag is (class, counter, seq); a later job never gets ahead of an earlier one of the
        same user (FIFO), and seqs are unique so no two tags are equal."""
        counter, previous = user.served, (0, -math.inf)
        for job in user.queue:
            cost = self.estimate(job.model, job.work)
            previous = max(previous, (self._effective_rank(job, now), counter))
            yield (*previous, job.seq), job, cost
            counter += cost / user.weight

    def _eta(self, position: int, ahead_cost: float, now: float) -> float:
        """Seconds until the job at `position` starts: the earliest free worker for the first
        few places, else the work ahead spread over all workers."""
        free = sorted(max(0.0, j.charged - (now - j.started_at)) for j in self._running.values())
        free = [0.0] * max(0, self.capacity - len(free)) + free
        if position <= len(free):
            return free[position - 1]
        return (sum(free) + ahead_cost) / max(1, self.capacity)
