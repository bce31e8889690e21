"""The fair scheduler's decisions, one rule at a time, on a settable clock."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from generation.jobs import JobOwner, Priority
from generation.models import Catalogue
from generation.request import build_request
from generation.scheduler import (
    FairScheduler,
    NotAccepting,
    QueueFull,
    SchedulerSettings,
    WorkerView,
    work_units,
)

GPU = WorkerView("gpu")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(clock: Clock, **settings: object) -> FairScheduler:
    """A scheduler where model `a` takes 1 s per work unit and model `b` 2 s."""
    return FairScheduler(
        SchedulerSettings(**settings),  # type: ignore[arg-type]
        cost_factors={"a": 1.0, "b": 2.0},
        clock=clock,
    )


def run_all(scheduler: FairScheduler, clock: Clock, worker: WorkerView = GPU) -> list[int]:
    """Run everything on one worker, each job taking exactly its estimate; the order."""
    order = []
    while (assignment := scheduler.assign([worker])) is not None:
        clock.now += assignment.estimate_s
        scheduler.finish(assignment.job_id, assignment.estimate_s)
        order.append(assignment.job_id)
    return order


def test_one_user_runs_in_fifo_order(clock: Clock) -> None:
    scheduler = make(clock)
    for job_id in (5, 3, 9, 1):
        scheduler.submit(job_id, JobOwner(1), "a", 1.0)
    assert run_all(scheduler, clock) == [5, 3, 9, 1]


def test_users_alternate_instead_of_first_come_first_served(clock: Clock) -> None:
    scheduler = make(clock, max_queued=10)
    for job_id in range(1, 5):  # the heavy user queues four jobs first
        scheduler.submit(job_id, JobOwner(1), "a", 1.0)
    scheduler.submit(10, JobOwner(2), "a", 1.0)
    scheduler.submit(11, JobOwner(2), "a", 1.0)
    assert run_all(scheduler, clock) == [1, 10, 2, 11, 3, 4]


def test_a_double_weight_user_gets_twice_the_gpu_time(clock: Clock) -> None:
    scheduler = make(clock, max_queued=20)
    for job_id in range(10):
        scheduler.submit(job_id, JobOwner(1, weight=2.0), "a", 1.0)
        scheduler.submit(100 + job_id, JobOwner(2), "a", 1.0)
    first_nine = run_all(scheduler, clock)[:9]
    assert sum(job_id < 100 for job_id in first_nine) == 6


def test_cost_is_gpu_time_not_job_count(clock: Clock) -> None:
    scheduler = make(clock)
    scheduler.submit(1, JobOwner(1), "b", 3.0)  # 6 s jobs
    scheduler.submit(2, JobOwner(1), "b", 3.0)
    for job_id in range(10, 15):  # 1 s jobs
        scheduler.submit(job_id, JobOwner(2), "a", 1.0)
    order = run_all(scheduler, clock)
    # After user 1's first 6 s job, user 2 runs until it has used as much GPU time.
    assert order == [1, 10, 11, 12, 13, 14, 2]


def test_an_idle_user_banks_no_credit(clock: Clock) -> None:
    scheduler = make(clock, max_queued=50)
    for job_id in range(1, 21):
        scheduler.submit(job_id, JobOwner(1), "a", 1.0)
    scheduler.submit(100, JobOwner(2), "a", 1.0)  # user 2 is served once, then goes quiet
    run_all(scheduler, clock)  # user 1 has now used 20 s of GPU time, user 2 only 1 s
    for job_id in range(21, 31):  # much later, user 1 is back with ten jobs...
        scheduler.submit(job_id, JobOwner(1), "a", 1.0)
    for job_id in range(200, 205):  # ...and user 2 returns with five
        scheduler.submit(job_id, JobOwner(2), "a", 1.0)
    order = run_all(scheduler, clock)
    # User 2 did not bank the time it was away: the two alternate from the start.
    assert sorted(order[:6]) == [21, 22, 23, 200, 201, 202]


def test_measured_times_correct_the_estimates(clock: Clock) -> None:
    scheduler = make(clock, max_queued=10)
    scheduler.submit(1, JobOwner(1), "a", 2.0)
    assignment = scheduler.assign([GPU])
    assert assignment is not None
    assert assignment.estimate_s == pytest.approx(2.0)
    for job_id in range(10, 15):  # user 2's 2 s jobs wait meanwhile
        scheduler.submit(job_id, JobOwner(2), "b", 1.0)
    scheduler.finish(1, gpu_seconds=10.0)  # the model is 5x slower than its prior
    assert scheduler.speed("a") == pytest.approx(5.0)
    assert scheduler.estimate("a", 1.0) == pytest.approx(5.0)
    # The charge was settled to 10 s: user 2 runs until it has had as much.
    scheduler.submit(2, JobOwner(1), "b", 1.0)
    assert run_all(scheduler, clock) == [10, 11, 12, 13, 14, 2]


def test_work_units_grow_with_steps_size_and_count() -> None:
    catalogue = Catalogue.builtin()

    def units(**options: object) -> float:
        request = build_request(catalogue, prompt="x", model="flux-dev", seed=1, **options)  # type: ignore[arg-type]
        return work_units(request)

    base = units(width=1024, height=1024, steps=20)
    assert units(width=1024, height=1024, steps=40) == pytest.approx(2 * base)
    assert units(width=1024, height=1024, steps=20, count=4) == pytest.approx(4 * base)
    assert units(width=512, height=512, steps=20) == pytest.approx(base / 4)


def test_reference_images_count_their_megapixels_up_to_what_klein_reads() -> None:
    """klein appends each reference's tokens to the image's at every step (scaling one above
    1024² down to that area), so four 1024² references make five times the work of none; were
    they not counted, such a job would be queued as small and, once measured, would raise
    klein's seconds per unit (everyone's estimates) by five."""
    catalogue = Catalogue.builtin()

    def png(side: int) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (side, side)).save(buffer, format="PNG")
        return buffer.getvalue()

    def units(*references: bytes) -> float:
        request = build_request(
            catalogue, prompt="x", model="flux2-klein-4b", seed=1, input_images=references
        )
        return work_units(request)

    base = units()
    assert units(png(1024), png(1024), png(1024), png(1024)) == pytest.approx(5 * base)
    assert units(png(512)) == pytest.approx(1.25 * base)
    assert units(png(2048)) == pytest.approx(2 * base)  # read at 1024²


def test_higher_classes_go_first(clock: Clock) -> None:
    scheduler = make(clock, ageing_s=None)
    scheduler.submit(1, JobOwner(1, priority=Priority.RELAX), "a", 1.0)
    scheduler.submit(2, JobOwner(2), "a", 1.0)
    scheduler.submit(3, JobOwner(3, priority=Priority.ADMIN), "a", 1.0)
    assert run_all(scheduler, clock) == [3, 2, 1]


def relax_job_start(ageing_s: float | None, clock: Clock) -> float | None:
    """A relax job waits while two normal jobs (1 s each) arrive every second for 300 s on one
    GPU; when does it start?"""
    scheduler = make(clock, ageing_s=ageing_s)
    start = clock.now
    scheduler.submit(1, JobOwner(1, priority=Priority.RELAX), "a", 1.0)
    for second in range(300):
        for n in range(2):
            user = 100 + 2 * second + n
            scheduler.submit(user, JobOwner(user), "a", 1.0)
        assignment = scheduler.assign([GPU])
        assert assignment is not None
        if assignment.job_id == 1:
            return clock.now - start
        clock.now += 1.0
        scheduler.finish(assignment.job_id, 1.0)
    return None


def test_ageing_lets_the_relax_class_through(clock: Clock) -> None:
    assert relax_job_start(None, clock) is None  # strict classes alone: it starves
    # After 60 s it joins the normal class as a newcomer: it runs on the next free GPU.
    started = relax_job_start(60.0, clock)
    assert started is not None
    assert 60.0 <= started <= 61.0


def test_queue_full_is_refused_with_a_clear_message_and_changes_nothing(clock: Clock) -> None:
    scheduler = make(clock, max_queued=2)
    owner = JobOwner(1)
    for job_id in (1, 2):
        scheduler.check_admission(owner)
        scheduler.submit(job_id, owner, "a", 1.0)
    with pytest.raises(QueueFull, match="2 jobs waiting"):
        scheduler.check_admission(owner)
    assert scheduler.user_counts(1) == (2, 0)
    scheduler.check_admission(JobOwner(2))  # others are not affected
    scheduler.check_admission(JobOwner(1, max_queued=3))  # a per-user override wins
    assert scheduler.assign([GPU]) is not None  # a job starting frees a place
    scheduler.check_admission(owner)


def test_the_whole_queue_has_a_capacity(clock: Clock) -> None:
    scheduler = make(clock, queue_capacity=3)
    for job_id in range(3):
        scheduler.submit(job_id, JobOwner(job_id), "a", 1.0)
    with pytest.raises(QueueFull, match="queue is full"):
        scheduler.check_admission(JobOwner(99))


def test_running_cap_holds_only_while_others_wait(clock: Clock) -> None:
    scheduler = make(clock, max_running=1)
    gpus = [WorkerView("g0"), WorkerView("g1"), WorkerView("g2")]
    for job_id in (1, 2, 3):
        scheduler.submit(job_id, JobOwner(1), "a", 1.0)
    scheduler.submit(10, JobOwner(2), "a", 5.0)  # a big job: user 2 is far ahead in GPU time
    started = [scheduler.assign(gpus[i:]) for i in range(3)]
    # User 1 is capped at one running job while user 2 waits; then no GPU is left idle.
    assert [a.job_id for a in started if a] == [1, 10, 2]


def test_a_cap_of_two_lets_two_run_while_others_wait(clock: Clock) -> None:
    scheduler = make(clock)
    gpus = [WorkerView(f"g{i}") for i in range(3)]
    for job_id in (1, 2, 3):
        scheduler.submit(job_id, JobOwner(1, max_running=2), "a", 1.0)
    scheduler.submit(10, JobOwner(2), "a", 9.0)
    scheduler.submit(11, JobOwner(2), "a", 9.0)
    started = [scheduler.assign(gpus[i:]) for i in range(3)]
    assert [a.job_id for a in started if a] == [1, 10, 2]


def test_prefers_a_gpu_that_holds_the_model(clock: Clock) -> None:
    scheduler = make(clock)
    scheduler.submit(1, JobOwner(1), "b", 1.0)
    cold, warm = WorkerView("cold"), WorkerView("warm", loaded=frozenset({"b"}))
    assignment = scheduler.assign([cold, warm])
    assert assignment is not None
    assert assignment.worker_id == "warm"


def test_a_loaded_model_goes_first_within_the_swap_lead(clock: Clock) -> None:
    scheduler = make(clock, swap_lead_s=2.0, max_queued=10)
    scheduler.submit(1, JobOwner(1), "b", 1.0)  # the fairest job needs model b
    for job_id in range(10, 16):  # one person's 1 s jobs for model a: tags 0, 1, 2, ...
        scheduler.submit(job_id, JobOwner(2), "a", 1.0)
    warm_a = WorkerView("gpu", loaded=frozenset({"a"}))
    order = run_all(scheduler, clock, warm_a)
    # Jobs for the loaded model pass job 1 while their person is within 2 s of its tag (0)
    # and the jobs passing it add up to at most 2 GPU-seconds: 10 and 11. Then job 1 loads
    # its model.
    assert order == [10, 11, 1, 12, 13, 14, 15]


def test_the_swap_lead_bounds_the_total_passing_of_one_job(clock: Clock) -> None:
    scheduler = make(clock, swap_lead_s=2.0)
    scheduler.submit(1, JobOwner(1), "b", 1.0)
    for job_id in range(10, 13):  # three newcomers level with job 1, each 1 s
        scheduler.submit(job_id, JobOwner(job_id), "a", 1.0)
    order = run_all(scheduler, clock, WorkerView("gpu", loaded=frozenset({"a"})))
    assert order == [10, 11, 1, 12]  # 2 GPU-seconds pass job 1 in all, not 2 per person


def test_no_swap_lead_means_strict_fair_order(clock: Clock) -> None:
    scheduler = make(clock, swap_lead_s=0.0)
    scheduler.submit(1, JobOwner(1), "b", 1.0)
    scheduler.submit(2, JobOwner(2), "a", 1.0)
    assignment = scheduler.assign([WorkerView("gpu", loaded=frozenset({"a"}))])
    assert assignment is not None
    assert assignment.job_id == 1


def test_the_swap_lead_is_bounded(clock: Clock) -> None:
    scheduler = make(clock, swap_lead_s=1.0, max_queued=10)
    scheduler.submit(1, JobOwner(1), "a", 1.0)
    scheduler.submit(2, JobOwner(1), "a", 1.0)
    scheduler.submit(3, JobOwner(1), "a", 1.0)  # user 1 is 2 s ahead by its third job
    scheduler.submit(10, JobOwner(2), "b", 1.0)
    warm_a = WorkerView("gpu", loaded=frozenset({"a"}))
    order = run_all(scheduler, clock, warm_a)
    assert order.index(10) < order.index(3)


def test_a_gpu_only_gets_models_it_may_run(clock: Clock) -> None:
    scheduler = make(clock)
    scheduler.submit(1, JobOwner(1), "b", 1.0)
    scheduler.submit(2, JobOwner(2), "a", 1.0)
    small = WorkerView("small", models=frozenset({"a"}))
    first = scheduler.assign([small])
    assert first is not None
    assert first.job_id == 2
    assert scheduler.assign([small]) is None  # job 1 waits for a GPU that may run b
    big = scheduler.assign([WorkerView("big", models=frozenset({"a", "b"}))])
    assert big is not None
    assert big.job_id == 1


def test_position_and_eta_follow_the_fair_order(clock: Clock) -> None:
    scheduler = make(clock, max_queued=10)
    scheduler.capacity = 2
    for job_id in (1, 2, 3):
        scheduler.submit(job_id, JobOwner(1), "a", 4.0)  # 4 s each
    scheduler.submit(10, JobOwner(2), "a", 4.0)
    assert scheduler.position(1) == (1, 0.0)
    assert scheduler.position(10) == (2, 0.0)  # both GPUs are free
    assert scheduler.position(2) == (3, pytest.approx(4.0))  # two 4 s jobs ahead, 2 GPUs
    assert scheduler.position(3) == (4, pytest.approx(6.0))
    scheduler.assign([WorkerView("g0")])
    clock.now += 1.0
    assert scheduler.position(10) == (1, 0.0)  # the second GPU is still free
    position, eta = scheduler.position(2)  # type: ignore[misc]
    assert position == 2
    assert 3.0 <= eta <= 4.0  # job 1 ends in 3 s; job 10 takes the free GPU
    listing = scheduler.waiting()
    assert [(w.job_id, w.position) for w in listing] == [(10, 1), (2, 2), (3, 3)]
    assert [w.eta_s for w in listing] == [scheduler.position(w.job_id)[1] for w in listing]  # type: ignore[index]
    assert scheduler.position(1) is None  # running, not waiting


def test_cancel_a_waiting_job(clock: Clock) -> None:
    scheduler = make(clock)
    for job_id in (1, 2, 3):
        scheduler.submit(job_id, JobOwner(1), "a", 1.0)
    assert scheduler.cancel(1) is True
    assert scheduler.cancel(1) is False
    assert scheduler.cancel(999) is False
    assert scheduler.cancel_user(1) == [2, 3]
    assert scheduler.assign([GPU]) is None
    assert scheduler.queued_count == 0


def test_pause_holds_new_starts_and_resume_releases_them(clock: Clock) -> None:
    scheduler = make(clock)
    scheduler.submit(1, JobOwner(1), "a", 1.0)
    scheduler.pause()
    assert scheduler.assign([GPU]) is None
    scheduler.resume()
    assert scheduler.assign([GPU]) is not None


def test_close_refuses_new_jobs_but_keeps_queued_ones(clock: Clock) -> None:
    scheduler = make(clock)
    scheduler.submit(1, JobOwner(1), "a", 1.0)
    scheduler.close()
    with pytest.raises(NotAccepting, match="shutting down"):
        scheduler.check_admission(JobOwner(2))
    assert scheduler.assign([GPU]) is not None


def test_a_requeued_job_runs_next_for_its_user(clock: Clock) -> None:
    scheduler = make(clock)
    scheduler.submit(1, JobOwner(1), "a", 1.0)
    scheduler.submit(2, JobOwner(1), "a", 1.0)
    first = scheduler.assign([GPU])
    assert first is not None
    scheduler.requeue(first.job_id)  # its worker died
    assert run_all(scheduler, clock) == [1, 2]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SchedulerSettings(max_queued=0)
    with pytest.raises(ValueError, match="ageing_s"):
        SchedulerSettings(ageing_s=-1)


def test_counts_by_class_follow_starts_requeues_and_cancels(clock: Clock) -> None:
    scheduler = make(clock, max_queued=10)
    scheduler.submit(1, JobOwner(1), "a", 1.0)
    scheduler.submit(2, JobOwner(1), "a", 1.0)
    scheduler.submit(3, JobOwner(2, priority=Priority.RELAX), "a", 1.0)
    assert scheduler.queued_by_class() == {
        Priority.ADMIN: 0,
        Priority.NORMAL: 2,
        Priority.RELAX: 1,
    }
    first = scheduler.assign([GPU])
    assert first is not None
    assert scheduler.queued_by_class()[Priority.NORMAL] == 1
    scheduler.requeue(first.job_id)
    assert scheduler.queued_by_class()[Priority.NORMAL] == 2
    scheduler.cancel(3)
    assert scheduler.queued_by_class()[Priority.RELAX] == 0
    assert scheduler.user_counts(1) == (2, 0)
