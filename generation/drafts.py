"""Drafts: a quick FLUX.2 [klein] look at a prompt before the long job it is meant for.

A draft is an ordinary job of the *draft model* — the first FLUX.2 [klein] model of the catalogue
that a worker here may run (the built-in order puts klein 4B first) — at that model's own default
steps (4 for klein), with the final job's prompt, size (or the nearest the draft model allows at
its aspect), seeds and reference images. It carries the final job's request (`final`: every
parameter the person chose, without image bytes), so its result can offer "Final": the same
prompt and seeds on the chosen model (`final_request`). A draft is recorded, rerun, scheduled and
counted like any job: its GPU-seconds are a 4-step klein job's.

What a draft cannot show is refused with a sentence (`RequestError`, field "draft"): no klein
model here, a final job on the draft model itself, on an API model or on a model no GPU here
may run, one that starts from an image (klein has no image-to-image), or more references or a
longer prompt than the draft model takes. A LoRA comes along only where it fits the draft model
(`generation.lora_headers.misfit`: its family, and its layers' shapes, so a klein 9B LoRA stays
out of a klein 4B draft); the draft's note names the LoRAs, the negative prompt and the prompt
weighting it leaves out (`draft_note`). Final refuses, rather than changes, a final job the
final model's current limits no longer admit exactly (as a rerun does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from generation.lora_headers import misfit
from generation.loras import LoraCatalogue
from generation.model_spec import Family, ModelSpec
from generation.models import Catalogue
from generation.prompts import has_weighting
from generation.request import (
    GenerationRequest,
    JobKind,
    RequestError,
    build_request,
    rebuild,
)
from generation.text import clean_text

DRAFT_FAMILY = Family.FLUX2_KLEIN


def draft_model(catalogue: Catalogue, may_run: Callable[[str], bool]) -> ModelSpec | None:
    """The model drafts run on: the catalogue's first klein model that `may_run` (None: none)."""
    return next(
        (s for s in catalogue.values() if s.family is DRAFT_FAMILY and may_run(s.name)), None
    )


def check_draft(
    catalogue: Catalogue,
    model: str,
    may_run: Callable[[str], bool],
    *,
    prompt: str = "",
    with_image: bool = False,
    references: int = 0,
) -> ModelSpec:
    """The draft model for a final job on `model` with `prompt` (`with_image`: one that starts
    from an init image; `references`: how many reference images it has); front ends call it
    before downloading anything. Raises `RequestError` where no draft can be made."""
    spec = draft_model(catalogue, may_run)
    if spec is None:
        raise RequestError(
            "draft",
            "Drafts run on FLUX.2 [klein], which this server does not run; leave out draft.",
        )
    if model == spec.name:
        raise RequestError(
            "draft", f"{spec.name} is the draft model itself (already quick): leave out draft."
        )
    if model in catalogue.hosted:
        raise RequestError(
            "draft", f"Drafts lead to a model of this server's GPUs, not to {model}."
        )
    if model in catalogue and not may_run(model):
        raise RequestError(
            "draft",
            f"No GPU here may run {model}, so a draft would lead to no final job; "
            "choose another model.",
        )
    if with_image:
        raise RequestError(
            "draft",
            f"A draft cannot start from an image ({spec.name} has no image-to-image): "
            "leave out image or draft.",
        )
    limits = spec.limits
    if references > limits.max_references:
        raise RequestError(
            "draft",
            f"A draft on {spec.name} takes at most {limits.max_references} reference images; "
            "give fewer or leave out draft.",
        )
    length = len(clean_text(prompt))
    if length > limits.max_prompt_chars:
        raise RequestError(
            "draft",
            f"The prompt is {length:,} characters long; a draft on {spec.name} takes at most "
            f"{limits.max_prompt_chars:,}. Shorten it or leave out draft.",
        )
    return spec


