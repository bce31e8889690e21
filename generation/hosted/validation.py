"""A person's input for an API model → a validated `GenerationRequest`, or `RequestError`.

Called by `generation.request.build_request` for a model in `catalogue.hosted`, so a request is
validated once, in one place, whatever its backend; the API then never sees a request that
Atelier could have refused. The limits are the catalogue's (`generation.hosted.catalogue`).
"""

from __future__ import annotations

import math
from fractions import Fraction

from generation.hosted.catalogue import HostedModel
from generation.input_images import check_header, upright_size
from generation.request import (
    GenerationRequest,
    RequestError,
    RequestFields,
    check_references,
    check_seeds,
    parse_aspect,
)
from generation.text import clean_text

MAX_PROMPT_CHARS = 2000  # as local models (`ModelLimits.max_prompt_chars`)


def build_hosted_request(model: HostedModel, fields: RequestFields) -> GenerationRequest:
    """Check every field against `model`'s documented limits; see `build_request`.

    `steps` and `guidance` are 0 for models that take neither (the API decides), `scheduler`
    is empty; `width` x `height` is the size asked for, or for a model sized by aspect ratio the
    size it makes at about its nominal pixel count (the stored image has the real one).
    """
    name = model.title
    prompt = clean_text(fields.prompt or "")
    if not prompt:
        raise RequestError("prompt", "The prompt is empty.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RequestError(
            "prompt",
            f"The prompt is {len(prompt):,} characters long; {name} takes at most "
            f"{MAX_PROMPT_CHARS:,}.",
        )
    if clean_text(fields.negative_prompt or ""):
        raise RequestError("negative_prompt", f"{name} does not support a negative prompt.")
    if fields.scheduler is not None:
        raise RequestError("scheduler", f"{name} runs on Black Forest Labs' API: no scheduler.")
    if fields.init_image is not None or fields.strength is not None:
        raise RequestError(
            "image",
            f"{name} takes reference images instead of an init image and strength."
            if model.max_inputs
            else f"{name} takes no image.",
        )
    if fields.raw and not model.raw:
        raise RequestError("raw", f"{name} has no raw mode (only FLUX1.1 [pro] Ultra has).")
    inputs = _inputs(model, tuple(fields.input_images or ()))
    aspect_ratio, width, height = _size(model, fields.width, fields.height, fields.aspect, inputs)
    return GenerationRequest(
        model=model.name,
        prompt=prompt,
        negative_prompt="",
        width=width,
        height=height,
        steps=_steps(model, fields.steps),
        guidance=_guidance(model, fields.guidance),
        scheduler="",
        seeds=check_seeds(fields.seed, fields.seeds, fields.count),
        parent_job=fields.parent_job,
        kind=fields.kind,
        aspect_ratio=aspect_ratio,
        raw=bool(fields.raw),
        input_images=inputs,
    )


def _inputs(model: HostedModel, images: tuple[bytes, ...]) -> tuple[bytes, ...]:
    check_references(model.title, model.max_inputs, images)
    pixels = sum(width * height for width, height in map(check_header, images))
    if model.max_input_pixels and pixels > model.max_input_pixels:
        raise RequestError(
            "image",
            f"The reference images have {pixels / 1e6:.1f} million pixels in all; {model.title} "
            f"takes at most {model.max_input_pixels / 1e6:g} million. Use fewer or smaller ones.",
        )
    return images


def _size(
    model: HostedModel,
    width: int | None,
    height: int | None,
    aspect: str | None,
    inputs: tuple[bytes, ...],
) -> tuple[str | None, int, int]:
    """(`aspect_ratio` to send, width, height)."""
    sized = width is not None or height is not None
    if aspect is not None and sized:
        raise RequestError("size", "Give either an aspect ratio or a width and height, not both.")
    if model.sized_by_aspect:
        if sized:
            raise RequestError(
                "size", f"{model.title} takes an aspect ratio (such as 16:9), not a size."
            )
        if aspect is None and inputs:  # the API follows the first input's shape
            w, h = upright_size(inputs[0])
            return None, *_nominal(model, Fraction(w, h))
        w, h = parse_aspect(aspect or model.default_aspect)
        wide, tall = model.aspect_range()
        if not tall <= Fraction(w, h) <= wide:
            raise RequestError(
                "aspect",
                f"{model.title} takes aspect ratios from {model.aspect_ratios[0]} to "
                f"{model.aspect_ratios[1]} (not {w}:{h}).",
            )
        return f"{w}:{h}", *_nominal(model, Fraction(w, h))
    if aspect is not None or (not sized and inputs):
        w, h = parse_aspect(aspect) if aspect is not None else upright_size(inputs[0])
        return None, *_fit(model, Fraction(w, h))
    if not sized:
        return None, *model.default_size
    if width is None or height is None:
        raise RequestError("size", "Give both a width and a height (or an aspect ratio).")
    for label, side in (("width", width), ("height", height)):
        if not model.min_side <= side <= model.max_side:
            raise RequestError(
                label,
                f"The {label} must be between {model.min_side} and {model.max_side} pixels "
                f"for {model.title} (got {side}).",
            )
        if side % model.multiple_of:
            step = model.multiple_of
            raise RequestError(
                label,
                f"The {label} must be a multiple of {step} for {model.title} "
                f"(got {side}; try {max(step, round(side / step) * step)}).",
            )
    if width * height > model.max_pixels:
        raise RequestError(
            "size",
            f"{width}x{height} is {width * height:,} pixels; {model.title} allows at most "
            f"{model.max_pixels:,}.",
        )
    return None, width, height


def _nominal(model: HostedModel, ratio: Fraction) -> tuple[int, int]:
    """About `nominal_pixels` at `ratio`, sides in multiples of 32 (what the API makes)."""
    width = math.sqrt(model.nominal_pixels * ratio)
    return max(32, round(width / 32) * 32), max(32, round(width / ratio / 32) * 32)


def _fit(model: HostedModel, ratio: Fraction) -> tuple[int, int]:
    """The size of about one megapixel at `ratio` within `model`'s size limits."""
    step = model.multiple_of
    area = min(1024 * 1024, model.max_pixels)
    while True:
        width, height = math.sqrt(area * ratio), math.sqrt(area / ratio)
        scale = min(1.0, model.max_side / max(width, height))
        scale = max(scale, model.min_side / min(width, height))
        w, h = (
            min(model.max_side, max(model.min_side, round(side * scale / step) * step))
            for side in (width, height)
        )
        if w * h <= model.max_pixels:
            return w, h
        area *= 0.98


def _steps(model: HostedModel, steps: int | None) -> int:
    if model.steps is None:
        if steps is not None:
            raise RequestError("steps", f"{model.title} chooses its own steps.")
        return 0
    default, least, most = model.steps
    if steps is None:
        return default
    if not least <= steps <= most:
        raise RequestError("steps", f"Steps must be between {least} and {most} for {model.title}.")
    return steps


def _guidance(model: HostedModel, guidance: float | None) -> float:
    if model.guidance is None:
        if guidance is not None:
            raise RequestError("guidance", f"{model.title} does not take a guidance scale.")
        return 0.0
    default, least, most = model.guidance
    if guidance is None:
        return default
    if guidance != guidance or not least <= guidance <= most:
        raise RequestError(
            "guidance", f"Guidance must be between {least:g} and {most:g} for {model.title}."
        )
    return float(guidance)
