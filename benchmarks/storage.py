"""Storage benchmark: durable job inserts, state transitions, history pages at 100,000 jobs.

Run: `python -m benchmarks.storage` (about a minute). Prints ONE JSON line.
Goals: >= 1,000 durable inserts/s (one commit each, synchronous=FULL), a history page < 5 ms.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from generation.jobs import JobOwner
from generation.models import Catalogue
from generation.request import build_request
from storage import Database

INSERTS = 1_000
ROUNDS = 5  # the disk is shared: fsync latency varies, so report the median and best round
TOTAL_JOBS = 100_000
HEAVY_USER = 1  # a quarter of all jobs belong to one user: the worst case for history
PAGES = 1_000


async def inserts_per_s(db: Database, requests: list) -> float:
    start = time.perf_counter()
    for request in requests:
        await db.create_job(request, JobOwner(user_id=99))
    return len(requests) / (time.perf_counter() - start)


async def transitions_per_s(db: Database, requests: list) -> float:
    ids = await db.create_jobs([(request, JobOwner(user_id=98)) for request in requests])
    start = time.perf_counter()
    for job_id in ids:
        await db.mark_running(job_id, "cuda:0")
        await db.mark_cancelled(job_id)
    return 2 * len(ids) / (time.perf_counter() - start)


def percentile_ms(samples: list[float], q: float) -> float:
    return round(sorted(samples)[min(len(samples) - 1, int(q * len(samples)))] * 1000, 3)


async def page_latencies(db: Database, rng: random.Random, **filters: object) -> list[float]:
    samples = []
    for _ in range(PAGES):
        before = rng.randint(1, TOTAL_JOBS)
        start = time.perf_counter()
        await db.history(HEAVY_USER, limit=10, before=before, **filters)
        samples.append(time.perf_counter() - start)
    return samples


async def main() -> None:
    catalogue = Catalogue.builtin()
    rng = random.Random(7)
    words = ["fox", "castle", "harbour", "forest", "portrait", "city", "storm", "garden"]
    models = list(catalogue)

    def request(i: int):
        prompt = f"a {rng.choice(words)} and a {rng.choice(words)}, study {i}"
        return build_request(catalogue, prompt=prompt, model=models[i % len(models)], seed=i)

    with tempfile.TemporaryDirectory() as folder:
        db = await Database.open(Path(folder) / "atelier.db")
        requests = [request(i) for i in range(INSERTS)]
        inserts, inserts_normal, transitions = [], [], []
        for _ in range(ROUNDS):
            inserts.append(await inserts_per_s(db, requests))
            transitions.append(await transitions_per_s(db, requests))
            await db._conn.execute("PRAGMA synchronous = NORMAL")  # for comparison only
            inserts_normal.append(await inserts_per_s(db, requests))
            await db._conn.execute("PRAGMA synchronous = FULL")

        have = 3 * INSERTS * ROUNDS
        while have < TOTAL_JOBS:
            batch = [
                (request(i), JobOwner(user_id=HEAVY_USER if i % 4 == 0 else 2 + i % 500))
                for i in range(have, min(have + 10_000, TOTAL_JOBS))
            ]
            await db.create_jobs(batch)
            have += len(batch)
        plain = await page_latencies(db, rng)
        filtered = await page_latencies(db, rng, model=models[0])
        text = await page_latencies(db, rng, text="harbour")
        await db.close()

        start = time.perf_counter()
        await (await Database.open(Path(folder) / "atelier.db")).close()
        open_s = time.perf_counter() - start

    print(
        json.dumps(
            {
                "benchmark": "storage",
                "durable_inserts_per_s_median": round(statistics.median(inserts)),
                "durable_inserts_per_s_best": round(max(inserts)),
                "inserts_per_s_synchronous_normal_median": round(statistics.median(inserts_normal)),
                "durable_transitions_per_s_median": round(statistics.median(transitions)),
                "jobs": TOTAL_JOBS,
                "history_page_ms_median": percentile_ms(plain, 0.5),
                "history_page_ms_p99": percentile_ms(plain, 0.99),
                "history_page_model_filter_ms_median": percentile_ms(filtered, 0.5),
                "history_page_model_filter_ms_p99": percentile_ms(filtered, 0.99),
                "history_page_text_filter_ms_median": percentile_ms(text, 0.5),
                "history_page_text_filter_ms_p99": percentile_ms(text, 0.99),
                "open_with_quick_check_s": round(open_s, 3),
                "goal_inserts_met": statistics.median(inserts) >= 1000,
                "goal_page_met": statistics.median(plain) < 0.005,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
