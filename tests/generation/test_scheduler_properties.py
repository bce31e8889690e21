"""Properties of the fair scheduler under random operations (hypothesis).

The state machine keeps its own record of every job and checks the scheduler against it after
each step: no job lost or run twice, a person's jobs in the order asked among those a GPU may
run, admission limits, the soft running cap scaled by weight, work conservation (no idle GPU
while a job it may run waits), positions that agree with the listing, and no ETA of 0 s while
every GPU that may run the job is busy. Further properties: weighted fair share, ageing never
reorders normal jobs, and relax waits at most `ageing_s` plus one job.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from generation.jobs import JobOwner, Priority
from generation.scheduler import FairScheduler, QueueFull, SchedulerSettings, WorkerView

SPEEDS = {"a": 1.0, "b": 3.0, "c": 2.0}  # three models on three GPUs: swaps of every kind
WORKERS = {
    "any": WorkerView("any"),
    "a-only": WorkerView("a-only", models=frozenset({"a"})),
    "b-only": WorkerView("b-only", models=frozenset({"b"})),
}
CLASS_RANK = {priority: rank for rank, priority in enumerate(Priority)}
MAX_QUEUED, MAX_RUNNING = 4, 1


def weight_of(user: int) -> float:
    return 2.0 if user % 2 else 1.0


class SchedulerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.scheduler = FairScheduler(
            SchedulerSettings(max_queued=MAX_QUEUED, max_running=MAX_RUNNING, ageing_s=30.0),
            cost_factors=SPEEDS,
            capacity=len(WORKERS),
            clock=lambda: self.now,
        )
        self.next_id = 1
        self.queues: dict[int, list[int]] = defaultdict(list)  # user → waiting ids, FIFO
        self.owner_of: dict[int, int] = {}
        self.model_of: dict[int, str] = {}
        self.running: dict[str, int] = {}  # worker → job
        self.finished: set[int] = set()
        self.loaded: dict[str, frozenset[str]] = {w: frozenset() for w in WORKERS}
        self.dispatched_once = False  # the scheduler has seen every worker

    def waiting_ids(self) -> set[int]:
        return {job for queue in self.queues.values() for job in queue}

    def running_of(self, user: int) -> int:
        return sum(self.owner_of[job] == user for job in self.running.values())

    @staticmethod
    def cap(user: int) -> int:
        return math.ceil(MAX_RUNNING * weight_of(user))

    @rule(
        user=st.integers(0, 4),
        model=st.sampled_from(sorted(SPEEDS)),
        work=st.floats(0.5, 4.0),
        priority=st.sampled_from(list(Priority)),
    )
    def submit(self, user: int, model: str, work: float, priority: Priority) -> None:
        owner = JobOwner(user, priority=priority, weight=weight_of(user))
        try:
            self.scheduler.check_admission(owner)
        except QueueFull:
            assert len(self.queues[user]) >= MAX_QUEUED
            return
        assert len(self.queues[user]) < MAX_QUEUED
        job = self.next_id
        self.next_id += 1
        self.scheduler.submit(job, owner, model, work)
        self.queues[user].append(job)
        self.owner_of[job], self.model_of[job] = user, model

    @rule()
    def dispatch(self) -> None:
        self.dispatched_once = True
        while True:
            idle = [
                WorkerView(w, view.models, self.loaded[w])
                for w, view in WORKERS.items()
                if w not in self.running
            ]
            classes = {w.job_id: CLASS_RANK[w.priority] for w in self.scheduler.waiting()}
            runnable = {  # user → the highest class (least rank) of a job an idle GPU may run
                user: min(
                    classes[job]
                    for job in queue
                    if any(w.may_run(self.model_of[job]) for w in idle)
                )
                for user, queue in self.queues.items()
                if any(w.may_run(self.model_of[job]) for w in idle for job in queue)
            }
            assignment = self.scheduler.assign(idle)
            if assignment is None:
                # Work conserving: only a pause leaves a runnable job waiting beside an idle GPU.
                assert self.scheduler.paused or not runnable
                return
            job, worker = assignment.job_id, assignment.worker_id
            user = self.owner_of[job]
            assert job not in self.finished
            assert job not in self.running.values()
            assert worker not in self.running
            assert WORKERS[worker].may_run(self.model_of[job])
            # The first of this person's jobs that this GPU may run.
            may_run = [j for j in self.queues[user] if WORKERS[worker].may_run(self.model_of[j])]
            assert may_run[0] == job
            if self.running_of(user) >= self.cap(user):  # soft cap: only if nobody else of
                # the same or a higher class could go (a higher class always goes first)
                uncapped = [
                    u
                    for u, rank in runnable.items()
                    if self.running_of(u) < self.cap(u) and rank <= classes[job]
                ]
                assert not uncapped
            self.queues[user].remove(job)
            self.running[worker] = job
            self.loaded[worker] = frozenset({self.model_of[job]})

    @precondition(lambda self: self.running)
    @rule(data=st.data(), slower=st.floats(0.5, 2.0))
    def finish(self, data: st.DataObject, slower: float) -> None:
        worker = data.draw(st.sampled_from(sorted(self.running)))
        job = self.running.pop(worker)
        estimate = SPEEDS[self.model_of[job]]
        self.scheduler.finish(job, estimate * slower)
        self.finished.add(job)

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def worker_dies(self, data: st.DataObject) -> None:
        worker = data.draw(st.sampled_from(sorted(self.running)))
        job = self.running.pop(worker)
        self.scheduler.requeue(job)
        bisect.insort(self.queues[self.owner_of[job]], job)  # ids grow in the order asked
        self.loaded[worker] = frozenset()

    @precondition(lambda self: self.owner_of)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from(sorted(self.owner_of)))
        waiting = job in self.waiting_ids()
        assert self.scheduler.cancel(job) is waiting
        if waiting:
            self.queues[self.owner_of[job]].remove(job)
            self.finished.add(job)

    @rule()
    def pause(self) -> None:
        self.scheduler.pause()

    @rule()
    def resume(self) -> None:
        self.scheduler.resume()

    @rule(seconds=st.floats(0.0, 40.0))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def every_job_is_in_exactly_one_place(self) -> None:
        waiting, running = self.waiting_ids(), set(self.running.values())
        assert not (waiting & running)
        assert not (waiting & self.finished)
        assert not (running & self.finished)
        assert waiting | running | self.finished == set(self.owner_of)  # none lost
        assert self.scheduler.queued_count == len(waiting)
        assert self.scheduler.running_count == len(running)
        for job in waiting:
            assert self.scheduler.is_queued(job)
        for job in running:
            assert self.scheduler.is_running(job)

    @invariant()
    def positions_are_a_permutation(self) -> None:
        listing = self.scheduler.waiting()
        assert sorted(w.job_id for w in listing) == sorted(self.waiting_ids())
        assert [w.position for w in listing] == list(range(1, len(listing) + 1))
        for user, queue in self.queues.items():  # a user's jobs are listed in their order
            assert [w.job_id for w in listing if w.user_id == user] == queue
        for waiting in listing:
            assert self.scheduler.position(waiting.job_id) == (waiting.position, waiting.eta_s)

    @invariant()
    def no_eta_of_zero_while_every_gpu_that_may_run_it_is_busy(self) -> None:
        if self.scheduler.paused:  # nothing starts: no number of seconds is shown
            assert all(w.eta_s is None for w in self.scheduler.waiting())
            return
        if not self.dispatched_once:  # until then the scheduler has not seen the workers
            return
        for waiting in self.scheduler.waiting():
            assert waiting.eta_s is not None
            eligible = [w for w, view in WORKERS.items() if view.may_run(waiting.model)]
            if all(w in self.running for w in eligible):
                assert waiting.eta_s > 0.0


TestSchedulerMachine = SchedulerMachine.TestCase
TestSchedulerMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.sampled_from([1.0, 2.0, 3.0]), min_size=2, max_size=5),
    gpus=st.integers(1, 3),
    data=st.data(),
)
def test_backlogged_users_share_within_one_largest_job(
    weights: list[float], gpus: int, data: st.DataObject
) -> None:
    """Users who all wait from the start receive weighted GPU time (cost / weight of the jobs
    they were given) that differs by at most the largest single job's cost / weight."""
    scheduler = FairScheduler(
        SchedulerSettings(max_queued=1000, max_running=gpus, swap_lead_s=0.0),
        cost_factors={"m": 1.0},
        capacity=gpus,
        clock=lambda: 0.0,
    )
    costs: dict[int, float] = {}
    owner: dict[int, int] = {}
    remaining: dict[int, int] = {}
    for user, weight in enumerate(weights):
        jobs = data.draw(st.lists(st.floats(0.1, 10.0), min_size=30, max_size=40))
        remaining[user] = len(jobs)
        for cost in jobs:
            job = len(costs)
            scheduler.submit(job, JobOwner(user, weight=weight), "m", cost)
            costs[job], owner[job] = cost, user
    bound = max(costs[job] / weights[owner[job]] for job in costs)
    service = dict.fromkeys(range(len(weights)), 0.0)
    running: list[int] = []
    while all(remaining.values()):  # while every user is still backlogged
        while len(running) < gpus and (assignment := scheduler.assign([WorkerView("g")])):
            job = assignment.job_id
            user = owner[job]
            service[user] += costs[job] / weights[user]
            remaining[user] -= 1
            running.append(job)
            if all(remaining.values()):
                assert max(service.values()) - min(service.values()) <= bound + 1e-9
        finished = running.pop(data.draw(st.integers(0, len(running) - 1)))
        scheduler.finish(finished, costs[finished])


