"""Playground v2.5 and other models of the SDXL architecture with EDM schedulers."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    EDMDPMSolverMultistepScheduler,
    EDMEulerScheduler,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
)

from generation.models import ModelSpec
from generation.pipelines.base import PipelineFamily
from generation.request import GenerationRequest


class PlaygroundFamily(PipelineFamily):
    text_to_image = StableDiffusionXLPipeline
    image_to_image = StableDiffusionXLImg2ImgPipeline
    cuda_dtype = torch.float16
    schedulers = {  # noqa: RUF012 (a ClassVar)
        "edm-dpmsolver++": EDMDPMSolverMultistepScheduler,
        "edm-euler": EDMEulerScheduler,
    }
    # ComfyUI's latent → RGB factors for Playground v2.5 (comfy/latent_formats.py).
    preview_factors = (
        (0.3920, 0.4054, 0.4549),
        (-0.2634, -0.0196, 0.0653),
        (0.0568, 0.1687, -0.0755),
        (-0.3112, -0.2359, -0.2076),
    )
    # An invisible watermark would change the pixels a seed promises to reproduce.
    load_options = {"add_watermarker": False}  # noqa: RUF012 (a ClassVar)
    denoiser = "unet"
    sample_argument = "sample"

    def family_arguments(
        self, request: GenerationRequest, spec: ModelSpec, image_to_image: bool
    ) -> dict[str, Any]:
        # None (not "") keeps SDXL's zeroed unconditional embedding, as the model was trained.
        arguments: dict[str, Any] = {"negative_prompt": request.negative_prompt or None}
        if not image_to_image:  # img2img takes its size from the (resized) init image
            arguments |= {"width": request.width, "height": request.height}
        return arguments

    def preview_latents(
        self, latents: torch.Tensor, request: GenerationRequest, vae_scale_factor: int
    ) -> torch.Tensor:
        return latents
