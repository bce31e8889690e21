"""A button, reaction or derived command offered on a result always makes a valid job (issue 12):
a property test over every catalogue model x every suggested aspect x the model's step range x
every button, and end-to-end runs of the two cases that used to fail."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio
from PIL import Image

from bot import derived
from bot.actions import REACTIONS, Action
from bot.errors import UserError
from bot.ui.choices import ASPECTS
from bot.ui.notes import derived_note
from generation.img2img import denoising_steps
from generation.jobs import GeneratedImage, JobOwner, JobRecord, JobStatus
from generation.models import IMG2IMG_FAMILIES, Catalogue, Family, ModelSpec
from generation.request import GenerationRequest, JobKind, build_request
from generation.tiny import catalogue_config
from tests.bot.helpers import (
    StudioFactory,
    StudioWorld,
    answer,
    job_id_of,
    png_pixels,
    private_reply,
)
from tests.discord import Message
from tests.discord.records import walk_components

MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")

# Every built-in model, and fine-tunes with other limits (coarser sides, few steps).
CATALOGUE_CONFIG: dict[str, dict[str, object]] = {
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
CATALOGUE = Catalogue.from_config(CATALOGUE_CONFIG)
_BUFFER = io.BytesIO()
Image.new("RGB", (128, 72), "teal").save(_BUFFER, format="PNG")
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


def _admits(spec: ModelSpec, request: GenerationRequest) -> bool:
    """Whether `spec`'s limits admit `request` exactly as it is (read from the limits, not from
    `build_request`)."""
    limits = spec.limits
    return (
        limits.allows_size(request.width, request.height)
        and request.steps <= limits.max_steps
        and request.scheduler in spec.schedulers
        and (limits.negative_prompt or not request.negative_prompt)
        and max(len(request.prompt), len(request.negative_prompt)) <= limits.max_prompt_chars
        and (
            limits.min_guidance <= request.guidance <= limits.max_guidance
            if limits.guidance
            else request.guidance == spec.guidance
        )
    )


def _made(catalogue: Catalogue, parent: GenerationRequest, action: Action) -> GenerationRequest:
    return derived.derive(catalogue, action, parent, 1, IMAGE, parent.count - 1)


def _check(catalogue: Catalogue, parent: GenerationRequest, action: Action) -> None:
    """`action` on `parent`'s result (made under other limits, maybe): offered → a job that
    `catalogue`'s model accepts as typed; left out → no valid job exists, and asking anyway (a
    reaction, /vary, /rerun) gets a sentence."""
    spec = catalogue[parent.model]
    limits = spec.limits
    offered = action in derived.offered_actions(catalogue, parent)
    prompt_fits = max(len(parent.prompt), len(parent.negative_prompt)) <= limits.max_prompt_chars
    if not offered:
        with pytest.raises(UserError):
            _made(catalogue, parent, action)
        match action:
            case Action.RERUN:
                assert not _admits(spec, parent), parent
            case Action.REROLL:
                assert not prompt_fits
            case _:
                strength = (
                    derived.UPSCALE_STRENGTH
                    if action is Action.UPSCALE
                    else derived.VARY_STRENGTH[action is Action.VARY_STRONG]
                )
                no_size = action is Action.UPSCALE and not _larger_sizes(
                    spec, parent.width, parent.height
                )
                assert (
                    not prompt_fits
                    or no_size
                    or spec.family not in IMG2IMG_FAMILIES  # klein, Kontext: no U, no V subtle
                    or all(
                        denoising_steps(spec.family, steps, strength) == 0
                        for steps in range(1, limits.max_steps + 1)
                    )
                )
        return
    made = _made(catalogue, parent, action)
    match action:
        case Action.RERUN:
            assert made.seeds == parent.seeds
            assert replace(made, parent_job=None, kind=JobKind.NEW) == replace(
                parent, parent_job=None, kind=JobKind.NEW
            )
        case Action.UPSCALE:
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
        case Action.VARY_SUBTLE | Action.VARY_STRONG:
            strength = derived.VARY_STRENGTH[action is Action.VARY_STRONG]
            # Steps change only where the parent's would run no step (or pass the limit).
            if parent.steps <= limits.max_steps and denoising_steps(
                spec.family, parent.steps, strength
            ):
                assert made.steps == parent.steps
            if limits.allows_size(parent.width, parent.height):
                assert (made.width, made.height) == (parent.width, parent.height)
            if spec.family not in IMG2IMG_FAMILIES:  # klein, Kontext: the image is a reference
                assert made.init_image is None
                assert made.strength is None
                most = limits.max_references
                assert made.input_images == (IMAGE, *parent.input_images)[:most]
    # Derived, not changed: what still fits is kept.
    if parent.scheduler in spec.schedulers:
        assert made.scheduler == parent.scheduler
    if limits.negative_prompt:
        assert made.negative_prompt == parent.negative_prompt
    # A valid job: the request validates as if typed, and every img2img job denoises.
    rebuilt = build_request(
        catalogue,
        prompt=made.prompt,
        model=made.model,
        negative_prompt=made.negative_prompt or None,
        width=made.width,
        height=made.height,
        steps=made.steps,
        guidance=made.guidance if limits.guidance else None,
        scheduler=made.scheduler,
        seeds=made.seeds,
        init_image=made.init_image,
        strength=made.strength,
        input_images=made.input_images,
    )
    assert replace(rebuilt, parent_job=made.parent_job, kind=made.kind) == made
    if made.strength is not None:
        assert denoising_steps(spec.family, made.steps, made.strength) >= 1


def _parents(spec: ModelSpec) -> list[GenerationRequest]:
    """Results of `spec` (under CATALOGUE): every suggested aspect x its step range, with the
    non-default scheduler and a negative prompt where the model has them."""
    parents = []
    for aspect in ASPECTS:
        for steps in range(1, spec.limits.max_steps + 1):
            parents.append(
                build_request(
                    CATALOGUE,
                    prompt="a fox" + " red" * (steps % 2),
                    model=spec.name,
                    negative_prompt="blurry" if spec.limits.negative_prompt else None,
                    scheduler=spec.schedulers[-1],
                    aspect=aspect,
                    steps=steps,
                    count=2,
                    seed=3,
                )
            )
    return parents


def test_every_offered_button_makes_a_valid_job() -> None:
    checked = 0
    for spec in CATALOGUE.values():
        for parent in _parents(spec):
            for action in BUTTONS:
                _check(CATALOGUE, parent, action)
                checked += 1
    assert checked > 5000
    # Each reaction that makes a job is one of the buttons above.
    assert {a for a in REACTIONS.values() if a not in (Action.SEND_DM, Action.DELETE)} <= set(
        BUTTONS
    )


# Every kind of limit an owner may tighten after results were made (README, models table).
TIGHTENED = {
    "min_side": {"min_side": 768},
    "max_side": {"max_side": 1024},
    "multiple_of": {"multiple_of": 128},
    "max_megapixels": {"max_megapixels": 0.5},
    "max_steps": {"steps": 2, "max_steps": 2},  # defaults must lie within the limits
    "min_guidance": {"guidance": 5.0, "min_guidance": 5.0},
    "max_guidance": {"guidance": 1.0, "max_guidance": 1.0},
    "guidance_adjustable": {"guidance_adjustable": False},
    "negative_prompt": {"negative_prompt": False},
    "max_prompt_chars": {"max_prompt_chars": 6},  # "a fox" and "blurry" fit
    "schedulers": {"schedulers": ["edm-euler"]},
    "all at once": {
        "max_side": 1536,
        "multiple_of": 128,
        "max_megapixels": 1.0,
        "steps": 3,
        "max_steps": 3,
        "guidance": 2.0,
        "max_guidance": 2.0,
        "negative_prompt": False,
        "schedulers": ["edm-euler"],
    },
}


@pytest.mark.parametrize("kind", TIGHTENED)
def test_buttons_on_results_made_under_other_limits_still_make_valid_jobs(kind: str) -> None:
    """The owner tightened a limit since the results were made: every button still offered
    makes a job the model now accepts; one left out has no valid job."""
    offered = 0
    for name in ("playground-v2.5", "flux-dev", "coarse-sdxl"):
        spec = CATALOGUE[name]
        table = dict(TIGHTENED[kind])
        if spec.family is not Family.PLAYGROUND and "schedulers" in table:
            table["schedulers"] = list(spec.schedulers)
        tighter = Catalogue.from_config(
            {**CATALOGUE_CONFIG, name: {**CATALOGUE_CONFIG.get(name, {}), **table}}
        )
        for parent in _parents(spec)[:: max(1, spec.limits.max_steps // 12)]:
            for action in BUTTONS:
                _check(tighter, parent, action)
                offered += action in derived.offered_actions(tighter, parent)
    assert offered > 100


def test_nothing_is_offered_where_no_gpu_may_run_the_model() -> None:
    parent = build_request(CATALOGUE, prompt="a fox", aspect="16:9")
    assert set(derived.offered_actions(CATALOGUE, parent)) == {
        *derived.IMAGE_ACTIONS,
        *derived.JOB_ACTIONS,
    }
    assert derived.offered_actions(CATALOGUE, parent, lambda model: model != parent.model) == ()
    retired = replace(parent, model="retired-model")
    assert derived.offered_actions(CATALOGUE, retired) == ()
    with pytest.raises(UserError, match="no longer offered"):
        derived.rerun(CATALOGUE, retired, 1)


def test_vary_strength_too_low_for_the_steps_says_which_strength_works() -> None:
    few = Catalogue.from_config(
        {"few": {"family": "playground", "source": "/m/c", "max_steps": 3, "steps": 2}}
    )
    parent = build_request(few, prompt="a fox", model="few")
    with pytest.raises(UserError, match=r"at least 0\.34"):
        derived.vary(few, parent, 1, IMAGE, strength=0.05)
    made = derived.vary(few, parent, 1, IMAGE, strength=0.34)
    assert denoising_steps(Family.PLAYGROUND, made.steps, 0.34) == 1


def test_reroll_fits_lowered_limits_and_rerun_is_refused_with_a_sentence() -> None:
    parent = build_request(CATALOGUE, prompt="a fox", aspect="16:9", steps=50, seed=2)
    lower = Catalogue.from_config(
        {"playground-v2.5": {"steps": 20, "max_steps": 20, "max_side": 1024}}
    )
    rolled = derived.reroll(lower, parent, 1)
    assert (rolled.steps, rolled.width, rolled.height) == (20, 1024, 576)
    refused = r"cannot be rerun exactly.*width must be between 256 and 1024"
    with pytest.raises(UserError, match=refused):
        derived.rerun(lower, parent, 1)


def test_u_is_offered_below_the_largest_size_only() -> None:
    playground = CATALOGUE["playground-v2.5"]
    wide = build_request(CATALOGUE, prompt="a fox", aspect="16:9")
    assert (wide.width, wide.height) == (1344, 768)
    assert Action.UPSCALE in derived.offered_actions(CATALOGUE, wide)
    made = derived.upscale(CATALOGUE, wide, 1, IMAGE, wide.seeds[0])
    assert (made.width, made.height) == (2048, 1152)  # not 2688x1536, refused before
    largest = build_request(CATALOGUE, prompt="a fox", width=2048, height=1152)
    assert Action.UPSCALE not in derived.offered_actions(CATALOGUE, largest)
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


def test_a_variation_fitted_to_new_limits_says_what_it_changed() -> None:
    parent = build_request(
        CATALOGUE,
        prompt="a fox",
        negative_prompt="blurry",
        scheduler="edm-euler",
        steps=40,
        seed=1,
    )
    now = Catalogue.from_config(
        {
            "playground-v2.5": {
                "negative_prompt": False,
                "schedulers": ["edm-dpmsolver++"],
                "steps": 30,
                "max_steps": 30,
            }
        }
    )
    assert Action.RERUN not in derived.offered_actions(now, parent)
    made = derived.vary(now, parent, 7, IMAGE)
    assert (made.negative_prompt, made.scheduler, made.steps) == ("", "edm-dpmsolver++", 30)

    def record(job_id: int, request: GenerationRequest) -> JobRecord:
        return JobRecord(job_id, JobOwner(1), request, JobStatus.DONE, queued_at=0.0)

    note = derived_note(record(8, made), record(7, parent))
    assert note is not None
    assert "limits changed since job `7`" in note
    assert "without your negative prompt" in note
    assert "scheduler edm-dpmsolver++ (not edm-euler)" in note
    assert "30 steps (not 40)" in note
    assert (
        derived_note(record(8, derived.vary(CATALOGUE, parent, 7, IMAGE)), record(7, parent))
        is None
    )


@MODULE_LOOP
async def test_buttons_on_an_old_result_fit_tightened_limits_through_the_bot(
    studio_with: StudioFactory, tiny_model_dirs: dict[str, Path]
) -> None:
    """A result made last month with a negative prompt, the second scheduler and 8 steps; the
    owner has since turned negative prompts off, kept one scheduler and lowered max_steps to 3.
    /show offers no 🔁 (it could not be exact) and /rerun says why; V runs, fitted, and says
    what it changed."""
    models = catalogue_config(tiny_model_dirs)
    then = Catalogue.from_config(models)
    models["playground-v2.5"] |= {
        "negative_prompt": False,
        "schedulers": ["edm-dpmsolver++"],
        "steps": 3,
        "max_steps": 3,
    }
    async with studio_with(models=models) as world:
        fake, alice = world.fake, world.fake.user("alice")
        old = build_request(
            then,
            prompt="a lighthouse",
            negative_prompt="blurry",
            scheduler="edm-euler",
            steps=8,
            seed=5,
        )
        job = await world.database.create_job(old, JobOwner(alice.id))
        await world.database.mark_running(job, "cpu")
        png = _png(old.width, old.height)
        await world.database.mark_done(job, [GeneratedImage(0, 5, png, old.width, old.height)], 1.0)

        shown = await answer(fake, await fake.slash(alice, "show", {"job": job}))
        assert f"atelier:rerun:{job}" not in shown.custom_ids
        assert f"atelier:reroll:{job}" in shown.custom_ids
        refused = await private_reply(fake, await fake.slash(alice, "rerun", {"job": job}))
        assert "cannot be rerun exactly" in refused

        ix = await fake.click(alice, shown, f"atelier:vary-subtle:{job}:0")
        varied = job_id_of(await fake.wait_for(lambda: ix.original))
        result = await world.result_of(varied)
        request = (await world.delivered(varied)).record.request
        assert (request.negative_prompt, request.scheduler) == ("", "edm-dpmsolver++")
        assert request.steps == 3
        assert "without your negative prompt" in result.content
        assert "scheduler edm-dpmsolver++ (not edm-euler)" in result.content


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "orange").save(buffer, format="PNG")
    return buffer.getvalue()