def normal_order(ageing_s: float | None, arrivals: list[tuple[int, bool, float]]) -> list[int]:
    """Jobs of normal and admin people arriving (user, admin?, seconds later) on one GPU; the
    order they run in."""
    now = [0.0]
    scheduler = FairScheduler(
        SchedulerSettings(max_queued=1000, ageing_s=ageing_s),
        cost_factors={"m": 1.0},
        clock=lambda: now[0],
    )
    order: list[int] = []
    running: int | None = None
    for job, (user, admin, later) in enumerate(arrivals):
        now[0] += later
        priority = Priority.ADMIN if admin else Priority.NORMAL
        scheduler.submit(job, JobOwner(user, priority=priority), "m", 1.0 + job % 3)
        if running is not None and job % 2:
            scheduler.finish(running, 1.0 + running % 3)
            running = None
        if running is None and (found := scheduler.assign([WorkerView("g")])):
            running = found.job_id
            order.append(running)
    while True:
        if running is not None:
            scheduler.finish(running, 1.0 + running % 3)
        found = scheduler.assign([WorkerView("g")])
        if found is None:
            return order
        running = found.job_id
        order.append(running)


@settings(max_examples=60, deadline=None)
@given(
    arrivals=st.lists(
        st.tuples(st.integers(0, 4), st.booleans(), st.floats(0.0, 2000.0)), max_size=30
    )
)
def test_ageing_never_reorders_normal_or_admin_jobs(
    arrivals: list[tuple[int, bool, float]],
) -> None:
    assert normal_order(1.0, arrivals) == normal_order(None, arrivals)


