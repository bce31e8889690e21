"""FLUX.2 [klein] (4B and 9B, step-distilled) and its fine-tunes: text to image with up to four
reference images.

`Flux2KleinPipeline.__call__` takes `image` (the references) as its first positional argument, so
every argument is passed by keyword. It encodes each reference with the VAE's mode (no random
draw), after scaling a reference above 1024² pixels down to that area and cropping its sides to
multiples of 16; the output size is the request's. A distilled model (`is_distilled` in its
`model_index.json`) runs without classifier-free guidance whatever `guidance_scale` says.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline
from PIL import Image

from generation.models import ModelSpec
from generation.pipelines.base import PipelineFamily
from generation.prompts import sequence_length
from generation.request import GenerationRequest

_PATCH = 2  # the VAE's latents are patchified 2x2 into 4 x 32 = 128-wide tokens


class Flux2KleinFamily(PipelineFamily):
    text_to_image = Flux2KleinPipeline
    cuda_dtype = torch.bfloat16
    schedulers = {"flow-euler": FlowMatchEulerDiscreteScheduler}  # noqa: RUF012 (a ClassVar)
    # No published latent → RGB factors for FLUX.2's 32-channel latents (ComfyUI's are for
    # FLUX.1); at klein's 4 steps a preview would show at most once anyway.
    preview_factors = ()
    denoiser = "transformer"
    sample_argument = "hidden_states"

    def family_arguments(
        self, request: GenerationRequest, spec: ModelSpec, image_to_image: bool
    ) -> dict[str, Any]:
        return {
            "width": request.width,
            "height": request.height,
            "max_sequence_length": sequence_length(spec),
        }

    def reference_arguments(
        self, request: GenerationRequest, references: list[Image.Image]
    ) -> dict[str, Any]:
        return {"image": references}

    def preview_latents(
        self, latents: torch.Tensor, request: GenerationRequest, vae_scale_factor: int
    ) -> torch.Tensor:
        """Unpack (batch, tokens, 128) into (batch, 128, height/16, width/16)."""
        batch, _, channels = latents.shape
        rows = request.height // (vae_scale_factor * _PATCH)
        columns = request.width // (vae_scale_factor * _PATCH)
        return latents.view(batch, rows, columns, channels).permute(0, 3, 1, 2)
