"""Issue 13's six findings as regression tests: each example, and variations of its kind."""

from __future__ import annotations

import pytest

from generation.jobs import JobOwner, Priority
from generation.scheduler import FairScheduler, SchedulerSettings, WorkerView

PLAYGROUND, FLUX = "playground", "flux"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, *, capacity: int = 1, **settings: object) -> FairScheduler:
    """Models take 1 s per work unit, so a job's work is its seconds."""
    settings = {"max_queued": 1000, **settings}
    return FairScheduler(
        SchedulerSettings(**settings),  # type: ignore[arg-type]
        cost_factors={PLAYGROUND: 1.0, FLUX: 1.0},
        capacity=capacity,
        clock=clock,
    )


def run_backlogged(weights: list[float], gpus: int, seconds: float = 20_000.0) -> list[float]:
    """Backlogged people with `weights` on `gpus` GPUs running jobs of 5-15 s; each one's GPU
    time over its weighted share of everything served (1.0: exact)."""
    clock = Clock()
    scheduler = make(clock, capacity=gpus)
    owners = [JobOwner(user, weight=weight) for user, weight in enumerate(weights)]
    lengths = [5.0, 15.0, 10.0, 7.0, 13.0]
    user_of: dict[int, int] = {}
    seconds_of: dict[int, float] = {}
    ids = iter(range(10**9))

    def top_up() -> None:
        for user, owner in enumerate(owners):
            while scheduler.user_counts(user)[0] < 10:
                job = next(ids)
                user_of[job], seconds_of[job] = user, lengths[job % len(lengths)]
                scheduler.submit(job, owner, PLAYGROUND, seconds_of[job])

    served = [0.0] * len(weights)
    ends: list[tuple[float, str, int]] = []
    top_up()
    idle = [WorkerView(f"g{i}") for i in range(gpus)]
    while clock.now < seconds:
        while idle:
            found = scheduler.assign(idle)
            assert found is not None
            idle = [w for w in idle if w.id != found.worker_id]
            job = found.job_id
            ends.append((clock.now + seconds_of[job], found.worker_id, job))
            served[user_of[job]] += seconds_of[job]
        ends.sort()
        clock.now, worker, job = ends.pop(0)
        scheduler.finish(job, seconds_of[job])
        idle.append(WorkerView(worker))
        top_up()
    total = sum(served)
    return [served[u] / total / (w / sum(weights)) for u, w in enumerate(weights)]


# ---- 1. ageing never reorders people within a class ------------------------------------------


def test_a_long_wait_does_not_put_a_heavy_user_before_a_newcomer() -> None:
    """The issue's example: user 1 asks for two 700 s jobs at t=0, user 2 for a 10 s job at
    t=650; when user 1's first job ends at t=700, user 2's job starts."""
    clock = Clock()
    scheduler = make(clock)
    scheduler.submit(1, JobOwner(1), PLAYGROUND, 700.0)
    scheduler.submit(2, JobOwner(1), PLAYGROUND, 700.0)
    assert scheduler.assign([WorkerView("gpu")]).job_id == 1  # type: ignore[union-attr]
    clock.now = 650.0
    scheduler.submit(3, JobOwner(2), PLAYGROUND, 10.0)
    clock.now = 700.0
    scheduler.finish(1, 700.0)
    assert scheduler.assign([WorkerView("gpu")]).job_id == 3  # type: ignore[union-attr]


@pytest.mark.parametrize("waited_s", [0.0, 601.0, 1201.0, 10_000.0])
def test_waiting_never_lifts_a_normal_job_above_its_class(waited_s: float) -> None:
    clock = Clock()
    scheduler = make(clock, ageing_s=600.0)
    scheduler.submit(1, JobOwner(1), PLAYGROUND, 1.0)
    scheduler.submit(2, JobOwner(1), PLAYGROUND, 1.0)  # user 1 is one job ahead
    clock.now = waited_s
    scheduler.submit(3, JobOwner(2), PLAYGROUND, 1.0)
    scheduler.submit(4, JobOwner(3, priority=Priority.ADMIN), PLAYGROUND, 1.0)
    order = [scheduler.assign([WorkerView("gpu")]) for _ in range(4)]
    assert [a.job_id for a in order if a] == [4, 1, 3, 2]
    listing = scheduler.waiting()
    assert listing == []


# ---- 2. weights hold on any number of GPUs ----------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "gpus"),
    [([2.0, 1.0], 1), ([2.0, 1.0], 2), ([2.0, 1.0], 4), ([2.0, 1.0, 1.0, 1.0], 4), ([3.0, 1.0], 3)],
)
def test_weights_hold_within_five_percent(weights: list[float], gpus: int) -> None:
    for share in run_backlogged(weights, gpus):
        assert share == pytest.approx(1.0, abs=0.05)