@settings(max_examples=40, deadline=None)
@given(
    ageing_s=st.floats(10.0, 500.0),
    lengths=st.lists(st.floats(1.0, 30.0), min_size=5, max_size=20),
    overload=st.floats(1.0, 4.0),
)
def test_relax_waits_at_most_ageing_plus_one_job(
    ageing_s: float, lengths: list[float], overload: float
) -> None:
    """On one GPU under any overload of normal newcomers, a relax job starts within `ageing_s`
    plus the longest job."""
    now = [0.0]
    scheduler = FairScheduler(
        SchedulerSettings(max_queued=10**6, ageing_s=ageing_s),
        cost_factors={"m": 1.0},
        clock=lambda: now[0],
    )
    scheduler.submit(0, JobOwner(0, priority=Priority.RELAX), "m", 5.0)
    mean = sum(lengths) / len(lengths)
    arrivals, job = 0.0, 1
    while True:
        while arrivals <= now[0]:
            scheduler.submit(job, JobOwner(job), "m", lengths[job % len(lengths)])
            job += 1
            arrivals += mean / overload
        found = scheduler.assign([WorkerView("g")])
        assert found is not None
        if found.job_id == 0:
            break
        now[0] += lengths[found.job_id % len(lengths)]
        scheduler.finish(found.job_id, lengths[found.job_id % len(lengths)])
        assert now[0] <= ageing_s + max(lengths) + 1e-6
