"""What a worker learns from running out of memory, through the pool and a real worker process
(the real engine on the tiny Playground; only the out-of-memory is faked, see `oom_engine`):
the lowered profile shows where admins look, and a restarted worker starts with it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from generation.jobs import JobFinished, JobOwner
from generation.models import Catalogue
from generation.pool import WorkerPool
from generation.request import build_request
from generation.workers.config import WorkerConfig
from storage import Database
from tests.generation.helpers import Recorder

MODEL = "playground-v2.5"


async def test_a_lowered_profile_is_shown_and_kept_across_a_worker_restart(
    tiny_catalogue: Catalogue, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    async with await Database.open(tmp_path / "atelier.sqlite3") as db:
        worker = WorkerConfig("cpu", "cpu", vram_gb=40.0)
        pool = WorkerPool(
            tiny_catalogue,
            db,
            [worker],
            engine_factory="tests.generation.oom_engine:FullDoesNotFit",
        )
        recorder = Recorder(pool)
        await pool.start()
        await pool.wait_until_ready()
        request = build_request(tiny_catalogue, prompt="a red boat", model=MODEL, seed=3)
        first = await pool.submit(request, JobOwner(1))  # native size: out of memory in full
        [result] = await recorder.finished(first.job_id, timeout_s=120)
        assert isinstance(result, JobFinished)
        [status] = pool.snapshot().workers
        assert status.profile_of(MODEL) == "fp8"  # what /info and /admin gpus show

        os.kill(status.pid, signal.SIGKILL)  # the worker dies; the pool starts another
        second = await pool.submit(request, JobOwner(2))
        [result] = await recorder.finished(second.job_id, timeout_s=120)
        assert isinstance(result, JobFinished)
        [status] = pool.snapshot().workers
        assert status.restarts == 1
        assert status.profile_of(MODEL) == "fp8"
        await pool.shutdown()
    # The restarted worker loaded fp8 at once: only the first worker ever ran out of memory.
    err = capfd.readouterr().err
    assert err.count("ran out of memory") == 1, err


def test_torch_out_of_memory_from_anywhere_reaches_people_in_words(
    tiny_catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    import generation.engine as engine
    from generation.workers.protocol import JobError, RunJob, WorkerSpec
    from generation.workers.runtime import WorkerRuntime

    def runs_out(request):  # a step the engine does not guard: the worker still answers in words
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    monkeypatch.setattr(engine, "_init_image", runs_out)
    events: list[object] = []
    spec = WorkerSpec(WorkerConfig("cpu", "cpu"), tuple(tiny_catalogue.values()))
    worker = WorkerRuntime(spec, events.append)
    assert worker.start()
    request = build_request(tiny_catalogue, prompt="a red boat", model=MODEL, seed=3)
    worker.handle(RunJob(1, request))
    [error] = [e for e in events if isinstance(e, JobError)]
    assert error.kind == "out_of_memory"
    assert "CUDA" not in error.reason
    assert "try fewer images or a smaller size" in error.reason
