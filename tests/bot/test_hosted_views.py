"""API jobs as people and admins see them through the real bot (the fake Discord, the fake BFL
API on real ports, a real CPU worker): /info, the early queue check, /admin stats and limits,
and Ultra's raw mode from /imagine."""

from __future__ import annotations

import pytest

from generation.jobs import JobStatus
from storage.credits import Period
from tests.bot import test_hosted_imagine as hosted
from tests.bot.helpers import (
    StudioWorld,
    answer,
    as_rendered,
    imagine,
    paused,
    text_of,
    wait_for_status,
)
from tests.hosted.test_pool_lane import HeldBfl

pytestmark = pytest.mark.asyncio(loop_scope="module")
bfl, studio = hosted.bfl, hosted.studio  # that module's fixtures, one instance for this one


async def test_info_and_queue_count_api_jobs_and_info_lists_api_models(
    studio: StudioWorld,
    bfl: HeldBfl,
) -> None:
    fake = studio.fake
    bfl.held.clear()
    try:
        bob = fake.user("bob")
        job = await imagine(fake, bob, model="flux-pro-1.1", seed=3)
        await wait_for_status(studio.database, job, JobStatus.RUNNING)
        text = as_rendered(text_of(await answer(fake, await fake.slash(bob, "info", {}))))
        assert "0 waiting, 1 running now" in text  # "You"
        assert "API: 0 waiting, 1 running" in text  # "Queue"
        assert "`flux-pro-1.1` — FLUX1.1 [pro] · on Black Forest Labs' API" in text
        assert "`flux-kontext-max`" in text
        queue = as_rendered(text_of(await answer(fake, await fake.slash(bob, "queue", {}))))
        assert f"`{job}`" in queue  # the person's running API job is listed
        assert "bfl-api" in queue
        assert "0 waiting and 1 running in all" in queue
        admin = fake.user("admin")
        board = await answer(fake, await fake.slash(admin, "admin queue", {}))
        assert "On Black Forest Labs' API: 0 waiting, 1 running." in as_rendered(text_of(board))
    finally:
        bfl.held.set()
        await studio.result_of(job)


async def test_a_full_gpu_queue_does_not_refuse_an_api_job_with_references(
    studio: StudioWorld,
    bfl: HeldBfl,
) -> None:
    fake = studio.fake
    frank, admin = fake.user("frank"), fake.user("admin")
    first = await imagine(fake, frank, model="flux-pro-1.1", seed=5)
    await studio.result_of(first)
    await answer(fake, await fake.slash(admin, "admin limits", {"user": frank, "max_queued": 1}))
    try:
        async with paused(studio):
            await imagine(fake, frank, model="playground-v2.5", seed=1)  # fills the GPU queue
            options = {"prompt": "p", "model": "flux-kontext-pro", "refs": f"{first}/1"}
            reply = await answer(fake, await fake.slash(frank, "imagine", options))
            text = as_rendered(text_of(reply))
            assert "waiting, the most" not in text
            assert "Job" in text
    finally:
        await answer(fake, await fake.slash(admin, "admin limits", {"user": frank, "reset": True}))


async def test_admin_stats_shows_an_erased_persons_spend_under_no_name(
    studio: StudioWorld,
    bfl: HeldBfl,
) -> None:
    fake = studio.fake
    carol = fake.user("carol")
    job = await imagine(fake, carol, model="flux-pro-1.1", seed=9)
    await studio.delivered(job)
    await studio.database.delete_user(carol.id)
    stats = await fake.slash(fake.user("admin"), "admin stats", {})
    text = as_rendered(text_of(await answer(fake, stats)))
    section = text[text.index("API credits by person and model") :]
    assert "<@-2>" not in section
    assert "erased people (no name kept) · flux-pro-1.1: 4 credits" in section


@pytest.mark.parametrize("value", [-0.5, -0.01, -0.99])
async def test_daily_credits_takes_only_documented_values(
    studio: StudioWorld,
    value: float,
) -> None:
    fake = studio.fake
    dave, admin = fake.user("dave"), fake.user("admin")
    await studio.database.set_budget(dave.id, Period.DAY, 12, by=0)
    ix = await fake.slash(admin, "admin limits", {"user": dave, "daily_credits": value})
    text = as_rendered(text_of(await answer(fake, ix)))
    assert "0 or more, or -1" in text
    assert (await studio.database.budgets())[(dave.id, Period.DAY)] == 12  # unchanged
    ix = await fake.slash(admin, "admin limits", {"user": dave, "daily_credits": -1})
    await answer(fake, ix)
    assert (dave.id, Period.DAY) not in await studio.database.budgets()


async def test_ultras_raw_mode_is_asked_with_scheduler_raw(
    studio: StudioWorld,
    bfl: HeldBfl,
) -> None:
    fake = studio.fake
    erin = fake.user("erin")
    job = await imagine(fake, erin, model="flux-pro-1.1-ultra", scheduler="raw", seed=4)
    await studio.result_of(job)
    assert bfl.submitted[-1]["raw"] is True
    assert (await studio.database.get_job(job)).record.request.raw
    plain = await imagine(fake, erin, model="flux-pro-1.1-ultra", seed=4)
    await studio.result_of(plain)
    assert bfl.submitted[-1]["raw"] is False
    refused = await fake.slash(
        erin, "imagine", {"prompt": "p", "model": "flux-pro-1.1", "scheduler": "raw"}
    )
    assert "scheduler" in as_rendered(text_of(await answer(fake, refused))).lower()


async def test_the_scheduler_list_offers_raw_only_where_a_model_has_it(studio: StudioWorld) -> None:
    fake, erin = studio.fake, studio.fake.user("erin")

    async def offered(model: str) -> list[str]:
        options = {"prompt": "p", "model": model, "scheduler": ""}
        choices = await fake.autocomplete(erin, "imagine", options, focused="scheduler")
        return [choice["value"] for choice in choices]

    assert await offered("flux-pro-1.1-ultra") == ["raw"]
    assert "raw" not in await offered("flux-pro-1.1")
    assert "raw" not in await offered("playground-v2.5")
