"""The job lifecycle: durable writes, the allowed transitions, images written before rows."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from generation.jobs import GeneratedImage, JobStatus
from generation.request import JobKind
from storage import Database, InvalidTransition, InvalidValue, StorageUnavailable, UnknownJob
from storage.images import sha256_of
from tests.storage.conftest import finished_job, images_for, owner, png


async def test_a_created_job_is_queued_and_on_disk_before_create_returns(
    db: Database, db_path: Path, make_request
) -> None:
    request = make_request("a red fox in snow", count=3, seed=40)
    job_id = await db.create_job(request, owner(user_id=42))

    # A second, independent connection (another process would see the same) finds it.
    async with await Database.open(db_path) as other:
        stored = await other.get_job(job_id)
    assert stored is not None
    assert stored.record.status is JobStatus.QUEUED
    assert stored.record.request == request
    assert stored.record.owner.user_id == 42
    assert stored.record.queued_at == db._clock()


async def test_a_request_with_an_init_image_round_trips(db: Database, make_request) -> None:
    source = png(3, size=32)
    request = make_request("make it blue", init_image=source, kind=JobKind.VARY)
    first = await db.create_job(request, owner())
    second = await db.create_job(request, owner())
    for job_id in (first, second):
        stored = await db.get_job(job_id)
        assert stored is not None
        assert stored.record.request == request
        assert stored.record.request.init_image == source


async def test_done_writes_each_image_file_and_its_row(db: Database, make_request) -> None:
    request = make_request(count=2)
    job_id = await finished_job(db, request, owner(), base=10)

    record = (await db.get_job(job_id)).record
    assert record.status is JobStatus.DONE
    assert record.worker == "cuda:0"
    assert record.gpu_seconds == 2.5
    assert record.finished_at is not None
    images = await db.images_of(job_id)
    assert [(im.index, im.seed) for im in images] == [(0, 7), (1, 8)]
    for image, expected in zip(images, images_for(request, 10), strict=True):
        assert image.path.read_bytes() == expected.png
        assert image.sha256 == sha256_of(expected.png)
        assert image.bytes == len(expected.png)
        assert image.path.parent.parent == db.images_dir
        assert await db.read_image(job_id, image.index) == expected.png


async def test_an_image_folder_that_cannot_be_read_is_a_fault_not_a_pruned_image(
    db: Database, make_request
) -> None:
    job_id = await finished_job(db, make_request(count=1), owner(), base=3)
    stored = await db.read_image(job_id, 0)
    folder = db.images_dir
    aside = folder.with_name(folder.name + ".aside")
    folder.rename(aside)  # unmounted: the images may come back
    with pytest.raises(StorageUnavailable, match="image folder cannot be read right now"):
        await db.read_image(job_id, 0)
    folder.write_bytes(b"not a folder")  # something in its way
    with pytest.raises(StorageUnavailable, match="image folder cannot be read right now"):
        await db.read_image(job_id, 0)
    folder.unlink()
    aside.rename(folder)
    assert await db.read_image(job_id, 0) == stored
    (image,) = await db.images_of(job_id)
    image.path.unlink()  # one file gone from a folder that is there: None, as when pruned
    assert await db.read_image(job_id, 0) is None


async def test_identical_images_share_one_file(db: Database, make_request) -> None:
    request = make_request(count=1)
    first = await finished_job(db, request, owner(), base=5)
    rerun = await finished_job(db, request, owner(), base=5)
    (a,), (b,) = await db.images_of(first), await db.images_of(rerun)
    assert a.path == b.path
    assert len(list(db.images_dir.glob("*/*.png"))) == 1


async def test_unfinished_jobs_come_back_in_queue_order_after_a_restart(
    db_path: Path, make_request
) -> None:
    async with await Database.open(db_path) as db:
        ids = [await db.create_job(make_request(f"prompt {i}"), owner()) for i in range(5)]
        await db.mark_running(ids[0], "cuda:0")
        await db.mark_running(ids[1], "cuda:1")
        await db.mark_done(ids[1], images_for(make_request(), 1), 1.0)
        await db.mark_cancelled(ids[3])
        await db.mark_running(ids[4], "cuda:1")
        await db.requeue(ids[4])

    async with await Database.open(db_path) as db:
        unfinished = await db.unfinished_jobs()
    assert [job.id for job in unfinished] == [ids[0], ids[2], ids[4]]
    assert [job.status for job in unfinished] == [
        JobStatus.RUNNING,
        JobStatus.QUEUED,
        JobStatus.QUEUED,
    ]
    assert unfinished[0].request.prompt == "prompt 0"
    assert unfinished[2].worker is None
    assert unfinished[2].started_at is None


ALLOWED = {
    (JobStatus.QUEUED, JobStatus.RUNNING),
    (JobStatus.QUEUED, JobStatus.FAILED),
    (JobStatus.QUEUED, JobStatus.CANCELLED),
    (JobStatus.RUNNING, JobStatus.DONE),
    (JobStatus.RUNNING, JobStatus.FAILED),
    (JobStatus.RUNNING, JobStatus.CANCELLED),
    (JobStatus.RUNNING, JobStatus.QUEUED),
}


async def _bring_to(db: Database, job_id: int, status: JobStatus, make_request) -> None:
    if status is JobStatus.DONE:
        await db.mark_running(job_id, "cuda:0")
    if status is not JobStatus.QUEUED:
        await _apply(db, job_id, status, make_request)


async def _apply(db: Database, job_id: int, status: JobStatus, make_request) -> None:
    match status:
        case JobStatus.RUNNING:
            await db.mark_running(job_id, "cuda:0")
        case JobStatus.DONE:
            await db.mark_done(job_id, images_for(make_request(), job_id), 1.0)
        case JobStatus.FAILED:
            await db.mark_failed(job_id, "The GPU ran out of memory.")
        case JobStatus.CANCELLED:
            await db.mark_cancelled(job_id)
        case JobStatus.QUEUED:
            await db.requeue(job_id)


@pytest.mark.parametrize(
    ("start", "target"), list(itertools.product(list(JobStatus), list(JobStatus)))
)
async def test_only_the_lifecycle_transitions_are_allowed(
    db: Database, make_request, start: JobStatus, target: JobStatus
) -> None:
    job_id = await db.create_job(make_request(), owner())
    await _bring_to(db, job_id, start, make_request)
    assert (await db.get_job(job_id)).record.status is start

    if (start, target) in ALLOWED:
        await _apply(db, job_id, target, make_request)
        assert (await db.get_job(job_id)).record.status is target
    else:
        with pytest.raises(InvalidTransition, match=f"#{job_id} is {start.value}"):
            await _apply(db, job_id, target, make_request)
        assert (await db.get_job(job_id)).record.status is start
        assert (await db.images_of(job_id)) == [] or start is JobStatus.DONE


async def test_a_failed_job_keeps_its_reason(db: Database, make_request) -> None:
    job_id = await db.create_job(make_request(), owner())
    await db.mark_failed(job_id, "The model is not available.")
    record = (await db.get_job(job_id)).record
    assert record.error == "The model is not available."
    assert record.status.is_final


async def test_unknown_jobs_and_bad_results_are_refused(db: Database, make_request) -> None:
    with pytest.raises(UnknownJob, match="no job #999"):
        await db.mark_running(999, "cuda:0")
    assert await db.get_job(999) is None

    job_id = await db.create_job(make_request(count=2), owner())
    await db.mark_running(job_id, "cuda:0")
    with pytest.raises(InvalidValue):
        await db.mark_done(job_id, [], 1.0)
    twice = GeneratedImage(index=0, seed=1, png=png(1), width=16, height=16)
    with pytest.raises(InvalidValue):
        await db.mark_done(job_id, [twice, twice], 1.0)
    assert (await db.get_job(job_id)).record.status is JobStatus.RUNNING
    with pytest.raises(InvalidValue, match="derives from"):
        await db.create_job(make_request(parent_job=12345, kind=JobKind.RERUN), owner())
