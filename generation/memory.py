"""Weight memory per model layout × memory profile, computed from configurations, no weights read.

    python -m generation.memory            # print the figures as JSON
    python -m generation.memory --write    # and store them in generation/data/weight_memory.json

Each component of `data/full_configs.json` (the published full-size configurations) is built on
the meta device (shapes only, no memory, no download), cast to the family's CUDA dtype, and then
given each profile's treatment:

- fp8: diffusers' layerwise casting is applied to the meta model itself, so the layers it leaves
  in the compute dtype (norms, embeddings: `_skip_layerwise_casting_patterns`) are counted as such;
- nf4: every `nn.Linear` weight becomes bitsandbytes' 4-bit layout (diffusers' bitsandbytes
  quantizer converts every Linear unless told otherwise): two weights per byte plus one float32
  absmax per block of 64 (bitsandbytes `quantize_4bit`, blocksize 64, no double quantization);
  biases stay in the compute dtype;
- offload: only the largest component is on the GPU at a time (`enable_model_cpu_offload`).

Imports torch, diffusers and transformers: a tool and worker-side module; the bot reads the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from generation.builtin_models import BUILTIN_MODELS
from generation.model_spec import Family
from generation.profiles import DATA, FAMILY_PROFILES, WEIGHT_MEMORY_FILE, Profile

CONFIGS_FILE = DATA / "full_configs.json"
NF4_BLOCK = 64  # bitsandbytes quantize_4bit's default blocksize
NF4_ABSMAX_BYTES = 4  # one float32 absmax per block


def component_configs(layout: str) -> dict[str, dict[str, Any]]:
    """The full-size components of `layout`: name → {"class", "config"} (from the data file)."""
    data = json.loads(CONFIGS_FILE.read_text())
    entry = data[layout]
    base = data[entry["_like"]] if "_like" in entry else entry
    components = {}
    for name, value in base.items():
        if name.startswith("_"):
            continue
        override = entry.get(name, {}) if "_like" in entry else {}
        components[name] = {"class": value["class"], "config": value["config"] | override}
    return components


def build_component(kind: str, config: dict[str, Any]) -> Any:
    """The module `kind` ("diffusers:Class" or "transformers:Class") with `config`, random
    weights on torch's current default device (under `torch.device("meta")`: shapes only)."""
    library, _, name = kind.partition(":")
    if library == "diffusers":
        import diffusers

        return getattr(diffusers, name)(**config)
    import transformers

    model_class = getattr(transformers, name)
    return model_class(model_class.config_class(**config))


def module_bytes(module: Any) -> int:
    """Bytes of every parameter and buffer of `module` as they are stored."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def nf4_bytes(module: Any) -> int:
    """Bytes of `module` with every `nn.Linear` weight in bitsandbytes' NF4 layout."""
    import torch

    total = 0
    counted: set[int] = set()
    for layer in module.modules():
        if isinstance(layer, torch.nn.Linear):
            n = layer.weight.numel()
            total += (n + 1) // 2 + -(-n // NF4_BLOCK) * NF4_ABSMAX_BYTES
            counted.add(id(layer.weight))
    rest = [*module.parameters(), *module.buffers()]
    return total + sum(t.numel() * t.element_size() for t in rest if id(t) not in counted)


def fp8_bytes(module: Any, compute_dtype: Any) -> int:
    """Bytes of `module` after the fp8 profile's layerwise casting (as the worker applies it)."""
    from generation.pipelines.profiles import cast_to_fp8

    cast_to_fp8(module, compute_dtype)
    return module_bytes(module)


def component_bytes(kind: str, config: dict[str, Any], family: Family, treatment: str) -> int:
    """Bytes of one component under `treatment` ("native", "fp8" or "nf4")."""
    import torch

    dtype = family_dtype(family)
    with torch.device("meta"):
        module = build_component(kind, config).to(dtype)
    if treatment == "fp8":
        return fp8_bytes(module, dtype)
    if treatment == "nf4":
        return nf4_bytes(module)
    return module_bytes(module)


def family_dtype(family: Family) -> Any:
    import torch

    return torch.float16 if family is Family.PLAYGROUND else torch.bfloat16


def profile_figures(components: dict[str, dict[str, int]], chosen: Profile) -> dict[str, Any]:
    """One profile's figures from each component's bytes per treatment."""
    sizes = {}
    for name, by_treatment in components.items():
        treatment = "nf4" if name in chosen.nf4 else "fp8" if name in chosen.fp8 else "native"
        sizes[name] = by_treatment[treatment]
    total = sum(sizes.values())
    return {
        "gpu_bytes": max(sizes.values()) if chosen.offload else total,
        "total_bytes": total,
        "components": sizes,
    }


def compute(layout: str) -> dict[str, Any]:
    """Every profile's figures for `layout` (a built-in model name)."""
    family = next(spec.family for spec in BUILTIN_MODELS if spec.name == layout)
    profiles = FAMILY_PROFILES[family]
    wanted = {
        name: {"native"}
        | {"fp8" for p in profiles if name in p.fp8}
        | {"nf4" for p in profiles if name in p.nf4}
        for name in component_configs(layout)
    }
    components = {
        name: {
            treatment: component_bytes(entry["class"], entry["config"], family, treatment)
            for treatment in sorted(wanted[name])
        }
        for name, entry in component_configs(layout).items()
    }
    return {p.name: profile_figures(components, p) for p in profiles}


def compute_all() -> dict[str, Any]:
    """The whole figures file."""
    import diffusers
    import transformers
    from diffusers.utils import logging as diffusers_logging

    # `.to(dtype)` on the meta model warns about fp32 modules; the families keep none.
    diffusers_logging.set_verbosity_error()
    return {
        "_source": (
            f"python -m generation.memory (diffusers {diffusers.__version__}, transformers "
            f"{transformers.__version__}) from generation/data/full_configs.json: parameters and "
            "buffers built on the meta device, bytes as each profile stores them"
        ),
        **{spec.name: {"profiles": compute(spec.name)} for spec in BUILTIN_MODELS},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m generation.memory", description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"store into {WEIGHT_MEMORY_FILE}")
    args = parser.parse_args(argv)
    text = json.dumps(compute_all(), indent=2) + "\n"
    if args.write:
        WEIGHT_MEMORY_FILE.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
