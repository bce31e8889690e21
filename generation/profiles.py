"""Memory profiles: named ways to hold a model in less GPU memory, from "full" down to 12 GB cards.

Plain data, no torch: the bot reads the profiles and their weight-memory figures (computed by
`python -m generation.memory` into `generation/data/weight_memory.json`) to decide what fits a
card; worker processes apply a profile when they load a model (`generation.pipelines.loading`).

Each family lists its profiles best quality first (an offloaded profile computes exactly what
"full" does, only slower; fp8 and NF4 change pixels slightly). A new family adds its profiles to
`FAMILY_PROFILES` and its activation estimate to `ACTIVATION_GIB` here, and its built-in models'
component configurations to `data/full_configs.json`; then `python -m generation.memory --write`
computes the figures.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from generation.model_spec import FAMILY_REFERENCE, Family, ModelSpec

DATA = Path(__file__).parent / "data"
WEIGHT_MEMORY_FILE = DATA / "weight_memory.json"
GIB = 2**30

# Peak activation memory at the native size (1024², batch 1), in GiB, beyond the weights.
# Not measured yet (no GPU was available): estimates from the activations' shapes — Playground's
# UNet at 128² latents with the guidance pair; FLUX's 4,096 image + 512 text tokens of width
# 3,072 through SDPA — rounded up, plus the VAE decode of one image (VAE slicing is always on).
# FLUX.2 [klein] and Kontext: the same width-3,072 transformer (klein 4B) or FLUX.1's, with each
# reference image adding up to 4,096 more tokens (klein: up to 4 references; Kontext: 1).
ACTIVATION_GIB = {
    Family.PLAYGROUND: 1.5,
    Family.FLUX: 2.5,
    Family.FLUX2_KLEIN: 4.0,
    Family.FLUX_KONTEXT: 3.5,
}
# The CUDA context and allocator slack, which torch's counters do not see but the card does.
CUDA_CONTEXT_GIB = 0.6
DEFAULT_PROFILE = "full"  # what every job made before profiles existed used


@dataclass(frozen=True, slots=True)
class Profile:
    """One way to hold a model. `fp8`: components stored in float8 and computed in the model's
    dtype (diffusers' layerwise casting: runs everywhere); `nf4`: components quantized to 4-bit
    NormalFloat by bitsandbytes (CUDA only); `offload`: each component moves to the GPU only
    while it runs (`enable_model_cpu_offload`, CUDA only); `gguf`: the transformer is read from
    the model's `.gguf` file and kept quantized, dequantized layer by layer as it runs (diffusers'
    GGUF support: runs everywhere; only models with a `gguf` file have these profiles)."""

    name: str
    summary: str
    fp8: tuple[str, ...] = ()
    nf4: tuple[str, ...] = ()
    offload: bool = False
    gguf: bool = False

    @property
    def library(self) -> str | None:
        """The optional library this profile needs, if any."""
        return "bitsandbytes" if self.nf4 else "gguf" if self.gguf else None

    @property
    def cuda_only(self) -> bool:
        return bool(self.nf4) or self.offload

    def unavailable_on(self, device: str) -> str | None:
        """Why this profile cannot run on `device` in this process, or None when it can."""
        if self.cuda_only and not device.startswith("cuda"):
            parts = ["bitsandbytes NF4"] * bool(self.nf4) + ["CPU offload"] * self.offload
            return f"the {self.name} profile needs a CUDA GPU (for {' and '.join(parts)})"
        if self.library is not None and importlib.util.find_spec(self.library) is None:
            return (
                f"the {self.name} profile needs {self.library}, which is not installed here "
                "(pip install 'atelier[quantization]')"
            )
        return None


FAMILY_PROFILES: dict[Family, tuple[Profile, ...]] = {
    Family.PLAYGROUND: (
        Profile("full", "fp16 weights, all on the GPU"),
        Profile("offload", "fp16 weights, each part on the GPU only while it runs", offload=True),
        Profile("fp8", "UNet weights stored in fp8", fp8=("unet",)),
    ),
    Family.FLUX: (
        Profile("full", "bf16 weights, all on the GPU"),
        Profile("offload", "bf16 weights, each part on the GPU only while it runs", offload=True),
        Profile(
            "fp8", "transformer and T5 weights stored in fp8", fp8=("transformer", "text_encoder_2")
        ),
        Profile(
            "fp8-offload",
            "fp8 transformer and T5, each part on the GPU only while it runs",
            fp8=("transformer", "text_encoder_2"),
            offload=True,
        ),
        Profile(
            "nf4-offload",
            "NF4 (4-bit) transformer, fp8 T5, each part on the GPU only while it runs",
            fp8=("text_encoder_2",),
            nf4=("transformer",),
            offload=True,
        ),
    ),
}


# Kontext's components are FLUX.1 [dev]'s (CLIP, T5, the same transformer and VAE).
FAMILY_PROFILES[Family.FLUX_KONTEXT] = FAMILY_PROFILES[Family.FLUX]
# klein: one Qwen3 text encoder (`text_encoder`) instead of CLIP + T5.
FAMILY_PROFILES[Family.FLUX2_KLEIN] = (
    Profile("full", "bf16 weights, all on the GPU"),
    Profile("offload", "bf16 weights, each part on the GPU only while it runs", offload=True),
    Profile(
        "fp8", "transformer and Qwen3 weights stored in fp8", fp8=("transformer", "text_encoder")
    ),
    Profile(
        "fp8-offload",
        "fp8 transformer and Qwen3, each part on the GPU only while it runs",
        fp8=("transformer", "text_encoder"),
        offload=True,
    ),
    Profile(
        "nf4-offload",
        "NF4 (4-bit) transformer, fp8 Qwen3, each part on the GPU only while it runs",
        fp8=("text_encoder",),
        nf4=("transformer",),
        offload=True,
    ),
)


GGUF_COMPONENT = "transformer"  # what a `.gguf` file holds: every GGUF family's denoiser


def _gguf_ladder(encoder: str, encoder_name: str) -> tuple[Profile, ...]:
    """The profiles of a model whose transformer comes from a `.gguf` file, best first: the
    other components as in full, offload, fp8 (its large text `encoder` in fp8), fp8-offload."""
    return (
        Profile("gguf", "GGUF transformer, the rest bf16, all on the GPU", gguf=True),
        Profile(
            "gguf-offload",
            "GGUF transformer, the rest bf16, each part on the GPU only while it runs",
            gguf=True,
            offload=True,
        ),
        Profile(
            "gguf-fp8",
            f"GGUF transformer, {encoder_name} stored in fp8",
            gguf=True,
            fp8=(encoder,),
        ),
        Profile(
            "gguf-fp8-offload",
            f"GGUF transformer, fp8 {encoder_name}, each part on the GPU only while it runs",
            gguf=True,
            fp8=(encoder,),
            offload=True,
        ),
    )


# The families whose transformer diffusers reads from a GGUF file (`from_single_file` with a
# `GGUFQuantizationConfig`: FluxTransformer2DModel, Flux2Transformer2DModel); Playground's UNet
# has no GGUF loader there.
GGUF_PROFILES: dict[Family, tuple[Profile, ...]] = {
    Family.FLUX: _gguf_ladder("text_encoder_2", "T5"),
    Family.FLUX_KONTEXT: _gguf_ladder("text_encoder_2", "T5"),
    Family.FLUX2_KLEIN: _gguf_ladder("text_encoder", "Qwen3"),
}


class UnknownProfile(LookupError):
    """A profile name the model's family does not offer; the message says which it offers."""


