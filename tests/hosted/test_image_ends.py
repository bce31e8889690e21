"""A job of several API images whose images end differently, or are cancelled or stopped while
one image's submit is on its way (issue 16's second tester): the real pool, the fake BFL API on
real ports, a real SQLite store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from generation.jobs import JobFailed, JobFinished, JobOwner, JobStatus
from generation.models import Catalogue
from generation.pool.durable import ERASED
from storage import Database
from tests.generation.helpers import Recorder, make_pool, stored_pngs
from tests.hosted.test_lane_store_faults import RefusingStore, pool_on, stalled
from tests.hosted.test_pool_lane import HeldBfl, api, gpu, lane

# How long a test lets a wrong early end show before it releases a held reply. A correct pool
# cannot end the job before the release, so this window never makes a test flaky; it only
# gives a faulty pool the time to show its fault.
WINDOW_S = 0.5


class GatedBfl(HeldBfl):
    """The fake API that holds the reply to the submit of seed `gated_seed` until `gate` is
    set (BFL has made and charged the task by then) and charges `extra` credits more than the
    published price for every task (the reply's `cost` is what counts)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.gated_seed: int | None = None
        self.received = asyncio.Event()
        self.extra = 0.0

    async def _submit(self, request: web.Request) -> web.Response:
        seed = (await request.json()).get("seed")
        response = await super()._submit(request)
        if response.status == 200 and self.extra:
            reply = json.loads(response.body)
            reply["cost"] += self.extra
            self.credits -= self.extra
            response = web.json_response(reply)
        if seed == self.gated_seed:
            self.received.set()
            await self.gate.wait()
        return response


@pytest.fixture
async def fake() -> AsyncIterator[GatedBfl]:
    server = GatedBfl()
    await server.start()
    yield server
    server.held.set()
    server.gate.set()
    await server.close()


async def test_a_402_after_a_moderated_image_is_told_to_the_admins(
    fake: GatedBfl, db: Database, catalogue: Catalogue
) -> None:
    notes: list[str] = []
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, notes, slots=1))
    events = Recorder(pool)
    await pool.start()
    try:
        fake.credits = 4  # one image's worth: the second image's submit is answered 402
        fake.seed_scripts = {42: ["Pending:0.5", "Content Moderated"]}
        job = (await pool.submit(api(catalogue, count=2), JobOwner(3))).job_id
        [end] = await events.finished(job)
        assert isinstance(end, JobFailed)
        assert end.reason == (
            "⚠️ Image 1 of 2 was blocked by Black Forest Labs' moderation.\n"
            "⚠️ Image 2 of 2 was not made: the Black Forest Labs account ran out of credits."
        )
        assert pool.hosted_paused
        assert any("out of credits (HTTP 402)" in note for note in notes), notes
    finally:
        await pool.shutdown(drain=False)


async def test_a_402_after_a_made_and_a_moderated_image_is_told_to_the_admins(
    fake: GatedBfl, db: Database, catalogue: Catalogue
) -> None:
    notes: list[str] = []
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, notes, slots=1))
    events = Recorder(pool)
    await pool.start()
    try:
        fake.credits = 8  # two images' worth
        fake.seed_scripts = {43: ["Pending:0.5", "Content Moderated"]}
        job = (await pool.submit(api(catalogue, count=3), JobOwner(3))).job_id
        [end] = await events.finished(job)
        assert isinstance(end, JobFinished)
        assert end.image_count == 1
        assert any("out of credits (HTTP 402)" in note for note in notes), notes
    finally:
        await pool.shutdown(drain=False)


async def test_a_cancel_waits_for_one_images_submit_and_charges_what_bfl_charged(
    fake: GatedBfl, db: Database, catalogue: Catalogue
) -> None:
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, [], slots=1))
    await pool.start()
    try:
        fake.extra = 1.0  # BFL's reply says 5 credits; the estimate is 4
        fake.gated_seed = 42
        fake.gate.clear()
        job = (await pool.submit(api(catalogue, count=2), JobOwner(7))).job_id
        await fake.received.wait()  # image 1's submit is at BFL; image 2 waits for the slot
        cancel = asyncio.ensure_future(pool.cancel(job))
        await asyncio.wait([cancel], timeout=WINDOW_S)
        assert not cancel.done()  # it waits for the reply of the image on its way
        fake.gate.set()
        assert await cancel
        assert (await db.get_job(job)).record.status is JobStatus.CANCELLED
        assert len(fake.submitted) == 1  # image 2 was never sent
        assert await db.spent(0, 7) == 5 == 1000 - fake.credits
    finally:
        await pool.shutdown(drain=False)


