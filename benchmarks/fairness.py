"""Fairness of the queue against plain FIFO, in a discrete-event simulation (no sleeping).

Two simulated GPUs. A heavy user submits 60 jobs of 12 s at once; a medium user submits 10 jobs
of 8 s, one every 20 s from t = 10 s; a light user submits one 4 s job at t = 30 s. The same
arrivals run through `FairScheduler` and through a first-come-first-served queue.

Prints one JSON line: per policy, each user's mean and max wait (seconds from submission to
start), the makespan, and Jain's fairness index of the users' normalised service over the first
half of the run (service received / max-min fair share of the demand that had arrived; 1.0 is
perfectly fair). Goals: the light user waits no longer than the longest job, the medium user's
mean wait is at least 10x below FIFO's, and the makespan equals FIFO's.

    python -m benchmarks.fairness
"""

from __future__ import annotations

import heapq
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from generation.jobs import JobOwner
from generation.scheduler import FairScheduler, SchedulerSettings, WorkerView

GPUS = 2
HEAVY, MEDIUM, LIGHT = 1, 2, 3
NAMES = {HEAVY: "heavy", MEDIUM: "medium", LIGHT: "light"}


@dataclass(frozen=True)
class Job:
    id: int
    user: int
    arrival: float
    seconds: float


def arrivals() -> list[Job]:
    jobs = [Job(i, HEAVY, 0.0, 12.0) for i in range(60)]
    jobs += [Job(100 + i, MEDIUM, 10.0 + 20.0 * i, 8.0) for i in range(10)]
    jobs.append(Job(200, LIGHT, 30.0, 4.0))
    return jobs


class Fifo:
    """The baseline: one queue, first come first served."""

    def __init__(self) -> None:
        self.queue: deque[int] = deque()

    def submit(self, job: Job) -> None:
        self.queue.append(job.id)

    def next(self) -> int | None:
        return self.queue.popleft() if self.queue else None

    def finish(self, job: Job) -> None:
        pass


class Fair:
    """`FairScheduler` on the simulated clock; a job's work units are its true seconds."""

    def __init__(self, clock: Callable[[], float]) -> None:
        settings = SchedulerSettings(max_queued=100, max_running=GPUS)
        self.scheduler = FairScheduler(settings, cost_factors={"sim": 1.0}, clock=clock)

    def submit(self, job: Job) -> None:
        self.scheduler.submit(job.id, JobOwner(job.user), "sim", job.seconds)

    def next(self) -> int | None:
        assignment = self.scheduler.assign([WorkerView("gpu")])
        return assignment.job_id if assignment else None

    def finish(self, job: Job) -> None:
        self.scheduler.finish(job.id, job.seconds)


def simulate(make_policy: Callable[[Callable[[], float]], Fifo | Fair]) -> dict[int, float]:
    """Run the arrivals on GPUS simulated GPUs; each job's start time."""
    now = [0.0]
    policy = make_policy(lambda: now[0])
    jobs = {job.id: job for job in arrivals()}
    events = [(job.arrival, 1, job.id) for job in jobs.values()]  # 0: a GPU frees, 1: arrival
    heapq.heapify(events)
    idle, starts = GPUS, {}
    while events:
        now[0], kind, job_id = heapq.heappop(events)
        if kind == 1:
            policy.submit(jobs[job_id])
        else:
            policy.finish(jobs[job_id])
            idle += 1
        while idle and (next_id := policy.next()) is not None:
            idle -= 1
            starts[next_id] = now[0]
            heapq.heappush(events, (now[0] + jobs[next_id].seconds, 0, next_id))
    return starts


def jain(values: list[float]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


def normalised_service(starts: dict[int, float], horizon: float) -> list[float]:
    """Each user's GPU time received in [0, horizon] over its max-min fair share of the
    capacity, given the demand that had arrived by then."""
    jobs = arrivals()
    received = dict.fromkeys(NAMES, 0.0)
    demand = dict.fromkeys(NAMES, 0.0)
    for job in jobs:
        start = starts[job.id]
        received[job.user] += max(0.0, min(start + job.seconds, horizon) - start)
        if job.arrival < horizon:
            demand[job.user] += job.seconds
    share, capacity, left = {}, GPUS * horizon, sorted(NAMES, key=demand.__getitem__)
    while left:  # water-filling
        level = capacity / len(left)
        user = left.pop(0)
        share[user] = min(demand[user], level)
        capacity -= share[user]
    return [received[user] / share[user] for user in NAMES]


def report(starts: dict[int, float]) -> dict[str, object]:
    waits: dict[int, list[float]] = {user: [] for user in NAMES}
    jobs = arrivals()
    for job in jobs:
        waits[job.user].append(starts[job.id] - job.arrival)
    makespan = max(starts[job.id] + job.seconds for job in jobs)
    result: dict[str, object] = {
        NAMES[user]: {
            "mean_wait_s": round(sum(w) / len(w), 2),
            "max_wait_s": round(max(w), 2),
        }
        for user, w in waits.items()
    }
    result["makespan_s"] = round(makespan, 2)
    result["jain_index"] = round(jain(normalised_service(starts, makespan / 2)), 3)
    return result


def main() -> None:
    fair, fifo = report(simulate(Fair)), report(simulate(lambda clock: Fifo()))
    longest = max(job.seconds for job in arrivals())
    fair_medium = fair["medium"]["mean_wait_s"]  # type: ignore[index]
    fifo_medium = fifo["medium"]["mean_wait_s"]  # type: ignore[index]
    goals = {
        "light_wait_within_longest_job": fair["light"]["max_wait_s"] <= longest,  # type: ignore[index]
        "medium_mean_wait_10x_below_fifo": fair_medium * 10 <= fifo_medium,
        "makespan_equals_fifo": fair["makespan_s"] == fifo["makespan_s"],
    }
    print(json.dumps({"benchmark": "fairness", "fair": fair, "fifo": fifo, "goals": goals}))


if __name__ == "__main__":
    main()
