"""A `.gguf` file of a model's transformer: its header, read with bounds; its weight memory; and
whether it can be that model's transformer at all.

GGUF (ggml's format, https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) stores each
tensor with its type and shape in a header before the data; the `gguf` library reads that header
through a memory map, so nothing here reads weights. Plain numpy: the bot process may call it
(it never imports torch). Every file is someone's upload until checked: the counts are bounded
before the library reads them, and whatever the library raises becomes one sentence (NotGguf).
"""

from __future__ import annotations

import json
import os
import stat
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from generation.lora_headers import read_entries
from generation.loras import LoraError

GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file (gguf.md, "File Structure")
# diffusers keeps GGUF's unquantized tensors (F32, F16, BF16) in the compute dtype, bf16 on CUDA
# (diffusers.quantizers.gguf.utils.UNQUANTIZED_TYPES, cast by `load_model_dict_into_meta`).
UNQUANTIZED_BYTES = 2
UNQUANTIZED_TYPES = ("F32", "F16", "BF16")
# The types diffusers can dequantize (diffusers.quantizers.gguf.utils.dequantize_functions,
# diffusers 0.35): any other type loads but fails at its first layer, so it is refused first.
QUANTIZED_TYPES = (
    "Q8_0", "Q6_K", "Q5_K", "Q5_1", "Q5_0", "Q4_K", "Q4_1", "Q4_0", "Q3_K", "Q2_K",
    "IQ4_XS", "IQ4_NL",
)  # fmt: skip
# Bounds on a header's counts, read before the library loops over them. A FLUX.1 transformer has
# 1,160 tensors in diffusers' names (its state dict, built on the meta device; fewer in BFL's),
# FLUX.2's 331; GGUF key-value metadata is tens of entries (llama.cpp's LLM files: about 40).
MAX_TENSORS = 4096
MAX_METADATA = 1024
_COUNTS = struct.Struct("<4sIQQ")  # magic, version, tensor count, metadata count (gguf.md)
_MIN_TENSOR_INFO = 8 + 1 + 4 + 8 + 4 + 8  # name length, a 1-byte name, n_dims, 1 dim, type, offset
# Where a file in BFL's own names (as Black Forest Labs and most community GGUF files keep them)
# says how many blocks it has; diffusers' converter reads them into the config's layer counts.
_BFL_BLOCKS = {"double_blocks.": "num_layers", "single_blocks.": "num_single_layers"}
_BFL_PREFIX = "model.diffusion_model."  # ComfyUI's prefix, which diffusers strips


class NotGguf(ValueError):
    """A file that is not a readable GGUF file; the message says which and why."""


@dataclass(frozen=True)
class Tensor:
    """One tensor as the header lists it: its GGML type's name ("Q8_0", "F32", …), its shape
    outermost first (numpy's order; GGUF lists it innermost first), and its bytes on the GPU."""

    type: str
    shape: tuple[int, ...]
    gpu_bytes: int


@dataclass(frozen=True)
class Header:
    """A GGUF file's header: `general.architecture` (None where absent) and its tensors by name."""

    architecture: str | None
    tensors: dict[str, Tensor]


def check(path: Path) -> None:
    """Raise NotGguf unless `path` is a regular file that starts like a GGUF file (never opens a
    FIFO or device, which could block or never end)."""
    if path.suffix.lower() != ".gguf":
        raise NotGguf(f"{path} is not a .gguf file; Atelier reads only .gguf and safetensors.")
    _regular(path)
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
    except OSError as error:
        raise NotGguf(f"cannot read {path}: {error.strerror or error}") from None
    if magic != GGUF_MAGIC:
        raise NotGguf(f"{path} does not start like a GGUF file (no GGUF magic bytes).")


def read_header(path: Path) -> Header:
    """`path`'s header, checked: at most MAX_TENSORS tensors and MAX_METADATA metadata entries,
    each tensor's data inside the file and overlapping no other's. Cached per version of the file
    (path, size, mtime, inode, ctime). Raises NotGguf, saying why, for anything else."""
    check(path)
    return _read_header(str(path.resolve()), *_version(path.stat()))


def weight_bytes(path: str, fallback: int, model_dir: Path | None = None) -> int:
    """Bytes the transformer in the GGUF file at `path` takes on the GPU: each quantized tensor
    as stored (diffusers keeps it quantized and dequantizes one layer at a time as it runs),
    each unquantized one at 2 bytes per element. `fallback` (the unquantized transformer's size,
    an upper bound) where the file could not run as the transformer of the model in `model_dir`
    (`transformer_problem`; None: a folder not at hand, whose names are not compared)."""
    file = Path(path).expanduser()
    if transformer_problem(file, "the model", model_dir) is not None:
        return fallback
    try:  # read again (cached): the file may have gone since
        return sum(tensor.gpu_bytes for tensor in read_header(file).tensors.values())
    except (OSError, NotGguf):
        return fallback


def transformer_problem(path: Path, model: str, model_dir: Path | None) -> str | None:
    """Why the GGUF file at `path` cannot be the transformer of the model named `model` (whose
    diffusers folder is `model_dir`, None where it is not here yet), or None: unreadable, no
    tensors, a type diffusers cannot dequantize, or tensors that are not that transformer's
    (diffusers' names: exactly its tensors and shapes; BFL's names: its block counts)."""
    try:
        header = read_header(path)
    except (OSError, NotGguf) as error:
        return str(error)
    if not header.tensors:
        return f"{path.name} holds no tensors."
    for name, tensor in header.tensors.items():
        if tensor.type not in (*UNQUANTIZED_TYPES, *QUANTIZED_TYPES):
            return (
                f"{path.name} holds {tensor.type} tensors ({name[:80]!r}), which diffusers "
                f"cannot dequantize; use a file in {', '.join(QUANTIZED_TYPES[:8])} or another "
                f"of {', '.join((*UNQUANTIZED_TYPES, *QUANTIZED_TYPES[8:]))}."
            )
    if model_dir is None:
        return None
    return _names_problem(path.name, header, model, model_dir / "transformer")


