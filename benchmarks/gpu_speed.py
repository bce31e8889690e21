"""GPU speed: seconds per image for Playground v2.5, FLUX.1-dev and FLUX.1-schnell, with and
without each speed option, plus peak GPU memory. Prints ONE JSON line whose `results` hold one
entry per model and variant; each entry also goes to stderr as soon as it is measured.

    python -m benchmarks.gpu_speed                    # CUDA, full size, 1024x1024
    python -m benchmarks.gpu_speed --models flux-dev --variants default,compile
    python -m benchmarks.gpu_speed --tiny             # CPU, tiny models: proves the script works

Full size means the real architectures (SDXL UNet, FLUX.1 transformer, CLIP-L, OpenCLIP bigG,
T5-XXL and the VAEs) with RANDOM weights: speed does not depend on the weights, and none can be
downloaded here. Steps and guidance are the catalogue's (Playground 50, dev 28, schnell 4).
Tokenizers and schedulers come from the tiny models `generation.tiny` writes (they pad prompts
to the same lengths as the real ones). Without a CUDA device and without `--tiny`, the script
says so and exits cleanly.
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
from pathlib import Path
from typing import Any

from generation.models import Catalogue, Family, ModelSpec
from generation.pipelines.speed import SpeedReport
from generation.speed_options import SpeedOptions
from generation.tiny import BUILTIN_NAMES

_TINY_FAMILY = {name: family for family, name in BUILTIN_NAMES.items()}  # model → tiny family
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


def clip_l() -> Any:
    from transformers import CLIPTextModel

    return CLIPTextModel(_clip_config(768, 3072, 12, 12, "quick_gelu", 768))


def clip_bigg() -> Any:
    from transformers import CLIPTextModelWithProjection

    return CLIPTextModelWithProjection(_clip_config(1280, 5120, 32, 20, "gelu", 1280))


def _clip_config(hidden: int, mlp: int, layers: int, heads: int, act: str, proj: int) -> Any:
    from transformers import CLIPTextConfig

    # The tiny tokenizer's begin/end ids (512, 513) fit the real 49408-entry vocabulary.
    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        hidden_act=act,
        projection_dim=proj,
        max_position_embeddings=77,
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
    )


def t5_xxl() -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=32128,
            d_model=4096,
            d_kv=64,
            d_ff=10240,
            num_layers=24,
            num_heads=64,
            feed_forward_proj="gated-gelu",
            dropout_rate=0.0,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )


def sdxl_unet() -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=128,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(320, 640, 1280),
        layers_per_block=2,
        attention_head_dim=(5, 10, 20),
        transformer_layers_per_block=(1, 2, 10),
        cross_attention_dim=2048,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )


def vae_like(tiny_vae: Any) -> Callable[[], Any]:
    """The real (SDXL/FLUX) VAE size with the tiny one's latent format and scaling."""

    def build() -> Any:
        from diffusers import AutoencoderKL

        config = tiny_vae.config
        return AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            sample_size=1024,
            latent_channels=config.latent_channels,
            scaling_factor=config.scaling_factor,
            shift_factor=config.shift_factor,
            latents_mean=config.latents_mean,
            latents_std=config.latents_std,
            use_quant_conv=config.use_quant_conv,
            use_post_quant_conv=config.use_post_quant_conv,
        )

    return build


def full_size_factories(spec: ModelSpec, tiny: Any) -> dict[str, Callable[[], Any]]:
    """Builders of the full-size random-weight components that replace the tiny ones."""
    from diffusers import FluxTransformer2DModel

    if spec.family is Family.PLAYGROUND:
        return {
            "unet": sdxl_unet,
            "vae": vae_like(tiny.vae),
            "text_encoder": clip_l,
            "text_encoder_2": clip_bigg,
        }
    guidance = tiny.transformer.config.guidance_embeds
    return {
        "transformer": lambda: FluxTransformer2DModel(guidance_embeds=guidance),
        "vae": vae_like(tiny.vae),
        "text_encoder": clip_l,
        "text_encoder_2": t5_xxl,
    }


def build_pipeline(spec: ModelSpec, tiny_dir: Path, *, full: bool, device: str, dtype: Any) -> Any:
    """The model's text-to-image pipeline: the tiny one, or full size with random weights."""
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
                with torch.device(device):
                    components[name] = factory().eval()
        finally:
            torch.set_default_dtype(previous)
        pipe = family.text_to_image(**components, **family.load_options)
    if device != "meta":
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
) -> dict[str, Any]:
    """Seconds per image (median of `repeat` calls after one warm-up call) and peak memory."""
    import torch

    from generation.pipelines import speed

    arguments: dict[str, Any] = {
        "prompt": _PROMPT,
        "num_inference_steps": steps,
        "guidance_scale": spec.guidance,
        "width": side,
        "height": side,
        "num_images_per_prompt": count,
        "output_type": "pil",
    }
    if spec.max_sequence_length:
        arguments["max_sequence_length"] = spec.max_sequence_length
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
    spec: ModelSpec, variant: str, tiny_dir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    import torch

    from generation.pipelines import family_pipelines, speed

    options = VARIANTS[variant]
    dtype = speed.weights_dtype(options, args.device, family_pipelines(spec.family).cuda_dtype)
    steps = args.steps or spec.steps
    line: dict[str, Any] = {
        "benchmark": "gpu_speed",
        "device": device_name(args.device),
        "model": spec.name,
        "variant": variant,
        "size": f"{args.side}x{args.side}",
        "steps": steps,
        "count": args.count,
        "dtype": str(dtype).removeprefix("torch."),
    }
    pipe = None
    try:
        pipe = build_pipeline(spec, tiny_dir, full=not args.tiny, device=args.device, dtype=dtype)
        report: SpeedReport = speed.apply(pipe, spec.family, options, args.device)
        line |= {"applied": list(report.applied), "skipped": list(report.skipped)}
        line |= measure(pipe, spec, options, args.device, args.side, steps, args.count, args.repeat)
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
    parser.add_argument("--device", help="cuda:N (default cuda:0; tiny: cpu)")
    args = parser.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    args.variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    for name in args.models:
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    for name in args.variants:
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
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
    catalogue = Catalogue.builtin()
    results = []
    with tempfile.TemporaryDirectory(prefix="atelier-gpu-speed-") as tmp:
        for name in args.models:
            tiny_dir = tiny.build(Path(tmp) / name, _TINY_FAMILY[name])
            for variant in args.variants:
                results.append(run_variant(catalogue[name], variant, tiny_dir, args))
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
