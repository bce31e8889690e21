"""What a person sees when the store fails between a job's finish and its post (README, "When
Discord or the disk fails"), end to end: the real bot, the fake Discord, SQLite and a worker.

The result is posted once the store can be read again, recorded once it can be written (never
posted twice, also across a restart), and a job deleted or erased meanwhile is simply done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from generation.jobs import JobRecord, JobStatus
from storage import StorageUnavailable
from tests.bot.helpers import (
    JOB_TIMEOUT_S,
    StudioFactory,
    StudioWorld,
    job_count,
    paused,
    polled,
    private_reply,
    studio_people,
)
from tests.bot.test_failures import a_job, progress_says, unwritable_image_folder

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def studio(studio_with: StudioFactory) -> AsyncIterator[StudioWorld]:
    """The shared studio plus `grace` (erased by a test)."""
    world = studio_people()
    world.add_user("grace")
    async with studio_with(world) as started:
        yield started


# ---- the store fails between the finish and the post ----------------------------------------


async def test_a_result_that_cannot_be_read_at_delivery_is_told_retried_and_posted(
    studio: StudioWorld,
) -> None:
    courier = studio.bot.studio.courier
    read = courier._read_image  # fault injection: the store cannot read the images
    broken = True

    async def unreadable(record: object, index: int) -> bytes:
        if broken:
            raise StorageUnavailable("The image folder cannot be read right now (EIO).")
        return await read(record, index)

    courier._read_image = unreadable
    try:
        ix, job = await a_job(studio, "carol", width=64, height=64, steps=2)
        said = await progress_says(studio, ix, "Trying again in 2 s")
        assert "could not be read" in said
        assert "Your job is kept." in said
        assert (await studio.database.get_job(job)).delivered_at is None
        broken = False
        result = await studio.result_of(job)  # the fault cleared: no restart needed
    finally:
        courier._read_image = read
    assert result is ix.original
    assert result.attachments[0].data == await studio.database.read_image(job, 0)
    assert (await studio.delivered(job)).record.status is JobStatus.DONE


async def test_a_database_read_only_right_after_the_post_is_retried_and_posts_once(
    studio: StudioWorld,
) -> None:
    fake, db = studio.fake, studio.database
    courier = studio.bot.studio.courier
    record = courier.record_result  # fault injection: the disk turns read-only after the post
    turned = asyncio.Event()

    async def read_only_after_post(*args: object) -> None:
        if not turned.is_set():
            await db._conn.execute("PRAGMA query_only = ON")
            turned.set()
        await record(*args)

    courier.record_result = read_only_after_post
    try:
        _, job = await a_job(studio, "carol", width=64, height=64, steps=2)
        await turned.wait()
        result = await studio.result_of(job)  # posted while nothing can be recorded
        assert (await db.get_job(job)).delivered_at is None
    finally:
        await db._conn.execute("PRAGMA query_only = OFF")
        courier.record_result = record

    assert (await studio.delivered(job)).delivered_at is not None  # recorded, no restart
    await studio.bot.studio.courier.deliver_leftovers()  # what the next start would post
    posts = [m for m in fake.messages if f"job `{job}`" in m.content and m.attachments]
    assert posts == [result]
    assert [m.message_id for m in await db.messages_of(job)] == [result.id]


async def test_an_image_folder_gone_between_the_finish_and_the_post_is_told_then_posted(
    studio: StudioWorld,
) -> None:
    store = studio.services.pool._store  # fault injection: the folder goes right after the finish
    mark_done = store.mark_done
    folder = studio.database.images_dir
    aside = folder.with_name(folder.name + ".aside")
    gone = asyncio.Event()

    async def done_then_unmounted(*args: object, **kwargs: object) -> object:
        done = await mark_done(*args, **kwargs)
        folder.rename(aside)
        gone.set()
        return done

    store.mark_done = done_then_unmounted
    try:
        ix, job = await a_job(studio, "carol", width=64, height=64, steps=2)
        async with asyncio.timeout(JOB_TIMEOUT_S):
            await gone.wait()
        said = await progress_says(studio, ix, "Trying again in 2 s")
        assert (await studio.database.get_job(job)).delivered_at is None
    finally:
        store.mark_done = mark_done
        if gone.is_set():
            aside.rename(folder)

    assert "The image folder cannot be read right now (it is missing)" in said
    assert "no longer stored" not in said  # not mistaken for an image deleted for good
    assert "Your job is kept." in said
    result = await studio.result_of(job)  # the folder is back: no restart needed
    assert result is ix.original
    assert result.attachments[0].data == await studio.database.read_image(job, 0)
    assert (await studio.delivered(job)).record.status is JobStatus.DONE


async def test_a_result_posted_but_not_recorded_before_a_restart_is_not_posted_again(
    studio: StudioWorld,
) -> None:
    fake, db = studio.fake, studio.database
    courier = studio.bot.studio.courier
    record = courier.record_result  # fault injection: the disk turns read-only after the post
    turned = asyncio.Event()

    async def read_only_after_post(*args: object) -> None:
        if not turned.is_set():
            await db._conn.execute("PRAGMA query_only = ON")
            turned.set()
        await record(*args)

    courier.record_result = read_only_after_post
    try:
        ix, job = await a_job(studio, "carol", width=64, height=64, steps=2)
        async with asyncio.timeout(JOB_TIMEOUT_S):
            await turned.wait()
        result = await studio.result_of(job)
        await studio.runner.restart()  # before the store took the record
    finally:
        await db._conn.execute("PRAGMA query_only = OFF")
        courier.record_result = record

    assert (await studio.delivered(job)).delivered_at is not None  # the next run recorded it
    assert result is ix.original
    assert not result.deleted  # its reactions and buttons stay
    posts = [m for m in fake.messages if f"job `{job}`" in m.content and m.attachments]
    assert posts == [result]  # not posted (nor pinged) again
    assert await db.job_for_message(result.id) == job


async def test_a_job_whose_owner_is_erased_right_after_the_post_is_done_quietly(
    studio: StudioWorld, caplog: pytest.LogCaptureFixture
) -> None:
    db, courier = studio.database, studio.bot.studio.courier
    record = courier.record_result  # fault injection: the erasure lands between post and record
    erased = asyncio.Event()

    async def erase_then_record(job: JobRecord, *args: object) -> None:
        if not erased.is_set():
            assert await db.delete_user(job.owner.user_id) == 1
            erased.set()
        await record(job, *args)

    courier.record_result = erase_then_record
    try:
        ix, job = await a_job(studio, "grace", width=64, height=64, steps=2)
        async with asyncio.timeout(JOB_TIMEOUT_S):
            await erased.wait()

        async def delivery_ended() -> bool | None:
            return True if job not in courier._delivering else None

        await polled(delivery_ended)
    finally:
        courier.record_result = record

    assert ix.original is not None
    assert ix.original.attachments  # the post stands
    assert await db.get_job(job) is None
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [line for line in said if f"Job {job}:" in line or f"job-{job}" in line]


async def test_a_button_that_needs_an_image_from_a_missing_folder_says_so_and_changes_nothing(
    studio: StudioWorld,
) -> None:
    fake, db = studio.fake, studio.database
    alice = fake.user("alice")
    _, job = await a_job(studio, "alice", width=64, height=64, steps=2)
    result = await studio.result_of(job)
    before = await job_count(db)
    async with unwritable_image_folder(studio):  # a file stands where the folder was
        pressed = await fake.click(alice, result, f"atelier:vary-subtle:{job}:0")
        said = await private_reply(fake, pressed)

    assert said == (
        "⚠️ The image folder cannot be read right now (Not a directory). "
        "Nothing was changed; try again in a minute."
    )
    assert await job_count(db) == before


async def test_a_job_taken_up_by_a_new_run_while_its_record_cannot_be_read_is_still_delivered(
    studio: StudioWorld,
) -> None:
    db = studio.database
    get_job = db.get_job  # fault injection: the new run's first read of the job fails
    refused = asyncio.Event()

    async def unreadable_once(job_id: int, *args: object, **kwargs: bool) -> object:
        if job_id == job and not refused.is_set():
            refused.set()
            raise StorageUnavailable("The database cannot be used right now (disk I/O error).")
        return await get_job(job_id, *args, **kwargs)

    async with paused(studio):
        ix, job = await a_job(studio, "carol", width=64, height=64, steps=2)
        await studio.runner.restart()  # the job goes on in a run that did not submit it
        db.get_job = unreadable_once  # type: ignore[method-assign]
    try:
        async with asyncio.timeout(JOB_TIMEOUT_S):
            await refused.wait()
        result = await studio.result_of(job)  # read again: no restart needed
    finally:
        del db.get_job
    assert result.channel_id == ix.channel_id
    assert (await studio.delivered(job)).record.status is JobStatus.DONE
