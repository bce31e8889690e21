"""What a person sees when Discord or the disk fails (README, "When Discord or the disk fails"),
end to end: the real bot, the fake Discord, SQLite and a worker process.

A job is never left silent: a result the channel refuses goes by DM, one whose reply was
deleted goes to the channel, one over a shrunk upload limit is fitted again, one Discord could
not be reached for is posted later; a finish the store cannot record is announced, retried and
completed once the fault clears (no restart); a cancel the store holds up is answered at once;
a job cancelled twice at once is cancelled, reported and audited once. After the finish:
`test_failures_after_finish`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import pytest_asyncio

from generation.jobs import JobStatus
from tests.bot.helpers import (
    SLOW_JOB,
    StudioFactory,
    StudioWorld,
    answer,
    imagine,
    job_id_of,
    paused,
    private_reply,
    studio_people,
    text_of,
    wait_for_status,
)
from tests.discord import InteractionRecord, Message
from tests.discord.faults import DROPPED
from tests.discord.world import Overwrite, Permission

pytestmark = pytest.mark.asyncio(loop_scope="module")

MEDIUM_JOB = {"width": 256, "height": 256, "steps": 30}  # a few seconds on the CPU worker


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def studio(studio_with: StudioFactory) -> AsyncIterator[StudioWorld]:
    """The shared studio plus a second admin, #gallery and #doomed."""
    world = studio_people()
    world.add_user("deputy", roles=("Atelier Admin",))
    world.add_channel("gallery")
    world.add_channel("doomed")  # deleted by a test
    async with studio_with(world) as started:
        yield started


def shown(message: Message | None) -> str:
    return text_of(message) if message is not None else ""


async def progress_says(studio: StudioWorld, ix: InteractionRecord, text: str) -> str:
    """The progress message's text once it contains `text`."""
    await studio.fake.wait_for(lambda: text in shown(ix.original), what=repr(text))
    return shown(ix.original)


def set_overwrites(studio: StudioWorld, channel: str, *overwrites: Overwrite) -> None:
    """An admin edits a channel's permissions (no gateway update: the bot's cache is stale)."""
    channels = studio.fake.world.channels
    channels[channel] = dataclasses.replace(channels[channel], overwrites=overwrites)


async def a_job(studio: StudioWorld, user: str, **options: object) -> tuple[InteractionRecord, int]:
    fake = studio.fake
    ix = await fake.slash(fake.user(user), "imagine", {"prompt": "a quiet harbour"} | options)
    return ix, job_id_of(await answer(fake, ix))


# ---- Discord refuses the result -------------------------------------------------------------


@asynccontextmanager
async def reaction_job(
    studio: StudioWorld, user: str, channel: str, prompt: str
) -> AsyncIterator[int]:
    """A job made by a 🔁 reaction (its messages go to the channel, not an interaction); it
    waits in the queue until the block ends."""
    fake = studio.fake
    place = fake.channel(channel)
    ix = await fake.slash(fake.user(user), "imagine", {"prompt": prompt}, channel=place)
    first = await studio.result_of(job_id_of(await answer(fake, ix)))
    async with paused(studio):
        await fake.react(fake.user(user), first, "🔁")
        progress = await fake.wait_for_message(
            lambda m: m.channel_id == place.id and m is not first and bool(m.embeds)
        )
        yield job_id_of(progress)


async def test_a_result_the_channel_no_longer_takes_goes_by_dm_and_says_why(
    studio: StudioWorld,
) -> None:
    fake, alice = studio.fake, studio.fake.user("alice")
    gallery = fake.channel("gallery")
    try:
        async with reaction_job(studio, "alice", "gallery", "a lighthouse") as job:
            # an admin takes Send Messages away from the bot while the job waits
            bot_role = fake.world.roles["Atelier Bot"].id
            set_overwrites(studio, "gallery", Overwrite(bot_role, 0, deny=Permission.SEND_MESSAGES))

        dm = await fake.wait_for(
            lambda: [m for m in fake.dms(alice) if m.attachments] or None, what="the DM result"
        )
    finally:
        set_overwrites(studio, "gallery")

    said = " ".join(m.content for m in fake.dms(alice))
    assert f"I could not post the result of job `{job}` in <#{gallery.id}>" in said
    assert "may no longer post there" in said
    assert f"job `{job}`" in dm[0].content
    stored = await studio.delivered(job)
    assert stored.record.status is JobStatus.DONE
    assert await studio.database.job_for_message(dm[0].id) == job  # reactions work there too
    # the progress message left in #gallery says where the result went (editing it needs no
    # Send Messages), instead of showing "Queued" for ever
    note = await fake.wait_for_message(
        lambda m: m.channel_id == gallery.id and f"job `{job}`" in text_of(m) and "DM" in text_of(m)
    )
    assert text_of(note) == f"📬 The result of job `{job}` was sent to <@{alice.id}> by DM."


