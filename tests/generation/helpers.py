"""Helpers shared by the generation tests: pixels of a PNG, stand-in jobs and pools, a pool event
recorder."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections import defaultdict
from collections.abc import Callable

import numpy as np
from PIL import Image

from generation.jobs import JobCancelled, JobEvent, JobFailed, JobFinished, JobStore
from generation.models import Catalogue
from generation.pool import WorkerPool
from generation.request import GenerationRequest, build_request
from generation.workers.config import WorkerConfig
from storage import Database


def pixels(png: bytes) -> np.ndarray:
    """A PNG's pixels as an RGB array."""
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


TIMEOUT_S = 30.0
STANDIN = "generation.workers.standin:StandInEngine"
FINAL = (JobFinished, JobFailed, JobCancelled)


def request(catalogue: Catalogue, prompt: str = "a fox", steps: int = 5) -> GenerationRequest:
    return build_request(
        catalogue, prompt=prompt, model="playground-v2.5", width=256, height=256, steps=steps
    )


def make_pool(
    catalogue: Catalogue,
    store: JobStore,
    workers: int = 1,
    step_seconds: float = 0.02,
    **options: object,
) -> WorkerPool:
    """A pool of `workers` CPU workers running the stand-in engine."""
    configs = [WorkerConfig(f"cpu:{i}", "cpu") for i in range(workers)]
    return WorkerPool(
        catalogue,
        store,
        configs,
        engine_factory=STANDIN,
        engine_options={"step_seconds": step_seconds},
        **options,  # type: ignore[arg-type]
    )


class Recorder:
    """Collects a pool's events as they come."""

    def __init__(self, pool: WorkerPool) -> None:
        self.events: list[JobEvent] = []
        self.by_job: dict[int, list[JobEvent]] = defaultdict(list)
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._collect(pool))

    async def _collect(self, pool: WorkerPool) -> None:
        async for event in pool.subscribe():
            self.events.append(event)
            self.by_job[event.job_id].append(event)
            self._changed.set()

    async def until(self, condition: Callable[[], object], timeout_s: float = TIMEOUT_S) -> None:
        """Wait until `condition()` holds, checking at each event (and every 20 ms, for
        conditions on the pool's state)."""

        async def wait() -> None:
            while not condition():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.02)

        await asyncio.wait_for(wait(), timeout_s)

    def final(self, job_id: int) -> JobEvent | None:
        return next((e for e in self.by_job[job_id] if isinstance(e, FINAL)), None)

    async def finished(self, *job_ids: int, timeout_s: float = TIMEOUT_S) -> list[JobEvent]:
        await self.until(lambda: all(self.final(job_id) for job_id in job_ids), timeout_s)
        return [self.final(job_id) for job_id in job_ids]  # type: ignore[misc]

    def kinds(self, job_id: int) -> list[str]:
        return [type(e).__name__ for e in self.by_job[job_id]]


async def stored_pngs(database: Database, job_id: int) -> list[bytes]:
    """A finished job's PNGs as storage holds them, by index (events carry no image bytes)."""
    images = await database.images_of(job_id)
    pngs = [await database.read_image(job_id, image.index) for image in images]
    assert all(png is not None for png in pngs), f"job {job_id} has an image missing"
    return [png for png in pngs if png is not None]
