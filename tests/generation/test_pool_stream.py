"""A subscriber that falls behind (`generation.pool.stream`): each job's steps, places and stalls
coalesce to the latest, so its memory stays bounded and it loses nothing a person must see.

First the stream alone with hand-made events, then the real pool (stand-in workers, real SQLite)
with a subscriber that reads nothing until the end."""

from __future__ import annotations

import asyncio

from generation.jobs import (
    JobEvent,
    JobFinished,
    JobOwner,
    JobProgress,
    JobQueued,
    JobStalled,
    JobStarted,
    JobState,
)
from generation.models import Catalogue
from generation.pool import EventStream
from storage import Database
from tests.generation.helpers import Recorder, make_pool, request
from tests.generation.test_pool_store_stalls import RefusesFinishes
from tests.snapshots import snapshot


def place(job_id: int, position: int) -> JobQueued:
    job = snapshot(job_id, JobState.WAITING, position=position, eta_s=10.0)
    return JobQueued(job_id, position, 10.0, job=job)


def step(job_id: int, number: int) -> JobProgress:
    job = snapshot(job_id, JobState.RUNNING, step=number, total=30)
    return JobProgress(job_id, number, 30, job=job)


def stall(job_id: int, retry_in_s: float) -> JobStalled:
    job = snapshot(job_id, JobState.SAVING, problem="read-only", retry_in_s=retry_in_s)
    return JobStalled(job_id, "read-only", retry_in_s, job=job)


async def read_all(stream: EventStream) -> list[JobEvent]:
    stream.put(None)  # the end, as a shutdown puts it
    return [event async for event in stream]


async def test_a_place_told_while_the_stream_is_full_of_steps_still_arrives() -> None:
    stream = EventStream(set(), limit=3)
    stream.put(place(7, 2))  # job 7 moved to place 2: its only update
    for number in range(5):
        stream.put(step(1, number))

    events = await read_all(stream)

    assert [e.job.position for e in events if e.job_id == 7] == [2]
    assert [e.step for e in events if isinstance(e, JobProgress)][-1] == 4  # the latest step


async def test_a_jobs_later_place_replaces_its_earlier_one_in_a_full_stream() -> None:
    stream = EventStream(set(), limit=2)
    for job_id in (7, 8):
        stream.put(place(job_id, job_id - 5))
    stream.put(place(7, 1))  # 7 moved up again before anyone read its first move

    events = await read_all(stream)

    assert [(e.job_id, e.job.position) for e in events] == [(7, 1), (8, 3)]
    assert stream.coalesced == 1


async def test_a_step_never_jumps_ahead_of_its_jobs_start() -> None:
    stream = EventStream(set(), limit=1)
    stream.put(place(3, 1))
    started = JobStarted(3, "cpu:0", job=snapshot(3, JobState.RUNNING))
    stream.put(started)
    stream.put(step(3, 1))
    stream.put(step(3, 2))

    events = await read_all(stream)

    assert [type(e).__name__ for e in events] == ["JobQueued", "JobStarted", "JobProgress"]
    assert events[-1].job.step == 2


async def test_ten_thousand_stalls_of_one_job_keep_one_in_a_full_stream() -> None:
    stream = EventStream(set(), limit=3)
    for attempt in range(10_000):
        stream.put(stall(1, 60.0 + attempt))

    assert len(stream) <= 3
    events = await read_all(stream)
    assert events[-1].job.retry_in_s == 60.0 + 9_999  # the latest word on the stall


# ---- the real pool --------------------------------------------------------------------------


async def test_a_slow_subscriber_hears_every_waiting_jobs_current_place(
    catalogue: Catalogue, database: Database
) -> None:
    pool = make_pool(catalogue, database)
    await pool.start()
    pool.pause()  # nothing starts: the places move only as jobs are cancelled
    slow = pool.subscribe(limit=3)
    ids = [(await pool.submit(request(catalogue), JobOwner(user))).job_id for user in range(8)]
    for job_id in ids[:3]:
        assert await pool.cancel(job_id)
    await asyncio.sleep(0)  # the board pushes the last move's places at the next turn
    now = {job_id: pool.job(job_id).position for job_id in ids[3:]}  # type: ignore[union-attr]
    await pool.shutdown()

    last = {event.job_id: event.job.position async for event in slow}
    assert {job_id: last[job_id] for job_id in ids[3:]} == now
    assert now == {job_id: place for place, job_id in enumerate(ids[3:], start=1)}


async def test_a_long_stall_keeps_a_slow_subscribers_stream_bounded(
    catalogue: Catalogue, database: Database
) -> None:
    store = RefusesFinishes(database)
    tries = 0

    async def sleep(seconds: float) -> None:  # the test's clock: every retry is due at once
        nonlocal tries
        tries += 1
        if tries == 500:
            store.refused.clear()
        await asyncio.sleep(0)

    pool = make_pool(catalogue, store, sleep=sleep)  # type: ignore[arg-type]
    recorder = Recorder(pool)
    await pool.start()
    slow = pool.subscribe(limit=5)
    job = (await pool.submit(request(catalogue, steps=2), JobOwner(1))).job_id
    store.refused.add(job)
    await recorder.finished(job)

    assert tries >= 500
    assert sum(isinstance(e, JobStalled) for e in recorder.by_job[job]) >= 500  # all told live
    assert len(slow) <= 5 + 4  # the limit, then at most the job's start, end and one stall
    await pool.shutdown()
    events = [event async for event in slow]
    assert isinstance(events[-1], JobFinished)
