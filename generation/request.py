"""`GenerationRequest`: what to generate, validated once, frozen, and serialisable to JSON.

Front ends (the bot, the CLI) call `build_request` with what a person typed; it checks every
field against the model's limits in the catalogue and raises `RequestError` with a message meant
for that person. The resulting request is immutable and round-trips through JSON losslessly, so
storage keeps it and a rerun months later rebuilds the very same request.
"""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from generation.img2img import denoising_steps
from generation.input_images import MAX_BYTES as MAX_INIT_IMAGE_BYTES
from generation.input_images import UnusableImage, check_header, upright_size
from generation.loras import LoraCatalogue, LoraError, LoraUse, choose_loras
from generation.models import (
    ASPECT_TOLERANCE,
    IMG2IMG_FAMILIES,
    Catalogue,
    ModelSpec,
    UnknownModel,
)
from generation.prompts import COMPEL, PLAIN, PROMPT_ENCODERS, bracket_problem, default_encoder
from generation.text import clean_text

MAX_COUNT = 4
MAX_SEED = 2**63 - 1
_ASPECT = re.compile(r"^\s*(\d{1,3})\s*[:x/]\s*(\d{1,3})\s*$")
_MAX_ASPECT_RATIO = 4.0


class JobKind(StrEnum):
    """Why a job exists: a fresh prompt, or derived from a parent job."""

    NEW = "new"
    RERUN = "rerun"  # same seeds, same parameters: identical images
    REROLL = "reroll"  # same parameters, new seeds
    VARY = "vary"  # img2img from one of the parent's images
    UPSCALE = "upscale"  # img2img at twice the size from one of the parent's images
    EDIT = "edit"  # an instruction applied to one of the parent's images (its reference)
    FINAL = "final"  # a draft's final job: its prompt and seeds on the model it drafts for


class RequestError(ValueError):
    """A request that cannot be run, with a message for the person who asked."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A validated request. Build it with `build_request`; `count` is `len(seeds)`."""

    model: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    scheduler: str
    seeds: tuple[int, ...]
    init_image: bytes | None = None
    strength: float | None = None
    parent_job: int | None = None
    kind: JobKind = JobKind.NEW
    # Hosted (API) models only (`generation.hosted`); left out of the JSON at their defaults, so
    # local jobs' records are as before.
    aspect_ratio: str | None = None  # sent as `aspect_ratio` by models sized by aspect
    raw: bool = False  # FLUX1.1 [pro] Ultra's raw mode
    input_images: tuple[bytes, ...] = ()  # reference images, checked and canonical
    # The memory profile to run with (a rerun asks for its parent's); None: the worker's own.
    profile: str | None = None
    # Absent from jobs made before LoRAs and compel: they read back as none and "plain", as made.
    loras: tuple[LoraUse, ...] = ()
    prompt_encoder: str = PLAIN
    # Which image of `parent_job` (0-based) an edit changes; left out of the JSON when None.
    parent_image: int | None = None
    # A draft (`generation.drafts`): the job it previews, without seeds of its own use or image
    # bytes (the draft's seeds and references are the final's). Absent from other jobs' JSON.
    final: GenerationRequest | None = None

    @property
    def count(self) -> int:
        return len(self.seeds)

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1_000_000

    def with_seeds(self, seeds: tuple[int, ...]) -> GenerationRequest:
        return replace(self, seeds=tuple(seeds))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the init image as base64)."""
        data = asdict(self)
        data["seeds"] = list(self.seeds)
        data["kind"] = self.kind.value
        data["loras"] = [{"name": use.name, "weight": use.weight} for use in self.loras]
        if self.init_image is not None:
            data["init_image"] = base64.b64encode(self.init_image).decode("ascii")
        data["input_images"] = [base64.b64encode(i).decode("ascii") for i in self.input_images]
        data["final"] = None if self.final is None else self.final.to_dict()
        for name, default in _OMITTED_AT_DEFAULT.items():
            if data[name] == default:
                del data[name]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationRequest:
        data = dict(data)
        data["seeds"] = tuple(int(s) for s in data["seeds"])
        data["kind"] = JobKind(data.get("kind", JobKind.NEW))
        data["guidance"] = float(data["guidance"])
        data["loras"] = tuple(
            LoraUse(str(use["name"]), float(use["weight"])) for use in data.get("loras", ())
        )
        if data.get("init_image") is not None:
            data["init_image"] = base64.b64decode(data["init_image"])
        data["input_images"] = tuple(base64.b64decode(i) for i in data.get("input_images", ()))
        if data.get("final") is not None:
            data["final"] = cls.from_dict(data["final"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> GenerationRequest:
        return cls.from_dict(json.loads(text))


# Fields left out of the JSON at their defaults, so that older jobs' records read as they were.
_OMITTED_AT_DEFAULT: dict[str, Any] = {
    "aspect_ratio": None,
    "raw": False,
    "input_images": [],
    "parent_image": None,
    "final": None,
}


def random_seeds(count: int) -> tuple[int, ...]:
    """Fresh seeds that fit every framework's generator (non-negative, below 2**32)."""
    return tuple(secrets.randbelow(2**32) for _ in range(count))