def test_the_running_cap_scales_with_weight() -> None:
    clock = Clock()
    scheduler = make(clock, max_running=1, capacity=4)
    for job in range(4):
        scheduler.submit(job, JobOwner(1, weight=2.0), PLAYGROUND, 10.0)
        scheduler.submit(10 + job, JobOwner(2), PLAYGROUND, 10.0)
        scheduler.submit(20 + job, JobOwner(3), PLAYGROUND, 10.0)
    gpus = [WorkerView(f"g{i}") for i in range(4)]
    started = [scheduler.assign(gpus[i:]) for i in range(4)]
    assert [a.job_id for a in started if a] == [0, 10, 20, 1]  # weight 2: two running
    assert scheduler.user_counts(1) == (2, 2)


# ---- 3. a GPU runs the first of a person's jobs that it may run -----------------------------


def test_an_idle_gpu_runs_a_later_job_it_may_run() -> None:
    """The issue's example: GPU A may run only Playground, GPU B both; user 2 has a FLUX job
    then a Playground job waiting while B is busy: A runs the Playground job."""
    clock = Clock()
    scheduler = make(clock, capacity=2)
    scheduler.submit(1, JobOwner(1), FLUX, 30.0)
    assert scheduler.assign([WorkerView("b")]).job_id == 1  # type: ignore[union-attr]
    scheduler.submit(2, JobOwner(2), FLUX, 30.0)
    scheduler.submit(3, JobOwner(2), PLAYGROUND, 10.0)
    a = WorkerView("a", models=frozenset({PLAYGROUND}))
    found = scheduler.assign([a])
    assert found is not None
    assert (found.job_id, found.worker_id) == (3, "a")
    scheduler.finish(1, 30.0)
    assert scheduler.assign([WorkerView("b")]).job_id == 2  # type: ignore[union-attr]


def test_a_gpu_that_may_run_both_keeps_the_order_asked() -> None:
    clock = Clock()
    scheduler = make(clock)
    scheduler.submit(1, JobOwner(1), FLUX, 30.0)
    scheduler.submit(2, JobOwner(1), PLAYGROUND, 10.0)
    warm = WorkerView("b", loaded=frozenset({PLAYGROUND}))  # holds the later job's model
    assert scheduler.assign([warm]).job_id == 1  # type: ignore[union-attr]


def test_the_narrowest_gpu_takes_a_job_both_may_run() -> None:
    clock = Clock()
    scheduler = make(clock, capacity=2)
    scheduler.submit(1, JobOwner(1), PLAYGROUND, 10.0)
    scheduler.submit(2, JobOwner(2), FLUX, 30.0)
    a, b = WorkerView("a", models=frozenset({PLAYGROUND})), WorkerView("b")
    first = scheduler.assign([b, a])
    assert first is not None
    assert (first.job_id, first.worker_id) == (1, "a")  # b stays free for the FLUX job
    assert scheduler.assign([b]).job_id == 2  # type: ignore[union-attr]


# ---- 4. relax is bounded at any load ---------------------------------------------------------


@pytest.mark.parametrize("overload", [1.2, 2.0, 5.0])
def test_relax_starts_within_ageing_plus_one_job_under_overload(overload: float) -> None:
    """Normal newcomers arrive faster than one GPU serves them; a relax job waits at most
    `ageing_s` plus the job running when it joins the normal class."""
    clock = Clock()
    scheduler = make(clock, ageing_s=300.0)
    scheduler.submit(0, JobOwner(0, priority=Priority.RELAX), PLAYGROUND, 10.0)
    arrivals, job_id, running = 0.0, 1, None
    while True:
        while arrivals <= clock.now:
            scheduler.submit(job_id, JobOwner(job_id), PLAYGROUND, 10.0)
            job_id += 1
            arrivals += 10.0 / overload
        if running is None:
            found = scheduler.assign([WorkerView("gpu")])
            assert found is not None
            if found.job_id == 0:
                break
            running = found.job_id
        clock.now += 10.0
        scheduler.finish(running, 10.0)
        running = None
    assert 300.0 <= clock.now <= 300.0 + 10.0


