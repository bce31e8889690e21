"""New requests made from a finished job: rerun, reroll, vary and upscale.

A rerun keeps every parameter and seed, so the images come out pixel-identical. The others go
through `build_request` again so the model's limits still apply, with parameters derived so that
the job runs: an upscale asks for twice the size or, where the model allows less, the largest
size at the same aspect; a variation raises the steps only where, at the parent's steps, the
model's img2img pipeline would run no denoising step at all (`generation.img2img`). Where no
valid job exists (an image already at the model's largest size), `image_actions` leaves the
button out and the derivation raises `UserError`.
"""

from __future__ import annotations

from dataclasses import replace

from bot.actions import Action
from bot.errors import UserError
from generation.img2img import steps_that_run
from generation.models import Catalogue, ModelSpec
from generation.request import GenerationRequest, JobKind, build_request, random_seeds

VARY_STRENGTH = {False: 0.35, True: 0.7}  # subtle, strong
UPSCALE_FACTOR = 2
UPSCALE_STRENGTH = 0.3
IMAGE_ACTIONS = (Action.UPSCALE, Action.VARY_SUBTLE, Action.VARY_STRONG)


def rerun(request: GenerationRequest, job_id: int, index: int | None = None) -> GenerationRequest:
    """The same job again (or one of its images): same parameters, same seeds."""
    seeds = request.seeds if index is None else (request.seeds[index],)
    return replace(request, seeds=seeds, parent_job=job_id, kind=JobKind.RERUN)


def reroll(request: GenerationRequest, job_id: int) -> GenerationRequest:
    """The same parameters with fresh seeds."""
    return replace(
        request, seeds=random_seeds(request.count), parent_job=job_id, kind=JobKind.REROLL
    )


def image_actions(catalogue: Catalogue, request: GenerationRequest) -> tuple[Action, ...]:
    """The per-image actions (U, V subtle, V strong) that make a valid job from `request`'s
    images: the buttons a result offers."""
    if request.model not in catalogue:
        return ()
    spec = catalogue[request.model]
    offered = []
    if upscale_size(spec, request) and _steps(spec, request, UPSCALE_STRENGTH) is not None:
        offered.append(Action.UPSCALE)
    for action, strong in ((Action.VARY_SUBTLE, False), (Action.VARY_STRONG, True)):
        if _steps(spec, request, VARY_STRENGTH[strong]) is not None:
            offered.append(action)
    return tuple(offered)


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
) -> GenerationRequest:
    """Variations of one image (img2img at the same size, or the nearest the model now allows),
    as many as the job made."""
    spec = _spec(catalogue, request)
    size = (request.width, request.height)
    if not spec.limits.allows_size(*size):  # the model's limits changed since the job
        size = spec.size_for_aspect(*size)
    return _from_image(
        catalogue,
        request,
        job_id,
        image,
        size=size,
        strength=VARY_STRENGTH[strong] if strength is None else strength,
        count=request.count,
        kind=JobKind.VARY,
    )


def upscale(
    catalogue: Catalogue, request: GenerationRequest, job_id: int, image: bytes, seed: int
) -> GenerationRequest:
    """One image at twice the size (or the model's largest at that aspect), refined lightly
    from the original (same seed)."""
    size = upscale_size(_spec(catalogue, request), request)
    if size is None:
        raise UserError(
            f"This image ({request.width}x{request.height}) is already at the largest size "
            f"{request.model} makes at its aspect."
        )
    return _from_image(
        catalogue,
        request,
        job_id,
        image,
        size=size,
        strength=UPSCALE_STRENGTH,
        seeds=(seed,),
        kind=JobKind.UPSCALE,
    )


def _spec(catalogue: Catalogue, request: GenerationRequest) -> ModelSpec:
    if request.model not in catalogue:
        raise UserError(f"The model {request.model} is no longer offered here.")
    return catalogue[request.model]


def _steps(spec: ModelSpec, request: GenerationRequest, strength: float) -> int | None:
    return steps_that_run(spec.family, request.steps, strength, spec.limits.max_steps)


def _guidance(spec: ModelSpec, guidance: float) -> float | None:
    """The job's guidance within the model's current limits (None where it is fixed)."""
    limits = spec.limits
    if not limits.guidance:
        return None
    return min(max(guidance, limits.min_guidance), limits.max_guidance)


def _from_image(
    catalogue: Catalogue,
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
    spec = _spec(catalogue, request)
    steps = _steps(spec, request, strength)
    if steps is None:
        raise UserError(
            f"A strength of {strength:g} runs no step on {spec.name} even at its "
            f"{spec.limits.max_steps} steps; choose a higher strength."
        )
    return build_request(
        catalogue,
        prompt=request.prompt,
        model=request.model,
        negative_prompt=request.negative_prompt or None,
        width=size[0],
        height=size[1],
        steps=steps,
        guidance=_guidance(spec, request.guidance),
        scheduler=request.scheduler,
        seeds=seeds,
        count=count,
        init_image=image,
        strength=strength,
        parent_job=job_id,
        kind=kind,
    )