def parse_aspect(aspect: str) -> tuple[int, int]:
    """`"16:9"` → (16, 9); also accepts `16x9` and `16/9`."""
    match = _ASPECT.match(aspect)
    if not match:
        raise RequestError("aspect", f"Aspect ratio {aspect!r} should look like `16:9`.")
    w, h = int(match[1]), int(match[2])
    if w == 0 or h == 0:
        raise RequestError("aspect", "An aspect ratio cannot have a zero side.")
    if max(w / h, h / w) > _MAX_ASPECT_RATIO:
        raise RequestError("aspect", "Aspect ratios are limited to 4:1 (or 1:4).")
    return w, h


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestFields:
    """What a person asked for, as typed, before any check: `build_request` validates it for a
    local model, `generation.hosted.validation.build_hosted_request` for an API model.

    `seed` is the first image's seed (the others follow it: seed+1, ...); `seeds` gives each
    image's seed explicitly and then decides the count. `input_images`: reference images, up
    to the model's `max_references` (a hosted model's `max_inputs`); `raw` is for the hosted
    models that take it. `loras`: (name, weight or None for the LoRA's default) pairs.
    `prompt_encoder`: "plain" or "compel" (None: the model's default,
    `generation.prompts.default_encoder`)."""

    prompt: str
    model: str | None = None
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    aspect: str | None = None
    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    seed: int | None = None
    seeds: tuple[int, ...] | list[int] | None = None
    count: int = 1
    init_image: bytes | None = None
    strength: float | None = None
    parent_job: int | None = None
    kind: JobKind = JobKind.NEW
    raw: bool | None = None
    input_images: tuple[bytes, ...] | list[bytes] | None = None
    loras: Sequence[tuple[str, float | None]] = ()
    prompt_encoder: str | None = None


def build_request(
    catalogue: Catalogue,
    /,
    *,
    lora_catalogue: LoraCatalogue | None = None,
    disabled_loras: frozenset[str] = frozenset(),
    **asked: Any,
) -> GenerationRequest:
    """Validate what a person asked for (`asked`: the fields of `RequestFields`) and fill in
    the model's defaults. A model in `catalogue.hosted` is checked by
    `generation.hosted.validation`. An init image is refused for a family without img2img.
    LoRAs come from `lora_catalogue`, none of `disabled_loras`. Raises `RequestError` on the
    first fault (`TypeError` for a field `RequestFields` does not have)."""
    fields = RequestFields(**asked)
    model = fields.model
    if model is not None and model in catalogue.hosted:
        from generation.hosted.validation import build_hosted_request  # imports this module

        if fields.loras:
            raise RequestError("lora", f"{model} runs at Black Forest Labs and takes no LoRA.")
        return build_hosted_request(catalogue.hosted[model], fields)
    return _build_local(catalogue, fields, lora_catalogue, disabled_loras)


