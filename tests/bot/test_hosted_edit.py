"""`[edit] model = "flux-kontext-pro"`: edits go to Black Forest Labs' API (the fake BFL server,
real HTTP) with the edited image as the input image; the real bot, a real CPU worker for the
local job that is edited, real SQLite."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.app import AtelierBot, open_services
from bot.config import settings_from_mapping
from generation.input_images import canonical_png
from generation.request import JobKind
from tests.bot.helpers import (
    StudioWorld,
    answer,
    bot_config,
    imagine,
    job_id_of,
    studio_people,
    text_of,
)
from tests.discord import FakeDiscord, run_bot
from tests.discord.records import walk_components
from tests.hosted.fake_bfl import KEY, FakeBfl

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bfl() -> AsyncIterator[FakeBfl]:
    server = FakeBfl()
    await server.start()
    yield server
    await server.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def studio(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, bfl: FakeBfl
) -> AsyncIterator[StudioWorld]:
    async with FakeDiscord(studio_people()) as fake:
        table = bot_config(fake.world, tiny_model_dirs, edit={"model": "flux-kontext-pro"})
        env = {**fake.child_env(), "BFL_API_KEY": KEY, "BFL_API_URL": bfl.submit_url}
        settings = settings_from_mapping(table, env, base_dir=tmp_path_factory.mktemp("bot"))
        services = await open_services(settings)
        try:
            async with run_bot(fake, lambda: AtelierBot(settings, services)) as runner:
                yield StudioWorld(fake, settings, services, runner)
        finally:
            await services.close()


async def test_an_edit_with_the_hosted_kontext_sends_the_image_to_the_api(
    studio: StudioWorld, bfl: FakeBfl
) -> None:
    fake, alice = studio.fake, studio.fake.user("alice")
    parent_id = await imagine(fake, alice, prompt="a lighthouse", seed=4)
    parent = await studio.result_of(parent_id)
    assert f"atelier:edit:{parent_id}:0" in parent.custom_ids

    ix = await fake.slash(alice, "edit", {"job": parent_id, "instruction": "at night"})
    edit_id = job_id_of(await answer(fake, ix))
    result = await studio.result_of(edit_id)
    assert result.attachments
    request = (await studio.database.get_job(edit_id)).record.request
    assert (request.model, request.kind, request.parent_job) == (
        "flux-kontext-pro",
        JobKind.EDIT,
        parent_id,
    )
    reference = canonical_png(await studio.database.read_image(parent_id, 0))
    assert request.input_images == (reference,)
    sent = [body for body in bfl.submitted if body["prompt"] == "at night"]
    assert [base64.b64decode(body["input_image"]) for body in sent] == [reference]
    # an API job: a seeded rerun (and Edit, ℹ️, 🗑️); no V, no U, no reroll
    labels = [c.get("label") for c in walk_components(result.components) if c.get("type") == 2]
    assert labels == ["✏️ Edit 1", "Rerun", "Reroll", "Parameters", "Delete"]


async def test_an_image_that_moderation_blocked_is_named_as_never_made(
    studio: StudioWorld, bfl: FakeBfl
) -> None:
    fake, alice = studio.fake, studio.fake.user("alice")
    bfl.seed_scripts = {702: ["Pending:0.5", "Content Moderated"]}
    job = await imagine(fake, alice, model="flux-pro-1.1", seed=701, count=3)
    await studio.result_of(job)
    blocked = (
        f"Image 2 of job `{job}` was never made, so there is nothing to use. ⚠️ Image 2 of 3 "
        "was blocked by Black Forest Labs' moderation."
    )
    ix = await fake.slash(alice, "edit", {"job": job, "instruction": "at night", "image": 2})
    assert blocked in text_of(await answer(fake, ix))
    refs = {"prompt": "p", "model": "flux-kontext-pro", "refs": f"{job}/2"}
    assert blocked in text_of(await answer(fake, await fake.slash(alice, "imagine", refs)))
    ix = await fake.slash(alice, "edit", {"job": job, "instruction": "at night", "image": 3})
    assert "never made" not in text_of(await answer(fake, ix))  # image 3 was made
