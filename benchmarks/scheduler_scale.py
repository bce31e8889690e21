"""How the scheduler's submit and dispatch scale with the length of the queue.

For queues of 1,000, 10,000 and 100,000 waiting jobs (from users in the ratio of 100,000 jobs
to 10,000 users; three models; a tenth of the jobs in the relax class; affinity on), fill the
queue, then time 20,000 rounds of steady state at that length: submit one job, dispatch one to
a GPU holding some model, finish one. Prints one JSON line with the median and p99 microseconds
per operation at each length. Goals: under 100 µs median at 100,000; no growth beyond
logarithmic.

    python -m benchmarks.scheduler_scale
"""

from __future__ import annotations

import json
import random
import statistics
import time

from generation.jobs import JobOwner, Priority
from generation.scheduler import FairScheduler, SchedulerSettings, WorkerView

MODELS = ("playground-v2.5", "flux-dev", "flux-schnell")
ROUNDS = 20_000


def owner(rng: random.Random, users: int) -> JobOwner:
    priority = Priority.RELAX if rng.random() < 0.1 else Priority.NORMAL
    return JobOwner(rng.randrange(users), priority=priority)


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        "median_us": round(statistics.median(ordered) / 1000, 2),
        "p99_us": round(ordered[int(len(ordered) * 0.99)] / 1000, 2),
    }


def measure(queue_length: int, rng: random.Random) -> dict[str, object]:
    users = max(1, queue_length // 10)
    clock = [0.0]
    scheduler = FairScheduler(
        SchedulerSettings(max_queued=1_000_000, queue_capacity=None),
        cost_factors=dict.fromkeys(MODELS, 0.1),
        capacity=8,
        clock=lambda: clock[0],
    )
    next_id = 0
    fill_ns = []
    for _ in range(queue_length):
        job_owner, model = owner(rng, users), rng.choice(MODELS)
        started = time.perf_counter_ns()
        scheduler.submit(next_id, job_owner, model, rng.uniform(1, 50))
        fill_ns.append(time.perf_counter_ns() - started)
        next_id += 1
    gpus = [WorkerView(f"cuda:{i}", loaded=frozenset({MODELS[i % 3]})) for i in range(8)]
    submit_ns, dispatch_ns = [], []
    for round_ in range(ROUNDS):
        clock[0] += 0.01
        job_owner, model = owner(rng, users), rng.choice(MODELS)
        started = time.perf_counter_ns()
        scheduler.submit(next_id, job_owner, model, rng.uniform(1, 50))
        submit_ns.append(time.perf_counter_ns() - started)
        next_id += 1
        started = time.perf_counter_ns()
        assignment = scheduler.assign([gpus[round_ % 8]])
        dispatch_ns.append(time.perf_counter_ns() - started)
        assert assignment is not None
        scheduler.finish(assignment.job_id, assignment.estimate_s * rng.uniform(0.8, 1.2))
    assert scheduler.queued_count == queue_length
    return {
        "users": users,
        "fill_submit": percentiles(fill_ns),
        "submit": percentiles(submit_ns),
        "dispatch": percentiles(dispatch_ns),
    }


def main() -> None:
    rng = random.Random(4)
    by_length = {length: measure(length, rng) for length in (1_000, 10_000, 100_000)}
    largest = by_length[100_000]
    goal = all(largest[op]["median_us"] < 100 for op in ("submit", "dispatch"))  # type: ignore[index]
    print(
        json.dumps(
            {
                "benchmark": "scheduler_scale",
                "queued_jobs": {str(k): v for k, v in by_length.items()},
                "goal_median_under_100us": goal,
            }
        )
    )


if __name__ == "__main__":
    main()
