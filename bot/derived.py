"""New requests made from a finished job: rerun, reroll, vary and upscale.

A rerun keeps every parameter and seed, so the images come out pixel-identical; it is refused
(and its button left out) where the model is gone or its limits no longer admit the job, since a
changed rerun would not be one. The others go through `build_request` again with parameters
derived to fit the model's CURRENT limits (`fitted`): steps and guidance clamped into range, a
scheduler no longer offered replaced by the default, a negative prompt dropped where the model no
longer takes one (the result says so: `bot.ui.notes.derived_note`), a size no longer allowed
replaced by the nearest allowed one at the same aspect. An upscale asks for twice the size or,
where the model allows less, the largest size at the same aspect; a variation raises the steps
only where, at the parent's steps, the model's img2img pipeline would run no denoising step at
all (`generation.img2img`). Where no valid job exists (an image already at the largest size, a
prompt longer than the model now takes), `offered_actions` leaves the button out and the
derivation raises `UserError` with a sentence saying why.

A job of an API model (`generation.hosted`) offers 🔁 (a *seeded rerun*: the same seeds and
parameters, never promised identical) and 🎲 (new seeds, the rest as it was, checked against the
API model's current limits), no U or V.

FLUX.2 [klein] and FLUX.1 Kontext have no img2img (diffusers 0.42 gives them no `strength`):
for them V strong makes new seeds with the clicked image as the first reference (the parent's
other references after it, up to the model's limit), and V subtle and U are not offered. Where
the parent's first reference is the image it changed (an edit, or itself such a variation, or a
rerun or reroll of one: `origin`), the
clicked image takes its place: a result replaces the image it was made from. A reroll keeps the
parent's references. Every derivation starts from the complete record (its init image and
references read: `MAKES_JOB`).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache

from bot.actions import Action
from bot.errors import UserError
from generation.drafts import final_request
from generation.img2img import denoising_steps, steps_that_run
from generation.models import IMG2IMG_FAMILIES, Catalogue, ModelSpec
from generation.request import (
    GenerationRequest,
    JobKind,
    RequestError,
    build_request,
    random_seeds,
    rebuild,
)

VARY_STRENGTH = {False: 0.35, True: 0.7}  # subtle, strong
UPSCALE_FACTOR = 2
UPSCALE_STRENGTH = 0.3
IMAGE_ACTIONS = (Action.UPSCALE, Action.VARY_SUBTLE, Action.VARY_STRONG)
JOB_ACTIONS = (Action.RERUN, Action.REROLL)
DRAFT_ACTIONS = (Action.FINAL,)  # offered on drafts only (`generation.drafts`)
# The actions that make a job from a record: they read it with its images (storage: a record
# read without them has no init image and no references, and makes a wrong job).
MAKES_JOB = (*IMAGE_ACTIONS, *JOB_ACTIONS, *DRAFT_ACTIONS)


def rerun(
    catalogue: Catalogue,
    request: GenerationRequest,
    job_id: int,
    index: int | None = None,
    profile: str | None = None,
) -> GenerationRequest:
    """The same job again (or one of its images): same parameters, same seeds, and the memory
    `profile` the job ran with. Raises `UserError` where the model is gone or its current limits
    no longer admit the job."""
    problem = rerun_problem(catalogue, request)
    if problem:
        raise UserError(problem)
    seeds = request.seeds if index is None else (request.seeds[index],)
    return replace(
        request,
        seeds=seeds,
        parent_job=job_id,
        parent_image=None,
        kind=JobKind.RERUN,
        profile=profile,
    )


def rerun_problem(catalogue: Catalogue, request: GenerationRequest) -> str | None:
    """Why `request` cannot be rerun exactly (a sentence), None where it can. A job of an API
    model is rerun as a *seeded rerun* (same seed and parameters; labelled by `rerun_note`)
    while the model is offered: BFL validated it when it was made."""
    if request.model in catalogue.hosted:
        return None
    spec = _spec(catalogue, request)
    try:
        again = rebuild(catalogue, request)
    except RequestError as error:
        return (
            f"This job cannot be rerun exactly: {spec.name}'s limits changed since it was "
            f"made. {error.message} 🎲 makes it again with new seeds within today's limits."
        )
    if again.guidance != request.guidance:
        return (
            f"This job cannot be rerun exactly: {spec.name}'s guidance is now fixed at "
            f"{again.guidance:g} (the job used {request.guidance:g})."
        )
    return None


def reroll(catalogue: Catalogue, request: GenerationRequest, job_id: int) -> GenerationRequest:
    """The same parameters with fresh seeds, fitted to the model's current limits (a draft's
    reroll is a draft of the same final job; an API model's job: checked against them as they
    are; `UserError` where it no longer passes)."""
    if request.model in catalogue.hosted:
        return _hosted_reroll(catalogue, request, job_id)
    spec = _spec(catalogue, request)
    rerolled = _build(
        catalogue,
        spec,
        request,
        size=_size(spec, request),
        steps=min(request.steps, spec.limits.max_steps),
        seeds=random_seeds(request.count),
        kind=JobKind.REROLL,
        job_id=job_id,
        init_image=request.init_image,
        strength=request.strength,
        references=request.input_images,
    )
    return replace(rerolled, final=request.final)


def offered_actions(
    catalogue: Catalogue,
    request: GenerationRequest,
    may_run: Callable[[str], bool] = lambda model: True,
) -> tuple[Action, ...]:
    """The actions that make a valid job from `request` (U, V subtle, V strong per image; 🔁 🎲
    per job, and ✅ Final on a draft): the buttons a result offers. `may_run(model)` says whether
    any GPU may run a model (`WorkerPool.may_run`); none is offered where none may (a draft's
    Final: where none may run the final model)."""
    if request.model in catalogue.hosted:
        if not may_run(request.model):
            return ()
        actions: tuple[Action, ...] = JOB_ACTIONS  # a seeded rerun and a reroll; no img2img
    elif request.model not in catalogue or not may_run(request.model):
        return ()
    else:
        actions = (*IMAGE_ACTIONS, *JOB_ACTIONS, *DRAFT_ACTIONS)
    offered = []
    for action in actions:
        if action is Action.FINAL and (request.final is None or not may_run(request.final.model)):
            continue
        try:
            derive(catalogue, action, request, 0, placeholder_image(request.width, request.height))
        except UserError:
            continue
        offered.append(action)
    return tuple(offered)


def derive(
    catalogue: Catalogue,
    action: Action,
    request: GenerationRequest,
    job_id: int,
    image: bytes = b"",
    index: int = 0,
    profile: str | None = None,
    origin: JobKind | None = None,
) -> GenerationRequest:
    """The job a button of `request`'s result makes (`image`: the clicked image, the `index`-th,
    for U and V; `profile`: the job's memory profile, which a rerun keeps; `origin`: the kind of
    the job a rerun or reroll repeats, followed back through its parents, default
    `request.kind`). Raises `UserError` where none is valid."""
    match action:
        case Action.RERUN:
            return rerun(catalogue, request, job_id, profile=profile)
        case Action.REROLL:
            return reroll(catalogue, request, job_id)
        case Action.VARY_SUBTLE | Action.VARY_STRONG:
            strong = action is Action.VARY_STRONG
            return vary(catalogue, request, job_id, image, strong=strong, origin=origin)
        case Action.UPSCALE:
            return upscale(catalogue, request, job_id, image, request.seeds[index])
        case Action.FINAL:
            try:
                return final_request(catalogue, request, job_id)
            except RequestError as error:
                raise UserError(error.message) from None
    raise ValueError(f"{action} makes no new job")


def upscale_size(spec: ModelSpec, request: GenerationRequest) -> tuple[int, int] | None:
    """The size an upscale of `request`'s images makes, None where none is larger."""
    return spec.upscale_size(request.width, request.height, UPSCALE_FACTOR)


