"""Drafts on Discord, end to end: `/imagine draft:True` runs the prompt on the tiny FLUX.2 [klein]
in a real CPU worker, records the job it previews, and its ✅ Final button (also after a restart)
makes that job on the chosen model with the draft's seeds; without klein, a sentence."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from PIL import Image

from bot import derived
from bot.actions import Action
from bot.errors import UserError
from generation.drafts import draft_request
from generation.jobs import JobStatus
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
from tests.conftest import lora_tables
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


def test_final_is_refused_and_not_offered_where_it_would_change_the_guidance_chosen() -> None:
    """As 🔁 is for a rerun (`derived.rerun_problem`): guidance made not adjustable since the
    draft would silently turn the guidance chosen into the model's fixed one."""
    final = build_request(Catalogue.builtin(), prompt="a fox", model="flux-dev", guidance=7.0)
    draft = draft_request(Catalogue.builtin(), final, lambda model: True)
    fixed = Catalogue.from_config({"flux-dev": {"guidance_adjustable": False}})
    assert Action.FINAL not in derived.offered_actions(fixed, draft)
    with pytest.raises(UserError, match=r"guidance would be 3\.5 \(you chose 7\)"):
        derived.derive(fixed, Action.FINAL, draft, 7)


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


@MODULE_LOOP
async def test_final_pressed_twice_quickly_makes_one_job_and_points_to_it(
    studio: StudioWorld,
) -> None:
    fake, alice, bob = studio.fake, studio.fake.user("alice"), studio.fake.user("bob")
    ix = await fake.slash(
        alice, "imagine", {"prompt": "a lighthouse", "model": "flux-dev", "seed": 8, "draft": True}
    )
    draft_id = job_id_of(await answer(fake, ix))
    shown = await studio.result_of(draft_id)
    before = await job_count(studio.database)
    first = await fake.click(alice, shown, f"atelier:final:{draft_id}")
    second = await fake.click(alice, shown, f"atelier:final:{draft_id}")  # before any answer
    replies = [await answer(fake, first), await answer(fake, second)]
    made = [reply for reply in replies if not reply.ephemeral]
    assert len(made) == 1, [reply.content for reply in replies]
    final_id = job_id_of(made[0])
    pointer = next(reply for reply in replies if reply.ephemeral)
    assert f"final of draft `{draft_id}`" in pointer.content or f"job `{final_id}`" in (
        pointer.content
    )
    await studio.delivered(final_id)
    late = await fake.click(bob, shown, f"atelier:final:{draft_id}")  # anyone, once it is done
    assert f"already has its final: job `{final_id}` (done)" in await private_reply(fake, late)
    assert await job_count(studio.database) == before + 1


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


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def without_flux_dev(studio_with: StudioFactory) -> AsyncIterator[StudioWorld]:
    """A bot whose only GPU runs Playground and klein 4B, not FLUX.1 [dev]."""
    gpus = [{"device": "cpu", "models": ["playground-v2.5", "flux2-klein-4b"]}]
    async with studio_with(gpus=gpus) as world:
        yield world


@MODULE_LOOP
async def test_a_draft_for_a_model_no_gpu_here_may_run_is_refused_before_anything_happens(
    without_flux_dev: StudioWorld,
) -> None:
    fake = without_flux_dev.fake
    ix = await fake.slash(
        fake.user("carol"), "imagine", {"prompt": "x", "model": "flux-dev", "draft": True}
    )
    assert "No GPU here may run flux-dev" in await private_reply(fake, ix)
    assert await job_count(without_flux_dev.database) == 0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def with_loras(
    studio_with: StudioFactory, tiny_loras: dict[str, Path], klein_loras: dict[str, Path]
) -> AsyncIterator[StudioWorld]:
    """A bot with the tiny FLUX LoRA "fx" and two klein LoRAs: "fits" (the tiny klein's) and
    "wider" (a klein 9B LoRA as klein 4B sees it: one family, wider layers)."""
    klein = {
        name: {"source": str(path), "family": "flux2-klein"} for name, path in klein_loras.items()
    }
    async with studio_with(loras={**lora_tables(tiny_loras), **klein}) as world:
        yield world


@MODULE_LOOP
async def test_a_draft_carries_only_the_loras_that_fit_the_draft_model_and_says_so(
    with_loras: StudioWorld,
) -> None:
    fake, alice = with_loras.fake, with_loras.fake.user("alice")
    ix = await fake.slash(
        alice,
        "imagine",
        {
            "prompt": "a fox",
            "model": "flux2-klein-9b",
            "lora1": "fits:0.8",
            "lora2": "wider",
            "seed": 3,
            "draft": True,
        },
    )
    draft_id = job_id_of(await answer(fake, ix))
    shown = await with_loras.result_of(draft_id)
    done = (await with_loras.delivered(draft_id)).record
    assert done.status is JobStatus.DONE, done.error  # the wider LoRA would not load on 4B
    assert [use.name for use in done.request.loras] == ["fits"]
    assert shown.attachments
    assert "The draft leaves out LoRA wider:1; Final keeps them." in shown.content

    ix = await fake.slash(
        alice, "imagine", {"prompt": "a fox", "model": "flux-dev", "lora1": "fx:0.7", "draft": True}
    )
    flux_draft = job_id_of(await answer(fake, ix))
    assert "leaves out LoRA fx:0.7" in (await with_loras.result_of(flux_draft)).content


@MODULE_LOOP
async def test_a_draft_whose_final_has_a_blocked_negative_prompt_is_refused_at_once(
    with_loras: StudioWorld,
) -> None:
    """Its ✅ Final would be refused, so the draft is too, before anything is queued."""
    fake, alice = with_loras.fake, with_loras.fake.user("alice")
    await with_loras.database.block_term(fake.world.guild_id, "smudge", by=1)
    before = await job_count(with_loras.database)
    ix = await fake.slash(
        alice,
        "imagine",
        {"prompt": "a fox", "model": "playground-v2.5", "negative": "smudge", "draft": True},
    )
    assert "contains a term this server has blocked" in await private_reply(fake, ix)
    assert await job_count(with_loras.database) == before
