"""An online backup taken while another connection keeps writing is consistent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from storage import Database, InvalidValue
from tests.storage.conftest import finished_job, owner


async def test_backup_during_continuous_writes_opens_and_passes_check(
    db_path: Path, make_request
) -> None:
    stop, going = asyncio.Event(), asyncio.Event()
    written: list[int] = []

    async def writer() -> None:
        async with await Database.open(db_path) as db:
            n = 0
            while not stop.is_set():
                n += 1
                request = make_request(f"busy {n}", count=2, seed=n)
                written.append(await finished_job(db, request, owner(user_id=n % 3), base=n * 2))
                if len(written) == 20:
                    going.set()

    async with await Database.open(db_path) as db:
        task = asyncio.create_task(writer())
        await going.wait()
        backups = []
        for i in range(3):
            backups.append(db_path.parent / f"backup-{i}.db")
            await db.backup(backups[-1])
            await asyncio.sleep(0.05)
        stop.set()
        await task
        images_dir = db.images_dir

    counts = []
    for backup in backups:
        async with await Database.open(backup, images_dir=images_dir) as copy:
            report = await copy.check(deep=True)
            assert report.ok, report
            history = await copy.history(1, limit=100)
            counts.append(sum(u.jobs for u in (await copy.stats(0, 2e9)).by_user))
            assert all(job.id in written for job in history.jobs)
    assert counts == sorted(counts)
    assert counts[0] > 0
    assert counts[-1] <= len(written)


async def test_backup_refuses_to_overwrite(db: Database, tmp_path: Path) -> None:
    existing = tmp_path / "exists.db"
    existing.write_bytes(b"precious")
    with pytest.raises(InvalidValue, match="exists already"):
        await db.backup(existing)
    assert existing.read_bytes() == b"precious"
