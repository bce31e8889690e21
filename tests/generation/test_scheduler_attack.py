"""The second review of the scheduler (an independent tester's attack) as regression tests: a
job passed over for model swaps, ETAs behind ties and while paused, exact charges, relax
through requeues and busy periods, classes before caps, and concurrent admissions."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generation.jobs import JobOwner, Priority
from generation.scheduler import FairScheduler, QueueFull, SchedulerSettings, WorkerView

PLAYGROUND, FLUX = "playground", "flux"


class Sim:
    """A tiny discrete-event driver of the real scheduler on GPUs of any model: a job's work
    is its estimated seconds (1 s per unit); `load_s` is added when a GPU changes model."""

    def __init__(self, gpus: int, *, loaded: str = PLAYGROUND, **settings: object) -> None:
        self.now = 0.0
        self.scheduler = FairScheduler(
            SchedulerSettings(**{"max_queued": 10**6, **settings}),  # type: ignore[arg-type]
            cost_factors={PLAYGROUND: 1.0, FLUX: 1.0},
            capacity=gpus,
            clock=lambda: self.now,
        )
        self.loaded = {f"g{i}": loaded for i in range(gpus)}
        self.busy: dict[str, int | None] = dict.fromkeys(self.loaded)
        self.events: list[tuple[float, int, object]] = []
        self.seq = itertools.count()
        self.ids = itertools.count(1)
        self.seconds: dict[int, float] = {}
        self.started: dict[int, float] = {}
        self.submitted: dict[int, float] = {}
        self.served: dict[int, float] = {}
        self.owner: dict[int, int] = {}
        self.model: dict[int, str] = {}

    def submit(self, user: int, model: str, seconds: float, **owner: object) -> int:
        job = next(self.ids)
        self.scheduler.submit(job, JobOwner(user, **owner), model, seconds)  # type: ignore[arg-type]
        self.seconds[job], self.submitted[job], self.owner[job] = seconds, self.now, user
        self.model[job] = model
        self.scheduler.position(job)  # as the pool tells the person at once
        return job

    def at(self, when: float, action: object) -> None:
        heapq.heappush(self.events, (when, next(self.seq), action))

    def dispatch(self) -> None:
        while True:
            idle = [
                WorkerView(g, None, frozenset({self.loaded[g]}))
                for g, job in self.busy.items()
                if job is None
            ]
            assignment = self.scheduler.assign(idle)
            if assignment is None:
                return
            job, gpu = assignment.job_id, assignment.worker_id
            self.busy[gpu] = job
            self.started.setdefault(job, self.now)
            load = 25.0 if self.loaded[gpu] != self.model[job] else 0.0
            self.loaded[gpu] = self.model[job]
            self.at(self.now + load + self.seconds[job], (gpu, job))

    def run(self, until: float = float("inf"), each: Callable[[], None] | None = None) -> None:
        """Play the events up to `until`, calling `each` (if given) after every one."""
        self.dispatch()
        while self.events and self.events[0][0] <= until:
            when, _, action = heapq.heappop(self.events)
            self.now = when
            if callable(action):
                action()
            else:
                gpu, job = action  # type: ignore[misc]
                if self.busy[gpu] == job:
                    self.busy[gpu] = None
                    self.scheduler.finish(job, self.seconds[job])
                    user = self.owner[job]
                    self.served[user] = self.served.get(user, 0.0) + self.seconds[job]
            if each is not None:
                each()
            self.dispatch()


@pytest.mark.parametrize("heavy", [1, 3, 10, 30])
def test_a_job_is_passed_over_for_swaps_at_most_swap_lead_s_in_all(heavy: int) -> None:
    """t1: N heavy users keep loaded-model jobs queued; a newcomer's FLUX job is passed over
    for at most `swap_lead_s` GPU-seconds whatever N (it was ~N x 125 s)."""
    sim = Sim(1)
    for user in range(heavy):
        for _ in range(200):
            sim.submit(100 + user, PLAYGROUND, 10.0)
    sim.run(until=5.0)
    sim.now = 5.0
    job = sim.submit(1, FLUX, 30.0)
    fair_wait = sim.scheduler.position(job)[1]  # type: ignore[index]
    sim.run(until=100_000)
    # its fair wait, plus the swap lead, plus the job running when it became next
    assert sim.started[job] - 5.0 <= fair_wait + 120.0 + 10.0


@pytest.mark.parametrize("load", [0.9, 1.0, 1.3])
def test_a_stream_of_one_job_people_cannot_pass_a_job_forever(load: float) -> None:
    """t10: one GPU holding Playground, a Poisson stream of one-job people; a FLUX job asked at
    t=5 starts within the swap lead plus one job (it never started under overload)."""
    import random

    rnd = random.Random(3)
    sim = Sim(1)
    now, user = 0.0, 100
    while now < 5_000:
        now += rnd.expovariate(load / 10.0)
        user += 1
        sim.at(now, lambda u=user: sim.submit(u, PLAYGROUND, 10.0))
    flux: list[int] = []
    sim.at(5.0, lambda: flux.append(sim.submit(1, FLUX, 30.0)))
    sim.run(until=5_000)
    assert flux[0] in sim.started
    assert sim.started[flux[0]] - 5.0 <= 120.0 + 10.0


def test_etas_count_every_job_ahead_with_equal_tags() -> None:
    """t2: 20 one-job people behind a 100 s job: each ETA is the real start (all said 80 s)."""
    sim = Sim(1)
    sim.submit(999, PLAYGROUND, 100.0)
    sim.run(until=0.5)
    jobs = []
    for user in range(20):
        sim.now = 1.0 + user
        jobs.append(sim.submit(user, PLAYGROUND, 10.0))
    now = sim.now
    etas = {job: sim.scheduler.position(job)[1] for job in jobs}  # type: ignore[index]
    sim.run()
    for job in jobs:
        assert etas[job] == pytest.approx(sim.started[job] - now)


def test_a_paused_queue_shows_no_number_of_seconds() -> None:
    """t13: paused, positions stay but no ETA is claimed (it showed 0 s)."""
    sim = Sim(1)
    sim.run(until=1.0)
    sim.scheduler.pause()
    first, second = sim.submit(1, PLAYGROUND, 10.0), sim.submit(2, PLAYGROUND, 10.0)
    assert sim.scheduler.position(first) == (1, None)
    assert sim.scheduler.position(second) == (2, None)
    assert [w.eta_s for w in sim.scheduler.waiting()] == [None, None]
    sim.scheduler.resume()
    assert sim.scheduler.position(second)[1] == pytest.approx(10.0)  # type: ignore[index]


def test_eta_error_for_one_job_people_is_small() -> None:
    """t12: 2 GPUs, one-job people at 95 % load: p95 ETA error well under p95 wait."""
    import random

    rnd = random.Random(7)
    sim = Sim(2)
    now, user, etas = 0.0, 0, {}
    while now < 7_200:
        now += rnd.expovariate(0.95 * 2 / 15.0)
        user += 1
        seconds = rnd.uniform(10, 20)

        def ask(u: int = user, s: float = seconds) -> None:
            job = sim.submit(u, PLAYGROUND, s)
            etas[job] = sim.scheduler.position(job)[1]  # type: ignore[index]

        sim.at(now, ask)
    sim.run()
    waits = sorted(sim.started[j] - sim.submitted[j] for j in etas)
    errors = sorted(abs(sim.started[j] - sim.submitted[j] - etas[j]) for j in etas)
    p95 = int(0.95 * (len(waits) - 1))
    assert errors[p95] <= 0.5 * waits[p95]


@pytest.mark.parametrize("real", [10.0, 12.0, 9.0])
def test_cancelling_gives_back_exactly_the_charge(real: float) -> None:
    """t3: after a measured correction, cancelling a 1000 s waiting job gives its time back
    (float equality used to block it: the next job waited ~1000 s)."""
    sim = Sim(1)
    for _ in range(300):
        sim.submit(2, PLAYGROUND, 10.0)
    first = sim.submit(1, PLAYGROUND, 10.0)
    sim.seconds[first] = real  # it really takes `real` s
    big = sim.submit(1, PLAYGROUND, 1000.0)
    sim.run(until=25.0)
    sim.now = 25.0
    assert sim.scheduler.cancel(big)
    sim.now = 25.5
    after = sim.submit(1, PLAYGROUND, 10.0)
    sim.run()
    assert sim.started[after] - 25.5 <= 30.0


def test_cancelling_a_middle_job_moves_the_later_ones_back() -> None:
    sim = Sim(1)
    for _ in range(300):
        sim.submit(2, PLAYGROUND, 10.0)
    sim.submit(1, PLAYGROUND, 10.0)
    big = sim.submit(1, PLAYGROUND, 1000.0)
    later = sim.submit(1, PLAYGROUND, 10.0)
    sim.run(until=5.0)
    assert sim.scheduler.cancel(big)
    sim.run()
    assert sim.started[later] <= 40.0  # it waited 1030 s


@pytest.mark.parametrize("crash", [100.0, 700.0])
def test_a_requeued_relax_job_keeps_its_ageing(crash: float) -> None:
    """t4: a relax job requeued after a crash still joins normal `ageing_s` after it was asked
    for (it stayed relax forever under normal overload)."""
    sim = Sim(1)
    relax = sim.submit(1, PLAYGROUND, 1000.0, priority=Priority.RELAX)
    sim.run(until=0.5)
    for k in range(2000):
        sim.at(1.0 + 8.0 * k, lambda k=k: sim.submit(1000 + k, PLAYGROUND, 10.0))
    restarts: list[float] = []

    def crash_worker() -> None:
        sim.busy["g0"] = None
        sim.scheduler.requeue(relax)
        sim.started.pop(relax)

    sim.at(crash, crash_worker)
    sim.run(until=3_000)
    restarts.append(sim.started[relax])
    # it ages at 600 s, then waits at most what a newcomer waits (one running 10 s job)
    assert restarts[0] <= max(crash, 600.0) + 10.0 + 1e-9


def test_requeued_jobs_keep_their_persons_order_across_classes() -> None:
    """Found by the state machine: a normal job, then an admin job of the same person (nothing
    waiting, so it goes admin), both running; both workers die. The person's jobs run again
    in the order asked (the admin job used to go first)."""
    scheduler = FairScheduler(SchedulerSettings(max_running=2), capacity=2)
    scheduler.submit(1, JobOwner(0), PLAYGROUND, 1.0)
    assert scheduler.assign([WorkerView("a")]) is not None
    scheduler.submit(2, JobOwner(0, priority=Priority.ADMIN), PLAYGROUND, 1.0)
    assert scheduler.assign([WorkerView("b")]) is not None
    scheduler.requeue(1)
    scheduler.requeue(2)
    assert [w.job_id for w in scheduler.waiting()] == [1, 2]
    first = scheduler.assign([WorkerView("a")])
    assert first is not None
    assert first.job_id == 1


def test_relax_starts_level_again_and_its_people_are_forgotten() -> None:
    """t5: after relax jobs aged into normal and everything drained, a long-time relax person
    and a new one share the relax class level (R1 went last), and nobody is remembered."""
    sim = Sim(1)
    for k in range(1000):
        sim.at(1.0 + 8.0 * k, lambda k=k: sim.submit(1000 + k, PLAYGROUND, 10.0))
    for k in range(20):
        sim.at(2.0 + 300.0 * k, lambda: sim.submit(1, PLAYGROUND, 10.0, priority=Priority.RELAX))
    sim.run()
    assert sim.scheduler.known_users == 0
    sim.now += 100
    jobs = []
    for _ in range(10):
        jobs.append(sim.submit(1, PLAYGROUND, 10.0, priority=Priority.RELAX))
        jobs.append(sim.submit(2, PLAYGROUND, 10.0, priority=Priority.RELAX))
    sim.run()
    order = [sim.owner[j] for j in sorted(jobs, key=lambda j: sim.started[j])]
    assert order[:4] in ([1, 2, 1, 2], [2, 1, 2, 1])


@pytest.mark.parametrize("higher", [Priority.ADMIN, Priority.NORMAL])
def test_a_higher_class_goes_first_even_past_its_running_cap(higher: Priority) -> None:
    """t6: an admin (or normal) backlog on 2 GPUs keeps both GPUs; relax waits, and positions
    agree with the order jobs start."""
    sim = Sim(2)
    for _ in range(40):
        sim.submit(1, PLAYGROUND, 10.0, priority=higher)
        sim.submit(2, PLAYGROUND, 10.0, priority=Priority.RELAX)
    sim.run(until=100.0)
    assert 2 not in sim.served
    listing = sim.scheduler.waiting()
    sim.run()
    starts = [sim.started[w.job_id] for w in listing]
    assert starts == sorted(starts)


def test_concurrent_admissions_cannot_overshoot_the_capacity() -> None:
    """t11: places held by admissions in progress count, for everyone."""
    scheduler = FairScheduler(SchedulerSettings(queue_capacity=3))
    held = [scheduler.admission(JobOwner(user)) for user in range(3)]
    for admission in held:
        admission.__enter__()
    with pytest.raises(QueueFull), scheduler.admission(JobOwner(9)):
        pass
    for admission in held:
        admission.__exit__(None, None, None)
    with scheduler.admission(JobOwner(9)):
        scheduler.submit(1, JobOwner(9), PLAYGROUND, 1.0)
    assert scheduler.queued_count == 1


# ---- properties ----------------------------------------------------------------------------

MODELS = ("a", "b", "c")
jobs_strategy = st.lists(
    st.tuples(st.integers(0, 5), st.sampled_from(MODELS), st.integers(1, 30)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(jobs=jobs_strategy, loaded=st.sampled_from(MODELS), lead=st.integers(0, 60))
def test_the_job_next_in_fair_order_is_passed_over_at_most_the_swap_lead(
    jobs: list[tuple[int, str, int]], loaded: str, lead: int
) -> None:
    """Whoever waits, the GPU-seconds started while a job was at position 1 (ahead of it, to
    keep a model loaded) add up to at most `swap_lead_s`."""
    scheduler = FairScheduler(
        SchedulerSettings(max_queued=1000, swap_lead_s=float(lead)),
        cost_factors=dict.fromkeys(MODELS, 1.0),
    )
    for job, (user, model, work) in enumerate(jobs):
        scheduler.submit(job, JobOwner(user), model, float(work))
    passed: dict[int, float] = {}
    while scheduler.queued_count:
        first = scheduler.waiting(1)[0].job_id
        started = scheduler.assign([WorkerView("g", loaded=frozenset({loaded}))])
        assert started is not None
        if started.job_id != first:
            passed[first] = passed.get(first, 0.0) + jobs[started.job_id][2]
            assert passed[first] <= lead
        loaded = jobs[started.job_id][1]
        scheduler.finish(started.job_id, jobs[started.job_id][2])


@settings(max_examples=200, deadline=None)
@given(
    jobs=jobs_strategy,
    loaded=st.tuples(st.sampled_from(MODELS), st.sampled_from(MODELS)),
    lead=st.integers(0, 20),
)
def test_on_two_gpus_the_next_job_is_passed_over_at_most_the_swap_lead(
    jobs: list[tuple[int, str, int]], loaded: tuple[str, str], lead: int
) -> None:
    """Two GPUs, each job running its work in seconds: a free GPU always gets a job, and the
    GPU-seconds started ahead of the job at position 1 (for a model loaded on the free GPU, or
    loaded nowhere while its model runs on the busy one) add up to at most `swap_lead_s`."""
    clock = [0.0]
    scheduler = FairScheduler(  # nobody is capped: a start out of fair order is a swap
        SchedulerSettings(max_queued=1000, max_running=2, swap_lead_s=float(lead)),
        cost_factors=dict.fromkeys(MODELS, 1.0),
        capacity=2,
        clock=lambda: clock[0],
    )
    for job, (user, model, work) in enumerate(jobs):
        scheduler.submit(job, JobOwner(user), model, float(work))
    holds = {"g0": loaded[0], "g1": loaded[1]}
    running: dict[str, tuple[float, int]] = {}  # GPU → (ends at, job)
    passed: dict[int, float] = {}
    while scheduler.queued_count or running:
        while scheduler.queued_count and len(running) < 2:
            first = scheduler.waiting(1)[0].job_id
            idle = [
                WorkerView(g, loaded=frozenset({m})) for g, m in holds.items() if g not in running
            ]
            started = scheduler.assign(idle)
            assert started is not None  # no GPU idles while a job waits
            job = started.job_id
            if job != first:
                passed[first] = passed.get(first, 0.0) + jobs[job][2]
                assert passed[first] <= lead
            holds[started.worker_id] = jobs[job][1]
            running[started.worker_id] = (clock[0] + jobs[job][2], job)
        gpu = min(running, key=lambda g: running[g])
        clock[0], job = running.pop(gpu)
        scheduler.finish(job, jobs[job][2])


@settings(max_examples=80, deadline=None)
@given(jobs=jobs_strategy, data=st.data())
def test_a_cancelled_job_leaves_the_order_as_if_never_asked(
    jobs: list[tuple[int, str, int]], data: st.DataObject
) -> None:
    """Cancel any waiting job that is not its person's first: every other job's position is
    what it would be had the job never been asked for (its charge given back exactly)."""
    later = [j for j, (user, _, _) in enumerate(jobs) if any(u == user for u, _, _ in jobs[:j])]
    if not later:
        return
    cancelled = data.draw(st.sampled_from(later))

    def scheduler_of(skip: int | None) -> FairScheduler:
        scheduler = FairScheduler(
            SchedulerSettings(max_queued=1000), cost_factors=dict.fromkeys(MODELS, 1.0)
        )
        for job, (user, model, work) in enumerate(jobs):
            if job != skip:
                scheduler.submit(job, JobOwner(user), model, float(work))
        return scheduler

    asked = scheduler_of(None)
    assert asked.cancel(cancelled)
    never = scheduler_of(cancelled)
    assert [w.job_id for w in asked.waiting()] == [w.job_id for w in never.waiting()]


@settings(max_examples=25, deadline=None)
@given(
    weights=st.lists(st.sampled_from([0.25, 0.5, 1.0, 2.0]), min_size=2, max_size=4),
    gpus=st.integers(1, 4),
)
def test_weights_hold_on_any_number_of_gpus(weights: list[float], gpus: int) -> None:
    """t7: backlogged people (always 5 waiting) with weights below and above 1 get GPU time in
    proportion to their weights, within 5 %, with the default `max_running` of 1."""
    sim = Sim(gpus)
    lengths = itertools.cycle([5.0, 15.0, 10.0, 7.0, 13.0])

    def top_up() -> None:
        for user, weight in enumerate(weights):
            while sim.scheduler.user_counts(user)[0] < 5:
                sim.submit(user, PLAYGROUND, next(lengths), weight=weight)

    top_up()
    sim.run(until=6_000.0, each=top_up)
    total = sum(sim.served.values())
    for user, weight in enumerate(weights):
        share = sim.served.get(user, 0.0) / total / (weight / sum(weights))
        assert share == pytest.approx(1.0, abs=0.05)
