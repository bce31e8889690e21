"""New requests made from a finished job: rerun, reroll, vary and upscale.

A rerun keeps every parameter and seed, so the images come out pixel-identical. The others go
through `build_request` again so the model's limits still apply (an upscale may not fit).
"""

from __future__ import annotations

from dataclasses import replace

from generation.models import Catalogue
from generation.request import GenerationRequest, JobKind, build_request, random_seeds

VARY_STRENGTH = {False: 0.35, True: 0.7}  # subtle, strong
UPSCALE_FACTOR = 2
UPSCALE_STRENGTH = 0.3


def rerun(request: GenerationRequest, job_id: int, index: int | None = None) -> GenerationRequest:
    """The same job again (or one of its images): same parameters, same seeds."""
    seeds = request.seeds if index is None else (request.seeds[index],)
    return replace(request, seeds=seeds, parent_job=job_id, kind=JobKind.RERUN)


def reroll(request: GenerationRequest, job_id: int) -> GenerationRequest:
    """The same parameters with fresh seeds."""
    return replace(
        request, seeds=random_seeds(request.count), parent_job=job_id, kind=JobKind.REROLL
    )


def vary(
    catalogue: Catalogue,
    request: GenerationRequest,
    job_id: int,
    image: bytes,
    *,
    strong: bool = False,
    strength: float | None = None,
) -> GenerationRequest:
    """Variations of one image (img2img at the same size), as many as the job made."""
    return _from_image(
        catalogue,
        request,
        job_id,
        image,
        size=(request.width, request.height),
        strength=VARY_STRENGTH[strong] if strength is None else strength,
        count=request.count,
        kind=JobKind.VARY,
    )


def upscale(
    catalogue: Catalogue, request: GenerationRequest, job_id: int, image: bytes, seed: int
) -> GenerationRequest:
    """One image at twice the size, refined lightly from the original (same seed)."""
    return _from_image(
        catalogue,
        request,
        job_id,
        image,
        size=(request.width * UPSCALE_FACTOR, request.height * UPSCALE_FACTOR),
        strength=UPSCALE_STRENGTH,
        seeds=(seed,),
        kind=JobKind.UPSCALE,
    )


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
    return build_request(
        catalogue,
        prompt=request.prompt,
        model=request.model,
        negative_prompt=request.negative_prompt or None,
        width=size[0],
        height=size[1],
        steps=request.steps,
        guidance=request.guidance if catalogue[request.model].limits.guidance else None,
        scheduler=request.scheduler,
        seeds=seeds,
        count=count,
        init_image=image,
        strength=strength,
        parent_job=job_id,
        kind=kind,
    )
