"""API jobs in the real pool: the key's task slots as a second fair resource beside a real GPU
worker process (the stand-in engine), the fake BFL API on real ports, a real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from generation.errors import ModelUnavailable, OverBudget
from generation.hosted.backend import HostedBackend
from generation.hosted.outcomes import SENTENCES, Outcome
from generation.jobs import (
    JobFailed,
    JobFinished,
    JobOwner,
    JobStarted,
    JobState,
    JobStatus,
)
from generation.models import Catalogue
from generation.pool.hosted import HostedLane, HostedSettings
from generation.request import build_request
from storage import Database
from storage.credits import SERVER, Period
from tests.bot.helpers import polled
from tests.generation.helpers import Recorder, make_pool, stored_pngs
from tests.hosted.conftest import FAST, settings
from tests.hosted.fake_bfl import FakeBfl


class HeldBfl(FakeBfl):
    """The fake API whose polls wait while `held` is clear (a task stays Pending)."""

    def __init__(self) -> None:
        super().__init__()
        self.held = asyncio.Event()
        self.held.set()

    async def _get_result(self, request: web.Request) -> web.Response:
        await self.held.wait()
        return await super()._get_result(request)


@pytest.fixture
async def fake() -> AsyncIterator[HeldBfl]:
    server = HeldBfl()
    await server.start()
    yield server
    server.held.set()
    await server.close()


def lane(
    fake: FakeBfl, db: Database, catalogue: Catalogue, notes: list[str], **options: Any
) -> Callable[[Callable[[], float]], HostedLane]:
    def build(clock: Callable[[], float]) -> HostedLane:
        backend = HostedBackend(settings(fake), db, timing=FAST)
        chosen = HostedSettings(**options)
        return HostedLane(
            backend, catalogue.hosted, db, chosen, clock=clock, on_admin_note=notes.append
        )

    return build


def api(catalogue: Catalogue, **fields: Any):
    fields.setdefault("model", "flux-pro-1.1")
    return build_request(catalogue, prompt="a lighthouse at dusk", seed=42, **fields)


def gpu(catalogue: Catalogue):
    return build_request(
        catalogue, prompt="a fox", model="playground-v2.5", width=256, height=256, steps=5
    )


async def test_a_gpu_job_and_an_api_job_run_side_by_side_and_neither_waits(
    fake: HeldBfl, db: Database, catalogue: Catalogue
) -> None:
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, []))
    events = Recorder(pool)
    await pool.start()
    try:
        fake.held.clear()  # the API job stays Pending while the GPU works
        api_job = (await pool.submit(api(catalogue), JobOwner(1))).job_id
        await events.until(lambda: fake.tasks)
        snapshot = pool.job(api_job)
        assert snapshot is not None
        assert snapshot.state is JobState.HOSTED
        queued = await pool.submit(gpu(catalogue), JobOwner(2))
        gpu_job = queued.job_id
        assert queued.position == 1
        assert queued.eta_s is not None
        [done] = await events.finished(gpu_job)  # the GPU does not wait for the API job
        assert isinstance(done, JobFinished)
        assert pool.job(api_job) is not None  # still on the API
        fake.held.set()
        [api_done] = await events.finished(api_job)
        assert isinstance(api_done, JobFinished)
        assert api_done.image_count == 1
        assert [e.worker for e in events.by_job[api_job] if isinstance(e, JobStarted)] == [
            "bfl-api"
        ]
        # every event carries the job as it stands, as for GPU jobs (what the bot renders)
        [started] = [e for e in events.by_job[api_job] if isinstance(e, JobStarted)]
        assert (started.job.state, started.job.worker) == (JobState.HOSTED, "bfl-api")
        assert (api_done.job.state, api_done.job.image_count) == (JobState.DONE, 1)
        assert len(await stored_pngs(db, api_job)) == 1
        assert (await db.get_job(api_job)).record.status is JobStatus.DONE
        # the reply's cost settled the reservation; no GPU-seconds were charged
        assert await db.spent(0, 1) == 4
        assert await db.spent(0, 2) == 0
    finally:
        await pool.shutdown(drain=False)


async def test_api_slots_are_shared_fairly_by_credits(
    fake: HeldBfl, db: Database, catalogue: Catalogue
) -> None:
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, [], slots=1))
    events = Recorder(pool)
    await pool.start()
    try:
        fake.held.clear()
        heavy = [
            (await pool.submit(api(catalogue, model="flux-2-max"), JobOwner(1))).job_id
            for _ in range(3)
        ]
        light = (await pool.submit(api(catalogue), JobOwner(2))).job_id
        await events.until(lambda: fake.tasks)
        assert pool.job(light).position == 1  # behind nobody: person 1 already has a slot
        assert pool.job(heavy[2]).position == 3
        assert pool.job(light).eta_s == pytest.approx(10.0)  # one job ahead on one slot
        fake.held.set()
        await events.finished(*heavy, light)
        started = [e.job_id for e in events.events if isinstance(e, JobStarted)]
        assert started == [heavy[0], light, heavy[1], heavy[2]]
        assert pool.hosted_latency("flux-pro-1.1") < 10.0  # measured, not the guess
    finally:
        await pool.shutdown(drain=False)


def test_kontext_max_never_gets_more_than_its_slots(db: Database, catalogue: Catalogue) -> None:
    made = HostedLane(
        None,  # type: ignore[arg-type]  # free_slots needs no backend
        catalogue.hosted,
        db,
        HostedSettings(slots=4, model_slots={"flux-kontext-max": 2}),
        clock=lambda: 0.0,
    )
    made.held = {1: ("flux-pro-1.1", 1)}
    views = made.free_slots()
    assert len(views) == 3
    assert sum(v.may_run("flux-kontext-max") for v in views) == 2
    made.held = {i: ("flux-kontext-max", 1) for i in range(2)}
    assert not any(v.may_run("flux-kontext-max") for v in made.free_slots())
    assert all(v.may_run("flux-pro-1.1") for v in made.free_slots())
    made.held = {1: ("flux-kontext-max", 2)}  # one job of two images holds both
    assert not any(v.may_run("flux-kontext-max") for v in made.free_slots())


async def test_a_job_over_budget_when_it_is_sent_fails_with_what_is_left_and_nothing_is_sent(
    fake: HeldBfl, db: Database, catalogue: Catalogue
) -> None:
    await db.set_budget(5, Period.DAY, 10, by=99)
    await db.set_budget(SERVER, Period.MONTH, 100, by=99)
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, [], slots=1))
    events = Recorder(pool)
    await pool.start()
    try:
        fake.held.clear()
        first = (await pool.submit(api(catalogue), JobOwner(5))).job_id
        await events.until(lambda: pool.job(first).state is JobState.HOSTED)
        second = (await pool.submit(api(catalogue), JobOwner(5))).job_id  # 8 of 10: accepted
        await db.set_budget(5, Period.DAY, 6, by=99)  # lowered while it waits
        fake.held.set()
        await events.finished(first)
        [refused] = await events.finished(second)
        assert isinstance(refused, JobFailed)
        assert refused.reason == (
            "This job would cost about 4 credits, but your daily budget has 2 of 6 credits "
            "left today (UTC)."
        )
        assert (refused.job.state, refused.job.error) == (JobState.FAILED, refused.reason)
        assert len(fake.submitted) == 1
        assert await db.spent(0, 5) == 4
    finally:
        await pool.shutdown(drain=False)


async def test_out_of_credits_tells_the_admins_once_and_holds_api_jobs_until_resumed(
    fake: HeldBfl, db: Database, catalogue: Catalogue
) -> None:
    notes: list[str] = []
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, notes))
    events = Recorder(pool)
    await pool.start()
    try:
        fake.credits = 0
        jobs = [(await pool.submit(api(catalogue), JobOwner(n))).job_id for n in (1, 2)]
        ends = await events.finished(*jobs)
        assert all(isinstance(end, JobFailed) for end in ends)
        assert ends[0].reason == SENTENCES[Outcome.NO_CREDITS]
        assert len(notes) == 1
        assert "402" in notes[0]
        with pytest.raises(ModelUnavailable, match="out of credits"):
            await pool.submit(api(catalogue), JobOwner(3))
        gpu_job = (await pool.submit(gpu(catalogue), JobOwner(3))).job_id  # GPUs carry on
        assert isinstance((await events.finished(gpu_job))[0], JobFinished)
        fake.credits = 100
        assert pool.resume_hosted()
        again = (await pool.submit(api(catalogue), JobOwner(3))).job_id
        assert isinstance((await events.finished(again))[0], JobFinished)
        assert len(notes) == 1
    finally:
        await pool.shutdown(drain=False)


async def test_the_credit_probe_resumes_api_jobs(
    fake: HeldBfl, db: Database, catalogue: Catalogue
) -> None:
    probed = asyncio.Event()

    async def sleep(seconds: float) -> None:  # the probe's clock: one tick per wait
        await probed.wait()
        probed.clear()

    build = lane(fake, db, catalogue, [])
    pool = make_pool(catalogue, db, hosted=build, sleep=sleep)
    events = Recorder(pool)
    await pool.start()
    try:
        fake.credits = 0
        job = (await pool.submit(api(catalogue), JobOwner(1))).job_id
        await events.finished(job)
        assert pool.hosted_paused
        probed.set()  # a probe with no credits yet
        await events.until(lambda: not probed.is_set())
        assert pool.hosted_paused
        fake.credits = 50
        probed.set()
        await events.until(lambda: not pool.hosted_paused)
    finally:
        probed.set()
        await pool.shutdown(drain=False)


async def test_a_restart_mid_poll_polls_the_stored_task_and_sends_nothing_again(
    fake: HeldBfl, db: Database, catalogue: Catalogue
) -> None:
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, []))
    events = Recorder(pool)
    await pool.start()
    fake.held.clear()
    job = (await pool.submit(api(catalogue), JobOwner(1))).job_id
    await events.until(lambda: fake.tasks)
    await events.until(lambda: pool.job(job).state is JobState.HOSTED)
    await pool.shutdown(drain=False)
    assert (await db.get_job(job)).record.status is JobStatus.RUNNING

    fake.held.set()
    again = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, []))
    events = Recorder(again)
    await again.start()
    try:
        [done] = await events.finished(job)
        assert isinstance(done, JobFinished)
        assert len(fake.submitted) == 1
        assert await db.spent(0, 1) == 4  # reserved once, settled once
    finally:
        await again.shutdown(drain=False)


async def test_cancelling_an_api_job_charges_what_was_sent(
    fake: HeldBfl, db: Database, catalogue: Catalogue
) -> None:
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, []))
    await pool.start()
    try:
        fake.held.clear()
        job = (await pool.submit(api(catalogue, count=2), JobOwner(1))).job_id

        async def both_stored() -> list | None:  # the fake answers before the store write
            tasks = [task for task in await db.hosted_tasks(job) if not task.sending]
            return tasks if len(tasks) == 2 else None

        await polled(both_stored)
        assert await pool.cancel(job)
        assert (await db.get_job(job)).record.status is JobStatus.CANCELLED
        assert await db.spent(0, 1) == 8
    finally:
        await pool.shutdown(drain=False)


async def test_a_cancelled_task_whose_reply_gave_no_cost_is_charged_at_its_estimate(
    fake: HeldBfl, db: Database, catalogue: Catalogue
) -> None:
    fake.costless = True
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, []))
    await pool.start()
    try:
        fake.held.clear()
        job = (await pool.submit(api(catalogue), JobOwner(1))).job_id

        async def stored() -> list | None:
            return await db.hosted_tasks(job) or None

        [task] = await polled(stored)
        assert task.cost is None
        assert await pool.cancel(job)
        assert await db.spent(0, 1) == 4  # as a finished job with such a reply is charged
    finally:
        await pool.shutdown(drain=False)


class SlowReplyBfl(HeldBfl):
    """The fake API that accepts a task (and takes its credits) at once but holds the submit
    reply while `replying` is clear: a cancel can land between BFL's charge and Atelier's
    store write."""

    def __init__(self) -> None:
        super().__init__()
        self.replying = asyncio.Event()

    async def _submit(self, request: web.Request) -> web.Response:
        reply = await super()._submit(request)
        await self.replying.wait()
        return reply


async def test_a_cancel_after_bfl_accepted_the_task_but_before_its_reply_is_charged(
    db: Database, catalogue: Catalogue
) -> None:
    fake = SlowReplyBfl()
    await fake.start()
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, []))
    await pool.start()
    try:
        job = (await pool.submit(api(catalogue), JobOwner(1))).job_id

        async def accepted() -> bool | None:  # BFL took the task (and its credits)
            return bool(fake.tasks) or None

        await polled(accepted)
        cancelling = asyncio.ensure_future(pool.cancel(job))
        await asyncio.sleep(0)  # `cancel` runs up to waiting for the job's end
        assert not cancelling.done()
        fake.replying.set()
        assert await cancelling
        assert (await db.get_job(job)).record.status is JobStatus.CANCELLED
        assert [task.cost for task in await db.hosted_tasks(job)] == [4]
        assert await db.spent(0, 1) == 4
    finally:
        fake.replying.set()
        await pool.shutdown(drain=False)
        await fake.close()


async def test_a_job_that_would_pass_a_budget_with_those_waiting_is_refused_at_once(
    fake: HeldBfl, db: Database, catalogue: Catalogue
) -> None:
    await db.set_budget(5, Period.DAY, 10, by=99)
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, [], slots=1))
    events = Recorder(pool)
    await pool.start()
    try:
        fake.held.clear()  # the first job stays Pending: the second waits for the one slot
        running = (await pool.submit(api(catalogue), JobOwner(5))).job_id
        await events.until(lambda: pool.job(running).state is JobState.HOSTED)
        waiting = (await pool.submit(api(catalogue), JobOwner(5))).job_id
        with pytest.raises(OverBudget) as refused:
            await pool.submit(api(catalogue), JobOwner(5))
        assert str(refused.value) == (
            "This job would cost about 4 credits, but your daily budget has 2 of 10 credits "
            "left today (UTC) after the jobs still waiting (4 credits)."
        )
        other = (await pool.submit(api(catalogue), JobOwner(6))).job_id  # their own budget
        assert other == waiting + 1  # the refused job was never stored
        fake.held.set()
        ends = await events.finished(running, waiting, other)
        assert all(isinstance(end, JobFinished) for end in ends)
        assert await db.spent(0, 5) == 8
    finally:
        fake.held.set()
        await pool.shutdown(drain=False)
