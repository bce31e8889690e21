"""A downloaded sample → a PNG with Atelier's metadata, stored like any local image.

The sample's size is read from its header and must be the one asked for (`size_problem`); then
it is decoded with the checks people's uploads get (`generation.input_images.opened`: PNG, JPEG
or WebP only, bounded pixels) and written by `generation.metadata.encode_png`. Decoding a 4 MP
sample takes seconds of CPU: the backend calls `stored_image` off the event loop.
"""

from __future__ import annotations

import json

from generation.input_images import UnusableImage, check_header, opened
from generation.jobs import GeneratedImage, RunFacts
from generation.metadata import encode_png
from generation.request import GenerationRequest

# What Atelier sends besides the request that changes pixels (`generation.hosted.payload`);
# recorded with each image.
API_SETTINGS = {"safety_tolerance": 2, "output_format": "png", "prompt_upsampling": False}

# A model sized by aspect ratio makes "about" its nominal pixels: a sample within this factor of
# the request's pixels and aspect ratio is the one asked for.
SIZE_SLACK = 1.25


def api_facts(request: GenerationRequest) -> RunFacts:
    """What is known of how an API image was made: the endpoint and the settings sent. The
    model behind an endpoint can change without notice, so a rerun is only a seeded rerun."""
    return RunFacts(
        model_revision=f"bfl-api:{request.model}",
        diffusers="",
        torch="",
        device_type="bfl-api",
        precision="",
        settings=json.dumps(API_SETTINGS, sort_keys=True),
    )


def size_problem(size: tuple[int, int], request: GenerationRequest, exact: bool) -> str | None:
    """Why a sample of `size` (width, height) is not the image `request` asked for, or None:
    `exact` for a model given width and height, else within `SIZE_SLACK` of both the request's
    pixel count and aspect ratio."""
    width, height = size
    asked = (request.width, request.height)
    if exact:
        fits = size == asked
    else:
        pixels = width * height / (request.width * request.height)
        ratio = (width / height) / (request.width / request.height)
        fits = all(1 / SIZE_SLACK <= value <= SIZE_SLACK for value in (pixels, ratio))
    return None if fits else f"a {width}x{height} sample for a {asked[0]}x{asked[1]} request"


def stored_image(
    sample: bytes, request: GenerationRequest, index: int, *, exact_size: bool = True
) -> GeneratedImage:
    """Image `index` of `request` from its sample bytes (CPU-bound: call it off the event
    loop). Raises `UnusableImage` for an unreadable sample or one of another size
    (`size_problem`)."""
    facts = api_facts(request)
    problem = size_problem(check_header(sample), request, exact_size)
    if problem is not None:
        raise UnusableImage(problem)
    with opened(sample) as image:
        rgb = image.convert("RGB")
    return GeneratedImage(
        index=index,
        seed=request.seeds[index],
        png=encode_png(rgb, request, index, facts),
        width=rgb.width,
        height=rgb.height,
        facts=facts,
    )
