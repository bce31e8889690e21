"""Batch-invariant denoising: each image of a batch computes exactly as it would alone.

CPU and GPU matrix kernels pick different blocking (and so a different summation order) for
different batch sizes, so image 2 of a batch of four and the same seed run alone differ by
~1e-6, which flips a few 8-bit pixels. Atelier promises that any image is reproduced by rerunning
its seed alone, so the denoiser runs one image at a time (with its classifier-free-guidance
pair, exactly the shape of a solo run) and the VAE decodes one image at a time. The pipeline
call stays one batched call: one text encoding, one scheduler loop, one preview per step.
The cost is a little GPU throughput on small images; at native sizes a single image already
fills the GPU, and peak activation memory drops too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch


class PerImageForward:
    """Replaces a denoiser's `forward`, splitting a batch of `images` into per-image calls.

    The batch holds `images` images times a group factor (2 with classifier-free guidance: the
    pipeline concatenates [unconditional × n, conditional × n]); image i's group is rows
    i, n + i, ... — the same rows, in the same order, as a run of that image alone.
    Arguments named in `unbatched` (e.g. FLUX's position ids) are passed through whole.
    """

    def __init__(self, module: torch.nn.Module, sample_argument: str, unbatched: frozenset[str]):
        self._forward: Callable[..., Any] = module.forward
        self._sample_argument = sample_argument
        self._unbatched = unbatched
        self._images = 1
        module.forward = self

    @contextmanager
    def images(self, count: int) -> Iterator[None]:
        """Within the block, calls carry `count` images."""
        self._images = count
        try:
            yield
        finally:
            self._images = 1

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        sample = args[0] if args else kwargs[self._sample_argument]
        batch, images = sample.shape[0], self._images
        if images <= 1 or batch % images:
            # Contiguous, like the rows a batch selects: an img2img run of one image gets its
            # latents from the VAE in another memory layout, and other kernels then run.
            return self._forward(
                *_contiguous(args), **dict(zip(kwargs, _contiguous(kwargs.values()), strict=True))
            )
        group = batch // images
        rows = [
            torch.tensor([image + k * images for k in range(group)], device=sample.device)
            for image in range(images)
        ]
        outputs = [
            self._forward(*self._select(args, batch, r), **self._pick(kwargs, batch, r))
            for r in rows
        ]
        order = torch.argsort(torch.cat(rows))
        merged = [
            torch.cat(parts)[order] for parts in zip(*(_tensors(o) for o in outputs), strict=True)
        ]
        first = outputs[0]
        return tuple(merged) if isinstance(first, tuple) else type(first)(*merged)

    def _select(self, values: tuple[Any, ...], batch: int, rows: torch.Tensor) -> list[Any]:
        return [_rows(value, batch, rows) for value in values]

    def _pick(self, values: dict[str, Any], batch: int, rows: torch.Tensor) -> dict[str, Any]:
        return {
            name: value if name in self._unbatched else _rows(value, batch, rows)
            for name, value in values.items()
        }


def _rows(value: Any, batch: int, rows: torch.Tensor) -> Any:
    if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == batch:
        return value.index_select(0, rows)
    if isinstance(value, dict):
        return {name: _rows(item, batch, rows) for name, item in value.items()}
    return value


def _contiguous(values: Any) -> list[Any]:
    return [v.contiguous() if isinstance(v, torch.Tensor) else v for v in values]


def _tensors(output: Any) -> tuple[torch.Tensor, ...]:
    return tuple(output) if isinstance(output, tuple) else tuple(output.values())
