"""LoRA files made with peft for the tiny models, as a trainer would save them: random low-rank
matrices (large enough to change the tiny models' pixels) on the attention projections of the
denoiser, saved by diffusers' `save_lora_weights` in the diffusers (PEFT) naming."""

from __future__ import annotations

from pathlib import Path

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def make_lora(model_dir: Path, out: Path, seed: int, scale: float = 0.5) -> Path:
    """A LoRA of rank 4 for the tiny pipeline in `model_dir`, written to `out` (a .safetensors
    file); `seed` decides its matrices."""
    import torch
    from diffusers import DiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    pipe = DiffusionPipeline.from_pretrained(model_dir)
    part = "unet" if hasattr(pipe, "unet") else "transformer"
    denoiser = getattr(pipe, part)
    denoiser.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=TARGETS))
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
