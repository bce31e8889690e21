"""Tiny random-weight pipelines in the real on-disk layout, built offline, for tests and demos.

    python -m generation.tiny OUT_DIR --family FAMILY

(FAMILY: playground, flux-dev, flux-schnell, flux2-klein or flux-kontext)

writes a diffusers directory (`model_index.json`, one folder per component, `*.safetensors`,
tokenizer files) that `generation.pipelines` loads exactly as it loads the real model, plus an
`atelier.json` with the catalogue settings that suit the tiny model (64-pixel native side, few
steps). The weights are deterministic for a family: two builds give the same files.

`catalogue_config` is importable without torch (the bot's demo configuration uses it); the builders
import torch, diffusers and transformers inside the functions that need them.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FAMILIES = ("playground", "flux-dev", "flux-schnell", "flux2-klein", "flux-kontext")
BUILTIN_NAMES = {
    "playground": "playground-v2.5",
    "flux-dev": "flux-dev",
    "flux-schnell": "flux-schnell",
    "flux2-klein": "flux2-klein-4b",
    "flux-kontext": "flux-kontext-dev",
}
# Built-in models of the same layout as a tiny family's reference, pointed at the same tiny model.
ALSO_SERVED = {"flux2-klein": ("flux2-klein-9b",)}
SETTINGS_FILE = "atelier.json"
_SEEDS = {"playground": 1, "flux-dev": 2, "flux-schnell": 3, "flux2-klein": 4, "flux-kontext": 5}
_SIDES = {"native_side": 64, "min_side": 32, "max_side": 256, "multiple_of": 16}
_RECOMMENDED: dict[str, dict[str, Any]] = {
    "playground": {**_SIDES, "steps": 4},
    "flux-dev": {**_SIDES, "steps": 4, "max_sequence_length": 64},
    "flux-schnell": {**_SIDES, "steps": 2, "max_sequence_length": 64},
    "flux2-klein": {**_SIDES, "steps": 2, "max_sequence_length": 64},
    "flux-kontext": {**_SIDES, "steps": 2, "max_sequence_length": 64},
}
# Flux2KleinPipeline reads Qwen3's hidden states after layers 9, 18 and 27 (its default
# `text_encoder_out_layers`), so the tiny encoder has 27 layers (of width 16).
_QWEN_LAYERS = 27
_QWEN_WIDTH = 16
# Qwen3's chat template as Flux2KleinPipeline applies it (one user message, a generation prompt,
# thinking switched off: an empty think block).
_QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)
_QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
# Playground v2.5's VAE latent statistics (its scheduler works in this normalised space).
_PLAYGROUND_LATENTS_MEAN = [-1.6574, 1.886, -1.383, 2.5155]
_PLAYGROUND_LATENTS_STD = [8.4927, 5.9022, 6.5498, 5.2299]
_T5_CHARACTERS = string.ascii_letters + string.digits + " .,!?'-:;()"


def recommended_settings(family: str) -> dict[str, Any]:
    """The catalogue settings (a `[models.NAME]` table without `source`) for a tiny model."""
    return dict(_RECOMMENDED[_check_family(family)])


def catalogue_config(dirs: Mapping[str, Path]) -> dict[str, dict[str, Any]]:
    """`[models]` overrides pointing the built-in names at tiny model directories.

    `dirs` maps a tiny family (one of `FAMILIES`) to its directory; the result feeds
    `Catalogue.from_config`. FLUX.2 [klein] 9B is pointed at the tiny klein too.
    """
    return {
        name: {**recommended_settings(family), "source": str(Path(path))}
        for family, path in dirs.items()
        for name in (BUILTIN_NAMES[family], *ALSO_SERVED.get(family, ()))
    }


def build(out_dir: Path, family: str) -> Path:
    """Write the tiny pipeline for `family` into `out_dir` and return the directory."""
    import torch

    family = _check_family(family)
    out_dir = Path(out_dir)
    torch.manual_seed(_SEEDS[family])
    if family == "playground":
        pipe = _playground_pipeline()
    elif family == "flux2-klein":
        pipe = _klein_pipeline()
    else:
        pipe = _flux_pipeline(family)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.save_pretrained(out_dir, safe_serialization=True)
    (out_dir / SETTINGS_FILE).write_text(json.dumps(recommended_settings(family), indent=2) + "\n")
    return out_dir


def build_lora(model_dir: Path, out: Path, seed: int, scale: float = 0.5) -> Path:
    """A rank-4 LoRA for the tiny pipeline in `model_dir`, made with peft as a trainer makes one
    (on the denoiser's attention projections `to_q`, `to_k`, `to_v`, `to_out.0`), with random
    matrices from `seed` times `scale` (large enough to change the tiny models' pixels), saved
    by diffusers' `save_lora_weights` to `out` (a .safetensors file)."""
    import torch
    from diffusers import DiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    pipe = DiffusionPipeline.from_pretrained(model_dir)
    part = "unet" if hasattr(pipe, "unet") else "transformer"
    denoiser = getattr(pipe, part)
    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    denoiser.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets))
    generator = torch.Generator().manual_seed(seed)
    state = {
        name: torch.randn(tensor.shape, generator=generator) * scale
        for name, tensor in get_peft_model_state_dict(denoiser).items()
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(
        out.parent,
        **{f"{part}_lora_layers": convert_state_dict_to_diffusers(state)},
        weight_name=out.name,
    )
    return out


def _check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"Unknown tiny family {family!r}; choose one of {', '.join(FAMILIES)}.")
    return family


