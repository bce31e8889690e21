"""Does a LoRA file fit a model? Read from the safetensors headers alone (no tensor is loaded).

Needs no torch: `bot check` checks files with this module.

A LoRA file holds, for each adapted layer `L` of a model part, two low-rank matrices: the diffusers
and PEFT names `PART.L.lora.down.weight` / `PART.L.lora_A.weight` (rank x in-features) and
`PART.L.lora.up.weight` / `PART.L.lora_B.weight` (out-features x rank); PART is `unet` (SDXL),
`transformer` (FLUX), `text_encoder` or `text_encoder_2`. The check finds `L.weight` in the
model's own weights of that part and compares in- and out-features. Files in the kohya naming
(`lora_unet_…`, `lora_te1_…`), whose layer names lose their dots, are checked by family only.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.download import model_folder
from generation.loras import LoraError, LoraSpec
from generation.models import Family, ModelSpec

_HEADER_LIMIT = 100 * 2**20  # safetensors' own bound on a header (safetensors/src/tensor.rs)

_PARTS = {  # a LoRA key's first part → the model folder whose weights it adapts
    "unet": "unet",
    "transformer": "transformer",
    "text_encoder": "text_encoder",
    "text_encoder_2": "text_encoder_2",
}
_FAMILY_DENOISER = {family: "transformer" for family in Family} | {Family.PLAYGROUND: "unet"}
_KOHYA_FAMILY = (  # name prefixes of kohya-style files → the family they were trained for
    ("lora_unet_double_blocks", Family.FLUX),
    ("lora_unet_single_blocks", Family.FLUX),
    ("lora_transformer_", Family.FLUX),
    ("lora_unet_input_blocks", Family.PLAYGROUND),
    ("lora_unet_down_blocks", Family.PLAYGROUND),
    ("lora_te1_", Family.PLAYGROUND),
    ("lora_te2_", Family.PLAYGROUND),
)
_LORA_SUFFIX = re.compile(r"\.(lora\.down|lora\.up|lora_A|lora_B)\.weight$")


# safetensors dtypes → bytes per element (https://github.com/huggingface/safetensors#format)
_DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8,
}  # fmt: skip
_LORA_DTYPES = ("F16", "BF16", "F32", "F64")  # a LoRA's matrices are floats; peft loads these
_SDXL_CROSS_ATTENTION = 2048  # SDXL's text features (unet config `cross_attention_dim`)


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """One tensor of a safetensors header: dtype ("F16", ...) and shape."""

    dtype: str
    shape: tuple[int, ...]


def read_entries(path: Path) -> dict[str, TensorEntry]:
    """Tensor name → dtype and shape, from a safetensors file's JSON header (8-byte little-endian
    length, then JSON; https://github.com/huggingface/safetensors#format), each entry checked:
    a known dtype, a shape of non-negative integers, `data_offsets` that hold exactly that many
    bytes inside the file. Raises LoraError ("not a usable safetensors file") otherwise."""
    unusable = LoraError(f"{path.name} is not a usable safetensors file.")
    if not path.is_file():  # a FIFO or device would block the read, or never end
        raise unusable
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > _HEADER_LIMIT:
                raise LoraError(f"{path.name} is not a safetensors file (its header is too long).")
            header = json.loads(handle.read(length))
            data_size = path.stat().st_size - 8 - length
    except LoraError:
        raise
    except (OSError, struct.error, ValueError, RecursionError):
        raise unusable from None
    if not isinstance(header, dict):
        raise unusable
    entries = {}
    for name, value in header.items():
        if name == "__metadata__":
            continue
        entry = _entry(value, data_size)
        if entry is None:
            raise unusable
        entries[name] = entry
    return entries


def _entry(value: object, data_size: int) -> TensorEntry | None:
    if not isinstance(value, dict):
        return None
    dtype, shape, offsets = value.get("dtype"), value.get("shape"), value.get("data_offsets")
    if dtype not in _DTYPE_SIZES or not isinstance(shape, list) or not isinstance(offsets, list):
        return None
    numbers = [*shape, *offsets]
    if len(offsets) != 2 or not all(type(n) is int and n >= 0 for n in numbers):
        return None
    count = 1
    for side in shape:
        count *= side
    begin, end = offsets
    if end - begin != count * _DTYPE_SIZES[dtype] or end > data_size:
        return None
    return TensorEntry(dtype, tuple(shape))


def read_header(path: Path) -> dict[str, list[int]]:
    """Tensor name → shape (`read_entries`). Raises LoraError for a file that is not a usable
    safetensors file."""
    return {name: list(entry.shape) for name, entry in read_entries(path).items()}


def check_fits(lora: Path, model_folder: Path, spec: ModelSpec) -> str | None:
    """Why the LoRA file `lora` cannot apply to the model `spec` in `model_folder` (a diffusers
    folder), or None when it fits: float tensors only; each adapted layer has a down and an up
    matrix (2-D, or 4-D for a convolution) of the same rank of at least 1; the layer exists in
    the model with the LoRA's in- and out-features. Kohya-named files are checked by family and
    by their cross-attention width (an SD 1.5 LoRA is refused for SDXL). Raises LoraError for a
    file that is not a usable safetensors file. Weights that are NaN cannot be seen here."""
    entries = read_entries(lora)
    if not entries:
        return f"{lora.name} holds no tensors."
    floats = [name for name, entry in entries.items() if entry.dtype not in _LORA_DTYPES]
    if floats:
        return (
            f"{lora.name} holds {entries[floats[0]].dtype} tensors ({floats[0][:80]!r}); "
            f"a LoRA's are float ({', '.join(_LORA_DTYPES)})."
        )
    tensors = {name: list(entry.shape) for name, entry in entries.items()}
    if any(map(_starts("lora_te_"), tensors)):  # SDXL's are lora_te1_/lora_te2_, FLUX's none
        return (
            f"{lora.name} was made for Stable Diffusion 1.x/2.x (one text encoder), "
            f"not {spec.name}."
        )
    kohya = [family for prefix, family in _KOHYA_FAMILY if any(map(_starts(prefix), tensors))]
    if kohya:
        if spec.family not in kohya:
            return f"{lora.name} was made for {kohya[0].value} models, not {spec.name}."
        return _kohya_problem(lora.name, tensors, model_folder, spec) or _pair_problem(
            lora.name, tensors
        )
    headers: dict[str, dict[str, list[int]]] = {}
    for key, shape in tensors.items():
        part, _, rest = key.partition(".")
        suffix = _LORA_SUFFIX.search(rest)
        if part not in _PARTS or suffix is None:
            if key.endswith(".alpha"):
                continue
            return f"{lora.name} has a tensor Atelier cannot place: {key[:80]!r}."
        if part in _FAMILY_DENOISER.values() and part != _FAMILY_DENOISER[spec.family]:
            return f"{lora.name} adapts a {part}, which {spec.name} does not have."
        if part not in headers:
            headers[part] = _part_header(model_folder / _PARTS[part])
        layer = rest[: suffix.start()] + ".weight"
        base = headers[part].get(layer)
        if base is None:
            return f"{lora.name} adapts a layer {spec.name} does not have: {part}.{layer[:80]}."
        down = suffix[1] in ("lora.down", "lora_A")
        if len(shape) < 2 or len(base) < 2:
            continue  # refused below (`_pair_problem`) where the LoRA's matrix is not 2-D
        # down: (rank, in_features); up: (out_features, rank); the model: (out, in)
        if (down and shape[1] != base[1]) or (not down and shape[0] != base[0]):
            return (
                f"{lora.name} does not fit {spec.name}: its layer {part}.{layer[:80]} has "
                f"{shape} where the model's has {base} (a LoRA for another model size?)."
            )
    return _pair_problem(lora.name, tensors)


_PAIR = re.compile(r"^(.*)\.(lora\.down|lora\.up|lora_A|lora_B|lora_down|lora_up)\.weight$")


def _pair_problem(file: str, tensors: Mapping[str, list[int]]) -> str | None:
    """Why the down/up matrices of `tensors` cannot make a LoRA: a layer with one of the two, a
    matrix that is not 2-D (4-D for a convolution), or ranks that differ or are 0 (peft refuses
    rank 0 half way through loading)."""
    pairs: dict[str, dict[bool, list[int]]] = {}
    for key, shape in tensors.items():
        match = _PAIR.match(key)
        if match is None:
            if key.endswith(".alpha"):
                continue
            return f"{file} has a tensor Atelier cannot place: {key[:80]!r}."
        down = match[2] in ("lora.down", "lora_A", "lora_down")
        pairs.setdefault(match[1], {})[down] = shape
    if not pairs:
        return f"{file} holds no LoRA matrices."
    for layer, matrices in pairs.items():
        if len(matrices) != 2:
            return f"{file} has only one of the two LoRA matrices of {layer[:80]}."
        down, up = matrices[True], matrices[False]
        if len(down) not in (2, 4) or len(up) != len(down):
            return f"{file} has LoRA matrices of {layer[:80]} shaped {down} and {up}."
        if down[0] != up[1] or down[0] < 1:
            return (
                f"{file} has LoRA matrices of {layer[:80]} of rank {down[0]} and {up[1]}; "
                "both must be the same rank, at least 1."
            )
    return None


def _kohya_problem(
    file: str, tensors: Mapping[str, list[int]], model_folder: Path, spec: ModelSpec
) -> str | None:
    """Why a kohya-named file is not for `spec`: for Playground (SDXL), an SD 1.x/2.x LoRA shows
    by its cross-attention keys' width (768 or 1024 where SDXL's are `cross_attention_dim`,
    2048). A file without such keys (one adapting only other layers) cannot be told apart."""
    if spec.family is not Family.PLAYGROUND:
        return None
    width = _cross_attention_dim(model_folder)
    for key, shape in tensors.items():
        if "attn2_to_k.lora_down" in key and len(shape) == 2 and shape[1] != width:
            return (
                f"{file} was made for another model (its cross-attention reads {shape[1]} "
                f"features; {spec.name}'s read {width}): Stable Diffusion 1.x/2.x?"
            )
    return None


def _cross_attention_dim(model_folder: Path) -> int:
    try:
        config = json.loads((model_folder / "unet" / "config.json").read_text())
        return int(config["cross_attention_dim"])
    except (OSError, ValueError, KeyError, TypeError):
        return _SDXL_CROSS_ATTENTION


def _starts(prefix: str) -> Any:
    return lambda key: key.startswith(prefix)


def _part_header(folder: Path) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        shapes |= read_header(file)
    return shapes


def misfit(lora: LoraSpec, spec: ModelSpec) -> str | None:
    """Why the LoRA `lora` cannot apply to the model `spec`, as far as this machine shows: its
    family is another, or `check_fits` finds a problem in the two files' headers. None where it
    fits, or where either file is not here to read (the job then fails for that reason)."""
    if lora.family is not spec.family:
        return f"{lora.name} is a LoRA for {lora.family.value} models, not {spec.name}."
    path, folder = lora.path(), model_folder(spec)
    if path is None or folder is None or not path.is_file() or not folder.is_dir():
        return None
    try:
        return check_fits(path, folder, spec)
    except LoraError as error:
        return str(error)
