"""API models through the real bot: the fake Discord, the fake BFL API (real HTTP), a real CPU
worker process on a tiny model, one fair queue; every outcome a person can see of an API job."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio

from bot.app import AtelierBot, open_services
from bot.config import settings_from_mapping
from generation.hosted.outcomes import SENTENCES, Outcome
from storage.credits import Period
from tests.bot.helpers import (
    StudioWorld,
    answer,
    as_rendered,
    bot_config,
    imagine,
    job_count,
    job_id_of,
    studio_people,
    text_of,
)
from tests.discord import FakeDiscord, Message, run_bot
from tests.hosted.fake_bfl import KEY
from tests.hosted.test_pool_lane import HeldBfl

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bfl() -> AsyncIterator[HeldBfl]:
    server = HeldBfl()
    await server.start()
    yield server
    server.held.set()
    await server.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def studio(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, bfl: HeldBfl
) -> AsyncIterator[StudioWorld]:
    """The bot with `BFL_API_KEY` and `BFL_API_URL` (the fake's) in its environment."""
    async with FakeDiscord(studio_people()) as fake:
        table = bot_config(fake.world, tiny_model_dirs, hosted={"slots": 4})
        env = {**fake.child_env(), "BFL_API_KEY": KEY, "BFL_API_URL": bfl.submit_url}
        data_dir = tmp_path_factory.mktemp("bot")
        settings = settings_from_mapping(table, env, base_dir=data_dir)
        services = await open_services(settings)
        try:
            async with run_bot(fake, lambda: AtelierBot(settings, services)) as runner:
                yield StudioWorld(fake, settings, services, runner)
        finally:
            await services.close()


async def reply_about(studio: StudioWorld, job_id: int, words: str) -> Message:
    """The bot's message about job `job_id` once it says `words`."""
    return await studio.fake.wait_for_message(
        lambda m: (
            re.search(rf"\b[Jj]ob `?{job_id}\b", text_of(m)) is not None
            and words in as_rendered(text_of(m))
        ),
        timeout=30,
    )


async def test_a_local_and_an_api_imagine_side_by_side_in_one_queue(
    studio: StudioWorld, bfl: HeldBfl
) -> None:
    fake = studio.fake
    bfl.held.clear()  # the API job stays Pending until the GPU job is done
    api_job = await imagine(fake, fake.user("bob"), model="flux-pro-1.1", seed=7)
    local_job = await imagine(fake, fake.user("alice"), model="playground-v2.5", seed=7)
    local = await studio.result_of(local_job)
    assert local.attachments
    assert (await studio.database.get_job(api_job)).record.status.value == "running"
    bfl.held.set()
    api = await studio.result_of(api_job)
    assert api.attachments
    assert [body["seed"] for body in bfl.submitted] == [7]
    assert await studio.database.spent(0, fake.user("bob").id) == 4


async def test_a_moderated_request_is_told_in_a_sentence(studio: StudioWorld, bfl: HeldBfl) -> None:
    bfl.scripts.append(["Request Moderated"])
    job = await imagine(studio.fake, studio.fake.user("carol"), model="flux-pro-1.1")
    await reply_about(studio, job, SENTENCES[Outcome.REQUEST_MODERATED])


async def test_a_job_over_the_persons_budget_is_refused_at_once_with_what_is_left(
    studio: StudioWorld,
) -> None:
    fake = studio.fake
    erin = fake.user("erin")
    await studio.database.set_budget(erin.id, Period.DAY, 3, by=0)
    before = await job_count(studio.database)
    ix = await fake.slash(erin, "imagine", {"prompt": "a lighthouse", "model": "flux-pro-1.1"})
    assert "your daily budget has 3 of 3 credits left today (UTC)." in as_rendered(
        text_of(await answer(fake, ix))
    )
    assert await job_count(studio.database) == before  # nothing queued


async def test_jobs_queued_beyond_a_budget_are_refused_when_asked_not_minutes_later(
    studio: StudioWorld, bfl: HeldBfl
) -> None:
    fake = studio.fake
    frank = fake.user("frank")
    await studio.database.set_budget(frank.id, Period.DAY, 8, by=0)
    bfl.held.clear()  # both stay with BFL while the third is asked for
    jobs = [await imagine(fake, frank, model="flux-pro-1.1") for _ in range(2)]
    ix = await fake.slash(frank, "imagine", {"prompt": "a third", "model": "flux-pro-1.1"})
    refusal = as_rendered(text_of(await answer(fake, ix)))
    bfl.held.set()
    assert "This job would cost about 4 credits, but your daily budget has 0 of 8" in refusal
    for job in jobs:
        assert (await studio.result_of(job)).attachments
    assert await studio.database.spent(0, frank.id) == 8


async def test_out_of_credits_refuses_api_jobs_until_an_admin_resumes_them(
    studio: StudioWorld, bfl: HeldBfl
) -> None:
    fake = studio.fake
    bfl.credits = 0
    job = await imagine(fake, fake.user("dave"), model="flux-pro-1.1")
    await reply_about(studio, job, "out of credits")
    ix = await fake.slash(
        fake.user("dave"), "imagine", {"prompt": "again", "model": "flux-pro-1.1"}
    )
    assert "out of credits" in text_of(await answer(fake, ix))
    bfl.credits = 100
    resume = await fake.slash(fake.user("admin"), "admin resume", {})
    assert "API jobs are sent again" in text_of(await answer(fake, resume))
    again = await imagine(fake, fake.user("dave"), model="flux-pro-1.1")
    assert (await studio.result_of(again)).attachments


async def test_a_rerun_of_an_api_job_is_a_labelled_seeded_rerun(studio: StudioWorld) -> None:
    fake = studio.fake
    bob = fake.user("bob")
    parent = await imagine(fake, bob, model="flux-pro-1.1", seed=11)
    original = await studio.result_of(parent)
    ix = await fake.click(bob, original, f"atelier:rerun:{parent}")
    child = job_id_of(await answer(fake, ix))
    result = await studio.result_of(child)
    assert f"Seeded rerun of job `{parent}`" in as_rendered(text_of(result))
    assert (await studio.database.get_job(child)).record.request.seeds == (11,)
    info = await fake.click(bob, result, f"atelier:info:{child}")
    reply = await fake.wait_for(lambda: info.original)
    fields = {f["name"]: f["value"] for f in reply.embeds[0]["fields"]}
    assert fields["Kind"] == "seeded rerun"


async def test_a_seeded_rerun_keeps_its_label_after_its_parent_is_erased(
    studio: StudioWorld,
) -> None:
    fake = studio.fake
    carol, dave = fake.user("carol"), fake.user("dave")
    parent = await imagine(fake, carol, model="flux-pro-1.1", seed=31)
    original = await studio.result_of(parent)
    child = job_id_of(
        await answer(fake, await fake.click(dave, original, f"atelier:rerun:{parent}"))
    )
    await studio.result_of(child)
    await studio.database.delete_user(carol.id)  # her jobs are gone
    shown = await answer(fake, await fake.slash(dave, "show", {"job": child}))
    assert f"Seeded rerun of job `{parent}`" in as_rendered(text_of(shown))


async def test_an_api_job_offers_a_reroll_that_keeps_everything_but_the_seeds(
    studio: StudioWorld, bfl: HeldBfl
) -> None:
    fake = studio.fake
    bob = fake.user("bob")
    settings = {"width": 768, "height": 512, "steps": 20, "guidance": 3.5}
    parent = await imagine(fake, bob, model="flux-2-flex", seed=21, count=2, **settings)
    original = await studio.result_of(parent)
    assert original.custom_ids[-4:] == [
        f"atelier:rerun:{parent}",
        f"atelier:reroll:{parent}",
        f"atelier:info:{parent}",
        f"atelier:delete:{parent}",
    ]
    assert not any(":upscale:" in c or ":vary-" in c for c in original.custom_ids)
    ix = await fake.click(bob, original, f"atelier:reroll:{parent}")
    child = job_id_of(await answer(fake, ix))
    assert (await studio.result_of(child)).attachments
    before = (await studio.database.get_job(parent)).record.request
    after = (await studio.database.get_job(child)).record.request
    assert after.kind.value == "reroll"
    assert after.parent_job == parent
    assert len(after.seeds) == 2
    assert after.seeds != before.seeds
    assert replace(after, seeds=before.seeds, kind=before.kind, parent_job=None) == before
    sent = [body for body in bfl.submitted if body["seed"] in after.seeds]
    assert [{name: body[name] for name in settings} for body in sent] == [settings] * 2


async def test_a_partly_moderated_job_shows_the_images_made_and_says_which_were_blocked(
    studio: StudioWorld, bfl: HeldBfl
) -> None:
    fake = studio.fake
    grace = fake.user("alice")
    bfl.seed_scripts = {502: ["Pending:0.5", "Content Moderated"]}
    spent_before = await studio.database.spent(0, grace.id)
    job = await imagine(fake, grace, model="flux-pro-1.1", seed=501, count=3)
    result = await studio.result_of(job)
    assert [a.filename.split(".")[0] for a in result.attachments] == [
        f"atelier-{job}-1",
        f"atelier-{job}-3",
    ]
    assert "Image 2 of 3 was blocked by Black Forest Labs' moderation." in as_rendered(
        text_of(result)
    )
    stored = await studio.database.images_of(job)
    assert [(image.index, image.seed) for image in stored] == [(0, 501), (2, 503)]
    assert await studio.database.spent(0, grace.id) == spent_before + 12  # as BFL charged
    # shown again later (/show), the result is the same
    ix = await fake.slash(grace, "show", {"job": job})
    shown = await answer(fake, ix)
    assert len(shown.attachments) == 2
    assert "Image 2 of 3 was blocked" in as_rendered(text_of(shown))


async def test_vary_on_an_api_job_says_why_there_is_none(studio: StudioWorld) -> None:
    fake = studio.fake
    bob = fake.user("bob")
    job = await imagine(fake, bob, model="flux-pro-1.1", seed=41)
    await studio.result_of(job)
    ix = await fake.slash(bob, "vary", {"job": job, "image": 1})
    said = as_rendered(text_of(await answer(fake, ix)))
    assert "runs on Black Forest Labs' API, which makes no variations or upscales" in said


async def test_an_api_results_header_shows_what_was_asked_not_steps_it_never_took(
    studio: StudioWorld,
) -> None:
    fake = studio.fake
    job = await imagine(
        fake, fake.user("alice"), model="flux-pro-1.1-ultra", aspect="21:9", seed=11
    )
    header = as_rendered(text_of(await studio.result_of(job))).splitlines()[1]
    assert header.startswith("`flux-pro-1.1-ultra` · aspect 21:9 · seeds 11 · job")
    assert "steps" not in header
    local = await imagine(fake, fake.user("alice"), model="playground-v2.5", seed=7)
    header = as_rendered(text_of(await studio.result_of(local))).splitlines()[1]
    assert " steps · seeds 7" in header  # a local model's steps are still shown
