"""A button, reaction or derived command offered on a result always makes a valid job (issue 12):
a property test over every catalogue model x every suggested aspect x the model's step range x
every button, and end-to-end runs of the two cases that used to fail."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from PIL import Image

from bot import derived
from bot.actions import REACTIONS, Action
from bot.errors import UserError
from bot.ui.choices import ASPECTS
from generation.img2img import denoising_steps
from generation.models import Catalogue, ModelSpec
from generation.request import GenerationRequest, JobKind, build_request
from generation.tiny import catalogue_config
from tests.bot.helpers import StudioFactory, StudioWorld, job_id_of, png_pixels
from tests.discord import Message
from tests.discord.records import walk_components

MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")

# Every built-in model, and fine-tunes with other limits (coarser sides, few steps).
CATALOGUE = Catalogue.from_config(
    {
        "coarse-sdxl": {
            "family": "playground",
            "source": "/m/a",
            "multiple_of": 128,
            "steps": 8,  # a default its max_steps allows (the configuration refuses others)
            "max_steps": 8,
            "max_side": 1536,
            "max_megapixels": 2.0,
        },
        "small-flux": {
            "family": "flux",
            "source": "/m/b",
            "steps": 3,
            "max_steps": 3,
            "native_side": 512,
            "min_side": 256,
            "max_side": 1024,
            "max_megapixels": 1.0,
        },
    }
)
_BUFFER = io.BytesIO()
Image.new("RGB", (16, 9), "teal").save(_BUFFER, format="PNG")
IMAGE = _BUFFER.getvalue()
BUTTONS = (*derived.IMAGE_ACTIONS, Action.RERUN, Action.REROLL)


def _larger_sizes(spec: ModelSpec, width: int, height: int) -> list[tuple[int, int]]:
    """Every allowed size at least as large on both sides, within 5% of the aspect."""
    limits, step = spec.limits, spec.limits.multiple_of
    sides = range(limits.min_side, limits.max_side + 1, step)
    return [
        (w, h)
        for w in sides
        for h in sides
        if w >= width
        and h >= height
        and (w, h) != (width, height)
        and w * h <= limits.max_megapixels * 1_000_000
        and abs(w / h - width / height) <= 0.05 * width / height
    ]


def _check(spec: ModelSpec, parent: GenerationRequest, action: Action) -> None:
    offered = action in derived.image_actions(CATALOGUE, parent) or action in (
        Action.RERUN,
        Action.REROLL,
    )
    match action:
        case Action.RERUN:
            made = derived.rerun(parent, 1)
        case Action.REROLL:
            made = derived.reroll(parent, 1)
        case Action.UPSCALE:
            if not offered:
                assert not _larger_sizes(spec, parent.width, parent.height), parent
                with pytest.raises(UserError):
                    derived.upscale(CATALOGUE, parent, 1, IMAGE, parent.seeds[0])
                return
            made = derived.upscale(CATALOGUE, parent, 1, IMAGE, parent.seeds[0])
            assert made.width * made.height > parent.width * parent.height
            assert abs(made.width / made.height - parent.width / parent.height) <= 0.05 * (
                parent.width / parent.height
            )
            # Twice the size where allowed, else the largest allowed size at that aspect.
            larger = _larger_sizes(spec, parent.width, parent.height)
            wanted = (parent.width * 2, parent.height * 2)
            assert (
                (made.width, made.height) == wanted
                if wanted in larger
                else (made.width * made.height >= max(w * h for w, h in larger) * 0.9)
            )
        case _:
            strength = derived.VARY_STRENGTH[action is Action.VARY_STRONG]
            if not offered:
                assert all(
                    denoising_steps(spec.family, steps, strength) == 0
                    for steps in range(1, spec.limits.max_steps + 1)
                )
                return
            made = derived.vary(CATALOGUE, parent, 1, IMAGE, strong=action is Action.VARY_STRONG)
            # Steps change only where the parent's would run no step.
            if denoising_steps(spec.family, parent.steps, strength) >= 1:
                assert made.steps == parent.steps
    # A valid job: the request validates as if typed, and every img2img job denoises.
    rebuilt = build_request(
        CATALOGUE,
        prompt=made.prompt,
        model=made.model,
        width=made.width,
        height=made.height,
        steps=made.steps,
        guidance=made.guidance if spec.limits.guidance else None,
        seeds=made.seeds,
        init_image=made.init_image,
        strength=made.strength,
    )
    assert rebuilt.seeds == made.seeds
    if made.strength is not None:
        assert denoising_steps(spec.family, made.steps, made.strength) >= 1


def test_every_offered_button_makes_a_valid_job() -> None:
    checked = 0
    for spec in CATALOGUE.values():
        for aspect in ASPECTS:
            for steps in range(1, spec.limits.max_steps + 1):
                parent = build_request(
                    CATALOGUE,
                    prompt="a fox",
                    model=spec.name,
                    aspect=aspect,
                    steps=steps,
                    count=2,
                    seed=3,
                )
                for action in BUTTONS:
                    _check(spec, parent, action)
                    checked += 1
    assert checked > 5000
    # Each reaction that makes a job is one of the buttons above.
    assert {a for a in REACTIONS.values() if a not in (Action.SEND_DM, Action.DELETE)} <= set(
        BUTTONS
    )


def test_buttons_on_jobs_made_under_other_limits_still_make_valid_jobs() -> None:
    """The owner tightened the limits since the jobs were made: fewer steps, coarser sides, a
    lower guidance ceiling. Every button still offered makes a job the model now accepts."""
    tighter = Catalogue.from_config(
        {
            "playground-v2.5": {
                "steps": 20,
                "max_steps": 20,
                "multiple_of": 128,
                "guidance": 2.0,
                "max_guidance": 2.0,
            },
            "flux-dev": {"steps": 10, "max_steps": 10, "multiple_of": 32, "max_side": 1536},
        }
    )
    offered = 0
    for spec in CATALOGUE.values():
        if spec.name not in ("playground-v2.5", "flux-dev"):
            continue
        for aspect in ASPECTS:
            for steps in (1, 2, 30, spec.limits.max_steps):
                parent = build_request(
                    CATALOGUE, prompt="a fox", model=spec.name, aspect=aspect, steps=steps
                )
                for action in derived.image_actions(tighter, parent):
                    offered += 1
                    made = (
                        derived.upscale(tighter, parent, 1, IMAGE, parent.seeds[0])
                        if action is Action.UPSCALE
                        else derived.vary(
                            tighter, parent, 1, IMAGE, strong=action is Action.VARY_STRONG
                        )
                    )
                    now = tighter[spec.name]
                    assert now.limits.allows_size(made.width, made.height)
                    assert made.steps <= now.limits.max_steps
                    assert denoising_steps(now.family, made.steps, made.strength or 0) >= 1
    assert offered > 100


def test_u_is_offered_below_the_largest_size_only() -> None:
    playground = CATALOGUE["playground-v2.5"]
    wide = build_request(CATALOGUE, prompt="a fox", aspect="16:9")
    assert (wide.width, wide.height) == (1344, 768)
    assert Action.UPSCALE in derived.image_actions(CATALOGUE, wide)
    made = derived.upscale(CATALOGUE, wide, 1, IMAGE, wide.seeds[0])
    assert (made.width, made.height) == (2048, 1152)  # not 2688x1536, refused before
    largest = build_request(CATALOGUE, prompt="a fox", width=2048, height=1152)
    assert Action.UPSCALE not in derived.image_actions(CATALOGUE, largest)
    assert playground.upscale_size(2048, 2048) is None


# ---- end to end: the real bot, worker and tiny models against the fake Discord ----------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def studio(
    studio_with: StudioFactory, tiny_model_dirs: dict[str, Path]
) -> AsyncIterator[StudioWorld]:
    """Tiny models whose Playground, like the real one, cannot double a 16:9 image."""
    models = catalogue_config(tiny_model_dirs)
    models["playground-v2.5"]["max_side"] = 128
    async with studio_with(models=models) as world:
        yield world


async def _imagine(studio: StudioWorld, **options: object) -> Message:
    ix = await studio.fake.slash(
        studio.fake.user("alice"), "imagine", {"prompt": "a lighthouse", **options}
    )
    job_id = job_id_of(await studio.fake.wait_for(lambda: ix.original))
    await studio.delivered(job_id)
    return await studio.result_of(job_id)


async def _click(studio: StudioWorld, result: Message, custom_id: str) -> GenerationRequest:
    """Click a button of `result`; the request of the job it made, once delivered."""
    offered = [c.get("custom_id") for c in walk_components(result.components)]
    assert custom_id in offered, offered
    ix = await studio.fake.click(studio.fake.user("alice"), result, custom_id)
    reply = await studio.fake.wait_for(lambda: ix.original)
    assert not reply.ephemeral, reply.content
    job_id = job_id_of(reply)
    delivered = await studio.result_of(job_id)
    assert delivered.attachments
    return (await studio.delivered(job_id)).record.request


@MODULE_LOOP
async def test_u_on_a_16_9_result_upscales_to_the_largest_size(studio: StudioWorld) -> None:
    result = await _imagine(studio, aspect="16:9", count=2, seed=4)
    parent = job_id_of(result)
    request = await _click(studio, result, f"atelier:upscale:{parent}:1")
    assert request.kind is JobKind.UPSCALE
    assert (request.width, request.height) == (128, 80)  # 80x48 doubled would be 160x96


@MODULE_LOOP
async def test_v_on_a_2_step_schnell_result_runs(studio: StudioWorld) -> None:
    result = await _imagine(studio, model="flux-schnell", steps=2, seed=9)
    request = await _click(studio, result, f"atelier:vary-subtle:{job_id_of(result)}:0")
    assert (request.kind, request.steps, request.strength) == (JobKind.VARY, 2, 0.35)


@MODULE_LOOP
async def test_v_on_a_2_step_playground_result_raises_only_the_steps(
    studio: StudioWorld,
) -> None:
    result = await _imagine(studio, steps=2, seed=9)
    request = await _click(studio, result, f"atelier:vary-subtle:{job_id_of(result)}:0")
    assert (request.steps, request.strength) == (3, 0.35)
    image = await studio.database.read_image(job_id_of(result), 0)
    assert request.init_image == image
    assert png_pixels(image)
