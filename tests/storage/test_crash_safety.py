"""A writer killed with SIGKILL at random moments, many times: nothing acknowledged is lost and
nothing is half written."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from generation.jobs import JobStatus
from storage import Database
from storage.images import sha256_of

KILLS = 16
REPO = Path(__file__).resolve().parents[2]


def _run_and_kill(db_path: Path, seed: int, rng: random.Random) -> list[str]:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.crash_writer", str(db_path), str(seed)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "open\n", child.stderr.read() if child.stderr else ""
    time.sleep(rng.uniform(0.0, 0.4))
    child.send_signal(signal.SIGKILL)
    out, err = child.communicate()
    assert child.returncode == -signal.SIGKILL, err
    return out.splitlines()


async def test_sigkilled_writers_lose_nothing_acknowledged(tmp_path: Path) -> None:
    db_path = tmp_path / "atelier.db"
    rng = random.Random(1234)
    queued: set[int] = set()
    done: dict[int, list[str]] = {}
    for run in range(KILLS):
        for line in _run_and_kill(db_path, run, rng):
            kind, job_id, *hashes = line.split()
            if kind == "queued":
                queued.add(int(job_id))
            elif kind == "done":
                done[int(job_id)] = hashes
    assert len(done) > KILLS  # the runs did real work between kills

    async with await Database.open(db_path) as db:
        report = await db.check(deep=True)
        assert report.ok, report
        for job_id in queued:
            assert await db.get_job(job_id) is not None, f"acknowledged job {job_id} lost"
        for job_id, hashes in done.items():
            assert (await db.get_job(job_id)).record.status is JobStatus.DONE
            images = await db.images_of(job_id)
            assert [image.sha256 for image in images] == hashes
            for image in images:
                assert sha256_of(await db.read_image(job_id, image.index)) == image.sha256
        # Every row points at a complete file; files without a row are only reported orphans.
        orphans = set(report.orphan_files)
        for path in db.images_dir.glob("*/*.png"):
            assert path in orphans or sha256_of(path.read_bytes()) == path.stem
        prune = await db.prune(older_than_days=36500)
        assert prune.images_pruned == 0
        assert (await db.check()).orphan_files == []