async def test_a_shutdown_during_one_images_submit_keeps_it_for_the_next_start(
    fake: GatedBfl, db: Database, catalogue: Catalogue
) -> None:
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, [], slots=2))
    await pool.start()
    fake.held.clear()  # image 1 stays Pending
    fake.gated_seed = 43  # image 2's reply is held
    fake.gate.clear()
    job = (await pool.submit(api(catalogue, count=2), JobOwner(9))).job_id
    await fake.received.wait()
    stop = asyncio.ensure_future(pool.shutdown(drain=False))
    await asyncio.wait([stop], timeout=WINDOW_S)
    assert not stop.done()  # it waits for the reply of the image on its way
    fake.gate.set()
    await stop
    assert all(not task.sending for task in await db.hosted_tasks(job))

    fake.held.set()
    again = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, [], slots=2))
    events = Recorder(again)
    await again.start()
    try:
        [end] = await events.finished(job)
        assert isinstance(end, JobFinished)
        assert end.image_count == 2
        assert len(await stored_pngs(db, job)) == 2
        assert len(fake.submitted) == 2  # each image sent once
    finally:
        await again.shutdown(drain=False)


async def test_a_cancel_before_anything_was_sent_sends_nothing(
    fake: GatedBfl, db: Database, catalogue: Catalogue
) -> None:
    store = RefusingStore(db)
    store.refused.add("save_hosted_task")  # the "submit under way" record cannot be written
    retry = asyncio.Event()
    pool = pool_on(store, fake, catalogue, retry)
    events = Recorder(pool)
    await pool.start()
    try:
        job = (await pool.submit(api(catalogue), JobOwner(1))).job_id
        await events.until(lambda: stalled(events, job))
        assert await asyncio.wait_for(pool.cancel(job), 10)  # the store is not needed for it
        store.refused.clear()
        retry.set()  # a retry that a faulty pool would still make
        assert (await db.get_job(job)).record.status is JobStatus.CANCELLED
        assert fake.submitted == []
        assert await db.spent(0, 1) == 0
        assert await db.hosted_tasks(job) == []
    finally:
        await pool.shutdown(drain=False)


async def test_erasing_a_person_while_their_api_job_runs_ends_it_for_its_followers(
    fake: GatedBfl, db: Database, catalogue: Catalogue, caplog
) -> None:
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, []))
    events = Recorder(pool)
    await pool.start()
    try:
        fake.held.clear()  # both images stay Pending
        job = (await pool.submit(api(catalogue, count=2), JobOwner(5))).job_id
        await events.until(lambda: len(fake.tasks) == 2)
        assert await db.delete_user(5) == 1  # `python -m storage delete-user 5`
        fake.held.set()
        [end] = await events.finished(job)
        assert isinstance(end, JobFailed)
        assert end.reason == ERASED
        assert await db.get_job(job) is None
        assert await db.read_image(job, 0) is None
        assert pool.job(job) is None
        later = (await pool.submit(api(catalogue), JobOwner(6))).job_id
        [done] = await events.finished(later)
        assert isinstance(done, JobFinished)
    finally:
        await pool.shutdown(drain=False)
    assert "Pool task" not in caplog.text


async def test_erasing_a_person_whose_jobs_wait_ends_them_and_sends_nothing(
    fake: GatedBfl, db: Database, catalogue: Catalogue, caplog
) -> None:
    pool = make_pool(catalogue, db, hosted=lane(fake, db, catalogue, [], slots=1))
    events = Recorder(pool)
    await pool.start()
    try:
        pool.pause()  # both wait: an API job and a GPU job (on the stand-in worker)
        waiting = [
            (await pool.submit(request, JobOwner(5))).job_id
            for request in (api(catalogue), gpu(catalogue))
        ]
        assert await db.delete_user(5) == 2
        pool.resume()
        ends = await events.finished(*waiting)
        assert [(type(end), end.reason) for end in ends] == [(JobFailed, ERASED)] * 2
        assert fake.submitted == []
    finally:
        await pool.shutdown(drain=False)
    assert "Pool task" not in caplog.text
