"""What every pipeline family provides to the engine."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from PIL import Image

from generation.errors import ModelUnavailable
from generation.models import ModelSpec
from generation.pipelines.batching import PerImageForward
from generation.pipelines.loading import place, read_pipeline, resolve_source
from generation.pipelines.profiles import (
    check_available,
    effective_speed,
    gguf_components,
    load_options,
    store_in_fp8,
)
from generation.pipelines.speed import apply, weights_dtype
from generation.profiles import Profile, default_profile, profile_for
from generation.request import GenerationRequest
from generation.speed_options import SpeedOptions

log = logging.getLogger(__name__)


class LoadedPipeline(NamedTuple):
    """A text-to-image pipeline on its device and the per-image splitter of its denoiser."""

    pipe: DiffusionPipeline
    per_image: PerImageForward


class PipelineFamily(ABC):
    """One model family: its diffusers classes, precision, schedulers, arguments and previews."""

    text_to_image: ClassVar[type[DiffusionPipeline]]
    # None where the family has no img2img pipeline (`generation.models.IMG2IMG_FAMILIES`).
    image_to_image: ClassVar[type[DiffusionPipeline] | None] = None
    cuda_dtype: ClassVar[torch.dtype]
    schedulers: ClassVar[dict[str, type[SchedulerMixin]]]  # request name → diffusers class
    # Latent → RGB projection for previews (rows: latent channels; columns: R, G, B); empty:
    # the family makes no previews.
    preview_factors: ClassVar[tuple[tuple[float, float, float], ...]]
    preview_bias: ClassVar[tuple[float, float, float]] = (0.0, 0.0, 0.0)
    load_options: ClassVar[dict[str, Any]] = {}
    denoiser: ClassVar[str]  # the pipeline attribute holding the UNet or transformer
    sample_argument: ClassVar[str]  # the denoiser's latent input
    unbatched_inputs: ClassVar[frozenset[str]] = frozenset()  # denoiser inputs without a batch

    def load(
        self,
        spec: ModelSpec,
        device: str,
        *,
        offload: bool = False,
        speed: SpeedOptions | None = None,
        memory: Profile | None = None,
        placement: Mapping[str, str] | None = None,
    ) -> LoadedPipeline:
        """The text-to-image pipeline for `spec`, read from disk, held as the memory profile
        `memory` says (default: full), placed on `device` and sped up with `speed` (the
        defaults when None; nothing changes off CUDA); `placement`: component → card, for a
        pipeline over several cards (`generation.placement`). Raises ModelUnavailable where the
        profile cannot run on `device`."""
        memory = memory or profile_for(spec, default_profile(spec))
        speed = effective_speed(speed or SpeedOptions(), memory, self.denoiser)
        check_available(spec, memory, device)
        unknown = [name for name in spec.schedulers if name not in self.schedulers]
        if unknown:
            raise ModelUnavailable(
                f"Model {spec.name!r} lists schedulers this family does not offer: "
                f"{', '.join(unknown)} (known: {', '.join(self.schedulers)})."
            )
        dtype = weights_dtype(speed, device, self.cuda_dtype)
        pipe = read_pipeline(
            self.text_to_image,
            spec,
            device,
            dtype=dtype,
            **self.load_options,
            **load_options(memory, dtype),
            **gguf_components(spec, memory, resolve_source(spec), dtype),
        )
        store_in_fp8(pipe, memory, dtype)
        # Before placement, so that offload hooks wrap (and keep) the per-image forward.
        per_image = PerImageForward(
            getattr(pipe, self.denoiser), self.sample_argument, self.unbatched_inputs
        )
        pipe.vae.enable_slicing()
        place(pipe, spec, device, offload=offload or memory.offload, placement=placement)
        report = apply(pipe, spec.family, speed, device)
        log.info(
            "Loaded %s on %s in %s, %s profile; speed options applied: %s; skipped: %s",
            spec.name,
            device,
            str(dtype).removeprefix("torch."),
            memory.name,
            ", ".join(report.applied) or "none",
            ", ".join(report.skipped) or "none",
        )
        return LoadedPipeline(pipe, per_image)

    def scheduler(self, name: str, loaded: SchedulerMixin) -> SchedulerMixin:
        """The scheduler called `name`, configured like the model's own `loaded` scheduler."""
        scheduler_class = self.schedulers[name]
        if type(loaded) is scheduler_class:
            return loaded
        return scheduler_class.from_config(loaded.config)

    def arguments(
        self,
        request: GenerationRequest,
        spec: ModelSpec,
        init_image: Image.Image | None,
        references: Sequence[Image.Image] = (),
    ) -> dict[str, Any]:
        """Keyword arguments for one batched pipeline call (generators and callbacks excluded);
        `references`: the job's reference images, upright RGB, in order."""
        arguments: dict[str, Any] = {
            "prompt": request.prompt,
            "num_inference_steps": request.steps,
            "guidance_scale": request.guidance,
            "num_images_per_prompt": request.count,
            "output_type": "pil",
        }
        if init_image is not None:
            # One copy of the init image per image: each is then encoded (a VAE sample) and noised
            # with that image's own generator, in the order a run of that image alone uses, so
            # image i of a batch equals a rerun of image i alone. With one shared copy FLUX
            # encodes it with the first image's generator only, shifting every other image.
            arguments |= {"image": [init_image] * request.count, "strength": request.strength}
        if references:
            arguments |= self.reference_arguments(request, list(references))
        return arguments | self.family_arguments(request, spec, init_image is not None)

    def reference_arguments(
        self, request: GenerationRequest, references: list[Image.Image]
    ) -> dict[str, Any]:
        """The arguments that pass `references` (never empty) to the pipeline. The request was
        checked against the model's `max_references`, so a family without this never gets one."""
        raise ValueError(f"{request.model} takes no reference images.")

    @abstractmethod
    def family_arguments(
        self, request: GenerationRequest, spec: ModelSpec, image_to_image: bool
    ) -> dict[str, Any]:
        """The arguments particular to this family."""

    @abstractmethod
    def preview_latents(
        self, latents: torch.Tensor, request: GenerationRequest, vae_scale_factor: int
    ) -> torch.Tensor:
        """The step's latents as a (batch, channels, height, width) tensor for the preview."""
