"""FLUX.1 [dev] (guidance-distilled) and [schnell] (timestep-distilled), and their fine-tunes."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxImg2ImgPipeline, FluxPipeline

from generation.models import ModelSpec
from generation.pipelines.base import PipelineFamily
from generation.prompts import sequence_length
from generation.request import GenerationRequest

_PATCH = 2  # FLUX packs 2x2 patches of 16 latent channels into 64-wide tokens


class FluxFamily(PipelineFamily):
    text_to_image = FluxPipeline
    image_to_image = FluxImg2ImgPipeline
    cuda_dtype = torch.bfloat16
    schedulers = {"flow-euler": FlowMatchEulerDiscreteScheduler}  # noqa: RUF012 (a ClassVar)
    # ComfyUI's latent → RGB factors for FLUX.1 (comfy/latent_formats.py).
    preview_factors = (
        (-0.0346, 0.0244, 0.0681),
        (0.0034, 0.0210, 0.0687),
        (0.0275, -0.0668, -0.0433),
        (-0.0174, 0.0160, 0.0617),
        (0.0859, 0.0721, 0.0329),
        (0.0004, 0.0383, 0.0115),
        (0.0405, 0.0861, 0.0915),
        (-0.0236, -0.0185, -0.0259),
        (-0.0245, 0.0250, 0.1180),
        (0.1008, 0.0755, -0.0421),
        (-0.0515, 0.0201, 0.0011),
        (0.0428, -0.0012, -0.0036),
        (0.0817, 0.0765, 0.0749),
        (-0.1264, -0.0522, -0.1103),
        (-0.0280, -0.0881, -0.0499),
        (-0.1262, -0.0982, -0.0778),
    )
    preview_bias = (-0.0329, -0.0718, -0.0851)
    denoiser = "transformer"
    sample_argument = "hidden_states"
    unbatched_inputs = frozenset({"txt_ids", "img_ids"})  # token positions, shared by the batch

    def family_arguments(
        self, request: GenerationRequest, spec: ModelSpec, image_to_image: bool
    ) -> dict[str, Any]:
        return {
            "width": request.width,
            "height": request.height,
            "max_sequence_length": sequence_length(spec),
        }

    def preview_latents(
        self, latents: torch.Tensor, request: GenerationRequest, vae_scale_factor: int
    ) -> torch.Tensor:
        """Unpack (batch, tokens, 64) into (batch, 16, height/8, width/8)."""
        batch, _, packed = latents.shape
        channels = packed // (_PATCH * _PATCH)
        rows = request.height // (vae_scale_factor * _PATCH)
        columns = request.width // (vae_scale_factor * _PATCH)
        grid = latents.view(batch, rows, columns, channels, _PATCH, _PATCH)
        return grid.permute(0, 3, 1, 4, 2, 5).reshape(
            batch, channels, rows * _PATCH, columns * _PATCH
        )