def test_a_relax_job_is_listed_as_normal_once_it_has_waited() -> None:
    clock = Clock()
    scheduler = make(clock, ageing_s=300.0)
    scheduler.submit(0, JobOwner(0, priority=Priority.RELAX), PLAYGROUND, 10.0)
    for job in range(1, 4):
        scheduler.submit(job, JobOwner(job), PLAYGROUND, 10.0)
    assert scheduler.position(0)[0] == 4  # type: ignore[index]
    clock.now = 300.0
    scheduler.submit(4, JobOwner(4), PLAYGROUND, 10.0)
    listing = scheduler.waiting()
    assert (listing[0].job_id, listing[0].priority) == (0, Priority.NORMAL)
    assert scheduler.position(0)[0] == 1  # type: ignore[index]
    assert scheduler.queued_by_class()[Priority.RELAX] == 1  # the class it was asked in


# ---- 5. ETAs count what is running; positions are cheap; users are forgotten -----------------


def test_a_job_running_past_its_estimate_is_not_counted_as_free() -> None:
    clock = Clock()
    scheduler = make(clock)
    scheduler.submit(1, JobOwner(1), PLAYGROUND, 10.0)
    scheduler.assign([WorkerView("gpu")])
    clock.now = 60.0  # it was estimated at 10 s and still runs
    scheduler.submit(2, JobOwner(2), PLAYGROUND, 10.0)
    position, eta = scheduler.position(2)  # type: ignore[misc]
    assert position == 1
    assert eta > 0.0


def test_an_eta_counts_the_running_jobs_remaining_time_and_model_loads() -> None:
    clock = Clock()
    scheduler = make(clock)
    scheduler.record_load(FLUX, 20.0)
    scheduler.submit(1, JobOwner(1), FLUX, 30.0)
    scheduler.assign([WorkerView("gpu")])  # cold: 20 s load + 30 s
    clock.now = 10.0
    scheduler.submit(2, JobOwner(2), FLUX, 30.0)
    assert scheduler.position(2) == (1, pytest.approx(40.0))


def test_an_eta_counts_only_the_gpus_that_may_run_the_model() -> None:
    clock = Clock()
    scheduler = make(clock, capacity=2)
    a = WorkerView("a", models=frozenset({FLUX, PLAYGROUND}))
    b = WorkerView("b", models=frozenset({FLUX}))
    scheduler.assign([a, b])  # both seen, nothing to run
    scheduler.submit(1, JobOwner(1), FLUX, 30.0)
    scheduler.assign([a])
    scheduler.submit(2, JobOwner(2), PLAYGROUND, 10.0)  # b may not run it; a is busy
    scheduler.submit(3, JobOwner(3), FLUX, 10.0)  # b is idle and may run it
    started = scheduler.assign([b])
    assert started is not None
    assert started.job_id == 3
    assert scheduler.position(2)[1] == pytest.approx(30.0)  # type: ignore[index]


def test_an_eta_counts_the_running_cap() -> None:
    clock = Clock()
    scheduler = make(clock, capacity=4)
    for job in range(3):
        scheduler.submit(job, JobOwner(1), PLAYGROUND, 10.0)
    for job in range(10, 16):
        scheduler.submit(job, JobOwner(job), PLAYGROUND, 10.0)
    # User 1 runs one job at a time while others wait: its third job starts after 20 s.
    assert scheduler.position(2)[1] >= 20.0  # type: ignore[index]


def test_positions_agree_with_the_listing_in_a_large_queue() -> None:
    clock = Clock()
    scheduler = make(clock, capacity=4)
    for job in range(3000):
        owner = JobOwner(job % 300, priority=Priority.RELAX if job % 7 == 0 else Priority.NORMAL)
        scheduler.submit(job, owner, FLUX if job % 3 else PLAYGROUND, 1.0 + job % 5)
    listing = scheduler.waiting()
    for waiting in listing[::97]:
        assert scheduler.position(waiting.job_id) == (waiting.position, waiting.eta_s)


def test_people_who_left_are_forgotten() -> None:
    clock = Clock()
    scheduler = make(clock)
    for user in range(100):
        scheduler.submit(user, JobOwner(user), PLAYGROUND, 1.0)
    while (found := scheduler.assign([WorkerView("gpu")])) is not None:
        clock.now += 1.0
        scheduler.finish(found.job_id, 1.0)
    scheduler.submit(1000, JobOwner(1000), PLAYGROUND, 1.0)  # moves the virtual time on
    found = scheduler.assign([WorkerView("gpu")])
    assert found is not None
    scheduler.finish(found.job_id, 1.0)
    assert scheduler.known_users <= 2


# ---- 6. swaps: a loaded model goes first only within a bounded lead -------------------------