def rebuild(catalogue: Catalogue, request: GenerationRequest, **changes: Any) -> GenerationRequest:
    """`request`'s chosen parameters checked again against its model's limits today (a rerun's
    or a draft's final's check), with `changes` (fields of `RequestFields`) replacing some.
    Raises `RequestError` where they no longer pass; a field the limits now fix (guidance) comes
    back as the model has it, for the caller to compare."""
    spec = _model(catalogue, request.model)
    chosen: dict[str, Any] = {
        "prompt": request.prompt,
        "model": request.model,
        "negative_prompt": request.negative_prompt or None,
        "width": request.width,
        "height": request.height,
        "steps": request.steps,
        "guidance": request.guidance if spec.limits.guidance else None,
        "scheduler": request.scheduler,
        "seeds": request.seeds,
        "init_image": request.init_image,
        "strength": request.strength,
        "input_images": request.input_images,
        "prompt_encoder": request.prompt_encoder,
    }
    return build_request(catalogue, **(chosen | changes))


def _build_local(
    catalogue: Catalogue,
    fields: RequestFields,
    lora_catalogue: LoraCatalogue | None,
    disabled_loras: frozenset[str],
) -> GenerationRequest:
    """`fields` checked against a local model's limits (`build_request`)."""
    model, raw, init_image, strength = fields.model, fields.raw, fields.init_image, fields.strength
    width, height, aspect = fields.width, fields.height, fields.aspect
    if raw:
        raise RequestError("raw", f"{model or catalogue.default.name} takes no raw mode.")
    spec = _model(catalogue, model)
    limits = spec.limits
    references = check_references(
        spec.name, limits.max_references, tuple(fields.input_images or ())
    )
    _check_reference_shapes(references)
    if init_image is not None and spec.family not in IMG2IMG_FAMILIES:
        raise RequestError(
            "image",
            f"{spec.name} takes no init image (it has no image-to-image); "
            + (
                "give the image as a reference instead."
                if limits.max_references
                else "choose another model."
            ),
        )

    prompt = clean_text(fields.prompt or "")
    if not prompt:
        raise RequestError("prompt", "The prompt is empty.")
    if len(prompt) > limits.max_prompt_chars:
        raise RequestError(
            "prompt",
            f"The prompt is {len(prompt):,} characters long; "
            f"{spec.name} takes at most {limits.max_prompt_chars:,}.",
        )
    negative = clean_text(fields.negative_prompt or "")
    if negative and not limits.negative_prompt:
        raise RequestError("negative_prompt", f"{spec.name} does not support a negative prompt.")
    if len(negative) > limits.max_prompt_chars:
        raise RequestError(
            "negative_prompt",
            f"The negative prompt is {len(negative):,} characters long; "
            f"the limit is {limits.max_prompt_chars:,}.",
        )

    init_image, strength = _init(init_image, strength)
    if init_image is not None and aspect is None and width is None and height is None:
        width, height = spec.size_for_aspect(*upright_size(init_image))
    width, height = _size(spec, width, height, aspect)
    steps = _steps(spec, fields.steps)
    guidance = _guidance(spec, fields.guidance)
    scheduler = _scheduler(spec, fields.scheduler)
    seed_tuple = check_seeds(fields.seed, fields.seeds, fields.count)
    try:
        lora_uses = choose_loras(
            lora_catalogue or LoraCatalogue(), spec, fields.loras, disabled_loras
        )
    except LoraError as error:
        raise RequestError("lora", str(error)) from None
    encoder = default_encoder(spec) if fields.prompt_encoder is None else fields.prompt_encoder
    if encoder not in PROMPT_ENCODERS or (encoder != PLAIN and encoder != default_encoder(spec)):
        raise RequestError("prompt_encoder", f"{spec.name} has no {encoder!r} prompt encoder.")
    if encoder == COMPEL:
        for field, text in (("prompt", prompt), ("negative_prompt", negative)):
            problem = bracket_problem(text)
            if problem:
                raise RequestError(field, problem)
    if strength is not None and denoising_steps(spec.family, steps, strength) < 1:
        raise RequestError(
            "strength",
            f"A strength of {strength:g} with {steps} steps runs no step at all on "
            f"{spec.name}; raise the strength or the steps (strength × steps must be at least 1).",
        )

    return GenerationRequest(
        model=spec.name,
        prompt=prompt,
        negative_prompt=negative,
        width=width,
        height=height,
        steps=steps,
        guidance=guidance,
        scheduler=scheduler,
        seeds=seed_tuple,
        init_image=init_image,
        strength=strength,
        parent_job=fields.parent_job,
        kind=fields.kind,
        input_images=references,
        loras=lora_uses,
        prompt_encoder=encoder,
    )


