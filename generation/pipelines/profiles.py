"""Applying a memory profile (`generation.profiles`) to a pipeline as it loads: worker side.

NF4 goes through diffusers' `PipelineQuantizationConfig` with bitsandbytes (read at load time);
fp8 storage through diffusers' layerwise casting once the pipeline is read; offloading through
`enable_model_cpu_offload` when it is placed (`generation.pipelines.loading.place`).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generation import gguf_file
from generation.errors import ModelUnavailable
from generation.models import ModelSpec
from generation.profiles import GGUF_COMPONENT, Profile
from generation.speed_options import SpeedOptions

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline


def check_available(spec: ModelSpec, chosen: Profile, device: str) -> None:
    """Raise ModelUnavailable, saying why, where `chosen` cannot run on `device`."""
    reason = chosen.unavailable_on(device)
    if reason is not None:
        raise ModelUnavailable(f"Model {spec.name!r} cannot load here: {reason}.")


def effective_speed(speed: SpeedOptions, chosen: Profile, denoiser: str) -> SpeedOptions:
    """`speed` less its fp8 option where `chosen` already holds the denoiser in fp8, NF4 or as
    GGUF (the profile decides how the weights are held; torchao on top would quantize them
    twice)."""
    if speed.fp8 and (denoiser in (*chosen.fp8, *chosen.nf4) or chosen.gguf):
        return replace(speed, fp8=False)
    return speed


def load_options(chosen: Profile, dtype: torch.dtype) -> dict[str, Any]:
    """Extra `from_pretrained` arguments for `chosen`: the quantization config of its NF4
    components (4-bit NormalFloat, computed in `dtype`), or nothing."""
    if not chosen.nf4:
        return {}
    from diffusers.quantizers import PipelineQuantizationConfig  # bitsandbytes: check_available

    config = PipelineQuantizationConfig(
        quant_backend="bitsandbytes_4bit",
        quant_kwargs={
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": dtype,
        },
        components_to_quantize=list(chosen.nf4),
    )
    return {"quantization_config": config}


def gguf_components(
    spec: ModelSpec, chosen: Profile, source: Path, dtype: torch.dtype
) -> dict[str, Any]:
    """The components `chosen` reads from `spec`'s `.gguf` file, as `from_pretrained` takes
    them: the transformer, quantized as stored and computed in `dtype` (diffusers'
    `GGUFQuantizationConfig`), with its configuration from the pipeline at `source`; or nothing.
    Raises ModelUnavailable for a file that is missing, not GGUF, or not this model's shapes."""
    if not chosen.gguf:
        return {}
    import diffusers
    from diffusers import GGUFQuantizationConfig

    if spec.gguf is None:
        raise ModelUnavailable(
            f"Model {spec.name!r} has no `gguf` file for the {chosen.name} profile."
        )
    path = Path(spec.gguf).expanduser()
    problem = gguf_file.transformer_problem(path, spec.name, source)
    if problem is not None:
        raise ModelUnavailable(f"Model {spec.name!r}: its GGUF file cannot be used: {problem}")
    try:
        index = json.loads((source / "model_index.json").read_text())
        model_class = getattr(diffusers, index[GGUF_COMPONENT][1])
        transformer = model_class.from_single_file(
            str(path),
            quantization_config=GGUFQuantizationConfig(compute_dtype=dtype),
            config=str(source),
            subfolder=GGUF_COMPONENT,
            dtype=dtype,
            local_files_only=True,
        )
    except Exception as error:  # diffusers' converter on a file it cannot map: IndexError, …
        if type(error).__name__ == "OutOfMemoryError":  # torch's: the out-of-memory retry's
            raise
        raise ModelUnavailable(
            f"Model {spec.name!r}: its GGUF file could not be loaded as its transformer "
            f"({type(error).__name__}: {str(error)[:200]})."
        ) from None
    return {GGUF_COMPONENT: transformer}


def store_in_fp8(pipe: DiffusionPipeline, chosen: Profile, dtype: torch.dtype) -> None:
    """Store the weights of `chosen.fp8`'s components in float8, computed in `dtype`."""
    for name in chosen.fp8:
        cast_to_fp8(getattr(pipe, name), dtype)


def cast_to_fp8(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Store `module`'s layer weights in float8 (e4m3), cast to `dtype` layer by layer as each
    runs (diffusers' layerwise casting). Left in `dtype`: a diffusers model's own skip patterns
    (norms, embeddings); for a transformers model, its embeddings (its `dtype`, which the
    pipelines give the prompt embeddings, is its first weight's), diffusers' default patterns,
    and the layers the model keeps in float32 (`_keep_in_fp32_modules`: T5's `wo`, whose input
    T5 casts to the weight's dtype)."""
    import torch
    from diffusers.hooks.layerwise_casting import (
        DEFAULT_SKIP_MODULES_PATTERN,
        apply_layerwise_casting,
    )
    from diffusers.models.modeling_utils import ModelMixin

    fp8 = torch.float8_e4m3fn
    if isinstance(module, ModelMixin):
        module.enable_layerwise_casting(storage_dtype=fp8, compute_dtype=dtype)
        return
    kept = getattr(module, "_keep_in_fp32_modules", None) or []
    patterns = (*DEFAULT_SKIP_MODULES_PATTERN, *(rf"(^|\.){re.escape(name)}$" for name in kept))
    apply_layerwise_casting(
        module,
        storage_dtype=fp8,
        compute_dtype=dtype,
        skip_modules_pattern=patterns,
        skip_modules_classes=(torch.nn.Embedding,),
    )