async def test_a_result_whose_channel_was_deleted_goes_by_dm_and_says_why(
    studio: StudioWorld,
) -> None:
    fake, alice = studio.fake, studio.fake.user("alice")
    doomed = fake.channel("doomed")
    async with reaction_job(studio, "alice", "doomed", "a ruin") as job:
        del fake.world.channels["doomed"]  # 404 Unknown Channel (10003) from now on

    dm = await fake.wait_for(
        lambda: (
            [m for m in fake.dms(alice) if f"job `{job}`" in m.content and m.attachments] or None
        ),
        what="the DM result",
    )
    assert (await studio.delivered(job)).record.status is JobStatus.DONE
    said = " ".join(m.content for m in fake.dms(alice))
    assert f"job `{job}` in <#{doomed.id}> (I cannot find it), so here it is." in said
    assert await studio.database.job_for_message(dm[0].id) == job


async def test_a_connection_dropped_as_a_job_is_shown_loses_nothing(
    studio: StudioWorld,
) -> None:
    fake = studio.fake
    async with paused(studio):
        ix, job = await a_job(studio, "carol", width=64, height=64, steps=2)
        # the network fails once as the reply is edited (discord.py does not retry that)
        original = r"/webhooks/\d+/[^/]+/messages/@original"
        dropped = fake.fail_next("PATCH", original, status=DROPPED)

    result = await studio.result_of(job)
    assert dropped.served == 1
    assert result is ix.original
    assert (await studio.delivered(job)).record.status is JobStatus.DONE


async def test_a_connection_dropped_as_a_result_is_posted_in_a_channel_is_retried(
    studio: StudioWorld,
) -> None:
    fake = studio.fake
    gallery = fake.channel("gallery")
    async with reaction_job(studio, "bob", "gallery", "a harbour at night") as job:
        posts = rf"/channels/{gallery.id}/messages$"  # the result: progress is only edited
        dropped = fake.fail_next("POST", posts, status=DROPPED)

    result = await studio.result_of(job)
    assert dropped.served == 1
    assert result.channel_id == gallery.id
    assert (await studio.delivered(job)).record.status is JobStatus.DONE
    shown_in_gallery = [m for m in fake.channel_messages(gallery) if f"job `{job}`" in m.content]
    assert shown_in_gallery == [result]


async def test_a_result_over_a_limit_that_shrank_meanwhile_is_fitted_again(
    studio: StudioWorld,
) -> None:
    fake = studio.fake
    general = fake.channel("general")
    async with reaction_job(studio, "bob", "general", "static noise") as job:
        fake.attachment_size_limit = 1500  # the server lost its boosts; the bot was not told
    try:
        result = await studio.result_of(job)
    finally:
        fake.attachment_size_limit = 10 * 2**20

    assert result.channel_id == general.id
    assert len(await studio.database.read_image(job, 0)) > 1500  # the PNG did not fit
    attachment = result.attachments[0]
    assert attachment.filename.endswith(".jpg")
    assert attachment.size <= 1500
    assert "re-encoded as JPEG to fit" in result.content
    assert (await studio.delivered(job)).delivered_at is not None


async def test_a_reply_whose_token_died_ends_pointing_to_the_result_where_it_cannot_be_removed(
    studio: StudioWorld,
) -> None:
    fake = studio.fake
    async with paused(studio):
        ix, job = await a_job(studio, "carol", width=64, height=64, steps=2)
        fake.expire_tokens([ix])  # 15 minutes later: the reply can only be edited as a message
        assert ix.original is not None
        # Discord keeps refusing to delete the old reply (discord.py gives up after 5 tries)
        fake.fail_next("DELETE", rf"/channels/\d+/messages/{ix.original.id}$", times=10)

    result = await studio.result_of(job)
    await studio.delivered(job)
    assert not ix.original.deleted
    said = shown(ix.original)
    assert "Generating" not in said
    assert "Queued" not in said
    assert f"/{result.channel_id}/{result.id}" in said  # a link to the result
    assert not ix.original.embeds


async def test_a_reply_a_moderator_deleted_is_replaced_by_the_result_in_its_channel(
    studio: StudioWorld,
) -> None:
    fake, carol = studio.fake, studio.fake.user("carol")
    general = fake.channel("general")
    async with paused(studio):
        ix, job = await a_job(studio, "carol", width=64, height=64, steps=2)
        assert ix.original is not None
        await fake.state.delete_message(ix.original)  # 404 Unknown Message (10008) from now on

    result = await studio.result_of(job)
    assert result.channel_id == general.id  # the channel works: no DM "I cannot find it"
    assert result.content.startswith(f"<@{carol.id}>")
    assert not [m for m in fake.dms(carol) if f"job `{job}`" in m.content]
    assert (await studio.delivered(job)).record.status is JobStatus.DONE
    assert await studio.database.job_for_message(result.id) == job