def vary(
    catalogue: Catalogue,
    request: GenerationRequest,
    job_id: int,
    image: bytes,
    *,
    strong: bool = False,
    strength: float | None = None,
    origin: JobKind | None = None,
) -> GenerationRequest:
    """Variations of one image (img2img at the same size, or the nearest the model now allows),
    as many as the job made; for a family without img2img, strong ones only: new seeds with
    the image as the first reference (`origin`: as for `derive`)."""
    spec = _spec(catalogue, request)
    if spec.family not in IMG2IMG_FAMILIES:
        kind = request.kind if origin is None else origin
        return _from_reference(catalogue, spec, request, job_id, image, strong=strong, kind=kind)
    return _from_image(
        catalogue,
        spec,
        request,
        job_id,
        image,
        size=_size(spec, request),
        strength=VARY_STRENGTH[strong] if strength is None else strength,
        count=request.count,
        kind=JobKind.VARY,
    )


def upscale(
    catalogue: Catalogue, request: GenerationRequest, job_id: int, image: bytes, seed: int
) -> GenerationRequest:
    """One image at twice the size (or the model's largest at that aspect), refined lightly
    from the original (same seed)."""
    spec = _spec(catalogue, request)
    if spec.family not in IMG2IMG_FAMILIES:
        raise UserError(f"{spec.name} has no image-to-image, so it cannot upscale an image.")
    size = upscale_size(spec, request)
    if size is None:
        raise UserError(
            f"This image ({request.width}x{request.height}) is already at the largest size "
            f"{request.model} makes at its aspect."
        )
    return _from_image(
        catalogue,
        spec,
        request,
        job_id,
        image,
        size=size,
        strength=UPSCALE_STRENGTH,
        seeds=(seed,),
        kind=JobKind.UPSCALE,
    )


