"""What decided a job's pixels (`RunFacts`) is stored with the job; jobs made before the column
existed (a version-1 database) read back with no facts and stay rerunnable."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from importlib import resources
from pathlib import Path

from generation.jobs import JobStatus, RunFacts
from generation.request import GenerationRequest, JobKind
from storage import Database
from storage.schema import APPLICATION_ID
from tests.storage.conftest import images_for, owner

FACTS = RunFacts(
    model_revision="0123abcd",
    diffusers="0.42.1",
    torch="2.13.0",
    device_type="cpu",
    precision="float32",
    prompt_cut_at=40,
    prompt_limit="77 CLIP tokens",
)


async def test_facts_are_recorded_with_the_finished_job(db: Database, make_request) -> None:
    request = make_request(count=2)
    job_id = await db.create_job(request, owner())
    await db.mark_running(job_id, "cpu")
    images = [replace(image, facts=FACTS) for image in images_for(request, 3)]
    await db.mark_done(job_id, images, gpu_seconds=1.0)

    stored = await db.get_job(job_id)
    assert stored is not None
    assert stored.record.facts == FACTS


async def test_jobs_made_before_facts_were_recorded_stay_rerunnable(
    tmp_path: Path, make_request
) -> None:
    path = tmp_path / "old.db"
    first = resources.files("storage").joinpath("migrations", "0001_initial.sql").read_text()
    request: GenerationRequest = make_request(seed=11)
    with sqlite3.connect(path) as conn:  # the schema and a finished job as version 1 wrote them
        conn.executescript(first)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO jobs (user_id, priority, weight, model, kind, request, status, queued_at)"
            " VALUES (1, 'normal', 1.0, ?, 'new', ?, 'done', 0)",
            (request.model, request.to_json()),
        )
    async with await Database.open(path) as db:
        (record,) = (await db.history(1)).jobs
        assert record.status is JobStatus.DONE
        assert record.facts is None
        assert record.request == request
        rerun = replace(record.request, parent_job=record.id, kind=JobKind.RERUN)
        job_id = await db.create_job(rerun, owner(user_id=1))
        await db.mark_running(job_id, "cpu")
        await db.mark_done(job_id, [replace(i, facts=FACTS) for i in images_for(rerun, 1)], 1.0)
        stored = await db.get_job(job_id)
        assert stored is not None
        assert stored.record.facts == FACTS


async def test_the_memory_profile_is_recorded_and_old_jobs_ran_full(
    tmp_path: Path, make_request
) -> None:
    path = tmp_path / "old.db"
    first = resources.files("storage").joinpath("migrations", "0001_initial.sql").read_text()
    request: GenerationRequest = make_request(seed=12)
    with sqlite3.connect(path) as conn:  # a job finished before profiles existed
        conn.executescript(first)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO jobs (user_id, priority, weight, model, kind, request, status, queued_at)"
            " VALUES (1, 'normal', 1.0, ?, 'new', ?, 'done', 0)",
            (request.model, request.to_json()),
        )
    async with await Database.open(path) as db:
        (old,) = (await db.history(1)).jobs
        assert old.profile == "full"
        assert old.request.profile is None  # its stored request has no such key
        job_id = await db.create_job(request, owner(user_id=1))
        await db.mark_running(job_id, "cpu")
        fp8 = replace(FACTS, profile="fp8")
        await db.mark_done(job_id, [replace(i, facts=fp8) for i in images_for(request, 1)], 1.0)
        stored = await db.get_job(job_id)
        assert stored is not None
        assert (stored.record.profile, stored.record.facts) == ("fp8", fp8)
