"""A tiny `.gguf` file made from a tiny model's transformer with the `gguf` library (in a test)."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file

Q8_0 = gguf.GGMLQuantizationType.Q8_0


def write_gguf(model_dir: Path, out: Path, qtype: gguf.GGMLQuantizationType = Q8_0) -> Path:
    """`out`: the transformer of the diffusers folder `model_dir`, in diffusers' key names, each
    2-D weight whose rows split into `qtype`'s blocks quantized to it, the rest float32 (as
    city96's FLUX GGUF files keep biases and norms)."""
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    writer = gguf.GGUFWriter(str(out), arch="flux")
    for file in sorted((model_dir / "transformer").glob("*.safetensors")):
        for name, tensor in sorted(load_file(file).items()):
            tensor = tensor.astype(np.float32)
            if tensor.ndim == 2 and tensor.shape[-1] % block == 0:
                writer.add_tensor(name, gguf.quants.quantize(tensor, qtype), raw_dtype=qtype)
            else:
                writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