def _spec(catalogue: Catalogue, request: GenerationRequest) -> ModelSpec:
    if request.model in catalogue.hosted:  # U and V: img2img, which the API models lack
        raise UserError(
            f"{request.model} runs on Black Forest Labs' API, which makes no variations or "
            "upscales of an image; 🎲 makes new images of the same prompt."
        )
    if request.model not in catalogue:
        raise UserError(f"The model {request.model} is no longer offered here.")
    return catalogue[request.model]


def _size(spec: ModelSpec, request: GenerationRequest) -> tuple[int, int]:
    """The job's size, or the nearest the model now allows at its aspect."""
    size = (request.width, request.height)
    return size if spec.limits.allows_size(*size) else spec.size_for_aspect(*size)


def _guidance(spec: ModelSpec, guidance: float) -> float | None:
    """The job's guidance within the model's current limits (None where it is fixed)."""
    limits = spec.limits
    if not limits.guidance:
        return None
    return min(max(guidance, limits.min_guidance), limits.max_guidance)


def _from_image(
    catalogue: Catalogue,
    spec: ModelSpec,
    request: GenerationRequest,
    job_id: int,
    image: bytes,
    *,
    size: tuple[int, int],
    strength: float,
    kind: JobKind,
    count: int = 1,
    seeds: tuple[int, ...] | None = None,
) -> GenerationRequest:
    max_steps = spec.limits.max_steps
    steps = steps_that_run(spec.family, request.steps, strength, max_steps)
    if steps is None:
        lowest = _lowest_strength(spec)
        raise UserError(
            f"A strength of {strength:g} runs no step on {spec.name} even at its {max_steps} "
            f"steps; choose a strength of at least {lowest:g}."
        )
    return _build(
        catalogue,
        spec,
        request,
        size=size,
        steps=steps,
        seeds=seeds,
        count=count,
        kind=kind,
        job_id=job_id,
        init_image=image,
        strength=strength,
    )


