"""Admission through the real pool and SQLite: concurrent submits cannot overshoot the limits,
and a paused queue claims no start time."""

from __future__ import annotations

import asyncio

import pytest

from generation.jobs import JobOwner
from generation.models import Catalogue
from generation.pool import QueueFull
from generation.scheduler import SchedulerSettings
from storage import Database
from tests.generation.helpers import make_pool, request


@pytest.mark.parametrize(
    "settings",
    [SchedulerSettings(queue_capacity=3), SchedulerSettings(max_queued=3)],
    ids=["queue_capacity", "max_queued"],
)
async def test_concurrent_submits_never_pass_a_limit(
    database: Database, settings: SchedulerSettings
) -> None:
    """Ten /imagine at the same moment while paused (the check used to come before the
    database write's await, under a lock per person): exactly three are accepted."""
    catalogue = Catalogue.builtin()
    pool = make_pool(catalogue, database, settings=settings)
    await pool.start()
    pool.pause()
    same_person = settings.max_queued == 3
    results = await asyncio.gather(
        *(
            pool.submit(request(catalogue), JobOwner(1 if same_person else user))
            for user in range(10)
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(r, QueueFull) for r in results) == 7
    assert pool.snapshot(0).queued == 3
    assert len(await database.unfinished_jobs()) == 3
    await pool.shutdown(drain=False)


async def test_a_paused_queue_gives_no_start_time(database: Database) -> None:
    catalogue = Catalogue.builtin()
    pool = make_pool(catalogue, database)
    await pool.start()
    pool.pause()
    queued = await pool.submit(request(catalogue), JobOwner(1))
    assert queued.eta_s is None
    assert pool.job(queued.job_id).position == 1
    assert pool.job(queued.job_id).eta_s is None
    await pool.shutdown(drain=False)
