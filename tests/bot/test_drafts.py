"""Drafts on Discord, end to end: `/imagine draft:True` runs the prompt on the tiny FLUX.2 [klein]
in a real CPU worker, records the job it previews, and its ✅ Final button (also after a restart)
makes that job on the chosen model with the draft's seeds; without klein, a sentence."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from PIL import Image

from bot import derived
from bot.actions import Action
from generation.drafts import draft_request
from generation.models import Catalogue
from generation.request import JobKind, build_request
from tests.bot.helpers import (
    StudioFactory,
    StudioWorld,
    answer,
    imagine,
    job_count,
    job_id_of,
    png_pixels,
    private_reply,
)
from tests.discord import Message
from tests.discord.records import walk_components

MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")


def _custom_ids(message: Message) -> list[str]:
    return [c["custom_id"] for c in walk_components(message.components) if "custom_id" in c]


def _png() -> tuple[str, bytes, str]:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 80), (30, 120, 200)).save(buffer, format="PNG")
    return ("start.png", buffer.getvalue(), "image/png")


def test_final_is_offered_on_drafts_whose_final_model_a_gpu_here_may_run() -> None:
    catalogue = Catalogue.builtin()
    final = build_request(catalogue, prompt="a fox", model="flux-dev", seed=2)
    draft = draft_request(catalogue, final, lambda model: True)
    assert Action.FINAL in derived.offered_actions(catalogue, draft)
    assert Action.FINAL not in derived.offered_actions(catalogue, final)
    elsewhere = derived.offered_actions(catalogue, draft, lambda model: model != "flux-dev")
    assert Action.FINAL not in elsewhere
    assert Action.RERUN in elsewhere  # the draft itself still reruns
    rerun = derived.derive(catalogue, Action.RERUN, draft, 7)
    assert rerun.final == draft.final  # a rerun draft keeps its Final
    rerolled = derived.derive(catalogue, Action.REROLL, draft, 7)
    assert rerolled.final == draft.final
    assert rerolled.seeds != draft.seeds


@MODULE_LOOP
async def test_a_draft_runs_on_klein_and_final_makes_the_chosen_job_after_a_restart(
    studio: StudioWorld,
) -> None:
    fake, alice = studio.fake, studio.fake.user("alice")
    catalogue = studio.settings.catalogue
    ix = await fake.slash(
        alice,
        "imagine",
        {"prompt": "a lighthouse", "model": "flux-dev", "seed": 5, "count": 2, "draft": True},
    )
    draft_id = job_id_of(await answer(fake, ix))
    shown = await studio.result_of(draft_id)
    draft = (await studio.delivered(draft_id)).record
    assert draft.request.model == "flux2-klein-4b"
    assert draft.request.steps == catalogue["flux2-klein-4b"].steps
    assert draft.request.seeds == (5, 6)
    assert draft.request.final is not None
    assert draft.request.final.model == "flux-dev"
    assert draft.gpu_seconds  # measured and counted like any job's
    assert f"atelier:final:{draft_id}" in _custom_ids(shown)
    assert "A quick draft on flux2-klein-4b for flux-dev" in shown.content

    await studio.runner.restart()  # the button's state is in its custom_id and the database
    click = await fake.click(alice, shown, f"atelier:final:{draft_id}")
    reply = await fake.wait_for(lambda: click.original)
    assert not reply.ephemeral, reply.content
    final_id = job_id_of(reply)
    final_shown = await studio.result_of(final_id)
    final = (await studio.delivered(final_id)).record.request
    assert (final.model, final.seeds, final.steps) == (
        "flux-dev",
        (5, 6),
        catalogue["flux-dev"].steps,
    )
    assert (final.kind, final.parent_job, final.final) == (JobKind.FINAL, draft_id, None)
    assert final_shown.attachments
    assert not any(i.startswith("atelier:final:") for i in _custom_ids(final_shown))
    assert "quick draft" not in final_shown.content
    # The same pixels as asking for that job directly: the draft changed nothing of it.
    direct = await imagine(fake, alice, prompt="a lighthouse", model="flux-dev", seed=5, count=2)
    direct_shown = await studio.result_of(direct)
    assert [png_pixels(a.data) for a in final_shown.attachments] == [
        png_pixels(a.data) for a in direct_shown.attachments
    ]


@MODULE_LOOP
async def test_a_draft_that_cannot_show_the_job_is_refused_before_anything_happens(
    studio: StudioWorld,
) -> None:
    fake, bob = studio.fake, studio.fake.user("bob")
    before = await job_count(studio.database)
    itself = await fake.slash(
        bob, "imagine", {"prompt": "x", "model": "flux2-klein-4b", "draft": True}
    )
    assert "is the draft model itself" in await private_reply(fake, itself)
    from_image = await fake.slash(
        bob,
        "imagine",
        {"prompt": "x", "model": "flux-dev", "image": _png(), "draft": True},
    )
    assert "A draft cannot start from an image" in await private_reply(fake, from_image)
    assert await job_count(studio.database) == before


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def without_klein(studio_with: StudioFactory) -> AsyncIterator[StudioWorld]:
    """A bot whose only GPU may not run FLUX.2 [klein]."""
    gpus = [{"device": "cpu", "models": ["playground-v2.5", "flux-dev"]}]
    async with studio_with(gpus=gpus) as world:
        yield world


@MODULE_LOOP
async def test_without_klein_a_draft_is_refused_with_a_sentence(
    without_klein: StudioWorld,
) -> None:
    fake = without_klein.fake
    ix = await fake.slash(
        fake.user("carol"), "imagine", {"prompt": "x", "model": "flux-dev", "draft": True}
    )
    refusal = await private_reply(fake, ix)  # Markdown-escaped: "FLUX.2 \\[klein\\]"
    assert "Drafts run on FLUX.2" in refusal
    assert "which this server does not run; leave out draft." in refusal
    assert await job_count(without_klein.database) == 0