def _from_reference(
    catalogue: Catalogue,
    spec: ModelSpec,
    request: GenerationRequest,
    job_id: int,
    image: bytes,
    *,
    strong: bool,
    kind: JobKind,
) -> GenerationRequest:
    """V strong on a family without img2img: `image` first, then the references `request` was
    given (without the image it changed where the job of `kind` changed its first one)."""
    most = spec.limits.max_references
    if not strong or not most:
        raise UserError(f"{spec.name} has no image-to-image; V strong varies with a reference.")
    # an edit's or a reference variation's first reference is the image it changed
    changed = kind in (JobKind.EDIT, JobKind.VARY)
    given = request.input_images[1:] if changed else request.input_images
    return _build(
        catalogue,
        spec,
        request,
        size=_size(spec, request),
        steps=min(request.steps, spec.limits.max_steps),
        count=request.count,
        kind=JobKind.VARY,
        job_id=job_id,
        init_image=None,
        strength=None,
        references=(image, *given)[:most],
    )


def _hosted_reroll(
    catalogue: Catalogue, request: GenerationRequest, job_id: int
) -> GenerationRequest:
    """An API job again with fresh seeds: its prompt, size or aspect ratio, raw mode, steps,
    guidance and reference images, checked against the API model's limits as they are now."""
    model = catalogue.hosted[request.model]
    try:
        return build_request(
            catalogue,
            prompt=request.prompt,
            model=request.model,
            width=None if model.sized_by_aspect else request.width,
            height=None if model.sized_by_aspect else request.height,
            aspect=request.aspect_ratio,
            steps=request.steps if model.steps is not None else None,
            guidance=request.guidance if model.guidance is not None else None,
            seeds=random_seeds(request.count),
            raw=request.raw,
            input_images=request.input_images,
            parent_job=job_id,
            kind=JobKind.REROLL,
        )
    except RequestError as error:
        raise UserError(f"This job cannot be made again with new seeds: {error.message}") from None


def _lowest_strength(spec: ModelSpec) -> float:
    """The lowest strength (in hundredths, rounded up) that runs a step at the model's most
    steps."""
    for hundredths in range(1, 101):
        if denoising_steps(spec.family, spec.limits.max_steps, hundredths / 100) >= 1:
            return hundredths / 100
    return 1.0


def _build(
    catalogue: Catalogue,
    spec: ModelSpec,
    request: GenerationRequest,
    *,
    size: tuple[int, int],
    steps: int,
    kind: JobKind,
    job_id: int,
    init_image: bytes | None,
    strength: float | None,
    count: int = 1,
    seeds: tuple[int, ...] | None = None,
    references: tuple[bytes, ...] = (),
) -> GenerationRequest:
    """`request`'s prompt and settings fitted to `spec`'s current limits (see the module's
    docstring); `UserError` where they cannot be."""
    limits = spec.limits
    for what, text in (("prompt", request.prompt), ("negative prompt", request.negative_prompt)):
        if len(text) > limits.max_prompt_chars:
            raise UserError(
                f"This job's {what} is {len(text):,} characters long; {spec.name} now takes at "
                f"most {limits.max_prompt_chars:,}, so it cannot make this job again. Use "
                "/imagine with a shorter one."
            )
    scheduler = request.scheduler if request.scheduler in spec.schedulers else None
    try:
        built = build_request(
            catalogue,
            prompt=request.prompt,
            model=request.model,
            negative_prompt=(request.negative_prompt or None) if limits.negative_prompt else None,
            width=size[0],
            height=size[1],
            steps=steps,
            guidance=_guidance(spec, request.guidance),
            scheduler=scheduler,
            seeds=seeds,
            count=count,
            init_image=init_image,
            strength=strength,
            input_images=references,
            parent_job=job_id,
            kind=kind,
        )
    except RequestError as error:  # a limit no derivation can meet (say, an empty prompt)
        raise UserError(error.message) from None
    # The parent's LoRAs and prompt encoder come along: a variation looks like its parent.
    return replace(built, loras=request.loras, prompt_encoder=request.prompt_encoder)


@lru_cache(maxsize=64)
def placeholder_image(width: int, height: int) -> bytes:
    """A PNG of `width` x `height` standing in for a result's image when checking which
    buttons make a job (only its header is read)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (max(1, width), max(1, height))).save(buffer, format="PNG")
    return buffer.getvalue()
