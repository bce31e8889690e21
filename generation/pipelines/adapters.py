"""LoRA adapters in a loaded pipeline: each file loaded once, switched per job, dropped when unused.

Diffusers loads a LoRA as a named PEFT adapter beside the model's own weights (never fused into
them), so a job switches adapters and weights with `set_adapters` and a job without LoRA turns
every adapter off with `disable_lora`: the layers then compute the base weights alone, and the
pixels are a fresh worker's (tests/generation/test_loras.py proves it). At most `keep` adapters
stay loaded; the least recently used goes first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from diffusers import DiffusionPipeline
from safetensors.torch import load_file

KEEP = 4  # adapters kept loaded per pipeline (each is small: tens to hundreds of MB)


class LoraFile(NamedTuple):
    """One LoRA of a job as the worker found it: its file, the file's SHA-256 and the weight."""

    path: Path
    sha256: str
    weight: float


class Adapters:
    """The LoRA adapters of one pipeline (shared by its img2img twin, which shares the modules)."""

    def __init__(self, pipe: DiffusionPipeline, keep: int = KEEP) -> None:
        self._pipe = pipe
        self._keep = keep
        self._loaded: list[str] = []  # adapter names, least recently used first
        self._enabled = False

    @property
    def loaded(self) -> tuple[str, ...]:
        return tuple(self._loaded)

    def apply(self, loras: Sequence[LoraFile]) -> None:
        """Make the next pipeline call use exactly `loras` at their weights (none: no LoRA)."""
        if not loras:
            if self._enabled:
                self._pipe.disable_lora()
                self._enabled = False
            return
        names = [self._load(lora) for lora in loras]
        self._drop_unused(keep=set(names))
        self._pipe.enable_lora()
        self._pipe.set_adapters(names, adapter_weights=[lora.weight for lora in loras])
        self._enabled = True

    def _load(self, lora: LoraFile) -> str:
        # By content: a replaced file is a new adapter; PEFT names may not contain dots.
        name = f"lora_{lora.sha256[:16]}"
        if name in self._loaded:
            self._loaded.remove(name)
        else:
            # safetensors only, read here: never a pickle, never the network.
            self._pipe.load_lora_weights(load_file(lora.path), adapter_name=name)
        self._loaded.append(name)
        return name

    def _drop_unused(self, keep: set[str]) -> None:
        victims = [name for name in self._loaded if name not in keep]
        while len(self._loaded) > self._keep and victims:
            victim = victims.pop(0)
            self._pipe.delete_adapters(victim)
            self._loaded.remove(victim)
