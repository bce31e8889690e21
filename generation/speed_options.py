"""GPU speed options as configured: the `[speed]` table, validated without torch.

The bot checks the configuration with these (it never imports torch); worker processes apply
them with `generation.pipelines.speed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import Field

from generation.config_schema import TABLE, Bool, Float, SettingsProblems, Text, validate_table

Attention = Literal["sdpa", "eager"]
ATTENTION: tuple[str, ...] = get_args(Attention)
SpeedConfigError = SettingsProblems  # the `[speed]` table has faults; `problems` names each


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
    - `fast_batches`: denoise a multi-image job in one forward pass per step instead of one per
      image. Faster for small images, but a rerun of one image of such a batch alone may then
      differ in a few pixels (kernels sum in another order for another batch size), so 🔁 is
      no longer pixel-identical for batches. Off by default; unlike the others it applies on
      every device.
    """

    __pydantic_config__ = TABLE

    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    attention: Attention = "sdpa"
    vae_tiling_megapixels: Annotated[Float, Field(ge=0)] = 1.5
    compile: Bool = False
    compile_cache_dir: Annotated[Text, Field(min_length=1)] | None = None
    fp8: Bool = False
    fast_batches: Bool = False

    @classmethod
    def from_config(cls, table: Mapping[str, Any]) -> SpeedOptions:
        """Validate a `[speed]` table; raises `SpeedConfigError` naming every problem."""
        return validate_table(cls, table, "speed")
