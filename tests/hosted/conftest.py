"""Fixtures for the hosted backend: the fake BFL API on real ports, a real SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from generation.hosted.backend import HostedBackend, Timing
from generation.hosted.catalogue import HOSTED_MODELS
from generation.hosted.settings import ApiSettings
from generation.jobs import JobOwner
from generation.models import Catalogue
from generation.request import GenerationRequest, build_request
from storage import Database
from tests.hosted.fake_bfl import KEY, FakeBfl

FAST = Timing(poll_first=0.001, poll_max=0.005, retry_first=0.001, retry_max=0.005, patience=0.02)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBfl]:
    server = FakeBfl()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def catalogue() -> Catalogue:
    return Catalogue.builtin().with_hosted(HOSTED_MODELS)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "atelier.db")
    yield database
    await database.close()


def settings(fake: FakeBfl, key: str = KEY) -> ApiSettings:
    return ApiSettings(key=key, base_url=fake.submit_url)


@pytest.fixture
async def backend(fake: FakeBfl, db: Database) -> AsyncIterator[HostedBackend]:
    made = HostedBackend(settings(fake), db, timing=FAST)
    yield made
    await made.close()


async def new_job(
    db: Database, catalogue: Catalogue, **fields: object
) -> tuple[int, GenerationRequest]:
    fields.setdefault("model", "flux-pro-1.1")
    fields.setdefault("prompt", "a lighthouse at dusk")
    fields.setdefault("seed", 42)
    request = build_request(catalogue, **fields)
    return await db.create_job(request, JobOwner(user_id=7)), request
