"""A child process for the crash test: writes jobs and images forever, printing what it has
committed. `python -m tests.storage.crash_writer DB SEED`; the test kills it with SIGKILL."""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

from generation.jobs import GeneratedImage, JobOwner
from generation.models import Catalogue
from generation.request import build_request
from storage import Database
from storage.images import sha256_of


async def write_forever(path: Path, seed: int) -> None:
    rng = random.Random(seed)
    catalogue = Catalogue.builtin()
    async with await Database.open(path) as db:
        print("open", flush=True)
        while True:
            count = rng.randint(1, 4)
            request = build_request(catalogue, prompt=f"crash {seed}", seed=seed, count=count)
            job_id = await db.create_job(request, JobOwner(user_id=rng.randint(1, 5)))
            print(f"queued {job_id}", flush=True)
            await db.mark_running(job_id, "cuda:0")
            if rng.random() < 0.1:
                await db.mark_failed(job_id, "simulated failure")
                continue
            # Image bytes of varied size; some repeat, so files are shared between jobs.
            images = [
                GeneratedImage(i, s, _image_bytes(rng), 64, 64) for i, s in enumerate(request.seeds)
            ]
            await db.mark_done(job_id, images, gpu_seconds=1.0)
            print(f"done {job_id} {' '.join(sha256_of(image.png) for image in images)}", flush=True)


def _image_bytes(rng: random.Random) -> bytes:
    if rng.random() < 0.2:
        return b"\x89PNG shared image %d" % rng.randint(0, 3)
    return rng.randbytes(rng.randint(1_000, 300_000))


if __name__ == "__main__":
    asyncio.run(write_forever(Path(sys.argv[1]), int(sys.argv[2])))