def check_reference_count(title: str, most: int, count: int) -> None:
    """Raise RequestError where a model (`title`) taking at most `most` references gets `count`
    (front ends call it before downloading anything)."""
    if count and not most:
        raise RequestError("image", f"{title} takes no reference images.")
    if count > most:
        raise RequestError("image", f"{title} takes at most {most} reference images (got {count}).")


def check_references(title: str, most: int, images: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """`images` as reference images for a model (`title`) taking at most `most`: each within
    `MAX_BYTES` and with a header of an accepted format. Raises RequestError otherwise."""
    check_reference_count(title, most, len(images))
    for number, image in enumerate(images, 1):
        if len(image) > MAX_INIT_IMAGE_BYTES:
            raise RequestError(
                "image",
                f"Reference image {number} is larger than {MAX_INIT_IMAGE_BYTES // 2**20} MiB.",
            )
        try:
            check_header(image)
        except UnusableImage as error:
            raise RequestError("image", f"Reference image {number}: {error.message}") from None
    return images


# What Flux2KleinPipeline takes as a reference (`Flux2ImageProcessor.check_image_input`'s
# defaults, diffusers 0.42); it raises on anything else, so such an image is refused here.
REFERENCE_MIN_SIDE = 64
REFERENCE_MAX_ASPECT = 8.0


def _check_reference_shapes(references: tuple[bytes, ...]) -> None:
    for number, image in enumerate(references, 1):
        width, height = upright_size(image)
        if min(width, height) < REFERENCE_MIN_SIDE:
            raise RequestError(
                "image",
                f"Reference image {number} is {width}x{height}; both sides must be at least "
                f"{REFERENCE_MIN_SIDE} pixels.",
            )
        if max(width / height, height / width) > REFERENCE_MAX_ASPECT:
            raise RequestError(
                "image",
                f"Reference image {number} is {width}x{height}, longer than "
                f"{REFERENCE_MAX_ASPECT:g}:1; crop it closer to square.",
            )


def _model(catalogue: Catalogue, name: str | None) -> ModelSpec:
    if name is None:
        return catalogue.default
    try:
        return catalogue[name]
    except UnknownModel as error:
        raise RequestError("model", str(error)) from None


def _size(
    spec: ModelSpec, width: int | None, height: int | None, aspect: str | None
) -> tuple[int, int]:
    limits = spec.limits
    if aspect is not None and (width is not None or height is not None):
        raise RequestError("size", "Give either an aspect ratio or a width and height, not both.")
    if aspect is not None:
        return spec.size_for_aspect(*parse_aspect(aspect))
    if width is None and height is None:
        return spec.size_for_aspect(1, 1)
    if width is None or height is None:
        raise RequestError("size", "Give both a width and a height (or an aspect ratio).")
    for name, side in (("width", width), ("height", height)):
        if not limits.min_side <= side <= limits.max_side:
            raise RequestError(
                name,
                f"The {name} must be between {limits.min_side} and {limits.max_side} pixels "
                f"for {spec.name} (got {side}).",
            )
        if side % limits.multiple_of:
            raise RequestError(
                name,
                f"The {name} must be a multiple of {limits.multiple_of} for {spec.name} "
                f"(got {side}; try {round(side / limits.multiple_of) * limits.multiple_of}).",
            )
    most = limits.max_megapixels * 1_000_000
    if width * height > most:
        # Pixel counts, not rounded megapixels: 1024x1024 must not read as "1.0" beside 1.0.
        raise RequestError(
            "size",
            f"{width}x{height} is {width * height:,} pixels; {spec.name} allows at most "
            f"{math.floor(most):,} ({limits.max_megapixels:g} MP).",
        )
    return width, height


def _steps(spec: ModelSpec, steps: int | None) -> int:
    if steps is None:
        return spec.steps
    if not 1 <= steps <= spec.limits.max_steps:
        raise RequestError(
            "steps", f"Steps must be between 1 and {spec.limits.max_steps} for {spec.name}."
        )
    return steps


def _guidance(spec: ModelSpec, guidance: float | None) -> float:
    limits = spec.limits
    if guidance is None:
        return spec.guidance
    if not limits.guidance:
        raise RequestError("guidance", f"{spec.name} does not take a guidance scale.")
    if guidance != guidance or not limits.min_guidance <= guidance <= limits.max_guidance:
        raise RequestError(
            "guidance",
            f"Guidance must be between {limits.min_guidance:g} and {limits.max_guidance:g} "
            f"for {spec.name}.",
        )
    return float(guidance)


def _scheduler(spec: ModelSpec, scheduler: str | None) -> str:
    if scheduler is None:
        return spec.default_scheduler
    if scheduler not in spec.schedulers:
        raise RequestError(
            "scheduler",
            f"{spec.name} offers the schedulers {', '.join(spec.schedulers)} (not {scheduler!r}).",
        )
    return scheduler


def check_seeds(
    seed: int | None, seeds: tuple[int, ...] | list[int] | None, count: int
) -> tuple[int, ...]:
    """The seeds of a request: `seeds`, or `count` from `seed` (random when None)."""
    if seeds is not None:
        if seed is not None:
            raise RequestError("seed", "Give either one seed or a list of seeds, not both.")
        count = len(seeds)
    if not 1 <= count <= MAX_COUNT:
        raise RequestError("count", f"The image count must be between 1 and {MAX_COUNT}.")
    if seeds is None:
        if seed is None:
            return random_seeds(count)
        seeds = [seed + i for i in range(count)]
    for value in seeds:
        if not 0 <= value <= MAX_SEED - MAX_COUNT:
            raise RequestError("seed", f"A seed must be between 0 and {MAX_SEED - MAX_COUNT}.")
    return tuple(int(s) for s in seeds)


def _init(init_image: bytes | None, strength: float | None) -> tuple[bytes | None, float | None]:
    if init_image is None:
        if strength is not None:
            raise RequestError("strength", "A strength needs an init image to apply to.")
        return None, None
    if len(init_image) > MAX_INIT_IMAGE_BYTES:
        raise RequestError(
            "image", f"The image is larger than {MAX_INIT_IMAGE_BYTES // 2**20} MiB."
        )
    try:
        check_header(init_image)
    except UnusableImage as error:
        raise RequestError("image", error.message) from None
    strength = 0.6 if strength is None else strength
    if not 0.0 < strength <= 1.0:
        raise RequestError("strength", "Strength must be above 0 and at most 1.")
    return init_image, float(strength)


def init_fit_note(request: GenerationRequest) -> str | None:
    """What was done to an init image whose shape differs from the job's size, in a sentence
    (the engine scales it to cover the size and crops the centre); None where the shapes agree."""
    if request.init_image is None:
        return None
    width, height = upright_size(request.init_image)
    ratio = request.width / request.height
    if abs(width / height - ratio) <= ASPECT_TOLERANCE * ratio:
        return None
    return (
        f"Your image ({width}x{height}) has another shape than {request.width}x{request.height}: "
        "it was scaled to cover that size and its centre kept (the edges were cropped)."
    )
