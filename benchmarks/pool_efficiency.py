"""How close the worker pool gets to keeping every worker busy.

Real worker processes (two by default) run `StandInEngine`, whose jobs take a known time (steps x
step seconds, slept), with the real SQLite store. Twelve users submit eight jobs each at once
(0.2 s per job by default). Each image records when its run started and ended in the worker
(`time.monotonic()`, shared by all processes), so the benchmark measures, per worker, the gap from
the end of one job to the start of the next, and the pool's throughput against the ideal (sum of
the job times / number of workers).

Prints one JSON line. Goals: throughput >= 0.98 of ideal, median dispatch gap under 5 ms.

    python -m benchmarks.pool_efficiency [--workers 2] [--jobs-per-user 8] [--step-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

from generation.jobs import JobFailed, JobFinished, JobOwner
from generation.models import Catalogue
from generation.pool import WorkerPool
from generation.request import build_request
from generation.scheduler import SchedulerSettings
from generation.workers.config import WorkerConfig
from generation.workers.standin import run_record
from storage import Database

USERS = 12
STEPS = 10


async def run(workers: int, jobs_per_user: int, step_seconds: float) -> dict[str, object]:
    catalogue = Catalogue.builtin()
    with tempfile.TemporaryDirectory() as folder:
        async with await Database.open(Path(folder) / "atelier.sqlite3") as db:
            pool = WorkerPool(
                catalogue,
                db,
                [WorkerConfig(f"cpu:{i}", "cpu") for i in range(workers)],
                settings=SchedulerSettings(max_queued=jobs_per_user),
                engine_factory="generation.workers.standin:StandInEngine",
                engine_options={"step_seconds": step_seconds},
            )
            events = pool.subscribe()
            await pool.start()
            await pool.wait_until_ready()
            request = build_request(
                catalogue, prompt="a lighthouse", model="flux-schnell", width=256, height=256,
                steps=STEPS, seed=1,
            )  # fmt: skip
            expected = USERS * jobs_per_user
            for _ in range(jobs_per_user):
                for user in range(USERS):
                    await pool.submit(request, JobOwner(user))
            runs: list[dict[str, float]] = []
            async for event in events:
                if isinstance(event, JobFailed):
                    raise RuntimeError(f"job {event.job_id} failed: {event.reason}")
                if isinstance(event, JobFinished):
                    runs.append(run_record(await db.read_image(event.job_id, 0) or b""))
                    if len(runs) == expected:
                        break
            await pool.shutdown()

    by_worker: dict[int, list[dict[str, float]]] = defaultdict(list)
    for record in runs:
        by_worker[int(record["pid"])].append(record)
    gaps_ms = []
    for records in by_worker.values():
        records.sort(key=lambda r: r["start"])
        gaps_ms += [(b["start"] - a["end"]) * 1000 for a, b in itertools.pairwise(records)]
    busy = sum(r["end"] - r["start"] for r in runs)
    span = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    ideal = busy / workers
    gaps_ms.sort()
    return {
        "benchmark": "pool_efficiency",
        "workers": workers,
        "jobs": expected,
        "job_seconds": round(busy / expected, 4),
        "makespan_s": round(span, 3),
        "ideal_s": round(ideal, 3),
        "throughput_vs_ideal": round(ideal / span, 4),
        "gap_ms": {
            "median": round(statistics.median(gaps_ms), 3),
            "p90": round(gaps_ms[int(len(gaps_ms) * 0.9)], 3),
            "max": round(gaps_ms[-1], 3),
        },
        "goals": {
            "throughput_at_least_0.98": ideal / span >= 0.98,
            "median_gap_under_5ms": statistics.median(gaps_ms) < 5.0,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--jobs-per-user", type=int, default=8)
    parser.add_argument("--step-ms", type=float, default=20.0)
    args = parser.parse_args()
    result = asyncio.run(run(args.workers, args.jobs_per_user, args.step_ms / 1000))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
