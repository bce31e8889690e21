"""A downloaded sample → a PNG with Atelier's metadata, stored like any local image.

The sample is decoded with the checks people's uploads get (`generation.input_images.opened`:
PNG, JPEG or WebP only, bounded pixels), then written by `generation.metadata.encode_png`.
"""

from __future__ import annotations

import json

from generation.input_images import opened
from generation.jobs import GeneratedImage, RunFacts
from generation.metadata import encode_png
from generation.request import GenerationRequest

# What Atelier sends besides the request that changes pixels (`generation.hosted.payload`);
# recorded with each image.
API_SETTINGS = {"safety_tolerance": 2, "output_format": "png", "prompt_upsampling": False}


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


def stored_image(sample: bytes, request: GenerationRequest, index: int) -> GeneratedImage:
    """Image `index` of `request` from its sample bytes. Raises `UnusableImage`."""
    facts = api_facts(request)
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
