"""A validated request → the JSON body of `POST /v1/{model}` for one of its images.

Field names as BFL's reference spells them. Input images are sent as base64 of the stored,
checked bytes (never as a Discord attachment URL, which would expire and leak to a third party).
"""

from __future__ import annotations

import base64
from typing import Any

from generation.hosted.catalogue import HostedModel
from generation.hosted.samples import API_SETTINGS
from generation.request import GenerationRequest


def request_body(model: HostedModel, request: GenerationRequest, index: int) -> dict[str, Any]:
    """The body for image `index` (its own seed) of `request`."""
    body: dict[str, Any] = {
        "prompt": request.prompt,
        "seed": request.seeds[index],
        "output_format": API_SETTINGS["output_format"],
        "safety_tolerance": API_SETTINGS["safety_tolerance"],
    }
    if model.prompt_upsampling:
        body["prompt_upsampling"] = API_SETTINGS["prompt_upsampling"]
    if model.sized_by_aspect:
        if request.aspect_ratio is not None:
            body["aspect_ratio"] = request.aspect_ratio
    else:
        body["width"], body["height"] = request.width, request.height
    if model.raw:
        body["raw"] = request.raw
    if model.steps is not None:
        body["steps"] = request.steps
    if model.guidance is not None:
        body["guidance"] = request.guidance
    for number, image in enumerate(request.input_images, 1):
        name = "input_image" if number == 1 else f"input_image_{number}"
        body[name] = base64.b64encode(image).decode("ascii")
    return body