def _playground_pipeline() -> Any:
    from diffusers import (
        AutoencoderKL,
        EDMDPMSolverMultistepScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    clip = _clip_config()
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.5,
        latents_mean=_PLAYGROUND_LATENTS_MEAN,
        latents_std=_PLAYGROUND_LATENTS_STD,
        force_upcast=False,
    )
    scheduler = EDMDPMSolverMultistepScheduler(
        sigma_min=0.002,
        sigma_max=80.0,
        sigma_data=0.5,
        solver_order=2,
        algorithm_type="dpmsolver++",
        solver_type="midpoint",
        final_sigmas_type="zero",
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(clip),
        text_encoder_2=CLIPTextModelWithProjection(clip),
        tokenizer=_clip_tokenizer(),
        tokenizer_2=_clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )


def _flux_pipeline(family: str) -> Any:
    """FLUX.1 [dev] or [schnell], or Kontext [dev] (FLUX.1 [dev]'s components)."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxKontextPipeline,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    dev = family in ("flux-dev", "flux-kontext")
    t5_tokenizer = _t5_tokenizer()
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=(4, 4, 8),
        guidance_embeds=dev,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=16,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
        force_upcast=False,
    )
    if dev:
        scheduler = FlowMatchEulerDiscreteScheduler(
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        )
    else:
        scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    clip = _clip_config()
    t5 = T5Config(
        vocab_size=len(t5_tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    pipeline_class = FluxKontextPipeline if family == "flux-kontext" else FluxPipeline
    return pipeline_class(
        scheduler=scheduler,
        vae=vae,
        text_encoder=CLIPTextModel(clip),
        tokenizer=_clip_tokenizer(),
        text_encoder_2=T5EncoderModel(t5),
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )


def _klein_pipeline() -> Any:
    """FLUX.2 [klein]'s layout: Flux2Transformer2DModel, AutoencoderKLFlux2 (2x2-patchified
    latents with batch-norm statistics), a Qwen3 causal LM as text encoder, Qwen2's tokenizer."""
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    latent_channels = 4
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=latent_channels * 4,  # 2x2 patches
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=3 * _QWEN_WIDTH,  # three hidden states stacked
        timestep_guidance_channels=256,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,
    )
    vae = AutoencoderKLFlux2(
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=latent_channels,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    tokenizer = _qwen_tokenizer()
    text_encoder = Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=_QWEN_WIDTH,
            intermediate_size=32,
            num_hidden_layers=_QWEN_LAYERS,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=512,
            tie_word_embeddings=True,
        )
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, time_shift_type="exponential"
    )
    return Flux2KleinPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=True,
    )


def _qwen_tokenizer() -> Any:
    """A byte-level BPE tokenizer with no merges in Qwen2's format, with Qwen3's chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast

    alphabet = _byte_alphabet()
    vocab = {token: index for index, token in enumerate(alphabet + _QWEN_SPECIALS)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(_QWEN_SPECIALS)
    return Qwen2TokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=512,
        chat_template=_QWEN_CHAT_TEMPLATE,
    )


def _clip_config() -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=514,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=32,
        max_position_embeddings=77,
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
    )


def _clip_tokenizer() -> Any:
    """A byte-level CLIP tokenizer with no merges: 256 bytes, 256 word-final bytes, 2 specials."""
    import tempfile

    from transformers import CLIPTokenizer

    alphabet = _byte_alphabet()
    tokens = alphabet + [ch + "</w>" for ch in alphabet] + ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
        (folder / "merges.txt").write_text("#version: 0.2\n")
        (folder / "tokenizer_config.json").write_text(
            json.dumps(
                {
                    "model_max_length": 77,
                    "bos_token": "<|startoftext|>",
                    "eos_token": "<|endoftext|>",
                    "unk_token": "<|endoftext|>",
                    "pad_token": "<|endoftext|>",
                }
            )
        )
        return CLIPTokenizer.from_pretrained(folder)


def _byte_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values, as CLIP's vocabulary spells them."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    unprintable = 256 - len(printable)
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(unprintable)]


def _t5_tokenizer() -> Any:
    """A character-level Unigram tokenizer in T5's format (`▁` word prefix, `</s>` appended)."""
    import tempfile

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(ch, -2.0) for ch in _T5_CHARACTERS if ch != " "]
    pieces += [("▁" + ch, -1.0) for ch in _T5_CHARACTERS if ch != " "]
    pieces += [("▁", -3.0)]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokenizer.save(str(folder / "tokenizer.json"))
        (folder / "tokenizer_config.json").write_text(
            json.dumps(
                {
                    "model_max_length": 512,
                    "pad_token": "<pad>",
                    "eos_token": "</s>",
                    "unk_token": "<unk>",
                    "extra_ids": 0,
                    "additional_special_tokens": [],
                }
            )
        )
        return T5TokenizerFast.from_pretrained(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m generation.tiny",
        description="Write a tiny random-weight pipeline (a few MB) in the real on-disk layout.",
    )
    parser.add_argument("out_dir", type=Path, help="the directory to write")
    parser.add_argument("--family", required=True, choices=FAMILIES)
    args = parser.parse_args(argv)
    path = build(args.out_dir, args.family)
    print(json.dumps({"family": args.family, "path": str(path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
