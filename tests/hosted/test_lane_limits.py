"""The API lane against BFL's limits and faults, through the real pool, the fake BFL API on real
ports and a real SQLite store: a slot is one active task at BFL, ETAs follow every limit, a
submit whose reply was lost is never sent again, and the credit probe keeps an admin's pause."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from generation.hosted.outcomes import SENTENCES, Outcome
from generation.jobs import JobFailed, JobFinished, JobOwner, JobState, JobStatus
from generation.models import Catalogue
from storage import Database
from tests.generation.helpers import Recorder, make_pool, stored_pngs
from tests.hosted.fake_bfl import KEY
from tests.hosted.test_pool_lane import HeldBfl, api, lane


class PeakBfl(HeldBfl):
    """The held fake API that remembers the most tasks the key had active at once, and can
    hold a submit's reply after making its task (`reply_gate`), drop the connection instead
    of answering (`drop_reply`) or answer without a `polling_url` (`mangle_reply`)."""

    def __init__(self) -> None:
        super().__init__()
        self.peak = 0
        self.received = asyncio.Event()
        self.reply_gate = asyncio.Event()
        self.reply_gate.set()
        self.drop_reply = False
        self.mangle_reply = False

    async def _submit(self, request: web.Request) -> web.Response:
        response = await super()._submit(request)
        self.peak = max(self.peak, self.active(KEY))
        self.received.set()
        await self.reply_gate.wait()
        if self.drop_reply and request.transport is not None:
            request.transport.close()  # the task is made and charged; its reply never arrives
        if self.mangle_reply:
            return web.json_response({"id": "made-and-charged"})
        return response


@pytest.fixture
async def fake() -> AsyncIterator[PeakBfl]:
    server = PeakBfl()
    await server.start()
    yield server
    server.held.set()
    server.reply_gate.set()
    await server.close()


async def test_slots_bound_the_tasks_active_at_bfl_not_the_jobs(
    fake: PeakBfl, db: Database, catalogue: Catalogue
) -> None:
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, [], slots=2))
    events = Recorder(pool)
    await pool.start()
    try:
        fake.held.clear()
        jobs = [(await pool.submit(api(catalogue, count=4), JobOwner(n))).job_id for n in (1, 2)]
        await events.until(lambda: len(fake.tasks) >= 2)
        assert pool.job(jobs[1]).state is JobState.WAITING  # the first job holds both slots
        assert pool.job(jobs[1]).eta_s == pytest.approx(20.0)  # 4 images on 2 slots: 2 rounds
        fake.held.set()
        done = await events.finished(*jobs)
        assert all(isinstance(event, JobFinished) for event in done)
        assert fake.peak == 2  # never more tasks at BFL than slots
        assert [len(await stored_pngs(db, job)) for job in jobs] == [4, 4]
    finally:
        await pool.shutdown(drain=False)


async def test_kontext_max_jobs_keep_to_its_own_limit_and_their_etas_say_so(
    fake: PeakBfl, db: Database, catalogue: Catalogue
) -> None:
    options = {"slots": 4, "model_slots": {"flux-kontext-max": 1}}
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, [], **options))
    events = Recorder(pool)
    await pool.start()
    try:
        fake.held.clear()
        model = "flux-kontext-max"
        jobs = [
            (await pool.submit(api(catalogue, model=model, count=2), JobOwner(n))).job_id
            for n in (1, 2, 3)
        ]
        await events.until(lambda: fake.tasks)
        first, second, third = (pool.job(job) for job in jobs)
        assert first.state is JobState.HOSTED
        assert (second.state, second.eta_s) == (JobState.WAITING, pytest.approx(20.0))
        assert (third.state, third.eta_s) == (JobState.WAITING, pytest.approx(40.0))
        # another model is not held up by Kontext [max]'s own limit
        other = await pool.submit(api(catalogue), JobOwner(4))
        await events.until(lambda: pool.job(other.job_id).state is JobState.HOSTED)
        fake.held.set()
        await events.finished(*jobs, other.job_id)
        assert fake.active(KEY, model) == 0
        assert fake.peak <= 2  # one Kontext [max] task and the other model's
    finally:
        await pool.shutdown(drain=False)


async def test_the_credit_probe_does_not_undo_an_admins_pause(
    fake: PeakBfl, db: Database, catalogue: Catalogue
) -> None:
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, [], probe_every_s=0.01))
    events = Recorder(pool)
    await pool.start()
    try:
        fake.credits = 0
        first = (await pool.submit(api(catalogue), JobOwner(1))).job_id
        await events.finished(first)
        assert pool.hosted_paused
        pool.pause()  # /admin pause: nothing new starts
        fake.credits = 100
        await events.until(lambda: not pool.hosted_paused)  # the probe found credits
        job = (await pool.submit(api(catalogue), JobOwner(2))).job_id
        assert pool.job(job).state is JobState.WAITING
        assert len(fake.submitted) == 0
        pool.resume()  # the admin's resume starts it
        [done] = await events.finished(job)
        assert isinstance(done, JobFinished)
    finally:
        await pool.shutdown(drain=False)


async def test_a_submit_under_way_at_shutdown_is_not_sent_again_after_the_restart(
    fake: PeakBfl, db: Database, catalogue: Catalogue
) -> None:
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, []))
    await pool.start()
    fake.reply_gate.clear()
    job = (await pool.submit(api(catalogue), JobOwner(8))).job_id
    await asyncio.wait_for(fake.received.wait(), 10)
    await pool.shutdown(drain=False)  # BFL made and charged the task; its reply is lost
    fake.reply_gate.set()
    notes: list[str] = []
    again = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, notes))
    events = Recorder(again)
    await again.start()
    try:
        [failed] = await events.finished(job)
        assert isinstance(failed, JobFailed)
        assert failed.reason == SENTENCES[Outcome.UNCONFIRMED]
        assert len(fake.submitted) == 1  # never two tasks for one image
        assert await db.spent(0, 8) == 1000 - fake.credits == 4  # the ledger counts it
        assert (await db.get_job(job)).record.status is JobStatus.FAILED
        assert any(f"Job {job}" in note for note in notes)  # the admins can look it up
    finally:
        await again.shutdown(drain=False)


async def test_a_submit_whose_reply_is_lost_is_not_sent_again(
    fake: PeakBfl, db: Database, catalogue: Catalogue
) -> None:
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, []))
    events = Recorder(pool)
    await pool.start()
    try:
        fake.drop_reply = True
        job = (await pool.submit(api(catalogue), JobOwner(9))).job_id
        [failed] = await events.finished(job)
        assert isinstance(failed, JobFailed)
        assert failed.reason == SENTENCES[Outcome.UNCONFIRMED]
        assert len(fake.submitted) == 1
        assert await db.spent(0, 9) == 1000 - fake.credits == 4
    finally:
        await pool.shutdown(drain=False)


async def test_an_unusable_submit_reply_counts_what_bfl_may_have_charged(
    fake: PeakBfl, db: Database, catalogue: Catalogue
) -> None:
    notes: list[str] = []
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, notes))
    events = Recorder(pool)
    await pool.start()
    try:
        fake.mangle_reply = True
        job = (await pool.submit(api(catalogue), JobOwner(10))).job_id
        [failed] = await events.finished(job)
        assert isinstance(failed, JobFailed)
        assert failed.reason == SENTENCES[Outcome.BAD_REPLY]
        assert len(fake.submitted) == 1
        assert await db.spent(0, 10) == 1000 - fake.credits == 4
        assert any("polling_url" in note for note in notes)
    finally:
        await pool.shutdown(drain=False)
