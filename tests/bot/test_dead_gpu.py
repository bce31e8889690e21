"""A GPU that is gone, end to end: the real bot, configured with `[[gpus]] device = "cuda:0"`
on this machine without one, against the fake Discord. The worker (a real process with the real
engine) says it cannot start; the pool marks it failed with that reason. A job accepted before
(when the machine still had a working worker) is told why it waits; a new /imagine is refused
with a sentence; /admin gpus, /info and /healthz name the reason. (The growing restart delays
are asserted on a controlled clock in tests/generation/test_pool_supervision.py.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from bot.app import AtelierBot, open_services
from bot.observability.health import HealthServer
from bot.observability.plugin import workers_health
from generation.pool import WorkerState
from tests.bot.helpers import (
    StudioWorld,
    answer,
    as_rendered,
    bot_settings,
    job_id_of,
    polled,
    private_reply,
    studio_people,
    text_of,
)
from tests.discord import FakeDiscord, InteractionRecord, run_bot

pytestmark = pytest.mark.asyncio(loop_scope="module")

REASON = "Device cuda:0 is not available: this machine has 0 CUDA GPU(s)."


@dataclass
class DeadGpu:
    studio: StudioWorld
    accepted: InteractionRecord  # an /imagine accepted before the GPU was gone


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def dead_gpu(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[DeadGpu]:
    """A job is accepted on a machine with a working (CPU) worker; the bot is stopped and started
    again configured for `cuda:0`, which this machine lacks (the GPU is gone)."""
    base = tmp_path_factory.mktemp("dead-gpu")
    async with FakeDiscord(studio_people()) as fake:
        before = bot_settings(fake, tiny_model_dirs, base)
        services = await open_services(before)
        try:
            async with run_bot(fake, lambda: AtelierBot(before, services)):
                services.pool.pause()
                ix = await fake.slash(fake.user("alice"), "imagine", {"prompt": "a lighthouse"})
                assert "Queued" in text_of(await answer(fake, ix))
        finally:
            await services.close()
        after = bot_settings(fake, tiny_model_dirs, base, gpus=[{"device": "cuda:0"}])
        services = await open_services(after)
        try:
            async with run_bot(fake, lambda: AtelierBot(after, services)) as runner:
                yield DeadGpu(StudioWorld(fake, after, services, runner), ix)
        finally:
            await services.close()


@pytest.fixture
def studio(dead_gpu: DeadGpu) -> StudioWorld:
    return dead_gpu.studio


async def failed(studio: StudioWorld) -> None:
    async def probe() -> bool | None:
        (worker,) = studio.services.pool.snapshot().workers
        return True if worker.state is WorkerState.FAILED else None

    await polled(probe)


async def test_a_job_accepted_before_the_gpu_failed_is_told_why_it_waits(
    studio: StudioWorld, dead_gpu: DeadGpu
) -> None:
    fake, ix = studio.fake, dead_gpu.accepted
    await failed(studio)

    job = job_id_of(ix.messages[0])

    def told() -> str | None:  # the job's progress message (after a restart: in the channel)
        shown = [text_of(m) for m in fake.messages if f"Job {job}\n" in text_of(m)]
        return shown[-1] if shown and "waiting:" in shown[-1] else None

    text = await fake.wait_for(told, what="the reason the job waits")
    assert f"cuda:0 is not working ({REASON}" in text
    assert "starts in about" not in text


async def test_a_new_job_is_refused_with_the_reason(studio: StudioWorld) -> None:
    fake = studio.fake
    await failed(studio)

    ix = await fake.slash(fake.user("bob"), "imagine", {"prompt": "a lighthouse at dusk"})
    reply = await answer(fake, ix)

    assert reply.ephemeral
    shown = as_rendered(text_of(reply))
    assert "No GPU can run playground-v2.5 right now (cuda:0: " + REASON in shown


async def test_admin_gpus_info_and_healthz_name_the_reason(studio: StudioWorld) -> None:
    fake = studio.fake
    await failed(studio)

    gpus = await private_reply(fake, await fake.slash(fake.user("admin"), "admin gpus", {}))
    info = await private_reply(fake, await fake.slash(fake.user("carol"), "info", {}))
    gpus, info = as_rendered(gpus), as_rendered(info)
    registry = CollectorRegistry()
    pool = studio.services.pool
    async with (
        HealthServer({"workers": lambda: workers_health(pool)}, registry, port=0) as server,
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/healthz") as got,
    ):
        status, body = got.status, json.loads(await got.text())

    assert "failed on `cuda:0`" in gpus
    assert f"⚠️ not working: {REASON} (next try in" in gpus
    assert f"`cuda:0` · ⚠️ not working: {REASON}" in info
    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["checks"]["workers"].startswith(f"failing: cuda:0: {REASON} (next try in")
