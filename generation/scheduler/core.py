"""`FairScheduler`: which waiting job runs next, and on which idle GPU.

A pure, synchronous core (no asyncio, torch or discord) so a simulation can drive it and each
decision is easy to test. The policy, in order (the README's "How the queue decides"):

1. **Classes.** `admin` before `normal` before `relax`, whatever the caps. A relax job that
   has waited `ageing_s` since it was asked for (through requeues) joins the normal class as a
   newcomer would (rule 3), its relax charge given back, so relax never starves at any load.
2. **Running cap (soft).** A person running `ceil(max_running x weight / w)` jobs, w the least
   weight below 1 of anyone known (else 1), waits behind everyone of their class under their
   cap, but still gets a GPU nobody else can use.
3. **Fair share** by start-time fair queuing (Goyal et al., SIGCOMM 1996): a job gets a start
   tag, `max(its person's finish tag, the class's virtual time)`, and its person's finish tag
   grows by its estimated GPU-seconds / weight. The least tag goes first. The virtual time is
   the greatest tag started so far, or the least tag waiting if that is lower, and the greatest
   finish tag once the class has nothing waiting or running; so a newcomer or someone back from
   a pause goes before everyone who has been served (ties go to the newcomer), and banks no
   credit for time away. Measured times settle the finish tag. Each job keeps its charge (its
   estimate over the weight), so a cancel gives back exactly that, moving the person's later
   jobs of the class back by it.
4. **Per-GPU order.** A person's jobs run in the order asked among the jobs a given GPU may
   run: a later job may start on a GPU that cannot run the earlier one.
5. **Model swaps** (`generation.scheduler.swaps`). If the fairest job's model is not loaded on any
   idle GPU that may run it, a job of the same class and cap tier whose model is loaded there goes
   first; or, when a busy GPU is running a job of the fairest job's model (it can start there
   without a load), a job whose model no GPU holds loads it, rather than a second copy of the
   fairest job's model. Either only when its tag is within `swap_lead_s` of the fairest one's, and
   while the jobs that passed the fairest one add up to at most `swap_lead_s` estimated GPU-seconds
   (a budget kept with that job): a job next in fair order is passed over for at most `swap_lead_s`,
   however many people wait.

Submit, dispatch and finish are O(log n) in waiting jobs (tags are fixed at submission; users
sit in heaps per class, cap tier and model), and cancel O(k log n) with k the person's later
jobs (at most `max_queued`); a position is a rank in a sorted list of tags, O(log n), and an
ETA adds O(GPUs); a listing of the first m jobs, or of a person's first m, is O(m log n).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from generation.jobs import JobOwner, Priority
from generation.scheduler.admission import Places
from generation.scheduler.book import ClassBook, Key
from generation.scheduler.estimates import Estimates
from generation.scheduler.eta import eta_s
from generation.scheduler.people import AT_CAP, UNDER_CAP, Caps, Job, PeopleHeaps, Person
from generation.scheduler.swaps import Swaps
from generation.scheduler.types import (
    Assignment,
    SchedulerSettings,
    WaitingJob,
    WorkerView,
)

_CLASSES = tuple(Priority)  # highest first
_RANK = {priority: rank for rank, priority in enumerate(_CLASSES)}
_NORMAL, _RELAX = _RANK[Priority.NORMAL], _RANK[Priority.RELAX]


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
        jobs (for ETAs, until each has been seen idle). `clock`: seconds."""
        self.settings = settings or SchedulerSettings()
        self.capacity = capacity
        self._clock = clock
        self._estimates = Estimates(cost_factors or {}, self.settings.speed_smoothing)
        self._users: dict[int, Person] = {}
        self._queued: dict[int, Job] = {}
        self._running: dict[int, Job] = {}
        self._asked_by_class = [0] * len(_CLASSES)
        self._books = [ClassBook() for _ in _CLASSES]
        self._people = PeopleHeaps()
        self._ageing: list[tuple[float, int, Job]] = []
        self._forget: list[tuple[float, int, int]] = []  # (finish tag, class, user) to prune
        self._workers: dict[str, frozenset[str] | None] = {}  # seen workers: models allowed
        self._seqs = itertools.count()
        self._paused = False
        self._accepting = True
        self._places = Places(self.settings)
        self._caps = Caps(self.settings)
        self._swaps = Swaps(
            self.settings, self._people, self._books, self._running.values(), self.estimate
        )

    # ---- admission and submission -----------------------------------------------------------

    def check_admission(self, owner: JobOwner) -> None:
        """Raise `QueueFull` (or `NotAccepting`) if `owner` may not queue one more job now."""
        self._places.check(owner, self._waiting_of(owner), len(self._queued), self._accepting)

    @contextmanager
    def admission(self, owner: JobOwner) -> Iterator[None]:
        """Hold one place for `owner` while their job is written down, then `submit` it inside
        the block. Raises like `check_admission`; admissions in progress count as waiting jobs,
        so concurrent ones cannot all pass the same last free place."""
        self.check_admission(owner)
        with self._places.held(owner):
            yield

    def _waiting_of(self, owner: JobOwner) -> int:
        user = self._users.get(owner.user_id)
        return user.waiting if user else 0

    def submit(
        self,
        job_id: int,
        owner: JobOwner,
        model: str,
        work: float,
        *,
        queued_at: float | None = None,
    ) -> None:
        """Queue a job behind its person's earlier jobs. Limits are not checked here (see
        `check_admission`): a job accepted before a restart is always taken back."""
        if job_id in self._queued or job_id in self._running:
            raise ValueError(f"Job {job_id} is already in the scheduler.")
        user = self._user(owner)
        now = self._clock()
        queued_at = now if queued_at is None else queued_at
        asked = _RANK[owner.priority]
        # A job never goes in a higher class than an earlier waiting job of the same person.
        rank = max([asked, *(q[-1].rank for q in user.by_model.values() if q)])
        job = Job(job_id, user, model, work, rank, asked, queued_at, next(self._seqs))
        self._tag(job)
        user.by_model.setdefault(model, deque()).append(job)
        self._add_waiting(job)
        self._place(user)
        self._lift_aged(now)

    # ---- dispatch -------------------------------------------------------------------------

    def assign(self, idle: Sequence[WorkerView]) -> Assignment | None:
        """Pick the next job for one of the `idle` workers and mark it running.

        Returns None when paused or when none of these workers may run any waiting job. Call it
        again (without the chosen worker) while workers are idle.
        """
        for worker in idle:
            self._workers[worker.id] = worker.models
        if self._paused or not idle:
            return None
        now = self._clock()
        self._lift_aged(now)
        everything = any(worker.models is None for worker in idle)
        allowed = set().union(*(w.models for w in idle if w.models is not None))
        for rank in range(len(_CLASSES)):
            for tier in (UNDER_CAP, AT_CAP):
                by_model = self._people.level(tier, rank)
                if not by_model:
                    continue
                heaps = [h for m, h in by_model.items() if h and (everything or m in allowed)]
                fairest = self._people.fairest(heaps)
                if fairest is None:
                    continue
                user, model = fairest[4], fairest[5]
                job = user.by_model[model][0]
                return self._start(*self._swaps.choose(job, idle, by_model), now)
        return None

    def _start(self, job: Job, worker: WorkerView, now: float) -> Assignment:
        user = job.user
        queue = user.by_model[job.model]
        queue.popleft()
        if not queue:
            del user.by_model[job.model]
        self._remove_waiting(job)
        book = self._books[job.rank]
        book.virtual = max(book.virtual, job.key[0])
        cold = job.model not in worker.loaded
        self._estimates.record_dispatch(cold)
        estimate = self.estimate(job.model, job.work)
        job.started_at, job.worker = now, worker.id
        job.expected = estimate + (self._estimates.load_s(job.model) if cold else 0.0)
        user.running += 1
        self._running[job.id] = job
        self._place(user)
        self._prune()
        return Assignment(job.id, worker.id, estimate)

    # ---- completion ------------------------------------------------------------------------

    def finish(self, job_id: int, gpu_seconds: float, *, measured: bool = True) -> None:
        """A running job ended. Its person's finish tag is settled to `gpu_seconds`; a
        `measured` run (a normal completion) also updates its model's measured speed."""
        job = self._running.pop(job_id)
        user = job.user
        user.running -= 1
        user.finish[job.rank] += gpu_seconds / user.weight - job.charge
        book = self._books[job.rank]
        book.max_finish = max(book.max_finish, user.finish[job.rank])
        if measured and job.work > 0:
            self._estimates.measure(job.model, gpu_seconds / job.work)
        self._place(user)
        self._maybe_forget(user)
        self._end_busy_period(job.rank)

    def requeue(self, job_id: int) -> None:
        """Put a running job back among its person's waiting jobs in the order asked (its worker
        died); it keeps its tag, so it runs as soon as it would have, unless that would take it
        past one of its person's waiting jobs: then it goes right after their earlier ones or
        right before their later ones, in that job's class."""
        job = self._running.pop(job_id)
        user = job.user
        user.running -= 1
        # The person's waiting jobs, taken in the order asked, are in listing order (class,
        # then key); the job goes between its earlier and later ones. Its key can be out of
        # that range: an earlier requeue put an earlier job in its class at a later job's tag,
        # or a run shorter than its estimate moved their finish tag back below its tag.
        at = (job.rank, job.key)
        earlier = max(((j.rank, j.key) for j in user.jobs() if j.seq < job.seq), default=at)
        later = min(((j.rank, j.key) for j in user.jobs() if j.seq > job.seq), default=at)
        bound = earlier if at < earlier else later if at > later else None
        if bound is not None:
            # Next to the bounding job: its tag and newcomer mark, with this job's seq.
            rank, (tag, newcomer, _) = bound
            key = (tag, newcomer, job.seq)
            if rank == job.rank:  # its charge is already counted in this class
                job.key = key
            else:  # its charge moves with it
                self._move(job, rank, key)
        user.last_tag[job.rank] = max(user.last_tag.get(job.rank, job.key[0]), job.key[0])
        queue = user.by_model.setdefault(job.model, deque())
        queue.insert(next((i for i, j in enumerate(queue) if j.seq > job.seq), len(queue)), job)
        self._add_waiting(job)
        self._place(user)
        self._lift_aged(self._clock())

    def cancel(self, job_id: int) -> bool:
        """Remove a waiting job. False when it is not waiting (running, finished or unknown)."""
        job = self._queued.get(job_id)
        if job is None:
            return False
        user = job.user
        queue = user.by_model[job.model]
        queue.remove(job)
        if not queue:
            del user.by_model[job.model]
        self._remove_waiting(job)
        self._books[job.rank].give_back(job, self._running.values())
        self._place(user)
        self._maybe_forget(user)
        self._end_busy_period(job.rank)
        return True

    def cancel_user(self, user_id: int) -> list[int]:
        """Remove all of a user's waiting jobs; their ids, oldest first."""
        user = self._users.get(user_id)
        ids = sorted((job.seq, job.id) for job in user.jobs()) if user else []
        # newest first: each is then its person's last, and no later tag needs moving
        return [job_id for _, job_id in reversed(ids) if self.cancel(job_id)][::-1]

    def record_load(self, model: str, seconds: float) -> None:
        """A GPU loaded `model` in `seconds` (for ETAs)."""
        self._estimates.record_load(model, seconds)

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
        return self._estimates.speed(model)

    def model_speeds(self) -> dict[str, float]:
        """Each known model's speed in seconds per work unit (see `work_units`)."""
        return self._estimates.speeds()

    def estimate(self, model: str, work: float) -> float:
        """Estimated GPU-seconds of a job of `work` units on `model`."""
        return self._estimates.speed(model) * work

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

    @property
    def known_users(self) -> int:
        """People the scheduler remembers (waiting, running, or ahead of the fair share)."""
        return len(self._users)

    def queued_by_class(self) -> dict[Priority, int]:
        """Waiting jobs per priority class (the class each was submitted with)."""
        return dict(zip(_CLASSES, self._asked_by_class, strict=True))

    def user_counts(self, user_id: int) -> tuple[int, int]:
        """(waiting, running) jobs of a user."""
        user = self._users.get(user_id)
        return (user.waiting, user.running) if user else (0, 0)

    def position(self, job_id: int) -> tuple[int, float | None] | None:
        """(position, ETA in seconds) of a waiting job, or None when it is not waiting. The ETA
        is None while the queue is paused (nothing starts until it is resumed).

        The position counts the waiting jobs in higher classes and those of its class before it
        in fair order: O(log n). Caps and swaps can change the order a little: the ETA is an
        estimate (see `_eta`)."""
        now = self._clock()
        self._lift_aged(now)
        job = self._queued.get(job_id)
        if job is None:
            return None
        ahead = self._ahead(job)
        return ahead + 1, self._eta(job, ahead, now)

    def waiting(self, limit: int | None = None) -> list[WaitingJob]:
        """The first `limit` waiting jobs (all when None) in projected order, with ETAs."""
        now = self._clock()
        self._lift_aged(now)
        listed = itertools.islice(
            itertools.chain.from_iterable(b.order for b in self._books), limit
        )
        return [
            self._listed(self._queued[job_id], ahead, now)
            for ahead, (_, job_id) in enumerate(listed)
        ]

    def waiting_of(self, user_id: int, limit: int) -> list[WaitingJob]:
        """A person's first `limit` waiting jobs in the order asked, listed in queue order:
        O(limit x log n) whatever the number of their jobs."""
        now = self._clock()
        self._lift_aged(now)
        user = self._users.get(user_id)
        if user is None:
            return []
        first = itertools.islice(heapq.merge(*user.by_model.values(), key=_seq), limit)
        listing = [self._listed(job, self._ahead(job), now) for job in first]
        return sorted(listing, key=lambda listed: listed.position)

    # ---- internals -------------------------------------------------------------------------

    def _ahead(self, job: Job) -> int:
        """Waiting jobs before `job`: all of the higher classes, and its class's before it."""
        higher = sum(len(book) for book in self._books[: job.rank])
        return higher + self._books[job.rank].rank(job.key, job.id)

    def _listed(self, job: Job, ahead: int, now: float) -> WaitingJob:
        eta = self._eta(job, ahead, now)
        return WaitingJob(job.id, job.user.id, job.model, _CLASSES[job.rank], ahead + 1, eta)

    def _user(self, owner: JobOwner) -> Person:
        user = self._users.get(owner.user_id)
        if user is None:
            user = self._users[owner.user_id] = Person(owner.user_id)
        weight = owner.weight if owner.weight > 0 else 1.0
        if self._caps.join(user, weight, owner.max_running):
            self._recap()
        user.cap = self._caps.of(user)
        return user

    def _forget_user(self, user: Person) -> None:
        del self._users[user.id]
        if self._caps.leave(user):
            self._recap()

    def _recap(self) -> None:
        """The least weight changed (rarely: an admin sets weights): every cap again, O(people)."""
        for user in self._users.values():
            if (cap := self._caps.of(user)) != user.cap:
                user.cap = cap
                self._place(user)

    def _move(self, job: Job, rank: int, key: Key) -> None:
        """Move a job that is not waiting to class `rank` with order key `key`, its charge
        given back in its old class and counted in the new one."""
        self._books[job.rank].give_back(job, self._running.values())
        job.rank, job.key, user = rank, key, job.user
        user.finish[rank] = max(user.finish.get(rank, key[0]), key[0]) + job.charge
        book = self._books[rank]
        book.max_finish = max(book.max_finish, user.finish[rank])

    def _tag(self, job: Job) -> None:
        self._books[job.rank].tag(job, self.estimate(job.model, job.work))

    def _add_waiting(self, job: Job) -> None:
        user = job.user
        user.waiting_in[job.rank] = user.waiting_in.get(job.rank, 0) + 1
        user.waiting += 1
        user.seqs.add(job.seq)
        user.waiting_cost += job.cost
        self._asked_by_class[job.asked_rank] += 1
        self._queued[job.id] = job
        self._books[job.rank].add(job.key, job.id, job.model, job.work)
        if job.rank == _RELAX and self.settings.ageing_s is not None:
            heapq.heappush(self._ageing, (job.queued_at + self.settings.ageing_s, job.seq, job))

    def _remove_waiting(self, job: Job) -> None:
        """Forget `job` as waiting (whether or not it is still in its person's queues)."""
        user = job.user
        user.waiting -= 1
        user.seqs.remove(job.seq)
        user.waiting_cost -= job.cost
        user.waiting_in[job.rank] -= 1
        if not user.waiting_in[job.rank]:
            del user.waiting_in[job.rank]
        self._asked_by_class[job.asked_rank] -= 1
        del self._queued[job.id]
        self._books[job.rank].remove(job.key, job.id, job.model, job.work)

    def _lift_aged(self, now: float) -> None:
        """Relax jobs that have waited `ageing_s` since they were asked for (a requeued job
        keeps its time) join the normal class, newly tagged there; their relax charge is given
        back, and when relax is left empty its people start level."""
        lifted = False
        while self._ageing and self._ageing[0][0] <= now:
            _, _, job = heapq.heappop(self._ageing)
            if job.id not in self._queued or job.rank != _RELAX:
                continue
            self._remove_waiting(job)
            self._books[_RELAX].give_back(job, self._running.values())
            job.rank = _NORMAL
            self._tag(job)
            self._add_waiting(job)
            self._place(job.user)
            lifted = True
        if lifted:
            self._end_busy_period(_RELAX)

    def _place(self, user: Person) -> None:
        self._people.place(user, len(self._users))

    def _maybe_forget(self, user: Person) -> None:
        """Forget an idle user once no class's virtual time is behind their finish tags (they
        would start from the virtual time anyway); until then, remember to look again."""
        if user.waiting or user.running:
            return
        behind = [(f, r) for r, f in user.finish.items() if f > self._books[r].virtual]
        if not behind and user.id in self._users:
            self._forget_user(user)
        for finish, rank in behind:
            heapq.heappush(self._forget, (finish, rank, user.id))

    def _end_busy_period(self, rank: int) -> None:
        """When a class has nothing waiting or running, its virtual time moves to the greatest
        finish tag (as in start-time fair queuing): the next ones to come start level."""
        book = self._books[rank]
        if book.order or any(job.rank == rank for job in self._running.values()):
            return
        book.virtual = max(book.virtual, book.max_finish)
        self._prune()

    def _prune(self) -> None:
        """Forget the idle users whose finish tags the virtual times have now passed."""
        while self._forget and self._forget[0][0] <= self._books[self._forget[0][1]].virtual:
            _, _, user_id = heapq.heappop(self._forget)
            user = self._users.get(user_id)
            if user is not None:
                self._maybe_forget(user)

    def _eta(self, job: Job, ahead: int, now: float) -> float | None:
        """Seconds until `job` starts (see `eta_s`), or None while paused."""
        if self._paused:
            return None
        return eta_s(
            job,
            ahead,
            now,
            books=self._books,
            running=self._running.values(),
            workers=self._workers,
            capacity=self.capacity,
            estimates=self._estimates,
        )


def _seq(job: Job) -> int:
    return job.seq
