"""An admin takes a GPU worker out of service with /admin worker fail: the waiting jobs only it
could run fail with the admin's reason, new jobs are refused, and /admin worker restore brings it
back; both are audited."""

from __future__ import annotations

import pytest

from generation.jobs import JobStatus
from tests.bot.helpers import (
    SLOW_JOB,
    StudioWorld,
    answer,
    as_rendered,
    imagine,
    job_id_of,
    paused,
    polled,
    private_reply,
    text_of,
    wait_for_status,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_an_admin_fails_a_worker_and_restores_it(studio: StudioWorld) -> None:
    fake, pool = studio.fake, studio.services.pool
    admin = fake.user("admin")
    async with paused(studio):
        waiting = await imagine(fake, fake.user("alice"))
        said = await private_reply(
            fake,
            await fake.slash(admin, "admin worker fail", {"gpu": "cpu", "reason": "fan broken"}),
        )
        assert "`cpu` is out of service" in said
        assert await wait_for_status(studio.database, waiting, JobStatus.FAILED)
        stored = await studio.database.get_job(waiting)
        assert stored is not None
        assert stored.record.error == "No GPU could run this job: cpu is not working (fan broken)."
        refused = await answer(fake, await fake.slash(fake.user("bob"), "imagine", {"prompt": "x"}))
        assert "cpu: marked failed by an admin: fan broken" in text_of(refused)

    said = await private_reply(
        fake, await fake.slash(admin, "admin worker restore", {"gpu": "cpu"})
    )
    assert "Starting `cpu` again." in said
    await polled(lambda: _alive(pool))
    again = await imagine(fake, fake.user("bob"))
    assert await wait_for_status(studio.database, again, JobStatus.DONE)
    actions = [entry.action for entry in await studio.database.recent_audit(limit=10)]
    assert {"worker.mark_failed", "worker.restore"} <= set(actions)


async def _alive(pool) -> bool | None:  # type: ignore[no-untyped-def]
    return True if pool.alive_workers() == 1 else None


async def test_a_job_running_on_the_worker_an_admin_fails_fails_with_the_reason(
    studio: StudioWorld,
) -> None:
    fake, admin = studio.fake, studio.fake.user("admin")
    ix = await fake.slash(fake.user("erin"), "imagine", {"prompt": "a slow one", **SLOW_JOB})
    running = job_id_of(await answer(fake, ix))
    await wait_for_status(studio.database, running, JobStatus.RUNNING)

    await fake.slash(admin, "admin worker fail", {"gpu": "cpu", "reason": "maintenance"})

    reason = "No GPU could run this job: cpu is not working (maintenance)."
    assert await wait_for_status(studio.database, running, JobStatus.FAILED)
    stored = await studio.database.get_job(running)
    assert stored is not None
    assert stored.record.error == reason

    def told() -> str | None:
        shown = [as_rendered(text_of(m)) for m in ix.messages if not m.deleted]
        return next((text for text in shown if reason in text), None)

    assert await fake.wait_for(told, what="the job's message saying why it failed")
    await fake.slash(admin, "admin worker restore", {"gpu": "cpu"})
    await polled(lambda: _alive(studio.services.pool))
