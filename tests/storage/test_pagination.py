"""History pagination over 12,000 jobs: every job seen exactly once, in order, both ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.models import Catalogue
from generation.request import build_request
from storage import Database
from tests.storage.conftest import owner

USER = 77
JOBS = 12_000
MODELS = ("playground-v2.5", "flux-dev", "flux-schnell")


@pytest.fixture(scope="module")
def big_db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("big") / "atelier.db"


@pytest.fixture
async def big_db(big_db_path: Path, catalogue: Catalogue) -> Database:
    """12,000 jobs of one user (plus others' jobs interleaved), inserted in one transaction."""
    db = await Database.open(big_db_path)
    if (await db.queue_snapshot(limit=1)).queued_total == 0:
        jobs = []
        for i in range(JOBS):
            request = build_request(
                catalogue, prompt=f"study {i} of a {'cat' if i % 10 == 0 else 'dog'}",
                model=MODELS[i % 3], seed=i,
            )  # fmt: skip
            jobs.append((request, owner(user_id=USER if i % 4 else 78)))
        await db.create_jobs(jobs)
    yield db
    await db.close()


async def test_walking_all_pages_sees_every_job_once_newest_first(big_db: Database) -> None:
    seen, before, pages = [], None, 0
    while True:
        page = await big_db.history(USER, limit=50, before=before)
        seen += [job.id for job in page.jobs]
        pages += 1
        if page.older is None:
            break
        before = page.older
    expected_count = sum(1 for i in range(JOBS) if i % 4)
    assert len(seen) == expected_count == len(set(seen))
    assert seen == sorted(seen, reverse=True)
    assert pages == -(-expected_count // 50)
    assert all(job.owner.user_id == USER for job in page.jobs)

    # and back again, from the oldest page towards the newest
    back, after = [], page.newer
    back += [job.id for job in page.jobs]
    while after is not None:
        newer_page = await big_db.history(USER, limit=50, after=after)
        back = [job.id for job in newer_page.jobs] + back
        after = newer_page.newer
    assert back == seen


async def test_filtered_pages_at_scale(big_db: Database) -> None:
    cats, before = [], None
    while True:
        page = await big_db.history(USER, limit=100, before=before, model="flux-dev", text="cat")
        cats += page.jobs
        if page.older is None:
            break
        before = page.older
    expected = [i for i in range(JOBS) if i % 4 and i % 10 == 0 and MODELS[i % 3] == "flux-dev"]
    assert sorted(int(job.request.prompt.split()[1]) for job in cats) == expected
    assert all(job.request.model == "flux-dev" for job in cats)
