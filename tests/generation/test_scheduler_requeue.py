"""A person's jobs stay in the order asked through requeues and cancels (README, "How the
queue decides": a crashed worker's job "is tried once more, ahead of its owner's later jobs",
a cancelled job "costs nothing", and rule 4: a GPU takes a person's jobs in the order asked
among those it may run). The state machine's saved example, and the other ways a job's tag
fell out of its person's order: an earlier requeue, a cancel or a run shorter than its estimate
moved the person's tags while a job ran or waited."""

from __future__ import annotations

from generation.jobs import JobOwner, Priority
from generation.scheduler import FairScheduler, SchedulerSettings, WorkerView

ANY = WorkerView("any")
A_ONLY = WorkerView("a-only", models=frozenset({"a"}))
C_ONLY = WorkerView("c-only", models=frozenset({"c"}))
ADMIN = JobOwner(0, priority=Priority.ADMIN)
NORMAL = JobOwner(0)


def make() -> FairScheduler:
    """Models `a`, `b` and `c` take 1 s per work unit, so a job's work is its seconds."""
    return FairScheduler(
        SchedulerSettings(max_queued=10, max_running=3),
        cost_factors={"a": 1.0, "b": 1.0, "c": 1.0},
        capacity=3,
        clock=lambda: 0.0,
    )


def start(scheduler: FairScheduler, worker: WorkerView) -> int:
    assignment = scheduler.assign([worker])
    assert assignment is not None
    return assignment.job_id


def listed(scheduler: FairScheduler) -> list[int]:
    return [waiting.job_id for waiting in scheduler.waiting()]


def run_all(scheduler: FairScheduler) -> list[int]:
    """Run everything on one GPU that may run any model, each job taking its estimate."""
    order = []
    while (assignment := scheduler.assign([ANY])) is not None:
        order.append(assignment.job_id)
        scheduler.finish(assignment.job_id, scheduler.estimate("a", 1.0))
    return order


def test_two_requeues_across_classes_keep_the_order_asked() -> None:
    """The state machine's example: a normal `b` job runs, then the same person's admin `a` job
    (nothing waiting, so it is admin) runs, and a second admin `a` job waits. The first
    worker dies: the normal job joins the admin class before the waiting one, at its tag. The
    second worker dies: the admin job used to keep its older, lower tag and go before the
    normal job, listed first and started first on a GPU that may run both."""
    scheduler = make()
    scheduler.submit(1, NORMAL, "b", 1.0)
    assert start(scheduler, ANY) == 1
    scheduler.submit(2, ADMIN, "a", 1.0)
    assert start(scheduler, ANY) == 2
    scheduler.submit(3, ADMIN, "a", 1.0)
    scheduler.requeue(1)
    scheduler.requeue(2)
    assert listed(scheduler) == [1, 2, 3]
    assert [scheduler.position(job)[0] for job in (1, 2, 3)] == [1, 2, 3]  # type: ignore[index]
    assert run_all(scheduler) == [1, 2, 3]


def test_the_requeues_in_the_other_order_keep_it_too() -> None:
    scheduler = make()
    scheduler.submit(1, NORMAL, "b", 1.0)
    assert start(scheduler, ANY) == 1
    scheduler.submit(2, ADMIN, "a", 1.0)
    assert start(scheduler, ANY) == 2
    scheduler.submit(3, ADMIN, "a", 1.0)
    scheduler.requeue(2)
    scheduler.requeue(1)
    assert listed(scheduler) == [1, 2, 3]
    assert run_all(scheduler) == [1, 2, 3]


def test_a_gpu_that_may_not_run_the_earlier_job_still_starts_the_requeued_one() -> None:
    """Rule 4's exception survives: a GPU allowed only `a` starts the requeued `a` job while
    the person's earlier `b` job waits."""
    scheduler = make()
    scheduler.submit(1, NORMAL, "b", 1.0)
    assert start(scheduler, ANY) == 1
    scheduler.submit(2, ADMIN, "a", 1.0)
    assert start(scheduler, ANY) == 2
    scheduler.submit(3, ADMIN, "a", 1.0)
    scheduler.requeue(1)
    scheduler.requeue(2)
    assert start(scheduler, A_ONLY) == 2
    assert listed(scheduler) == [1, 3]