def _names_problem(file: str, header: Header, model: str, folder: Path) -> str | None:
    expected = _expected_tensors(folder)
    if expected is None:  # the folder's own problem, which `bot check` reports on its own
        return None
    names = set(header.tensors)
    not_it = f"{file} is not {model}'s transformer"
    if names & set(expected):
        missing, extra = sorted(set(expected) - names), sorted(names - set(expected))
        if missing:
            return f"{not_it}: it lacks {len(missing)} of its tensors, e.g. {missing[0][:80]!r}."
        if extra:
            return f"{not_it}: it holds tensors it does not have, e.g. {extra[0][:80]!r}."
        for name, shape in expected.items():
            if header.tensors[name].shape != shape:
                return (
                    f"{not_it}: its tensor {name[:80]!r} is {list(header.tensors[name].shape)}, "
                    f"{model}'s is {list(shape)}."
                )
        return None
    bfl = {name.removeprefix(_BFL_PREFIX) for name in names}
    if not any(name.startswith(tuple(_BFL_BLOCKS)) for name in bfl):
        kind = f"a {header.architecture!r} model's" if header.architecture else "other"
        return f"{not_it}: it holds {kind} tensors, e.g. {min(names)[:80]!r}."
    config = _config(folder)
    for prefix, key in _BFL_BLOCKS.items():
        blocks = {name[len(prefix) :].split(".")[0] for name in bfl if name.startswith(prefix)}
        if key in config and len(blocks) != config[key]:
            return f"{not_it}: it has {len(blocks)} {prefix[:-1]}, {model} has {config[key]}."
    return None


def _expected_tensors(folder: Path) -> dict[str, tuple[int, ...]] | None:
    """The transformer's tensor shapes from its safetensors headers, or None where unreadable;
    cached per version of its files."""
    try:
        files = tuple(
            (str(file), *_version(file.stat())) for file in sorted(folder.glob("*.safetensors"))
        )
    except OSError:
        return None
    return _read_expected(files)


@cache
def _read_expected(files: tuple[tuple[Any, ...], ...]) -> dict[str, tuple[int, ...]] | None:
    try:
        entries = {
            name: entry.shape
            for file, *_ in files
            for name, entry in read_entries(Path(file)).items()
        }
    except LoraError:
        return None
    return entries or None


def _version(info: os.stat_result) -> tuple[int, int, int, int]:
    """What tells one version of a file from another: a replaced file has a new ctime, which no
    one can set, even where its size and mtime were kept."""
    return info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns


def _config(folder: Path) -> dict[str, object]:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _regular(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise NotGguf(f"cannot read {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        raise NotGguf(f"{path} is not a regular file.")


@cache
def _read_header(path: str, size: int, *version: int) -> Header:
    _check_counts(path, size)
    import gguf

    try:
        reader = gguf.GGUFReader(path)
        field = reader.get_field("general.architecture")
        architecture = field.contents() if field is not None else None
        tensors = {
            tensor.name: Tensor(
                tensor.tensor_type.name,
                tuple(int(side) for side in reversed(tensor.shape.tolist())),
                int(tensor.n_elements) * UNQUANTIZED_BYTES
                if tensor.tensor_type.name in UNQUANTIZED_TYPES
                else int(tensor.n_bytes),
            )
            for tensor in reader.tensors
        }
        spans = sorted((int(t.data_offset), int(t.n_bytes)) for t in reader.tensors)
    except Exception as error:  # the library's errors on a broken header: IndexError, KeyError, …
        raise NotGguf(
            f"{Path(path).name} has a broken GGUF header ({type(error).__name__})."
        ) from None
    if len(tensors) != len(spans):
        raise NotGguf(f"{Path(path).name} lists a tensor name twice.")
    end = 0
    for offset, length in spans:
        if offset < end or offset + length > size:
            raise NotGguf(f"{Path(path).name} has tensors that overlap or lie outside it.")
        end = offset + length
    return Header(architecture if isinstance(architecture, str) else None, tensors)


def _check_counts(path: str, size: int) -> None:
    """Refuse a header whose counts are out of bounds before the library loops over them."""
    name = Path(path).name
    try:
        with open(path, "rb") as handle:
            _, version, tensors, metadata = _COUNTS.unpack(handle.read(_COUNTS.size))
    except (OSError, struct.error):
        raise NotGguf(f"{name} is cut short: it ends inside its GGUF header.") from None
    if version & 0xFFFF == 0:  # written big-endian (gguf.md: the reader checks the same way)
        raise NotGguf(f"{name} is a big-endian GGUF file; diffusers reads little-endian ones.")
    if tensors > MAX_TENSORS or tensors * _MIN_TENSOR_INFO > size:
        raise NotGguf(f"{name} lists {tensors} tensors; a transformer has at most {MAX_TENSORS}.")
    if metadata > MAX_METADATA:
        raise NotGguf(f"{name} lists {metadata} metadata entries, more than {MAX_METADATA}.")
