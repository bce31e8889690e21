"""Applying the GPU speed options: weights dtype, attention kernel, VAE tiling, compile, fp8.

The options are chosen in the configuration's `[speed]` table (`generation.speed_options`, which
needs no torch, so the bot can check them) and applied by the engine in three places::

    dtype = weights_dtype(options, device, family.cuda_dtype)   # from_pretrained(dtype=...)
    place(pipe, spec, device)                                    # on its device
    report = apply(pipe, model_family, options, device)          # once per loaded pipeline
    ...
    prepare_call(pipe, options, device, width, height)           # before every pipeline call

On any device other than CUDA everything here leaves the pipeline untouched (the report says
why), so CPU runs stay float32 and exactly reproducible. Only worker processes import this.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generation.models import Family
from generation.speed_options import ATTENTION, SpeedOptions

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline
    from diffusers.models.modeling_utils import ModelMixin

_FP8_MATMUL_CAPABILITY = (8, 9)  # Ada and Hopper: hardware float8 matrix multiply


@dataclass(frozen=True, slots=True)
class SpeedReport:
    """What `apply` did (`applied`) and what it left out, with the reason (`skipped`)."""

    applied: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


def is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def weights_dtype(options: SpeedOptions, device: str, family_dtype: torch.dtype) -> torch.dtype:
    """The dtype to load weights in: float32 off CUDA; on CUDA the option or the family's own."""
    import torch

    if not is_cuda(device):
        return torch.float32
    if options.dtype != "auto":
        return getattr(torch, options.dtype)
    if family_dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported(
        including_emulation=False
    ):
        return torch.float16
    return family_dtype


def apply(
    pipe: DiffusionPipeline, family: Family, options: SpeedOptions, device: str
) -> SpeedReport:
    """Apply the load-time options to a pipeline already placed on `device`.

    Order matters: attention first, fp8 next (it replaces the linear layers' weights), compile
    last (it traces what the others left). img2img pipelines made with `from_pipe` share the
    modules, so they are covered too.
    """
    from generation.pipelines import family_pipelines

    wanted = ["attention", *(["fp8"] * options.fp8), *(["compile"] * options.compile)]
    if not is_cuda(device):
        reason = f"{device} is not a CUDA device"
        return SpeedReport(skipped=tuple(f"{name}: {reason}" for name in wanted))
    denoiser = getattr(pipe, family_pipelines(family).denoiser)
    applied = [set_attention(denoiser, options.attention)]
    if hasattr(pipe, "vae"):
        set_attention(pipe.vae, options.attention)
    if options.fp8:
        applied.append(use_fp8(denoiser, device))
    if options.compile:
        applied.append(compile_regions(denoiser, cache_dir(options), fullgraph=True))
    return SpeedReport(applied=tuple(applied))


def prepare_call(
    pipe: DiffusionPipeline, options: SpeedOptions, device: str, width: int, height: int
) -> None:
    """Set the per-call options (VAE tiling) for images of `width` x `height`."""
    if is_cuda(device) and getattr(pipe, "vae", None) is not None:
        set_vae_tiling(pipe.vae, width * height / 1_000_000 > options.vae_tiling_megapixels)


# ---- the individual options (public so that they can be tested and benchmarked one by one) -----


def set_attention(model: ModelMixin, kind: str) -> str:
    """Use PyTorch's fused SDPA kernels ("sdpa") or classic unfused attention ("eager")."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    if kind not in ATTENTION:
        raise ValueError(f"Attention must be one of {', '.join(ATTENTION)}, not {kind!r}.")
    processors = list(model.attn_processors.values())
    if any(hasattr(processor, "_attention_backend") for processor in processors):
        # Models on diffusers' attention dispatcher (FLUX): pick its backend.
        model.set_attention_backend("native" if kind == "sdpa" else "_native_math")
    elif processors:
        model.set_attn_processor(AttnProcessor2_0() if kind == "sdpa" else AttnProcessor())
    return f"attention: {kind}"


def set_vae_tiling(vae: ModelMixin, enabled: bool) -> None:
    if enabled:
        vae.enable_tiling()
    else:
        vae.disable_tiling()


def use_fp8(model: ModelMixin, device: str) -> str:
    """Float8 weights: torchao fp8 matmuls on Ada/Hopper, else fp8 storage only."""
    import torch

    if torch.cuda.get_device_capability(device) >= _FP8_MATMUL_CAPABILITY:
        try:
            from torchao.quantization import (
                Float8DynamicActivationFloat8WeightConfig,
                PerRow,
                quantize_,
            )
        except ImportError:
            pass  # torchao is optional: fall back to storage-only fp8
        else:
            quantize_(model, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
            return "fp8: torchao dynamic float8 matmuls (per-row scales)"
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=model.dtype)
    return "fp8: float8 weight storage (layerwise casting)"


def cache_dir(options: SpeedOptions) -> Path:
    """Where compiled kernels are kept between runs."""
    if options.compile_cache_dir:
        return Path(options.compile_cache_dir).expanduser()
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "atelier" / "inductor"


def compile_regions(model: ModelMixin, cache: Path, **compile_options: Any) -> str:
    """`torch.compile` each repeated block (transformer layer) of `model` in place.

    The blocks share one compiled graph, so compiling takes about as long as one block; Inductor's
    FX-graph cache in `cache` makes the next start (or the next worker) skip most of it.
    """
    import torch._inductor.config

    cache.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
    torch._inductor.config.fx_graph_cache = True
    model.compile_repeated_blocks(**compile_options)
    return f"compile: regional ({', '.join(model._repeated_blocks)}), cache {cache}"
