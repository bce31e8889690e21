"""What a catalogue model is: its family, limits and settings (`ModelSpec`); plain data."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class Family(StrEnum):
    """A pipeline family: one module in `generation.pipelines` serves every model of a family."""

    PLAYGROUND = "playground"  # SDXL architecture with Playground v2.5's EDM schedulers
    FLUX = "flux"  # FLUX.1 transformer (dev: guidance-distilled; schnell: timestep-distilled)
    FLUX2_KLEIN = "flux2-klein"  # FLUX.2 [klein]: Qwen3 text encoder, up to 4 reference images
    FLUX_KONTEXT = "flux-kontext"  # FLUX.1 Kontext: FLUX.1 weights that edit one reference image


# The side every image of a family must be a multiple of, or diffusers silently makes another size:
# SDXL's pipeline refuses sides that are not multiples of its VAE's scale factor (8);
# FluxPipeline packs 2x2 latent patches and rounds sides down to multiples of 2 x 8 = 16, as do
# FluxKontextPipeline and Flux2KleinPipeline (its VAE patchifies 2x2 latents of a /8 VAE).
FAMILY_SIDE_MULTIPLE = {
    Family.PLAYGROUND: 8,
    Family.FLUX: 16,
    Family.FLUX2_KLEIN: 16,
    Family.FLUX_KONTEXT: 16,
}

# Each family's reference model: a new model of the family takes its defaults and limits, and
# its weight-memory figures (`generation.profiles`), from it.
FAMILY_REFERENCE = {
    Family.PLAYGROUND: "playground-v2.5",
    Family.FLUX: "flux-dev",
    Family.FLUX2_KLEIN: "flux2-klein-4b",
    Family.FLUX_KONTEXT: "flux-kontext-dev",
}

# The schedulers each family's pipeline module offers (`PipelineFamily.schedulers`, which imports
# diffusers; tests/generation/test_pipelines.py keeps the two the same).
FAMILY_SCHEDULERS = {
    Family.PLAYGROUND: ("edm-dpmsolver++", "edm-euler"),
    Family.FLUX: ("flow-euler",),
    Family.FLUX2_KLEIN: ("flow-euler",),
    Family.FLUX_KONTEXT: ("flow-euler",),
}

# The families whose diffusers 0.42 pipelines have an img2img (init image + `strength`) variant;
# klein and Kontext take reference images instead and have none.
IMG2IMG_FAMILIES = frozenset({Family.PLAYGROUND, Family.FLUX})

# How many reference images a family's pipeline takes (`image=` of Flux2KleinPipeline: a list,
# four in BFL's model card; FluxKontextPipeline: one image). Families absent take none.
FAMILY_MAX_REFERENCES = {Family.FLUX2_KLEIN: 4, Family.FLUX_KONTEXT: 1}


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """What a request for this model may ask for."""

    min_side: int = 256
    max_side: int = 2048
    multiple_of: int = 64
    max_megapixels: float = 4.2
    max_steps: int = 100
    min_guidance: float = 0.0
    max_guidance: float = 20.0
    negative_prompt: bool = True
    max_prompt_chars: int = 2000
    guidance: bool = True  # False where guidance is fixed (schnell): the option is refused
    max_references: int = 0  # reference images a job may carry (at most the family's)

    def allows_size(self, width: int, height: int) -> bool:
        """Whether a request may ask for `width` x `height` pixels."""
        return (
            all(self.min_side <= side <= self.max_side for side in (width, height))
            and not width % self.multiple_of
            and not height % self.multiple_of
            and width * height <= self.max_megapixels * 1_000_000
        )


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One catalogue entry."""

    name: str
    family: Family
    source: str  # a Hugging Face Hub id or a local diffusers directory
    title: str
    steps: int
    guidance: float
    schedulers: tuple[str, ...]  # the first is the default
    native_side: int = 1024  # aspect ratios map to sizes of about native_side² pixels
    max_sequence_length: int | None = None  # FLUX's T5 prompt length
    limits: ModelLimits = field(default_factory=ModelLimits)
    variant: str | None = None  # e.g. Playground's "fp16" weights, used on CUDA where present
    # Peak VRAM at the native size, batch 1, full profile, in GiB; 0: from the computed figures
    # (`generation.profiles.needed_gib`).
    vram_gb: float = 0.0
    licence: str = ""
    cost_factor: float = 1.0  # relative GPU-seconds per step per megapixel (the scheduler's prior)
    # A `.gguf` file holding the model's transformer, quantized (FLUX.1, Kontext, klein): the
    # model then runs with the GGUF memory profiles (`generation.profiles.GGUF_PROFILES`).
    gguf: str | None = None

    @property
    def non_commercial(self) -> bool:
        """Whether the weights' licence forbids commercial use (FLUX.1 [dev], Kontext [dev],
        FLUX.2 [klein] 9B), as its name says."""
        return "non-commercial" in self.licence.lower()

    @property
    def default_scheduler(self) -> str:
        return self.schedulers[0]

    @property
    def is_local(self) -> bool:
        """True when the source is a directory on this machine rather than a Hub id."""
        return self.source.startswith(("/", ".", "~")) or Path(self.source).expanduser().is_dir()

    def size_for_aspect(self, aspect_w: int, aspect_h: int) -> tuple[int, int]:
        """The width and height of about native_side² pixels (fewer where `max_megapixels`
        allows less) with the given aspect ratio, within every size limit.

        Sides are rounded to the model's `multiple_of` and kept within its side limits, so that
        `16:9` on Playground gives 1344x768, its native bucket; where the rounding passes
        `max_megapixels`, the area aimed at is lowered until it does not (`_limit_problems` makes
        sure min_side² fits).
        """
        limits = self.limits
        ratio = aspect_w / aspect_h
        most = limits.max_megapixels * 1_000_000
        area = min(self.native_side**2, most)
        step = limits.multiple_of

        def sides(area: float) -> tuple[int, int]:
            width, height = math.sqrt(area * ratio), math.sqrt(area / ratio)
            # Scaled as a whole into the side limits, so the aspect survives them.
            scale = min(1.0, limits.max_side / max(width, height))
            scale = max(scale, limits.min_side / min(width, height))
            return fit(width * scale), fit(height * scale)

        def fit(side: float) -> int:
            side = max(limits.min_side, min(limits.max_side, side))
            return max(step, round(side / step) * step)

        width, height = sides(area)
        while width * height > most:  # ends: at min_side x min_side, which fits
            area *= 0.98
            width, height = sides(area)
        return width, height

    def upscale_size(self, width: int, height: int, factor: int = 2) -> tuple[int, int] | None:
        """`factor` times `width` x `height`, or the largest size within the limits at about the
        same aspect (sides multiples of `multiple_of`, the ratio within 5%); None when nothing
        larger is allowed."""
        limits = self.limits
        step = limits.multiple_of
        long, short = max(width, height), min(width, height)
        scale = min(
            factor,
            limits.max_side / long,
            math.sqrt(limits.max_megapixels * 1_000_000 / (width * height)),
        )
        new_long = int(long * scale + 1e-9) // step * step
        while new_long >= long:  # the long side sets the aspect's rounding error smallest
            new_short = round(new_long * short / long / step) * step
            if (
                new_short >= short
                and limits.allows_size(new_long, new_short)
                and abs(new_long / new_short - long / short) <= ASPECT_TOLERANCE * long / short
            ):
                if (new_long, new_short) == (long, short):
                    return None
                return (new_long, new_short) if width >= height else (new_short, new_long)
            new_long -= step
        return None


# Two sizes within 5% of each other's aspect ratio count as the same shape: an upscale keeps it,
# and an init image that close is fitted without a note (rounding to `multiple_of` costs ~2%).
ASPECT_TOLERANCE = 0.05
