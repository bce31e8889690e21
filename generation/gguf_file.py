"""A `.gguf` file of a model's transformer: its weight memory from the header, and its check.

GGUF (ggml's format, https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) stores each
tensor with its type and shape in a header before the data; the `gguf` library reads that header
through a memory map, so the figures below read no weights. Plain numpy: the bot process may
call it (it never imports torch).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file (gguf.md, "File Structure")
# diffusers keeps GGUF's unquantized tensors (F32, F16, BF16) in the compute dtype, bf16 on CUDA
# (diffusers.quantizers.gguf.utils.UNQUANTIZED_TYPES, cast by `load_model_dict_into_meta`).
UNQUANTIZED_BYTES = 2


class NotGguf(ValueError):
    """A file that is not a readable GGUF file; the message says which and why."""


def check(path: Path) -> None:
    """Raise NotGguf unless `path` is a file that starts like a GGUF file."""
    if path.suffix.lower() != ".gguf":
        raise NotGguf(f"{path} is not a .gguf file; Atelier reads only .gguf and safetensors.")
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
    except OSError as error:
        raise NotGguf(f"cannot read {path}: {error.strerror or error}") from None
    if magic != GGUF_MAGIC:
        raise NotGguf(f"{path} does not start like a GGUF file (no GGUF magic bytes).")


def weight_bytes(path: str, fallback: int) -> int:
    """Bytes the transformer in the GGUF file at `path` takes on the GPU: each quantized tensor
    as stored (diffusers keeps it quantized and dequantizes one layer at a time as it runs),
    each unquantized one at 2 bytes per element. `fallback` (the unquantized transformer's size,
    an upper bound) where the file cannot be read here."""
    file = Path(path).expanduser()
    try:
        stat = file.stat()
        return _weight_bytes(str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    except (OSError, ValueError, NotGguf):
        return fallback


@cache
def _weight_bytes(path: str, size: int, mtime_ns: int) -> int:  # cached per file version
    import gguf

    check(Path(path))
    unquantized = {
        gguf.GGMLQuantizationType.F32,
        gguf.GGMLQuantizationType.F16,
        gguf.GGMLQuantizationType.BF16,
    }
    total = 0
    for tensor in gguf.GGUFReader(path).tensors:
        if tensor.tensor_type in unquantized:
            total += int(tensor.n_elements) * UNQUANTIZED_BYTES
        else:
            total += int(tensor.n_bytes)
    return total
