"""The API models of Black Forest Labs: their request fields, limits and published prices.

Sources (read 2026-11): BFL's API reference, one page per endpoint (docs.bfl.ai/api-reference/
models/*: the field names, ranges and defaults below), the integration guidelines (24 active tasks
per key, 6 for Kontext [max]) and the pricing page (docs.bfl.ai/quick_start/pricing; 1 credit =
$0.01): per image FLUX1.1 [pro] 4, [pro] Ultra 6, Kontext [pro] 4, Kontext [max] 8; FLUX.2 per
megapixel of output and of each input image, first megapixel / each further one: [pro] 3 / 1.5,
[max] 7 / 3, [flex] 5 / 5 (so 1 MP text-to-image on [pro] is 3 credits, with one 1 MP input
4.5). The reply's `cost` is what is charged; the estimate here only reserves budget before it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from generation.input_images import upright_size
from generation.request import GenerationRequest

MEGAPIXEL = 1024 * 1024  # BFL's "1 MP" output is 1024x1024 (its pricing examples)


@dataclass(frozen=True, slots=True)
class Price:
    """Credits per image (`per_image`), or per started megapixel: `first_mp` for the output's
    first megapixel, `further_mp` for each further one and for each megapixel of each input."""

    per_image: float = 0.0
    first_mp: float = 0.0
    further_mp: float = 0.0

    def estimate(self, width: int, height: int, inputs: list[tuple[int, int]]) -> float:
        """Credits for one output of `width` x `height` pixels from `inputs` (their sizes)."""
        if self.per_image:
            return self.per_image
        out_mp = max(1, math.ceil(width * height / MEGAPIXEL))
        in_mp = sum(max(1, math.ceil(w * h / MEGAPIXEL)) for w, h in inputs)
        return self.first_mp + self.further_mp * (out_mp - 1 + in_mp)


@dataclass(frozen=True, slots=True)
class HostedModel:
    """One endpoint, `POST /v1/{name}`.

    Size is given either in pixels (`min_side`..`max_side`, multiples of `multiple_of`, at most
    `max_pixels`) or, where `aspect_ratios` is set, as an aspect ratio between the widest and the
    tallest listed (the API then makes about `nominal_pixels`). `max_inputs`: reference images
    (`input_image`, `input_image_2`, ...), at most `max_input_pixels` in all where set (FLUX.2:
    "up to 8 images (9MP total limit)"; read as 9,000,000 pixels, the stricter reading of "MP").
    `steps`/`guidance`: (default, min, max) where the model
    takes them. `active_limit`: the key's concurrent tasks on this endpoint.
    """

    name: str
    title: str
    price: Price
    min_side: int = 0
    max_side: int = 0
    multiple_of: int = 1
    max_pixels: int = 0
    default_size: tuple[int, int] = (1024, 1024)
    aspect_ratios: tuple[str, str] | None = None  # (widest, tallest), e.g. ("21:9", "9:21")
    default_aspect: str = "1:1"
    nominal_pixels: int = MEGAPIXEL
    max_inputs: int = 0
    max_input_pixels: int = 0  # 0: no limit but each image's own
    steps: tuple[int, int, int] | None = None
    guidance: tuple[float, float, float] | None = None
    raw: bool = False
    prompt_upsampling: bool = True  # whether the endpoint has the field (Atelier sends false)
    active_limit: int = 24

    @property
    def sized_by_aspect(self) -> bool:
        return self.aspect_ratios is not None

    def aspect_range(self) -> tuple[Fraction, Fraction]:
        """The widest and tallest width/height ratio this model takes."""
        assert self.aspect_ratios is not None
        wide, tall = (Fraction(*map(int, a.split(":"))) for a in self.aspect_ratios)
        return wide, tall

    def estimate(self, request: GenerationRequest) -> float:
        """The credits `request` is expected to cost (all its images)."""
        inputs = [upright_size(image) for image in request.input_images]
        return request.count * self.price.estimate(request.width, request.height, inputs)

    def charged(self, request: GenerationRequest, cost: float | None) -> float:
        """What one sent task of `request` is charged: its reply's `cost`, or where the reply
        gave none, one image's share of the estimate."""
        return cost if cost is not None else self.estimate(request) / request.count


_FLUX2 = {
    "min_side": 64,
    "max_side": 4096,
    "multiple_of": 16,
    "max_pixels": 4 * MEGAPIXEL,
    "max_input_pixels": 9_000_000,
}
_KONTEXT = {"aspect_ratios": ("21:9", "9:21"), "max_inputs": 4, "nominal_pixels": MEGAPIXEL}

HOSTED_MODELS: tuple[HostedModel, ...] = (
    HostedModel(
        name="flux-pro-1.1",
        title="FLUX1.1 [pro]",
        price=Price(per_image=4),
        min_side=256,
        max_side=1440,
        multiple_of=32,
        max_pixels=1440 * 1440,
        default_size=(1024, 768),
    ),
    HostedModel(
        name="flux-pro-1.1-ultra",
        title="FLUX1.1 [pro] Ultra",
        price=Price(per_image=6),
        aspect_ratios=("21:9", "9:21"),
        default_aspect="16:9",
        nominal_pixels=4 * MEGAPIXEL,
        raw=True,
    ),
    HostedModel(
        name="flux-kontext-pro", title="FLUX.1 Kontext [pro]", price=Price(per_image=4), **_KONTEXT
    ),
    HostedModel(
        name="flux-kontext-max",
        title="FLUX.1 Kontext [max]",
        price=Price(per_image=8),
        active_limit=6,
        **_KONTEXT,
    ),
    HostedModel(
        name="flux-2-pro",
        title="FLUX.2 [pro]",
        price=Price(first_mp=3, further_mp=1.5),
        max_inputs=8,
        prompt_upsampling=False,
        **_FLUX2,
    ),
    HostedModel(
        name="flux-2-flex",
        title="FLUX.2 [flex]",
        price=Price(first_mp=5, further_mp=5),
        max_inputs=8,
        steps=(50, 1, 50),
        guidance=(5.0, 1.5, 10.0),
        **_FLUX2,
    ),
    HostedModel(
        name="flux-2-max",
        title="FLUX.2 [max]",
        price=Price(first_mp=7, further_mp=3),
        max_inputs=8,
        prompt_upsampling=False,
        **_FLUX2,
    ),
)


def hosted_models(environ: Mapping[str, str] | None = None) -> tuple[HostedModel, ...]:
    """The API models to offer: all of them when `BFL_API_KEY` is set (non-empty), else none."""
    environ = os.environ if environ is None else environ
    return HOSTED_MODELS if environ.get("BFL_API_KEY", "").strip() else ()
