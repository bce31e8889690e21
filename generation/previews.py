"""Cheap in-progress previews: a linear latent → RGB projection, no VAE decode.

The same technique as ComfyUI's "latent2rgb" previews: each latent pixel becomes a colour through
a fixed per-family 3-column matrix. The batch is tiled into a grid (two columns) and encoded as a
small PNG. Imported only by worker processes (it uses torch).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import torch
from PIL import Image

MAX_PREVIEW_SIDE = 256
_COLUMNS = 2


def latent_preview_png(
    latents: torch.Tensor,
    factors: Sequence[Sequence[float]],
    bias: Sequence[float],
) -> bytes:
    """A small PNG of a (batch, channels, height, width) latent tensor, images tiled in a grid."""
    with torch.no_grad():
        weight = torch.tensor(factors, dtype=torch.float32, device=latents.device)
        offset = torch.tensor(bias, dtype=torch.float32, device=latents.device)
        rgb = torch.einsum("bchw,cr->bhwr", latents.float(), weight) + offset
        pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
    grid = _tile([Image.fromarray(image) for image in pixels])
    grid.thumbnail((MAX_PREVIEW_SIDE, MAX_PREVIEW_SIDE))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _tile(images: list[Image.Image]) -> Image.Image:
    width, height = images[0].size
    columns = min(_COLUMNS, len(images))
    rows = math.ceil(len(images) / columns)
    grid = Image.new("RGB", (columns * width, rows * height))
    for index, image in enumerate(images):
        grid.paste(image, ((index % columns) * width, (index // columns) * height))
    return grid
