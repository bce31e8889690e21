"""LoRA adapters in a loaded pipeline: each file loaded once, switched per job, dropped when unused.

Diffusers loads a LoRA as a named PEFT adapter beside the model's own weights (never fused into
them), so a job switches adapters and weights with `set_adapters` and a job without LoRA turns
every adapter off with `disable_lora`: the layers then compute the base weights alone, and the
pixels are a fresh worker's (tests/generation/test_loras.py proves it). At most `keep` adapters
stay loaded; the least recently used goes first.

A file that fails to load (a rank-0 layer, say: peft refuses `r=0` half way through injecting its
layers) would leave half an adapter in the model, and every later image would come out NaN. So a
failed load deletes what it added and looks for leftovers; where any remain, `AdapterError.reload`
tells the engine to load the model afresh.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file

from generation.errors import EngineError

KEEP = 4  # adapters kept loaded per pipeline (each is small: tens to hundreds of MB)


class LoraFile(NamedTuple):
    """One LoRA of a job as the worker found it: its file, the file's SHA-256 and the weight."""

    path: Path
    sha256: str
    weight: float


class AdapterError(EngineError):
    """A LoRA file could not be loaded into the pipeline. `reload`: whether part of it may remain
    in the model (then the model must be loaded afresh before another job)."""

    def __init__(self, message: str, *, reload: bool) -> None:
        super().__init__(message)
        self.reload = reload


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
            try:  # safetensors only, read here: never a pickle, never the network.
                self._pipe.load_lora_weights(load_file(lora.path), adapter_name=name)
            except Exception as error:  # peft and diffusers raise many kinds on odd files
                raise AdapterError(
                    f"The LoRA file {lora.path.name} could not be loaded into the model "
                    f"({type(error).__name__}); an admin should check it with `bot check`.",
                    reload=not self._remove(name),
                ) from error
        self._loaded.append(name)
        return name

    def _drop_unused(self, keep: set[str]) -> None:
        victims = [name for name in self._loaded if name not in keep]
        while len(self._loaded) > self._keep and victims:
            victim = victims.pop(0)
            self._pipe.delete_adapters(victim)
            self._loaded.remove(victim)

    def _remove(self, name: str) -> bool:
        """Delete whatever of adapter `name` a failed load left; whether none of it remains."""
        # Nothing or only part of it may be registered: what remains is checked below.
        with contextlib.suppress(Exception):
            self._pipe.delete_adapters(name)
        return not any(_holds(component, name) for component in self._pipe.components.values())


def _holds(component: object, name: str) -> bool:
    """Whether `component` (a pipeline module) still carries any part of adapter `name`."""
    if not isinstance(component, torch.nn.Module):
        return False
    if name in (getattr(component, "peft_config", None) or {}):
        return True
    return any(
        name in getattr(module, attribute, {})
        for module in component.modules()
        for attribute in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B")
    )