def loads(swap_lead_s: float) -> int:
    """Two people alternate models on one GPU that holds one model; how many loads?"""
    clock = Clock()
    scheduler = make(clock, swap_lead_s=swap_lead_s)
    for job in range(10):
        scheduler.submit(job, JobOwner(1), PLAYGROUND, 5.0)
        scheduler.submit(100 + job, JobOwner(2), FLUX, 5.0)
    loaded, count = PLAYGROUND, 0
    while (found := scheduler.assign([WorkerView("gpu", loaded=frozenset({loaded}))])) is not None:
        model = PLAYGROUND if found.job_id < 100 else FLUX
        count += model != loaded
        loaded = model
        clock.now += 5.0
        scheduler.finish(found.job_id, 5.0)
    return count


def test_the_swap_lead_saves_model_loads() -> None:
    assert loads(0.0) == 19  # strict alternation
    assert loads(20.0) <= 5  # runs of five 5 s jobs (a 20 s lead) per load


def test_a_swap_never_passes_a_higher_class_or_a_capped_tier() -> None:
    clock = Clock()
    scheduler = make(clock, swap_lead_s=1000.0, capacity=2)
    scheduler.submit(1, JobOwner(1, priority=Priority.ADMIN), FLUX, 10.0)
    scheduler.submit(2, JobOwner(2), PLAYGROUND, 10.0)
    warm = WorkerView("gpu", loaded=frozenset({PLAYGROUND}))
    assert scheduler.assign([warm]).job_id == 1  # type: ignore[union-attr]


SCHNELL = "schnell"


def started_on(scheduler: FairScheduler, gpu: str, loaded: str) -> int:
    found = scheduler.assign([WorkerView(gpu, loaded=frozenset({loaded}))])
    assert found is not None
    assert found.worker_id == gpu
    return found.job_id


def test_a_free_gpu_loads_a_model_no_gpu_holds_rather_than_a_second_copy() -> None:
    """GPU B runs a FLUX job; the fairest waiting job is FLUX too, the next one Schnell. GPU A
    (holding Playground) frees: it loads Schnell, and the FLUX job starts on B when B frees
    without a load (one load in all; loading FLUX on A as well took two)."""
    clock = Clock()
    scheduler = make(clock, capacity=2)
    scheduler.submit(1, JobOwner(1), FLUX, 10.0)
    assert started_on(scheduler, "b", FLUX) == 1
    scheduler.submit(2, JobOwner(2), FLUX, 10.0)
    scheduler.submit(3, JobOwner(3), SCHNELL, 10.0)
    assert [w.job_id for w in scheduler.waiting()] == [2, 3]
    assert started_on(scheduler, "a", PLAYGROUND) == 3
    clock.now = 10.0
    scheduler.finish(1, 10.0)
    assert started_on(scheduler, "b", FLUX) == 2


@pytest.mark.parametrize(
    ("busy_model", "lead"),
    [(PLAYGROUND, 120.0), (FLUX, 0.0)],
    ids=["the busy GPU holds another model", "no swap lead"],
)
def test_the_fairest_job_loads_its_model_when_no_busy_gpu_can_take_it_warm(
    busy_model: str, lead: float
) -> None:
    clock = Clock()
    scheduler = make(clock, capacity=2, swap_lead_s=lead)
    scheduler.submit(1, JobOwner(1), busy_model, 10.0)
    assert started_on(scheduler, "b", busy_model) == 1
    scheduler.submit(2, JobOwner(2), FLUX, 10.0)
    scheduler.submit(3, JobOwner(3), SCHNELL, 10.0)
    assert started_on(scheduler, "a", PLAYGROUND) == 2


def test_loading_another_model_shares_the_swap_budget() -> None:
    """The fairest job waits for the busy GPU holding its model while Schnell jobs go first on
    the free GPU (the first loads Schnell, the next run warm) only until they add up to the
    swap lead (25 s): then it loads its model there, a second copy."""
    clock = Clock()
    scheduler = make(clock, capacity=2, swap_lead_s=25.0)
    scheduler.submit(1, JobOwner(1), FLUX, 1000.0)
    assert started_on(scheduler, "b", FLUX) == 1
    scheduler.submit(2, JobOwner(2), FLUX, 10.0)
    for job in (3, 4, 5):
        scheduler.submit(job, JobOwner(job), SCHNELL, 10.0)
    order, loaded = [], PLAYGROUND
    while scheduler.queued_count:
        job = started_on(scheduler, "a", loaded)
        order.append(job)
        loaded = FLUX if job == 2 else SCHNELL
        clock.now += 10.0
        scheduler.finish(job, 10.0)
    assert order == [3, 4, 2, 5]
