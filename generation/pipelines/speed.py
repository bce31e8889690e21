"""GPU speed options: weight precision, attention kernel, VAE tiling, regional compile, fp8.

Chosen in the configuration's `[speed]` table (see `SpeedOptions.from_config`) and applied by the
engine in three places::

    dtype = weights_dtype(options, device, family.cuda_dtype)   # from_pretrained(torch_dtype=...)
    place(pipe, device)                                          # as today
    report = apply(pipe, model_family, options, device)          # once per loaded pipeline
    ...
    prepare_call(pipe, options, device, width, height)           # before every pipeline call

On any device other than CUDA everything here leaves the pipeline untouched (the report says
why), so CPU runs stay float32 and exactly reproducible. `SpeedOptions` and its validation need
no torch (this module imports it only inside functions), so configuration can be checked
anywhere; importing the module still runs the `generation.pipelines` package, which does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generation.models import Family

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline
    from diffusers.models.modeling_utils import ModelMixin

DTYPES = ("auto", "bfloat16", "float16", "float32")
ATTENTION = ("sdpa", "eager")
_FP8_MATMUL_CAPABILITY = (8, 9)  # Ada and Hopper: hardware float8 matrix multiply


class SpeedConfigError(ValueError):
    """The `[speed]` table has faults; `problems` holds one sentence each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(" ".join(problems))


@dataclass(frozen=True, slots=True)
class SpeedOptions:
    """How to run pipelines fast on CUDA. The defaults are safe everywhere.

    - `dtype`: weight precision on CUDA; "auto" is the family's own (fp16 for Playground,
      bf16 for FLUX, fp16 where a card lacks bf16).
    - `attention`: "sdpa" (PyTorch's fused scaled-dot-product kernels) or "eager" (the classic
      unfused attention, for comparison and debugging).
    - `vae_tiling_megapixels`: decode images larger than this in tiles (less memory, same look);
      0 tiles every image. (Batches are always decoded one image at a time: the engine's
      loader turns VAE slicing on, which keeps batch and solo images identical.)
    - `compile`: `torch.compile` the model's repeated blocks (regional: compiles in about a
      minute instead of several); compiled code is cached in `compile_cache_dir`
      (default `~/.cache/atelier/inductor`, or `$TORCHINDUCTOR_CACHE_DIR`), so restarts are quick.
    - `fp8`: float8 weights for the denoiser. With torchao installed and an Ada/Hopper GPU,
      weights and activations run in fp8 (faster, about half the memory); elsewhere the weights
      are only stored in fp8 and computed in the model's dtype (half the memory, not faster).
    """

    dtype: str = "auto"
    attention: str = "sdpa"
    vae_tiling_megapixels: float = 1.5
    compile: bool = False
    compile_cache_dir: str | None = None
    fp8: bool = False

    @classmethod
    def from_config(cls, table: Mapping[str, Any]) -> SpeedOptions:
        """Validate a `[speed]` table; raises `SpeedConfigError` naming every problem."""
        known = {field.name for field in fields(cls)}
        problems = [f"Unknown setting `speed.{key}`." for key in sorted(set(table) - known)]
        values = {**{f.name: getattr(cls(), f.name) for f in fields(cls)}, **table}
        if values["dtype"] not in DTYPES:
            problems.append(f"`speed.dtype` should be one of {', '.join(DTYPES)}.")
        if values["attention"] not in ATTENTION:
            problems.append(f"`speed.attention` should be one of {', '.join(ATTENTION)}.")
        tiling = values["vae_tiling_megapixels"]
        if isinstance(tiling, bool) or not isinstance(tiling, int | float) or tiling < 0:
            problems.append("`speed.vae_tiling_megapixels` should be a number of at least 0.")
        for flag in ("compile", "fp8"):
            if not isinstance(values[flag], bool):
                problems.append(f"`speed.{flag}` should be true or false.")
        cache = values["compile_cache_dir"]
        if cache is not None and not (isinstance(cache, str) and cache):
            problems.append("`speed.compile_cache_dir` should be a directory path.")
        if problems:
            raise SpeedConfigError(problems)
        return cls(**{key: values[key] for key in known})


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
