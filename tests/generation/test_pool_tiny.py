"""End to end: the pool on two CPU "GPUs", each a worker process running the real engine on the
tiny Playground and FLUX pipelines (each worker imports torch once, ~5 s). The engine options
cross into the workers as plain values, the `[speed]` table included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from generation.jobs import JobFinished, JobOwner, JobProgress, JobStarted, JobStatus
from generation.models import Catalogue
from generation.pool import WorkerPool
from generation.request import GenerationRequest, build_request
from generation.workers.config import WorkerConfig
from storage import Database
from tests.generation.helpers import Recorder, pixels, stored_pngs


async def test_tiny_models_run_on_two_worker_processes(
    tiny_catalogue: Catalogue, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    async with await Database.open(tmp_path / "atelier.sqlite3") as db:
        workers = [WorkerConfig("cpu:0", "cpu"), WorkerConfig("cpu:1", "cpu")]
        options = {"preview_every": 2, "speed": {"compile": True, "attention": "eager"}}
        pool = WorkerPool(tiny_catalogue, db, workers, engine_options=options)
        recorder = Recorder(pool)
        await pool.start()
        await pool.wait_until_ready()  # both workers up, so the first two jobs go one to each

        def job(model: str, seed: int, count: int = 1) -> GenerationRequest:
            return build_request(
                tiny_catalogue, prompt="a red boat", model=model, seed=seed, count=count
            )

        twins = [await pool.submit(job("playground-v2.5", 7), JobOwner(user)) for user in (1, 2)]
        flux = await pool.submit(job("flux-schnell", 3, count=2), JobOwner(3))
        ids = [q.job_id for q in (*twins, flux)]
        results = await recorder.finished(*ids, timeout_s=180)  # two torch imports on 2 cores

        assert all(isinstance(r, JobFinished) for r in results)
        first, second, batch = [await stored_pngs(db, job_id) for job_id in ids]
        assert [image.seed for image in await db.images_of(ids[2])] == [3, 4]
        request = job("flux-schnell", 3, count=2)
        for png in batch:
            assert pixels(png).shape == (request.height, request.width, 3)
        # The same request in two processes gives the same image.
        assert np.array_equal(pixels(first[0]), pixels(second[0]))
        started = {e.job_id: e.worker for e in recorder.events if isinstance(e, JobStarted)}
        assert set(started.values()) == {"cpu:0", "cpu:1"}
        previews = [e for e in recorder.events if isinstance(e, JobProgress) and e.preview]
        assert previews
        assert all(p.preview.startswith(b"\x89PNG") for p in previews)
        for job_id in ids:
            stored = await db.get_job(job_id)
            assert stored is not None
            assert stored.record.status is JobStatus.DONE
        await pool.shutdown()
    # Each worker's engine received the [speed] table (on the CPU it leaves the images alone).
    loads = [line for line in capfd.readouterr().err.splitlines() if " Loaded " in line]
    for worker in ("cpu:0", "cpu:1"):
        assert any(
            f"worker={worker} generation.pipelines.base Loaded " in line
            and line.endswith(
                "skipped: attention: cpu is not a CUDA device, compile: cpu is not a CUDA device"
            )
            for line in loads
        ), loads