async def test_a_reply_deleted_while_its_job_runs_ends_in_one_result_in_its_channel(
    studio: StudioWorld,
) -> None:
    fake, carol = studio.fake, studio.fake.user("carol")
    general = fake.channel("general")
    ix, job = await a_job(studio, "carol", **MEDIUM_JOB)
    await wait_for_status(studio.database, job, JobStatus.RUNNING)
    assert ix.original is not None
    await fake.state.delete_message(ix.original)  # progress edits now meet 10008

    result = await studio.result_of(job)
    await studio.delivered(job)
    assert result.channel_id == general.id
    assert result.content.startswith(f"<@{carol.id}>")
    assert not [m for m in fake.dms(carol) if f"job `{job}`" in m.content]
    # a progress message posted in the reply's place is removed with the result
    left = [m for m in fake.channel_messages(general) if f"Job {job}" in text_of(m)]
    assert left == []


# ---- the disk refuses the finish ------------------------------------------------------------


@asynccontextmanager
async def read_only_database(studio: StudioWorld) -> AsyncIterator[None]:
    """SQLite refuses every write ("attempt to write a readonly database") until the block
    ends, as when the disk is remounted read-only."""
    conn = studio.database._conn  # fault injection: the bot's own connection
    await conn.execute("PRAGMA query_only = ON")
    try:
        yield
    finally:
        await conn.execute("PRAGMA query_only = OFF")


@asynccontextmanager
async def unwritable_image_folder(studio: StudioWorld) -> AsyncIterator[None]:
    """The image folder is gone and a file stands in its way until the block ends."""
    folder = studio.database.images_dir
    aside = folder.with_name(folder.name + ".aside")
    folder.rename(aside)
    folder.write_bytes(b"not a folder")
    try:
        yield
    finally:
        folder.unlink()
        aside.rename(folder)


async def finish_blocked(studio: StudioWorld, fault: str) -> tuple[InteractionRecord, int, str]:
    """A job that finishes while `fault` holds: its interaction, id and what its progress
    message says meanwhile (once the pool has retried at least once)."""
    ix, job = await a_job(studio, "carol", **MEDIUM_JOB)
    await wait_for_status(studio.database, job, JobStatus.RUNNING)
    blocked = read_only_database if fault == "database" else unwritable_image_folder
    async with blocked(studio):
        said = await progress_says(studio, ix, "Trying again in 2 s")
        assert (await studio.database.get_job(job)).record.status is JobStatus.RUNNING
    return ix, job, said


async def test_a_read_only_database_at_the_finish_is_told_retried_and_finished(
    studio: StudioWorld,
) -> None:
    ix, job, said = await finish_blocked(studio, "database")

    assert "The database cannot be used right now (attempt to write a readonly database)" in said
    assert "Your job is kept." in said
    result = await studio.result_of(job)  # the fault cleared: no restart needed
    assert result is ix.original
    assert len(result.attachments) == 1
    assert (await studio.delivered(job)).record.status is JobStatus.DONE


async def test_an_unwritable_image_folder_at_the_finish_is_told_retried_and_finished(
    studio: StudioWorld,
) -> None:
    _, job, said = await finish_blocked(studio, "images")

    assert "The image folder cannot be written right now" in said
    assert "Your job is kept." in said
    result = await studio.result_of(job)
    assert result.attachments[0].data == await studio.database.read_image(job, 0)
    assert (await studio.delivered(job)).record.status is JobStatus.DONE


async def test_a_start_the_database_cannot_record_shows_the_job_on_its_gpu_not_queued(
    studio: StudioWorld,
) -> None:
    pool = studio.services.pool
    await pool.wait_until_ready()
    pool.pause()
    ix, job = await a_job(studio, "carol", **MEDIUM_JOB)
    async with read_only_database(studio):
        pool.resume()  # its GPU takes it; recording that it started is refused
        said = await progress_says(studio, ix, "Trying again")
        assert (await studio.database.get_job(job)).record.status is JobStatus.QUEUED

    assert "Queued" not in said
    assert f"Job {job}\n🎨 Generating on `cpu`" in said
    assert "The database cannot be used right now" in said
    assert "Your job is kept." in said
    assert len((await studio.result_of(job)).attachments) == 1  # the fault cleared