def draft_request(
    catalogue: Catalogue,
    final: GenerationRequest,
    may_run: Callable[[str], bool],
    loras: LoraCatalogue | None = None,
) -> GenerationRequest:
    """The draft of `final` (a validated new job; its LoRAs named in `loras`), carrying those of
    its LoRAs that fit the draft model. Reads LoRA and model headers (blocking file reads).
    Raises `RequestError` where no draft can be made."""
    spec = check_draft(
        catalogue,
        final.model,
        may_run,
        prompt=final.prompt,
        with_image=final.init_image is not None,
        references=len(final.input_images),
    )
    size = (final.width, final.height)
    if not spec.limits.allows_size(*size):
        size = spec.size_for_aspect(*size)
    draft = build_request(
        catalogue,
        prompt=final.prompt,
        model=spec.name,
        width=size[0],
        height=size[1],
        seeds=final.seeds,
        input_images=final.input_images,
    )
    lora_catalogue = loras or LoraCatalogue()
    fitting = tuple(
        use
        for use in final.loras
        if use.name in lora_catalogue and misfit(lora_catalogue[use.name], spec) is None
    )
    return replace(
        draft,
        loras=fitting,
        final=replace(final, init_image=None, input_images=(), parent_job=None),
    )


def final_request(catalogue: Catalogue, draft: GenerationRequest, job_id: int) -> GenerationRequest:
    """The job draft `job_id` (`draft`, read with its reference images) previews: the final's
    parameters with the draft's seeds and references, as the final model's limits admit them
    now. Raises `RequestError` where it is not a draft or its final is no longer valid."""
    final = draft.final
    if final is None:
        raise RequestError("draft", f"Job `{job_id}` is not a draft.")
    if final.model not in catalogue:
        raise RequestError("model", f"The model {final.model} is no longer offered here.")
    try:
        built = rebuild(
            catalogue,
            final,
            seeds=draft.seeds,
            input_images=draft.input_images,
            parent_job=job_id,
            kind=JobKind.FINAL,
        )
    except RequestError as error:
        raise _no_longer_fits(job_id, final.model, error.field, error.message) from None
    for field, what in _KEPT:
        now, asked = getattr(built, field), getattr(final, field)
        if now != asked:
            why = f"its {what} is no longer what you chose."
            if isinstance(now, int | float) and isinstance(asked, int | float):
                why = f"its {what} would be {now:g} (you chose {asked:g})."
            raise _no_longer_fits(job_id, final.model, field, why)
    return replace(built, loras=final.loras)


# What `build_request` may fill in differently from the person's choice when a model's limits
# change (guidance fixed, a default changed): Final refuses rather than changes them.
_KEPT = (
    ("guidance", "guidance"),
    ("steps", "steps"),
    ("scheduler", "scheduler"),
    ("negative_prompt", "negative prompt"),
    ("prompt_encoder", "prompt encoder"),
    ("width", "width"),
    ("height", "height"),
)


def _no_longer_fits(job_id: int, model: str, field: str, why: str) -> RequestError:
    return RequestError(
        field,
        f"The final job of draft `{job_id}` no longer fits {model}: {why} Use /imagine again.",
    )


def draft_note(request: GenerationRequest) -> str | None:
    """The line under a draft's reply and result saying what it is (None for other jobs): and
    where it differs from its final beyond the model, steps and guidance — another size, and
    the LoRAs, negative prompt and compel weighting it leaves out."""
    final = request.final
    if final is None:
        return None
    note = (
        f"✏️ A quick draft on {request.model} for {final.model}: ✅ Final makes the job "
        "there with these seeds (a new image of the same prompt, not this one refined)."
    )
    if (request.width, request.height) != (final.width, final.height):
        note += (
            f" It is {request.width}x{request.height}, the nearest {request.model} makes to "
            f"{final.width}x{final.height}."
        )
    left_out = [f"LoRA {use}" for use in final.loras if use not in request.loras]
    if final.negative_prompt:
        left_out.append("the negative prompt")
    if final.prompt_encoder != request.prompt_encoder and has_weighting(final.prompt):
        left_out.append("the prompt's weighting (read as plain text)")
    if left_out:
        note += f" The draft leaves out {', '.join(left_out)}; Final keeps them."
    return note
