"""PNG metadata: an A1111-style `parameters` text chunk that common tools read, plus the request.

Every image carries two text chunks:
- `parameters`: the prompt, then `Negative prompt: ...` (when there is one), then a line of
  `Key: value` pairs (Steps, Sampler, CFG scale, Seed, Size, Model, Denoising strength) in the
  format AUTOMATIC1111 writes and image viewers, ComfyUI and sd-parsers read;
- `atelier`: JSON with this image's index and seed and the full request. The init image and
  reference images themselves are not repeated in every output (they can be megabytes); their
  SHA-256 identifies them.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace
from typing import Any

from PIL import Image, PngImagePlugin

from generation.jobs import RunFacts
from generation.request import GenerationRequest

PARAMETERS_KEY = "parameters"
RECORD_KEY = "atelier"


def parameters_text(request: GenerationRequest, index: int, facts: RunFacts | None = None) -> str:
    """The A1111 `parameters` text for image `index` of `request`. LoRAs are written as A1111
    writes them: `<lora:NAME:WEIGHT>` after the prompt and `Lora hashes: "NAME: HASH"` (here
    the first 12 hex digits of the file's SHA-256) among the fields."""
    tags = "".join(f" <lora:{use}>" for use in request.loras)
    lines = [request.prompt + tags]
    if request.negative_prompt:
        lines.append(f"Negative prompt: {request.negative_prompt}")
    fields = {
        "Steps": request.steps,
        "Sampler": request.scheduler,
        "CFG scale": f"{request.guidance:g}",
        "Seed": request.seeds[index],
        "Size": f"{request.width}x{request.height}",
        "Model": request.model,
    }
    if request.strength is not None:
        fields["Denoising strength"] = f"{request.strength:g}"
    hashes = facts.lora_sha256() if facts is not None else {}
    if hashes:
        listed = ", ".join(f"{name}: {digest[:12]}" for name, digest in hashes.items())
        fields["Lora hashes"] = f'"{listed}"'
    lines.append(", ".join(f"{key}: {value}" for key, value in fields.items()))
    return "\n".join(lines)


def image_record(
    request: GenerationRequest, index: int, facts: RunFacts | None = None
) -> dict[str, Any]:
    """What the `atelier` chunk (and the CLI's JSON line) says about image `index`: its seed,
    the request, and what else decided its pixels (`made_with`, see `RunFacts`)."""
    parameters = replace(request, init_image=None, input_images=()).to_dict()  # no base64
    del parameters["init_image"]
    parameters["init_image_sha256"] = (
        hashlib.sha256(request.init_image).hexdigest() if request.init_image is not None else None
    )
    if request.input_images:  # an API model's reference images (`generation.hosted`)
        parameters["input_images_sha256"] = [
            hashlib.sha256(image).hexdigest() for image in request.input_images
        ]
    record = {"index": index, "seed": request.seeds[index], "request": parameters}
    if facts is not None:
        record["made_with"] = facts.to_dict()
    return record


def encode_png(
    image: Image.Image, request: GenerationRequest, index: int, facts: RunFacts | None = None
) -> bytes:
    """`image` as PNG bytes carrying both metadata chunks."""
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, parameters_text(request, index, facts))
    record = image_record(request, index, facts)
    info.add_text(RECORD_KEY, json.dumps(record, ensure_ascii=False))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def read_record(png: bytes) -> dict[str, Any] | None:
    """The `atelier` chunk of a PNG made by Atelier, or None for any other image."""
    with Image.open(io.BytesIO(png)) as image:
        text = getattr(image, "text", {}).get(RECORD_KEY)
    return json.loads(text) if text else None
