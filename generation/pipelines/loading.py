"""Loading a diffusers pipeline safely and placing it on its device: shared by every family.

Weights come from a local diffusers directory or the standard Hugging Face cache, never from the
network: an owner downloads the models once (`python -m generation.download`, which the start
script runs). Only safetensors weights are loaded; a component that ships only pickle files
(.bin, .ckpt, .pt, .pth) is refused before anything is read, because unpickling can run
arbitrary code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import logging as diffusers_logging
from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError
from transformers.utils import logging as transformers_logging

from generation.errors import ModelUnavailable, OutOfMemory
from generation.models import ModelSpec

PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
MODEL_INDEX = "model_index.json"

# Without torchvision, transformers warns on every start that it falls back to its PIL image
# processors; no Atelier pipeline uses an image processor, so that warning is only noise.
transformers_logging.get_logger("transformers.utils.import_utils").setLevel("ERROR")


def resolve_source(spec: ModelSpec) -> Path:
    """The directory holding `spec`'s weights: its local directory or its Hub cache snapshot."""
    if spec.is_local:
        path = Path(spec.source).expanduser()
        if not path.is_dir():
            raise ModelUnavailable(
                f"Model {spec.name!r} is not available: the directory {path} does not exist. "
                f"Point `source` for {spec.name} at a diffusers directory (with {MODEL_INDEX})."
            )
        return path
    try:
        return Path(snapshot_download(spec.source, local_files_only=True))
    except LocalEntryNotFoundError:
        raise ModelUnavailable(
            f"Model {spec.name!r} is not available: looked for {spec.source} in the Hugging Face "
            f"cache ({constants.HF_HUB_CACHE}) and found nothing. Download it with "
            f"`python -m generation.download {spec.name}`, or set `source` for {spec.name} to a "
            "local diffusers directory."
        ) from None


def check_safetensors(spec: ModelSpec, path: Path) -> None:
    """Refuse a directory that is not a diffusers pipeline or whose weights are pickle-only."""
    index_file = path / MODEL_INDEX
    if not index_file.is_file():
        raise ModelUnavailable(
            f"Model {spec.name!r}: {path} is not a diffusers directory (no {MODEL_INDEX}). "
            "Atelier loads diffusers-format models with safetensors weights."
        )
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError) as error:
        raise ModelUnavailable(f"Model {spec.name!r}: cannot read {index_file}: {error}") from None
    for component, entry in index.items():
        folder = path / component
        if component.startswith("_") or not isinstance(entry, list) or not folder.is_dir():
            continue
        names = [file.name for file in folder.iterdir()]
        pickles = sorted(name for name in names if name.endswith(PICKLE_SUFFIXES))
        if pickles and not any(name.endswith(".safetensors") for name in names):
            raise ModelUnavailable(
                f"Model {spec.name!r}: {folder} holds only pickle weights ({', '.join(pickles)}). "
                "Atelier loads safetensors weights only, because pickle files can run code when "
                "loaded. Download the safetensors version or convert the weights."
            )


def weights_variant(spec: ModelSpec, path: Path, device: str) -> str | None:
    """`spec.variant` (e.g. fp16) where such files exist and suit the device, else None.

    CPU runs in float32 and prefers the full-precision files; it takes the variant only when the
    directory holds nothing else (say, only the fp16 files were downloaded).
    """
    if spec.variant is None:
        return None
    variant_files = list(path.glob(f"*/*.{spec.variant}.safetensors"))
    if not variant_files:
        return None
    if device.startswith("cuda"):
        return spec.variant
    plain = [file for file in path.glob("*/*.safetensors") if f".{spec.variant}." not in file.name]
    return None if plain else spec.variant


def read_pipeline(
    pipeline_class: type[DiffusionPipeline],
    spec: ModelSpec,
    device: str,
    *,
    dtype: torch.dtype,
    **extra: Any,
) -> DiffusionPipeline:
    """Read `spec` from disk only (never the network) as `pipeline_class` in `dtype`, still on
    the CPU (`device` only picks the weight files; quantized components go to the GPU as they
    are read). Raises ModelUnavailable, or OutOfMemory where the GPU ran out while reading."""
    path = resolve_source(spec)
    check_safetensors(spec, path)
    # Workers and the CLI report their own progress; the loaders' bars would only be noise.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    # bitsandbytes puts the components it quantizes on the *current* CUDA device as it reads
    # them (diffusers' BnB4BitDiffusersQuantizer.update_device_map), and a pipeline's
    # `device_map` takes no "cuda:N": the worker's device is made current while reading.
    reading_on = torch.cuda.device(device) if device.startswith("cuda") else nullcontext()
    try:
        with reading_on:
            pipe = pipeline_class.from_pretrained(
                path,
                dtype=dtype,
                variant=weights_variant(spec, path, device),
                use_safetensors=True,
                local_files_only=True,
                **extra,
            )
    except torch.OutOfMemoryError:  # a RuntimeError, but not a broken download
        raise OutOfMemory(f"Model {spec.name!r} does not fit in the memory of {device}.") from None
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as error:
        hint = (
            ""
            if spec.is_local
            else (
                f" If a download was interrupted, run `python -m generation.download {spec.name}`."
            )
        )
        raise ModelUnavailable(
            f"Model {spec.name!r} could not be loaded from {path}: {error}{hint}"
        ) from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def place(
    pipe: DiffusionPipeline,
    spec: ModelSpec,
    device: str,
    *,
    offload: bool = False,
    placement: Mapping[str, str] | None = None,
) -> None:
    """Put a freshly read pipeline where it runs: the single home of post-load placement.

    `offload` keeps the weights in CPU memory and moves each model to the GPU only while it runs
    (for cards too small for the whole pipeline); it needs an accelerator, so with the CPU as the
    device the pipeline simply stays where it is. `placement` (component → device, from
    `generation.placement.plan`) puts each whole component on its own card, with accelerate's
    hook that moves its inputs there and its outputs back (as diffusers' `device_map` does).
    """
    if not device.startswith("cuda"):
        return
    try:
        if placement:
            from accelerate.hooks import AlignDevicesHook, add_hook_to_module

            for name, card in placement.items():
                component = getattr(pipe, name).to(card)
                add_hook_to_module(component, AlignDevicesHook(card, io_same_device=True))
        elif offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
    except torch.OutOfMemoryError:
        raise OutOfMemory(f"Model {spec.name!r} does not fit in the memory of {device}.") from None
