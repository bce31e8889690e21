"""Prompt encoding with compel (https://github.com/damian0815/compel): prompts longer than CLIP's
77 tokens, read in chunks of 75, and weighting syntax (`(red)1.3`, `red++`, `blue--`).

Which encoder a job uses is part of its request (`GenerationRequest.prompt_encoder`, see
`generation.prompts`): "plain" leaves the encoding to the diffusers pipeline, as every job made
before compel was used did, so those jobs rerun identically. "compel" serves Playground (SDXL:
both text encoders, the second's pooled output). FLUX keeps the plain encoder: its T5 already
reads `max_sequence_length` tokens (README, "Prompts").
"""

from __future__ import annotations

import math
from importlib.metadata import version
from typing import Any

from diffusers import DiffusionPipeline

from generation.errors import EngineError
from generation.models import Family
from generation.prompts import COMPEL, PLAIN, bracket_problem
from generation.request import GenerationRequest

MAX_WEIGHT = 10.0  # past this a term's embedding swamps the rest and images turn to noise


def prompt_problem(prompt: str) -> str | None:
    """Why compel cannot encode `prompt` (a sentence), None where it can: brackets too deep or
    too many (`generation.prompts.bracket_problem`, checked before parsing), syntax nested too
    deep to read, syntax compel refuses (a `.blend()` with a weight missing), nothing left to
    encode once the syntax is read (`()`), a weight (also of `.blend()` and `.and()`) that is not
    finite or above `MAX_WEIGHT` (`red+++++++++++++++++++++++++`)."""
    from compel.prompt_parser import Blend, PromptParser

    problem = bracket_problem(prompt)  # before parsing: the parse is exponential in depth
    if problem:
        return problem
    try:
        conjunction = PromptParser().parse_conjunction(prompt)
    except RecursionError:
        return "The prompt's brackets are nested too deeply to read; use fewer."
    except (
        PromptParser.ParsingException
    ):  # compel's own message quotes its parse tree: not for people
        return (
            "compel cannot read the prompt's syntax: a `.blend()` needs one weight per prompt, "
            'as in `("a red fox", "a snowy forest").blend(0.7, 0.3)`.'
        )
    fragments = []
    weights = list(conjunction.weights)
    for part in conjunction.prompts:
        if isinstance(part, Blend):
            weights += part.weights
        for flat in part.prompts if isinstance(part, Blend) else [part]:
            fragments += flat.children
    for weight in weights:
        if not math.isfinite(weight) or abs(weight) > MAX_WEIGHT:
            return (
                f"A `.blend()` or `.and()` weight may be at most {MAX_WEIGHT:g} "
                f"(the prompt gives {weight:.3g})."
            )
    if not any(getattr(fragment, "text", "").strip() for fragment in fragments):
        return "The prompt has no words once its weighting syntax is read."
    for fragment in fragments:
        weight = getattr(fragment, "weight", 1.0)
        if not math.isfinite(weight) or abs(weight) > MAX_WEIGHT:
            return (
                f"A prompt weight may be at most {MAX_WEIGHT:g} "
                f"(the prompt gives {getattr(fragment, 'text', '')[:40]!r} {weight:.3g})."
            )
    return None


def encoder_fact(request: GenerationRequest) -> str:
    """The encoder with its version, recorded with the job (`RunFacts.prompt_encoder`)."""
    return f"compel {version('compel')}" if request.prompt_encoder == COMPEL else PLAIN


def prompt_arguments(
    pipe: DiffusionPipeline, request: GenerationRequest, family: Family
) -> dict[str, Any]:
    """The pipeline's prompt arguments for `request`: the text itself for the plain encoder,
    else compel's embeddings (which replace `prompt` and `negative_prompt`)."""
    if request.prompt_encoder == PLAIN:
        return {}
    if request.prompt_encoder != COMPEL or family is not Family.PLAYGROUND:
        raise ValueError(f"No {request.prompt_encoder!r} prompt encoder for {family.value}.")
    from compel import CompelForSDXL

    for text in filter(None, (request.prompt, request.negative_prompt)):
        problem = prompt_problem(text)
        if problem:
            raise EngineError(problem)
    compel = CompelForSDXL(pipe, device=pipe._execution_device)
    # An empty negative keeps SDXL's zeroed unconditional embedding where the model asks for it,
    # as the plain encoder does.
    zeros = not request.negative_prompt and pipe.config.get("force_zeros_for_empty_prompt", False)
    negative = None if zeros else request.negative_prompt
    conditioning = compel(request.prompt, negative_prompt=negative)
    arguments: dict[str, Any] = {
        "prompt": None,
        "negative_prompt": None,
        "prompt_embeds": conditioning.embeds,
        "pooled_prompt_embeds": conditioning.pooled_embeds,
    }
    if negative is not None:
        arguments |= {
            "negative_prompt_embeds": conditioning.negative_embeds,
            "negative_pooled_prompt_embeds": conditioning.negative_pooled_embeds,
        }
    return arguments