def profiles_for(family: Family) -> tuple[Profile, ...]:
    return FAMILY_PROFILES[family]


def ladder(spec: ModelSpec) -> tuple[Profile, ...]:
    """`spec`'s profiles, best quality first: its GGUF ones where it has a `gguf` file, else its
    family's."""
    return GGUF_PROFILES[spec.family] if spec.gguf else FAMILY_PROFILES[spec.family]


def default_profile(spec: ModelSpec) -> str:
    """The profile `spec` is held with where none is set: its best."""
    return ladder(spec)[0].name


def profile_for(spec: ModelSpec, name: str) -> Profile:
    """The profile `name` of `spec` (`ladder`); raises UnknownProfile naming the ones it has."""
    for candidate in ladder(spec):
        if candidate.name == name:
            return candidate
    names = ", ".join(p.name for p in ladder(spec))
    kind = f"{spec.family.value} models" + " with a GGUF file" * bool(spec.gguf)
    raise UnknownProfile(f"{kind} have no profile {name!r}; they have {names}.")


def profile(family: Family, name: str) -> Profile:
    """The profile `name` of `family`; raises UnknownProfile naming the ones it has."""
    for candidate in FAMILY_PROFILES[family]:
        if candidate.name == name:
            return candidate
    names = ", ".join(p.name for p in FAMILY_PROFILES[family])
    raise UnknownProfile(f"{family.value} models have no profile {name!r}; they have {names}.")


