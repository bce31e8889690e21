"""How fast the bot answers Discord while the queue is long and every worker is busy.

The real bot (discord.py client, studio, SQLite) runs against the fake Discord of the tests, with
a worker pool whose workers run `StandInEngine` (each step sleeps, so the workers stay busy and
no torch is needed). `--queued` jobs are put in the queue first; then people send `/imagine`
one after the other and the benchmark measures, at the fake Discord, the time from sending
INTERACTION_CREATE to receiving the bot's first response (the "queued" reply with position and
ETA). Discord's deadline is 3 s; the goal is p99 under 100 ms.

Prints one JSON line.

    python -m benchmarks.bot_latency [--queued 1000] [--samples 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
from pathlib import Path

from bot.app import AtelierBot, Services
from bot.config import settings_from_mapping
from generation.jobs import JobOwner
from generation.pool import WorkerPool
from generation.request import build_request
from generation.workers.config import WorkerConfig
from storage import Database
from tests.discord import FakeDiscord, run_bot

GOAL_P99_MS = 100.0
USERS = 50


async def run(queued: int, samples: int, workers: int) -> dict[str, object]:
    async with FakeDiscord() as fake:
        with tempfile.TemporaryDirectory() as folder:
            per_user = queued // USERS + samples + 1
            settings = settings_from_mapping(
                {
                    "guild_ids": [fake.world.guild_id],
                    "limits": {"max_queued": per_user, "queue_capacity": queued + samples + 10},
                },
                fake.child_env(),
                base_dir=Path(folder),
            )
            database = await Database.open(settings.database_path)
            pool = WorkerPool(
                settings.catalogue,
                database,
                [WorkerConfig(f"cpu:{i}", "cpu") for i in range(workers)],
                settings=settings.limits,
                engine_factory="generation.workers.standin:StandInEngine",
                engine_options={"step_seconds": 1.0},  # a job takes minutes: workers stay busy
            )
            services = Services(database, pool)
            try:
                async with run_bot(fake, lambda: AtelierBot(settings, services)):
                    await fill_queue(services, queued, fake.world.guild_id)
                    latencies = await measure(fake, samples)
                    busy = pool.snapshot().running
            finally:
                await services.close()
    latencies_ms = sorted(latency * 1000 for latency in latencies)
    p99 = latencies_ms[min(len(latencies_ms) - 1, round(0.99 * (len(latencies_ms) - 1)))]
    return {
        "benchmark": "bot_latency",
        "queued": queued,
        "workers_busy": busy,
        "samples": len(latencies_ms),
        "median_ms": round(statistics.median(latencies_ms), 2),
        "p99_ms": round(p99, 2),
        "max_ms": round(latencies_ms[-1], 2),
        "goal_p99_ms": GOAL_P99_MS,
        "ok": p99 < GOAL_P99_MS,
    }


async def fill_queue(services: Services, count: int, guild_id: int) -> None:
    """`count` jobs from `USERS` people, queued straight through the pool (durable in SQLite)."""
    request = build_request(
        services.pool.catalogue, prompt="a queue filler", model="flux-schnell", seed=1
    )
    for index in range(count):
        owner = JobOwner(user_id=10_000 + index % USERS, guild_id=guild_id, channel_id=None)
        await services.pool.submit(request, owner)


async def measure(fake: FakeDiscord, samples: int) -> list[float]:
    """Send `/imagine` `samples` times; the INTERACTION_CREATE → first response times."""
    people = [fake.user(name) for name in ("alice", "bob", "carol")]
    latencies = []
    for index in range(samples):
        ix = await fake.slash(people[index % 3], "imagine", {"prompt": f"a lamp {index}"})
        await fake.interaction_response(ix)
        assert ix.latency is not None
        latencies.append(ix.latency)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(json.dumps(asyncio.run(run(args.queued, args.samples, args.workers))))


if __name__ == "__main__":
    main()
