"""GPU speed options as configured: the `[speed]` table, validated without torch.

The bot checks the configuration with these (it never imports torch); worker processes apply
them with `generation.pipelines.speed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

DTYPES = ("auto", "bfloat16", "float16", "float32")
ATTENTION = ("sdpa", "eager")


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
    - `fast_batches`: denoise a multi-image job in one forward pass per step instead of one per
      image. Faster for small images, but a rerun of one image of such a batch alone may then
      differ in a few pixels (kernels sum in another order for another batch size), so 🔁 is
      no longer pixel-identical for batches. Off by default; unlike the others it applies on
      every device.
    """

    dtype: str = "auto"
    attention: str = "sdpa"
    vae_tiling_megapixels: float = 1.5
    compile: bool = False
    compile_cache_dir: str | None = None
    fp8: bool = False
    fast_batches: bool = False

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
        for flag in ("compile", "fp8", "fast_batches"):
            if not isinstance(values[flag], bool):
                problems.append(f"`speed.{flag}` should be true or false.")
        cache = values["compile_cache_dir"]
        if cache is not None and not (isinstance(cache, str) and cache):
            problems.append("`speed.compile_cache_dir` should be a directory path.")
        if problems:
            raise SpeedConfigError(problems)
        return cls(**{key: values[key] for key in known})
