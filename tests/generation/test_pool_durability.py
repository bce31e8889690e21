"""A process running the pool is killed (SIGKILL) with jobs queued and running: none is lost.

The first pool runs in a child Python process (as the bot would), so that nothing of it can
tidy up; its worker notices the lost connection and exits. A new pool on the same database
then runs every job to completion, in the original order.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from generation.jobs import JobFinished, JobStarted, JobStatus
from generation.models import Catalogue
from storage import Database
from tests.conftest import child_environment
from tests.generation.helpers import Recorder, make_pool

# The doomed process: queue three slow jobs from two users, report when the first one runs.
FIRST_RUN = """
import asyncio, json, sys
from pathlib import Path
from generation.jobs import JobOwner, JobStarted
from generation.models import Catalogue
from generation.pool import WorkerPool
from generation.workers.config import WorkerConfig
from storage import Database
from tests.generation.helpers import STANDIN, request

async def main():
    catalogue = Catalogue.builtin()
    db = await Database.open(Path(sys.argv[1]))
    pool = WorkerPool(catalogue, db, [WorkerConfig("cpu:0", "cpu")], engine_factory=STANDIN,
                      engine_options={"step_seconds": 0.1})
    events = pool.subscribe()
    await pool.start()
    ids = [(await pool.submit(request(catalogue, steps=50), JobOwner(user))).job_id
           for user in (1, 2, 1)]
    async for event in events:
        if isinstance(event, JobStarted):
            pid = pool.snapshot().workers[0].pid
            print(json.dumps({"ids": ids, "worker_pid": pid}), flush=True)
            await asyncio.sleep(3600)

asyncio.run(main())
"""


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # exited; only waiting to be reaped by its new parent


async def test_killing_the_pool_process_loses_no_job(tmp_path: Path) -> None:
    path = tmp_path / "atelier.sqlite3"
    doomed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FIRST_RUN,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        env=child_environment(),
    )
    try:
        line = await asyncio.wait_for(doomed.stdout.readline(), 30)  # type: ignore[union-attr]
        report = json.loads(line)
    finally:
        doomed.send_signal(signal.SIGKILL)
        await doomed.wait()
    ids, worker_pid = report["ids"], report["worker_pid"]

    async def worker_exits() -> None:
        while not gone(worker_pid):  # noqa: ASYNC110 - not our child: nothing to await
            await asyncio.sleep(0.02)

    await asyncio.wait_for(worker_exits(), 10)  # no orphan keeps the GPU

    catalogue = Catalogue.builtin()
    async with await Database.open(path) as db:
        left = await db.unfinished_jobs()
        assert [r.id for r in left] == ids
        assert [r.status for r in left] == [JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.QUEUED]
        pool = make_pool(catalogue, db, step_seconds=0.002)
        recorder = Recorder(pool)
        await pool.start()
        results = await recorder.finished(*ids)
        assert all(isinstance(r, JobFinished) for r in results)
        assert [e.job_id for e in recorder.events if isinstance(e, JobStarted)] == ids
        for job_id in ids:
            stored = await db.get_job(job_id)
            assert stored is not None
            assert stored.record.status is JobStatus.DONE
        await pool.shutdown()
