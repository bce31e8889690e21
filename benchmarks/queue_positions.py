"""The CPU cost of keeping waiting jobs' places current (the pool's `PositionBoard`).

5,000 jobs wait (from 500 users, three models, a tenth in the relax class); then, 2,000 times,
the queue moves as it does in service: one job starts on one of 8 GPUs and one finishes, or a
waiting job is cancelled, or a new one is queued; after each move the board pushes the changed
places (one listing of the first 20 waiting jobs, and a `JobQueued` for each that moved). Prints
one JSON line: CPU microseconds per push (median, p99), `JobQueued` events per move, and the CPU
share at 10 moves a second. Goal: under 1 % of one core at 10 moves a second.

    python -m benchmarks.queue_positions [--waiting 5000] [--moves 2000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from generation.jobs import JobOwner, Priority
from generation.pool.positions import PUSHED_POSITIONS, PositionBoard
from generation.scheduler import FairScheduler, SchedulerSettings, WorkerView

MODELS = ("playground-v2.5", "flux-dev", "flux-schnell")
GPUS = 8
MOVES_PER_SECOND = 10
GOAL_CPU_SHARE = 0.01


def run(waiting: int, moves: int, seed: int = 7) -> dict[str, object]:
    rng = random.Random(seed)
    clock = [0.0]
    scheduler = FairScheduler(
        SchedulerSettings(max_queued=1_000_000, queue_capacity=None),
        cost_factors=dict.fromkeys(MODELS, 0.1),
        capacity=GPUS,
        clock=lambda: clock[0],
    )
    published: list[tuple[int, int, float | None]] = []
    board = PositionBoard(scheduler, lambda *place: published.append(place))
    users = max(1, waiting // 10)

    def submit(job_id: int) -> None:
        priority = Priority.RELAX if rng.random() < 0.1 else Priority.NORMAL
        scheduler.submit(
            job_id, JobOwner(rng.randrange(users), priority=priority), rng.choice(MODELS), 20.0
        )

    for job_id in range(waiting):
        submit(job_id)
    board.push()  # everyone in the first places told once
    gpus = [WorkerView(f"cuda:{i}", loaded=frozenset({MODELS[i % 3]})) for i in range(GPUS)]
    running: list[int] = []
    next_id = waiting
    push_ns: list[int] = []
    published.clear()
    for _ in range(moves):
        clock[0] += 1.0 / MOVES_PER_SECOND
        roll = rng.random()
        if roll < 0.6:  # a job finishes and the next starts
            if len(running) >= GPUS:
                scheduler.finish(running.pop(0), 20.0, measured=True)
            assignment = scheduler.assign(gpus)
            if assignment is not None:
                running.append(assignment.job_id)
        elif roll < 0.8:  # someone cancels one of the first waiting jobs
            first = scheduler.waiting(PUSHED_POSITIONS)
            if first:
                scheduler.cancel(rng.choice(first).job_id)
        else:  # someone queues a job
            submit(next_id)
            next_id += 1
        started = time.process_time_ns()
        board.push()
        push_ns.append(time.process_time_ns() - started)
    ordered = sorted(push_ns)
    mean_s = statistics.fmean(ordered) / 1e9
    share = mean_s * MOVES_PER_SECOND
    return {
        "benchmark": "queue_positions",
        "waiting": waiting,
        "moves": moves,
        "shown": PUSHED_POSITIONS,
        "push_median_us": round(statistics.median(ordered) / 1000, 1),
        "push_p99_us": round(ordered[int(len(ordered) * 0.99)] / 1000, 1),
        "events_per_move": round(len(published) / moves, 2),
        "cpu_share_at_10_moves_per_s": round(share, 5),
        "goal_cpu_share": GOAL_CPU_SHARE,
        "ok": share < GOAL_CPU_SHARE,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, default=5000)
    parser.add_argument("--moves", type=int, default=2000)
    args = parser.parse_args()
    print(json.dumps(run(args.waiting, args.moves)))


if __name__ == "__main__":
    main()