def lower_profile(
    spec: ModelSpec, name: str, device: str, *, spread: bool = False
) -> Profile | None:
    """The next profile below `name` that runs on `device` (the out-of-memory fallback); for
    a pipeline `spread` over several cards, not an offloading one (`generation.placement`)."""
    profiles = ladder(spec)
    index = [p.name for p in profiles].index(name)
    return next(
        (
            p
            for p in profiles[index + 1 :]
            if p.unavailable_on(device) is None and not (spread and p.offload)
        ),
        None,
    )


def layout(spec: ModelSpec) -> str:
    """The weight layout whose figures apply to `spec`: its own for a built-in model, else its
    family's reference (a fine-tune has its base model's shapes)."""
    return spec.name if spec.name in weight_memory() else FAMILY_REFERENCE[spec.family]


@cache
def weight_memory() -> dict[str, Any]:
    """The figures file: layout → profile → {"gpu_bytes", "total_bytes", "components"}."""
    return json.loads(WEIGHT_MEMORY_FILE.read_text())


def needed_gib(spec: ModelSpec, chosen: Profile) -> float:
    """GPU memory `spec` needs under `chosen` at its native size, in GiB: weights on the GPU
    (computed) plus the activation estimate and the CUDA context; for the full profile, the
    model's own `vram_gb` where its configuration sets one (a measured figure)."""
    if chosen.name == DEFAULT_PROFILE and spec.vram_gb:
        return spec.vram_gb
    return gpu_bytes(spec, chosen) / GIB + ACTIVATION_GIB[spec.family] + CUDA_CONTEXT_GIB


def component_bytes(spec: ModelSpec, chosen: Profile) -> dict[str, int]:
    """Each component's weight bytes under `chosen`, from the stored figures; for a GGUF
    profile, the transformer's from the `.gguf` file's header (`generation.gguf_file`) and the
    other components' from the full (or, for its fp8 ones, the fp8) profile's figures."""
    figures = weight_memory()[layout(spec)]["profiles"]
    if not chosen.gguf:
        return dict(figures[chosen.name]["components"])
    from generation.gguf_file import weight_bytes  # numpy only, and only for GGUF models

    sizes = {}
    for name, full in figures[DEFAULT_PROFILE]["components"].items():
        if name == GGUF_COMPONENT:
            folder = Path(spec.source).expanduser() if spec.is_local else None
            sizes[name] = weight_bytes(spec.gguf, full, folder) if spec.gguf else full
        else:
            sizes[name] = figures["fp8"]["components"][name] if name in chosen.fp8 else full
    return sizes


def gpu_bytes(spec: ModelSpec, chosen: Profile) -> int:
    """Weight bytes on the GPU under `chosen`: all components, or the largest where offloaded."""
    sizes = component_bytes(spec, chosen).values()
    return max(sizes) if chosen.offload else sum(sizes)


def installed_libraries() -> frozenset[str]:
    """The optional libraries some profile needs that are present here (found, not imported)."""
    ladders = (*FAMILY_PROFILES.values(), *GGUF_PROFILES.values())
    wanted = {p.library for profiles in ladders for p in profiles if p.library}
    return frozenset(name for name in wanted if importlib.util.find_spec(name))


def best_profile(
    spec: ModelSpec, memory_gib: float, libraries: frozenset[str] = frozenset()
) -> Profile | None:
    """The best-quality profile of `spec` that fits a CUDA card of `memory_gib` with the
    `libraries` present, or None when none fits."""
    for candidate in ladder(spec):
        if candidate.library is not None and candidate.library not in libraries:
            continue
        if needed_gib(spec, candidate) <= memory_gib:
            return candidate
    return None
