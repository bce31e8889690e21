"""Commands while the database refuses writes (README, "When Discord or the disk fails"), end
to end: the real bot, the fake Discord, SQLite turned read-only, a worker process.

A command whose write is refused is told so in one sentence and changes nothing; an admin
action the bot carried out before its audit write was refused is reported as done, and its
audit entry is written once the database takes writes again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from generation.jobs import JobStatus
from storage import AuditEntry
from tests.bot.helpers import (
    SLOW_JOB,
    StudioFactory,
    StudioWorld,
    imagine,
    job_count,
    polled,
    private_reply,
    studio_people,
    wait_for_status,
)
from tests.bot.test_failures import read_only_database

pytestmark = pytest.mark.asyncio(loop_scope="module")

REFUSED = (
    "⚠️ The database cannot be used right now (attempt to write a readonly database). "
    "Nothing was changed; try again in a minute."
)
KEPT = "⚠️ The audit log could not be written: The database cannot be used right now"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def studio(studio_with: StudioFactory) -> AsyncIterator[StudioWorld]:
    async with studio_with(studio_people()) as started:
        yield started


async def audited(studio: StudioWorld, action: str, target: str, after: int) -> AuditEntry:
    """The audit entry for `action` on `target` newer than entry `after`, once written."""

    async def probe() -> AuditEntry | None:
        entries = await studio.database.recent_audit(limit=20, target=target)
        return next((e for e in entries if e.action == action and e.id > after), None)

    return await polled(probe)


async def last_audit_id(studio: StudioWorld) -> int:
    return max((e.id for e in await studio.database.recent_audit(limit=1)), default=0)


async def test_imagine_while_the_database_is_read_only_is_told_and_accepts_nothing(
    studio: StudioWorld,
) -> None:
    fake, db = studio.fake, studio.database
    carol = fake.user("carol")
    before = await job_count(db)

    async with read_only_database(studio):
        refused = await fake.slash(carol, "imagine", {"prompt": "a harbour at noon"})
        reply = await private_reply(fake, refused)
        assert await job_count(db) == before

    assert reply == REFUSED
    accepted = await imagine(fake, carol, prompt="a harbour at noon", width=64, height=64)
    assert await wait_for_status(db, accepted, JobStatus.DONE)


async def test_a_ban_while_the_database_is_read_only_is_told_and_changes_nothing(
    studio: StudioWorld,
) -> None:
    fake, db = studio.fake, studio.database
    dave = fake.user("dave")
    async with read_only_database(studio):
        ix = await fake.slash(fake.user("admin"), "admin ban", {"user": dave, "reason": "spam"})
        reply = await private_reply(fake, ix)
    assert reply == REFUSED
    assert not (await db.get_user(dave.id)).banned


async def test_an_admin_cancel_whose_audit_is_refused_says_cancelled_and_is_audited_later(
    studio: StudioWorld,
) -> None:
    fake, db, pool = studio.fake, studio.database, studio.bot.pool
    busy = await imagine(fake, fake.user("erin"), prompt="a long frieze", **SLOW_JOB)
    await wait_for_status(db, busy, JobStatus.RUNNING)
    before = await last_audit_id(studio)
    cancel = pool.cancel

    async def cancel_then_read_only(job_id: int) -> bool:  # the disk goes read-only just after
        cancelled = await cancel(job_id)
        await db._conn.execute("PRAGMA query_only = ON")
        return cancelled

    pool.cancel = cancel_then_read_only  # type: ignore[method-assign]
    try:
        ix = await fake.slash(fake.user("admin"), "admin cancel", {"job": busy})
        reply = await private_reply(fake, ix)
        assert await db.recent_audit(limit=20, target=f"job:{busy}") == []
    finally:
        pool.cancel = cancel  # type: ignore[method-assign]
        await db._conn.execute("PRAGMA query_only = OFF")

    assert reply.startswith(f"🚫 Cancelled job `{busy}` of ")
    assert KEPT in reply
    assert "attempt to write a readonly database" in reply
    assert await wait_for_status(db, busy, JobStatus.CANCELLED)
    entry = await audited(studio, "job.cancel", f"job:{busy}", before)
    assert entry.actor_id == fake.user("admin").id


async def test_a_pause_whose_audit_is_refused_pauses_says_so_and_is_audited_later(
    studio: StudioWorld,
) -> None:
    fake, pool = studio.fake, studio.bot.pool
    before = await last_audit_id(studio)
    async with read_only_database(studio):
        paused = await private_reply(fake, await fake.slash(fake.user("admin"), "admin pause", {}))
        # someone who may not: refused as ever (the refusal's own audit entry is kept too)
        refused = await private_reply(
            fake, await fake.slash(fake.user("alice"), "admin resume", {})
        )
        assert pool.paused
    try:
        assert paused.startswith("⏸️ Paused.")
        assert KEPT in paused
        assert refused == "/admin resume is for this bot's admins only."
        entry = await audited(studio, "pool.pause", "pool", before)
        assert entry.actor_id == fake.user("admin").id
        await audited(studio, "admin.refused", "command:/admin resume", before)
    finally:
        pool.resume()


async def test_cancelling_someones_jobs_whose_audit_is_refused_says_so_and_is_audited_later(
    studio: StudioWorld,
) -> None:
    fake, db, pool = studio.fake, studio.database, studio.bot.pool
    frank = fake.user("frank")
    busy = await imagine(fake, frank, prompt="a long tapestry", **SLOW_JOB)
    await wait_for_status(db, busy, JobStatus.RUNNING)
    before = await last_audit_id(studio)
    cancel_user = pool.cancel_user

    async def cancel_then_read_only(user_id: int) -> int:  # the disk goes read-only just after
        cancelled = await cancel_user(user_id)
        await db._conn.execute("PRAGMA query_only = ON")
        return cancelled

    pool.cancel_user = cancel_then_read_only  # type: ignore[method-assign]
    try:
        ix = await fake.slash(fake.user("admin"), "admin cancel", {"user": frank})
        reply = await private_reply(fake, ix)
    finally:
        pool.cancel_user = cancel_user  # type: ignore[method-assign]
        await db._conn.execute("PRAGMA query_only = OFF")

    assert reply.startswith("🚫 Cancelled 1 job of ")
    assert KEPT in reply
    assert await wait_for_status(db, busy, JobStatus.CANCELLED)
    entry = await audited(studio, "user.cancel_jobs", f"user:{frank.id}", before)
    assert entry.details == {"cancelled": 1}
