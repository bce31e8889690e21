"""GPU speed: seconds per image for Playground v2.5, FLUX.1-dev, FLUX.1-schnell, FLUX.2 [klein]
4B, FLUX.1 Kontext [dev] and FLUX.2 [klein] 9B (klein and Kontext with one reference image of
the output's size), with and without each speed option and in each memory profile
(`--profile`), plus peak GPU memory. Prints ONE JSON line whose `results` hold one entry per
model, variant and profile; each entry also goes to stderr as soon as it is measured.
`--cap-gib` caps the process's GPU memory (`torch.cuda.set_per_process_memory_fraction`) to
prove a profile fits a smaller card.

    python -m benchmarks.gpu_speed                    # CUDA, full size, 1024x1024
    python -m benchmarks.gpu_speed --models flux-dev --variants default,compile
    python -m benchmarks.gpu_speed --tiny             # CPU, tiny models: proves the script works
    python -m benchmarks.gpu_speed --models flux-dev --profile fp8 --cap-gib 22.5  # a 24 GB card?

Full size means the real architectures (SDXL UNet, FLUX.1 and FLUX.2 [klein] transformers,
CLIP-L, OpenCLIP bigG, T5-XXL, Qwen3-4B/8B and the VAEs) with RANDOM weights: speed does not
depend on the weights, and none can be downloaded here. Steps and guidance are the catalogue's
(Playground 50, dev 28, schnell 4, klein 4B and 9B 4, Kontext 28). Tokenizers and schedulers
come from the tiny models `generation.tiny` writes (they pad prompts to the same lengths as the
real ones; klein 9B borrows the tiny klein's). Without a CUDA device and without `--tiny`, the
script says so and exits cleanly.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import product
from pathlib import Path
from typing import Any

from generation.models import Catalogue, ModelSpec
from generation.pipelines.profiles import store_in_fp8
from generation.pipelines.speed import SpeedReport
from generation.profiles import Profile, UnknownProfile, default_profile, profile_for
from generation.speed_options import SpeedOptions
from generation.tiny import ALSO_SERVED, BUILTIN_NAMES

# model → the tiny family whose tokenizers and schedulers it borrows (klein 9B: klein's)
_TINY_FAMILY = {name: family for family, name in BUILTIN_NAMES.items()} | {
    name: family for family, names in ALSO_SERVED.items() for name in names
}
MODELS = tuple(_TINY_FAMILY)
VARIANTS: dict[str, SpeedOptions] = {
    "default": SpeedOptions(),  # fp16/bf16 weights, SDPA attention
    "float32": SpeedOptions(dtype="float32"),
    "eager-attention": SpeedOptions(attention="eager"),
    "vae-tiling": SpeedOptions(vae_tiling_megapixels=0),
    "compile": SpeedOptions(compile=True),
    "fp8": SpeedOptions(fp8=True),
    "fp8+compile": SpeedOptions(fp8=True, compile=True),
}
_PROMPT = "a lighthouse on a cliff at dawn, volumetric light, highly detailed oil painting"


# What the full-size components need besides their published shapes to run with the tiny
# models' tokenizers and schedulers: the tiny CLIP tokenizer's begin/end ids (512, 513 fit the
# real 49,408-entry vocabulary), T5's special ids, and the tiny VAE's latent format and scaling.
_CLIP_IDS = {"bos_token_id": 512, "eos_token_id": 513, "pad_token_id": 513}
_T5_IDS = {"dropout_rate": 0.0, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0}
_VAE_FORMAT = (
    "scaling_factor",
    "shift_factor",
    "latents_mean",
    "latents_std",
    "use_quant_conv",
    "use_post_quant_conv",
)


def full_size_factories(spec: ModelSpec, tiny: Any) -> dict[str, Callable[[], Any]]:
    """Builders of the full-size random-weight components that replace the tiny ones: the
    published shapes of `generation/data/full_configs.json` (`generation.memory`)."""
    from generation.memory import build_component, component_configs

    def factory(entry: dict[str, Any], extra: dict[str, Any]) -> Callable[[], Any]:
        return lambda: build_component(entry["class"], entry["config"] | extra)

    factories = {}
    for name, entry in component_configs(spec.name).items():
        kind = entry["class"]
        extra: dict[str, Any] = {}
        if kind.startswith("transformers:CLIP"):
            extra = _CLIP_IDS
        elif kind.endswith("T5EncoderModel"):
            extra = _T5_IDS
        elif name == "vae":
            extra = {key: tiny.vae.config[key] for key in _VAE_FORMAT if key in tiny.vae.config}
        factories[name] = factory(entry, extra)
    return factories


def build_pipeline(
    spec: ModelSpec,
    tiny_dir: Path,
    *,
    full: bool,
    device: str,
    dtype: Any,
    memory: Profile | None = None,
) -> Any:
    """The model's text-to-image pipeline: the tiny one, or full size with random weights,
    held as the memory profile `memory` says (default: full)."""
    import torch

    from generation.pipelines import family_pipelines

    family = family_pipelines(spec.family)
    pipe = family.text_to_image.from_pretrained(
        tiny_dir, dtype=dtype, local_files_only=True, **family.load_options
    )
    if full:
        components = dict(pipe.components)
        previous = torch.get_default_dtype()
        try:
            torch.set_default_dtype(dtype)
            for name, factory in full_size_factories(spec, pipe).items():
                components[name] = None  # free the tiny one first
                with torch.device("cpu" if memory and memory.offload else device):
                    components[name] = factory().eval()
        finally:
            torch.set_default_dtype(previous)
        flags = {key: pipe.config[key] for key in ("is_distilled",) if key in pipe.config}
        pipe = family.text_to_image(**components, **family.load_options, **flags)
    memory = memory or profile_for(spec, default_profile(spec))
    store_in_fp8(pipe, memory, dtype)
    if device != "meta":
        if memory.offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
    return pipe


def parameter_count(pipe: Any) -> dict[str, int]:
    import torch

    return {
        name: sum(p.numel() for p in module.parameters())
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
    }


def measure(
    pipe: Any,
    spec: ModelSpec,
    options: SpeedOptions,
    device: str,
    side: int,
    steps: int,
    count: int,
    repeat: int,
    references: int = 1,
) -> dict[str, Any]:
    """Seconds per image (median of `repeat` calls after one warm-up call) and peak memory."""
    import torch
    from PIL import Image

    from generation.pipelines import family_pipelines, speed
    from generation.request import GenerationRequest

    request = GenerationRequest(
        model=spec.name,
        prompt=_PROMPT,
        negative_prompt="",
        width=side,
        height=side,
        steps=steps,
        guidance=spec.guidance,
        scheduler=spec.default_scheduler,
        seeds=tuple(range(count)),
    )
    # klein and Kontext run with `references` images of the output's size (1: the editing case)
    reference = Image.linear_gradient("L").resize((side, side)).convert("RGB")
    arguments = family_pipelines(spec.family).arguments(
        request, spec, None, [reference] * min(references, spec.limits.max_references)
    )
    speed.prepare_call(pipe, options, device, side, side)
    cuda = speed.is_cuda(device)

    def run() -> float:
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in range(count)]
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        pipe(**arguments, generator=generators)
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    first = run()
    times = [run() for _ in range(repeat)]
    return {
        "s_per_image": round(statistics.median(times) / count, 4),
        "first_call_s": round(first, 3),
        "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None,
    }


def run_variant(
    spec: ModelSpec, variant: str, tiny_dir: Path, args: argparse.Namespace, memory_name: str
) -> dict[str, Any]:
    import torch

    from generation.pipelines import family_pipelines, speed

    options = VARIANTS[variant]
    memory = profile_for(spec, memory_name)
    dtype = speed.weights_dtype(options, args.device, family_pipelines(spec.family).cuda_dtype)
    steps = args.steps or spec.steps
    line: dict[str, Any] = {
        "benchmark": "gpu_speed",
        "device": device_name(args.device),
        "model": spec.name,
        "variant": variant,
        "profile": memory.name,
        # Applied only on CUDA (`main`): on the CPU no cap was in force, so none is reported.
        "cap_gib": args.cap_gib if args.device.startswith("cuda") else None,
        "size": f"{args.side}x{args.side}",
        "steps": steps,
        "count": args.count,
        "references": min(args.references, spec.limits.max_references),
        "dtype": str(dtype).removeprefix("torch."),
    }
    pipe = None
    if reason := _unmeasurable(memory, args.device):
        return line | {"skipped": [reason]}
    try:
        pipe = build_pipeline(
            spec, tiny_dir, full=not args.tiny, device=args.device, dtype=dtype, memory=memory
        )
        report: SpeedReport = speed.apply(pipe, spec.family, options, args.device)
        line |= {"applied": list(report.applied), "skipped": list(report.skipped)}
        line |= measure(
            pipe,
            spec,
            options,
            args.device,
            args.side,
            steps,
            args.count,
            args.repeat,
            args.references,
        )
    except torch.OutOfMemoryError:
        line["error"] = "out of memory"
    except Exception as error:  # one failing option must not stop the table
        line["error"] = f"{type(error).__name__}: {error}"
    finally:
        del pipe
        gc.collect()
        torch._dynamo.reset()
        if speed.is_cuda(args.device):
            torch.cuda.empty_cache()
    return line


def _unmeasurable(memory: Profile, device: str) -> str | None:
    """Why this script cannot measure `memory` on `device`, if it cannot."""
    if reason := memory.unavailable_on(device):
        return reason
    if memory.nf4:
        # bitsandbytes quantizes while diffusers reads weights from disk; these are built in
        # memory (a full-size random FLUX written to disk first would be 24 GB).
        return f"{memory.name}: NF4 needs weights read from disk; measure it with the bot"
    return None


def cap_memory(device: str, cap_gib: float) -> None:
    """Let this process allocate at most `cap_gib` GiB of `device` (a smaller card's memory
    less the CUDA context, which the allocator does not count)."""
    import torch

    total = torch.cuda.get_device_properties(device).total_memory / 2**30
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gib / total), device)


def device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.startswith("cuda") else device


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU (for CI)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--side", type=int, help="image side in pixels (1024; tiny: 64)")
    parser.add_argument("--steps", type=int, help="override every model's step count")
    parser.add_argument("--count", type=int, default=1, help="images per pipeline call")
    parser.add_argument("--repeat", type=int, default=2, help="timed calls after the warm-up")
    parser.add_argument(
        "--references",
        type=int,
        default=1,
        help="reference images of the output's size for klein and Kontext (up to their limit)",
    )
    parser.add_argument("--device", help="cuda:N (default cuda:0; tiny: cpu)")
    parser.add_argument(
        "--profile",
        default="full",
        help="comma-separated memory profiles (generation.profiles), each measured per model",
    )
    parser.add_argument(
        "--cap-gib",
        type=float,
        help="cap this process's GPU memory, e.g. 11.4 to prove a fit on a 12 GB card",
    )
    args = parser.parse_args(argv)
    args.profiles = [name.strip() for name in args.profile.split(",") if name.strip()]
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    args.variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    for name in args.models:
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    for name in args.variants:
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    catalogue = Catalogue.builtin()
    for model in args.models:
        for name in args.profiles:
            try:
                profile_for(catalogue[model], name)
            except UnknownProfile as error:
                parser.error(str(error))
    args.side = args.side or (64 if args.tiny else 1024)
    args.device = args.device or ("cpu" if args.tiny else "cuda:0")
    if args.tiny and args.steps is None:
        args.steps = 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from generation import tiny

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        message = "No CUDA device is available; run with --tiny to check the script on the CPU."
        print(message, file=sys.stderr)
        print(json.dumps({"benchmark": "gpu_speed", "skipped": message}), flush=True)
        return 0
    if args.cap_gib and args.device.startswith("cuda"):
        cap_memory(args.device, args.cap_gib)
    catalogue = Catalogue.builtin()
    results = []
    with tempfile.TemporaryDirectory(prefix="atelier-gpu-speed-") as tmp:
        for name in args.models:
            tiny_dir = tiny.build(Path(tmp) / name, _TINY_FAMILY[name])
            for variant, memory in product(args.variants, args.profiles):
                results.append(run_variant(catalogue[name], variant, tiny_dir, args, memory))
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # a full run is long
    print(json.dumps({"benchmark": "gpu_speed", "results": results}), flush=True)
    return 0


def quiet_libraries() -> None:
    """No progress bars or advice from diffusers and transformers between the JSON lines."""
    import diffusers
    import transformers

    for library in (diffusers, transformers):
        library.utils.logging.disable_progress_bar()
        library.utils.logging.set_verbosity_error()


if __name__ == "__main__":
    quiet_libraries()
    sys.exit(main())