async def test_a_cancel_the_database_cannot_record_yet_shows_cancelling_not_kept(
    studio: StudioWorld,
) -> None:
    fake = studio.fake
    async with paused(studio):
        ix, job = await a_job(studio, "frank", **MEDIUM_JOB)
        async with read_only_database(studio):
            asked = await fake.slash(fake.user("frank"), "cancel", {"job": job})
            said = await progress_says(studio, ix, "Trying again")
            first = await private_reply(fake, asked)
        final = await fake.wait_for(
            lambda: [text_of(m) for m in asked.messages if "Cancelled job" in text_of(m)] or None,
            what="the final word",
        )

    assert said.startswith(f"Job {job}\n🚫 Cancelling…\n⚠️ The database cannot be used right now")
    assert "Your job is kept" not in said
    assert first.startswith(f"🚫 Cancelling job `{job}`… ⚠️ The database cannot be used right now")
    assert final == [f"🚫 Cancelled job `{job}`."]
    assert await wait_for_status(studio.database, job, JobStatus.CANCELLED)
    assert "🚫 Cancelled." in await progress_says(studio, ix, "Cancelled.")


async def test_a_cancel_the_store_holds_past_the_token_is_answered_at_once_then_told_by_dm(
    studio: StudioWorld,
) -> None:
    fake, frank = studio.fake, studio.fake.user("frank")
    async with paused(studio):
        _, job = await a_job(studio, "frank", **MEDIUM_JOB)
        async with read_only_database(studio):
            asked = await fake.slash(frank, "cancel", {"job": job})
            first = await private_reply(fake, asked)  # while the token lives
            fake.expire_tokens([asked])  # the fault outlasts it (15 minutes)
        told = await fake.wait_for(
            lambda: [m.content for m in fake.dms(frank) if f"job `{job}`" in m.content] or None,
            what="the final word by DM",
        )

    assert first.startswith(f"🚫 Cancelling job `{job}`… ⚠️ The database cannot be used right now")
    assert first.endswith("I will tell you once it is done.")
    assert told == [f"🚫 Cancelled job `{job}`."]
    assert await wait_for_status(studio.database, job, JobStatus.CANCELLED)


async def test_an_admin_cancelling_someones_jobs_the_store_holds_hears_so_at_once(
    studio: StudioWorld,
) -> None:
    fake, dave = studio.fake, studio.fake.user("dave")
    async with paused(studio):
        jobs = [(await a_job(studio, "dave", **MEDIUM_JOB))[1] for _ in range(2)]
        async with read_only_database(studio):
            asked = await fake.slash(fake.user("admin"), "admin cancel", {"user": dave})
            first = await private_reply(fake, asked)
        final = await fake.wait_for(
            lambda: [text_of(m) for m in asked.messages if "Cancelled" in text_of(m)] or None,
            what="the final word",
        )

    assert first.startswith(f"🚫 Cancelling the jobs of <@{dave.id}>… ⚠️ The database cannot")
    assert first.endswith("I will tell you once it is done.")
    assert final == [f"🚫 Cancelled 2 jobs of <@{dave.id}>."]
    for job in jobs:
        assert await wait_for_status(studio.database, job, JobStatus.CANCELLED)


# ---- a job cancelled twice at once ----------------------------------------------------------


async def test_two_admins_cancelling_one_job_at_once_cancel_report_and_audit_it_once(
    studio: StudioWorld,
) -> None:
    fake, db = studio.fake, studio.database
    busy = await imagine(fake, fake.user("erin"), prompt="a long frieze", **SLOW_JOB)
    await wait_for_status(db, busy, JobStatus.RUNNING)
    before = max((e.id for e in await db.recent_audit(limit=1)), default=0)

    both = await asyncio.gather(
        *(fake.slash(fake.user(who), "admin cancel", {"job": busy}) for who in ("admin", "deputy"))
    )
    replies = sorted([await private_reply(fake, ix) for ix in both])

    assert sum(f"Cancelled job `{busy}`" in reply for reply in replies) == 1
    assert sum(f"Job `{busy}` was already cancelled." in reply for reply in replies) == 1
    audited = [e for e in await db.recent_audit(limit=20) if e.id > before]
    assert [(e.action, e.target) for e in audited] == [("job.cancel", f"job:{busy}")]
    assert await wait_for_status(db, busy, JobStatus.CANCELLED)


async def test_the_owner_and_an_admin_cancelling_at_once_hear_cancelled_once(
    studio: StudioWorld,
) -> None:
    fake, db = studio.fake, studio.database
    frank = fake.user("frank")
    busy = await imagine(fake, frank, prompt="a long tapestry", **SLOW_JOB)
    await wait_for_status(db, busy, JobStatus.RUNNING)

    mine, theirs = await asyncio.gather(
        fake.slash(frank, "cancel", {"job": busy}),
        fake.slash(fake.user("admin"), "admin cancel", {"job": busy}),
    )
    replies = [await private_reply(fake, mine), await private_reply(fake, theirs)]

    assert sum("🚫 Cancelled" in reply for reply in replies) == 1
    assert sum("was already cancelled" in reply for reply in replies) == 1
    assert await wait_for_status(db, busy, JobStatus.CANCELLED)
