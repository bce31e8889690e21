"""FLUX.1 Kontext [dev] and its fine-tunes: FLUX.1 that edits one reference image by instruction.

`FluxKontextPipeline` has two size gotchas, both handled here: it rescales the requested width and
height to `max_area` (default 1024²) at their aspect, so `max_area` is set to the requested area
and the request's size is made exactly (its sides are multiples of 16); and with `_auto_resize`
(its default, kept) it resizes the reference to the trained Kontext resolution nearest its
aspect (`PREFERRED_KONTEXT_RESOLUTIONS`, about 1 MP) — the setting BFL trained and recommends.
"""

from __future__ import annotations

from typing import Any

from diffusers import FluxKontextPipeline
from PIL import Image

from generation.models import ModelSpec
from generation.pipelines.flux import FluxFamily
from generation.request import GenerationRequest


class FluxKontextFamily(FluxFamily):
    """FLUX.1's components, schedulers and previews; Kontext's pipeline and reference."""

    text_to_image = FluxKontextPipeline
    image_to_image = None

    def family_arguments(
        self, request: GenerationRequest, spec: ModelSpec, image_to_image: bool
    ) -> dict[str, Any]:
        return super().family_arguments(request, spec, image_to_image) | {
            "max_area": request.width * request.height
        }

    def reference_arguments(
        self, request: GenerationRequest, references: list[Image.Image]
    ) -> dict[str, Any]:
        (reference,) = references  # max_references is 1
        return {"image": reference}
