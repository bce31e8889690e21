"""Fixtures for storage tests: real SQLite files in tmp_path, real requests, real PNG bytes."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from PIL import Image

from generation.jobs import GeneratedImage, JobOwner
from generation.models import Catalogue
from generation.request import GenerationRequest, JobKind, build_request
from storage import Database


class Clock:
    """A settable clock, so tests can age jobs and images by days without waiting."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return Catalogue.builtin()


@pytest.fixture
def make_request(catalogue: Catalogue) -> Callable[..., GenerationRequest]:
    def make(
        prompt: str = "a lighthouse at dusk",
        *,
        model: str | None = None,
        seed: int = 7,
        count: int = 1,
        parent_job: int | None = None,
        kind: JobKind = JobKind.NEW,
        init_image: bytes | None = None,
    ) -> GenerationRequest:
        return build_request(
            catalogue,
            prompt=prompt,
            model=model,
            seed=seed,
            count=count,
            parent_job=parent_job,
            kind=kind,
            init_image=init_image,
            strength=0.5 if init_image is not None else None,
        )

    return make


def png(value: int, size: int = 16) -> bytes:
    """A real PNG whose content depends on `value` (equal values give equal bytes)."""
    image = Image.new("RGB", (size, size), (value % 256, (value // 256) % 256, 90))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def images_for(request: GenerationRequest, base: int) -> list[GeneratedImage]:
    """One distinct image per seed of `request`."""
    return [
        GeneratedImage(index=i, seed=seed, png=png(base + i), width=16, height=16)
        for i, seed in enumerate(request.seeds)
    ]


def owner(user_id: int = 1001, guild_id: int | None = 5, channel_id: int | None = 6) -> JobOwner:
    return JobOwner(user_id=user_id, guild_id=guild_id, channel_id=channel_id)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "atelier.db"


@pytest.fixture
async def db(db_path: Path, clock: Clock) -> AsyncIterator[Database]:
    async with await Database.open(db_path, clock=clock) as database:
        yield database


async def finished_job(
    db: Database, request: GenerationRequest, job_owner: JobOwner, base: int
) -> int:
    """A job taken through queued → running → done with distinct images."""
    job_id = await db.create_job(request, job_owner)
    await db.mark_running(job_id, "cuda:0")
    await db.mark_done(job_id, images_for(request, base), gpu_seconds=2.5)
    return job_id