def cancel_behind_a_running_job() -> FairScheduler:
    """A long `b` job waits (no free GPU may run `b`), the person's `a` job runs on an
    `a`-only GPU, and their `c` job waits behind both; the long job is cancelled, so the `c`
    job's tag moves back by its 100 s, past the running job's tag."""
    scheduler = make()
    scheduler.submit(1, NORMAL, "b", 100.0)
    scheduler.submit(2, NORMAL, "a", 1.0)
    assert start(scheduler, A_ONLY) == 2
    scheduler.submit(3, NORMAL, "c", 1.0)
    assert scheduler.cancel(1)
    return scheduler


def test_a_job_requeued_after_a_cancel_goes_before_the_persons_later_jobs() -> None:
    scheduler = cancel_behind_a_running_job()
    scheduler.requeue(2)
    assert listed(scheduler) == [2, 3]
    assert run_all(scheduler) == [2, 3]


def test_a_job_requeued_after_a_cancel_keeps_the_give_back() -> None:
    """The cancelled job costs nothing (README rule 3), the running job's tag included: once
    requeued it goes before someone who has received 50 s of GPU time (it used to keep the
    tag that counted the cancelled 100 s job, and wait behind them). Its person's later job
    has started, so nothing else bounds its tag."""
    scheduler = make()
    scheduler.submit(10, JobOwner(1), "a", 50.0)
    scheduler.submit(11, JobOwner(1), "b", 1.0)
    assert start(scheduler, A_ONLY) == 10
    scheduler.submit(1, NORMAL, "b", 100.0)
    scheduler.submit(2, NORMAL, "a", 1.0)
    assert start(scheduler, A_ONLY) == 2
    scheduler.submit(3, NORMAL, "c", 1.0)
    assert scheduler.cancel(1)
    assert start(scheduler, C_ONLY) == 3
    scheduler.finish(10, 50.0)
    scheduler.requeue(2)
    assert listed(scheduler) == [2, 11]
    assert run_all(scheduler) == [2, 11]


def test_a_job_asked_after_a_requeue_goes_behind_the_requeued_one() -> None:
    """Someone else's `b` job waits at the least tag, so a person's job is tagged from their
    own finish tag. Their long job fails at once (0.1 s of 100 s), moving that finish tag back
    below their running job's tag; their next job then starts, and the running one's worker
    dies. A job they ask for next used to be tagged from the finish tag, before the requeued
    job."""
    scheduler = make()
    scheduler.submit(10, JobOwner(1), "b", 1.0)  # no free GPU may run `b`
    scheduler.submit(1, NORMAL, "a", 100.0)
    scheduler.submit(2, NORMAL, "a", 1.0)
    assert [start(scheduler, A_ONLY), start(scheduler, A_ONLY)] == [1, 2]
    scheduler.finish(1, 0.1, measured=False)
    scheduler.submit(3, NORMAL, "c", 1.0)
    assert start(scheduler, C_ONLY) == 3
    scheduler.requeue(2)
    scheduler.submit(4, NORMAL, "c", 1.0)
    assert [w.job_id for w in scheduler.waiting() if w.user_id == 0] == [2, 4]
    assert [job for job in run_all(scheduler) if job != 10] == [2, 4]


def test_a_cancel_never_moves_later_jobs_before_earlier_ones() -> None:
    """The same kind without a requeue: two of a person's jobs fail at once (0.1 s of their
    10 s estimates), moving their finish tag back, so their next two jobs are tagged at their
    waiting `b` job's tag. Cancelling the first of them moved the second back by its whole
    charge, before the `b` job, and a GPU that may run both started it first."""
    scheduler = make()
    scheduler.submit(1, NORMAL, "a", 10.0)
    scheduler.submit(2, NORMAL, "a", 10.0)
    scheduler.submit(3, NORMAL, "b", 1.0)  # no free GPU may run `b` yet
    assert [start(scheduler, A_ONLY), start(scheduler, A_ONLY)] == [1, 2]
    scheduler.finish(1, 0.1, measured=False)
    scheduler.submit(4, NORMAL, "c", 1.0)
    scheduler.finish(2, 0.1, measured=False)
    scheduler.submit(5, NORMAL, "c", 1.0)
    assert scheduler.cancel(4)
    assert listed(scheduler) == [3, 5]
    assert run_all(scheduler) == [3, 5]
