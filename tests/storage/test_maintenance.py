"""Retention, the consistency check, and a user's export and erasure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generation.jobs import JobStatus
from generation.request import JobKind
from storage import Database, InvalidValue
from storage.maintenance import DAY_S
from tests.storage.conftest import Clock, finished_job, owner, png


async def test_prune_removes_old_files_but_keeps_rows_and_seeds(
    db: Database, clock: Clock, make_request
) -> None:
    old = await finished_job(db, make_request(count=2, seed=100), owner(), base=1)
    shared_old = await finished_job(db, make_request(seed=5), owner(), base=9)
    clock.advance(40 * DAY_S)
    shared_new = await finished_job(db, make_request(seed=5), owner(), base=9)  # same file
    new = await finished_job(db, make_request(), owner(), base=3)

    report = await db.prune(older_than_days=30)
    assert (report.images_pruned, report.files_removed) == (3, 2)
    assert report.bytes_freed == len(png(1)) + len(png(2))
    assert await db.read_image(old, 0) is None
    assert [(im.pruned, im.seed) for im in await db.images_of(old)] == [(True, 100), (True, 101)]
    assert (await db.get_job(old)).record.status is JobStatus.DONE
    assert (await db.get_job(old)).record.request.seeds == (100, 101)
    assert await db.read_image(shared_new, 0) == png(9)  # still needed by the newer job
    assert await db.read_image(shared_old, 0) is None
    assert await db.read_image(new, 0) == png(3)
    assert (await db.check(deep=True)).ok
    assert (await db.prune(older_than_days=30)).images_pruned == 0
    with pytest.raises(InvalidValue):
        await db.prune(older_than_days=0)


async def test_check_reports_missing_damaged_and_orphan_files(db: Database, make_request) -> None:
    a = await finished_job(db, make_request(count=3), owner(), base=1)
    assert (await db.check(deep=True)).ok
    first, second, third = await db.images_of(a)
    first.path.unlink()
    second.path.write_bytes(b"truncated")
    third.path.write_bytes(png(99)[: third.bytes].ljust(third.bytes, b"\0"))  # same size
    orphan = db.images_dir / "ab" / f"ab{'0' * 62}.png"
    orphan.parent.mkdir()
    orphan.write_bytes(b"left by a crash")

    shallow = await db.check()
    assert not shallow.ok
    assert shallow.missing_files == [first.path]
    assert shallow.damaged_files == [second.path]
    assert shallow.orphan_files == [orphan]
    deep = await db.check(deep=True)
    assert sorted(deep.damaged_files) == sorted([second.path, third.path])


async def test_export_user_writes_their_data_and_images(
    db: Database, tmp_path: Path, make_request
) -> None:
    mine = await finished_job(db, make_request("my castle", count=2), owner(user_id=3), base=1)
    init = png(7, size=24)
    vary = await db.create_job(
        make_request("castle, blue", parent_job=mine, kind=JobKind.VARY, init_image=init),
        owner(user_id=3),
    )
    await finished_job(db, make_request("not mine"), owner(user_id=4), base=5)
    await db.record_message(mine, 900, 6)
    await db.ban(3, "testing", by=1)

    report = await db.export_user(3, tmp_path / "export")
    assert (report.jobs, report.images) == (2, 2)
    data = json.loads(report.json_path.read_text())
    assert data["user"]["ban_reason"] == "testing"
    assert [job["id"] for job in data["jobs"]] == [mine, vary]
    assert data["jobs"][0]["request"]["prompt"] == "my castle"
    assert data["jobs"][0]["messages"][0]["message_id"] == 900
    assert data["jobs"][1]["request"]["init_image"] is not None
    assert data["audit"][0]["action"] == "user.ban"
    for image in data["jobs"][0]["images"]:
        exported = (tmp_path / "export" / image["file"]).read_bytes()
        assert exported == await db.read_image(mine, image["index"])
    with pytest.raises(InvalidValue, match="not an empty folder"):
        await db.export_user(3, tmp_path / "export")


async def test_delete_user_erases_everything_about_them(db: Database, make_request) -> None:
    theirs = await finished_job(db, make_request("secret", count=2), owner(user_id=3), base=1)
    await db.create_job(
        make_request("theirs too", init_image=png(8), kind=JobKind.VARY), owner(user_id=3)
    )
    child = await db.create_job(
        make_request("made from theirs", parent_job=theirs, kind=JobKind.VARY), owner(user_id=4)
    )
    shared = await finished_job(db, make_request(seed=1), owner(user_id=4), base=1)  # png(1)
    await db.record_message(theirs, 901, 6)
    await db.ban(3, "testing", by=1)

    assert await db.delete_user(3) == 2
    assert await db.get_job(theirs) is None
    assert await db.job_for_message(901) is None
    assert (await db.history(3)).jobs == []
    assert (await db.get_user(3)).banned is False
    assert await db.recent_audit(target="user:3") == []
    assert await db._fetchall("SELECT * FROM init_images") == []
    assert (await db.lineage(child)).ancestors == []
    assert await db.read_image(shared, 0) == png(1)  # another user's identical image stays
    assert len(list(db.images_dir.glob("*/*.png"))) == 1
    report = await db.check(deep=True)
    assert report.ok
    assert report.orphan_files == []
