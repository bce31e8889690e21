"""GenerationRequest: every fault gets its own message; valid requests fill in the defaults and
survive a JSON round trip unchanged."""

from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from generation.models import Catalogue
from generation.request import (
    MAX_INIT_IMAGE_BYTES,
    GenerationRequest,
    JobKind,
    RequestError,
    build_request,
)
from generation.text import clean_text

CATALOGUE = Catalogue.from_config(
    {"small": {"family": "playground", "source": "/models/small", "max_megapixels": 1.0}}
)


def png_bytes(size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_REQUESTS: list[tuple[str, dict[str, Any], str, str]] = [
    ("empty prompt", {"prompt": ""}, "prompt", "The prompt is empty."),
    ("only control characters", {"prompt": "\x00\x07 \t"}, "prompt", "The prompt is empty."),
    (
        "prompt too long",
        {"prompt": "x" * 2001},
        "prompt",
        "The prompt is 2,001 characters long; playground-v2.5 takes at most 2,000.",
    ),
    (
        "negative prompt on FLUX",
        {"model": "flux-dev", "negative_prompt": "blurry"},
        "negative_prompt",
        "flux-dev does not support a negative prompt.",
    ),
    (
        "negative prompt too long",
        {"negative_prompt": "y" * 2001},
        "negative_prompt",
        "The negative prompt is 2,001 characters long; the limit is 2,000.",
    ),
    (
        "unknown model",
        {"model": "sdxl-turbo"},
        "model",
        "Unknown model 'sdxl-turbo'. Available models: "
        "playground-v2.5, flux-dev, flux-schnell, flux2-klein-4b, flux2-klein-9b, "
        "flux-kontext-dev, small.",
    ),
    (
        "aspect and size",
        {"aspect": "16:9", "width": 1024, "height": 1024},
        "size",
        "Give either an aspect ratio or a width and height, not both.",
    ),
    (
        "width without height",
        {"width": 1024},
        "size",
        "Give both a width and a height (or an aspect ratio).",
    ),
    (
        "width too small",
        {"width": 128, "height": 1024},
        "width",
        "The width must be between 256 and 2048 pixels for playground-v2.5 (got 128).",
    ),
    (
        "height too large",
        {"width": 1024, "height": 4096},
        "height",
        "The height must be between 256 and 2048 pixels for playground-v2.5 (got 4096).",
    ),
    (
        "width not a multiple",
        {"width": 1000, "height": 1024},
        "width",
        "The width must be a multiple of 64 for playground-v2.5 (got 1000; try 1024).",
    ),
    (
        "too many megapixels",
        {"model": "small", "width": 1024, "height": 1088},
        "size",
        "1024x1088 is 1,114,112 pixels; small allows at most 1,000,000 (1 MP).",
    ),
    (
        "aspect not a ratio",
        {"aspect": "wide"},
        "aspect",
        "Aspect ratio 'wide' should look like `16:9`.",
    ),
    ("aspect with a zero", {"aspect": "0:9"}, "aspect", "An aspect ratio cannot have a zero side."),
    (
        "aspect too extreme",
        {"aspect": "5:1"},
        "aspect",
        "Aspect ratios are limited to 4:1 (or 1:4).",
    ),
    ("no steps", {"steps": 0}, "steps", "Steps must be between 1 and 100 for playground-v2.5."),
    (
        "too many steps for schnell",
        {"model": "flux-schnell", "steps": 17},
        "steps",
        "Steps must be between 1 and 16 for flux-schnell.",
    ),
    (
        "guidance on schnell",
        {"model": "flux-schnell", "guidance": 3.5},
        "guidance",
        "flux-schnell does not take a guidance scale.",
    ),
    (
        "guidance too high",
        {"guidance": 25.0},
        "guidance",
        "Guidance must be between 0 and 20 for playground-v2.5.",
    ),
    (
        "guidance not a number",
        {"guidance": float("nan")},
        "guidance",
        "Guidance must be between 0 and 20 for playground-v2.5.",
    ),
    (
        "unknown scheduler",
        {"scheduler": "euler-a"},
        "scheduler",
        "playground-v2.5 offers the schedulers edm-dpmsolver++, edm-euler (not 'euler-a').",
    ),
    (
        "seed and seeds",
        {"seed": 1, "seeds": [1, 2]},
        "seed",
        "Give either one seed or a list of seeds, not both.",
    ),
    ("five images", {"count": 5}, "count", "The image count must be between 1 and 4."),
    ("no images", {"count": 0}, "count", "The image count must be between 1 and 4."),
    ("empty seed list", {"seeds": []}, "count", "The image count must be between 1 and 4."),
    (
        "negative seed",
        {"seed": -1},
        "seed",
        "A seed must be between 0 and 9223372036854775803.",
    ),
    (
        "strength without image",
        {"strength": 0.5},
        "strength",
        "A strength needs an init image to apply to.",
    ),
    (
        "init image not an image",
        {"init_image": b"GIF? no, a text file"},
        "image",
        "That file is not a PNG, JPEG or WebP image.",
    ),
    (
        "init image too large",
        {"init_image": b"\0" * (MAX_INIT_IMAGE_BYTES + 1)},
        "image",
        "The image is larger than 25 MiB.",
    ),
    (
        "zero strength",
        {"init_image": png_bytes(), "strength": 0.0},
        "strength",
        "Strength must be above 0 and at most 1.",
    ),
    (
        "strength above one",
        {"init_image": png_bytes(), "strength": 1.5},
        "strength",
        "Strength must be above 0 and at most 1.",
    ),
    (
        "strength too small for the steps",
        {"init_image": png_bytes(), "strength": 0.2, "steps": 4},
        "strength",
        "A strength of 0.2 with 4 steps runs no step at all on playground-v2.5; raise the "
        "strength or the steps (strength × steps must be at least 1).",
    ),
]


@pytest.mark.parametrize(
    ("arguments", "field", "message"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_request_is_refused_with_its_message(
    arguments: dict[str, Any], field: str, message: str
) -> None:
    arguments = {"prompt": "a lighthouse at dusk", **arguments}
    with pytest.raises(RequestError) as caught:
        build_request(CATALOGUE, **arguments)
    assert (caught.value.field, caught.value.message) == (field, message)
    assert str(caught.value) == message


def test_defaults_come_from_the_model() -> None:
    request = build_request(CATALOGUE, prompt="a lighthouse", model="flux-dev")
    assert (request.width, request.height) == (1024, 1024)
    assert (request.steps, request.guidance, request.scheduler) == (28, 3.5, "flow-euler")
    assert request.count == 1
    assert 0 <= request.seeds[0] < 2**32
    assert request.model == "flux-dev"
    assert request.kind is JobKind.NEW
    assert build_request(CATALOGUE, prompt="x").model == "playground-v2.5"


@pytest.mark.parametrize(
    ("model", "aspect", "size"),
    [
        ("playground-v2.5", "16:9", (1344, 768)),
        ("playground-v2.5", "9:16", (768, 1344)),
        ("playground-v2.5", "1:1", (1024, 1024)),
        ("flux-dev", "16:9", (1360, 768)),
        ("flux-dev", "3x2", (1248, 832)),
    ],
)
def test_aspect_ratio_maps_to_the_models_native_size(
    model: str, aspect: str, size: tuple[int, int]
) -> None:
    request = build_request(CATALOGUE, prompt="a dune", model=model, aspect=aspect)
    assert (request.width, request.height) == size


def test_one_seed_per_image() -> None:
    assert build_request(CATALOGUE, prompt="x", seed=10, count=3).seeds == (10, 11, 12)
    assert build_request(CATALOGUE, prompt="x", seeds=[7, 3]).seeds == (7, 3)
    random = build_request(CATALOGUE, prompt="x", count=4).seeds
    assert len(set(random)) == 4
    assert all(0 <= seed < 2**32 for seed in random)


def test_control_characters_are_removed_from_prompts() -> None:
    request = build_request(
        CATALOGUE, prompt="  a\tcat\x07 on\r\na   mat\x85 ", negative_prompt="\x1bblur\u2028x"
    )
    assert (request.prompt, request.negative_prompt) == ("a cat on a mat", "blur x")


@pytest.mark.parametrize(
    "text",
    [
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian with a ZWNJ
        "\U0001f469\u200d\U0001f4bb coder",  # woman technologist: ZWJ sequence
        "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f flag",  # tags
        "\u2764\ufe0f heart",  # variation selector
        "\u0e20\u0e32\u0e29\u0e32\u200b\u0e44\u0e17\u0e22",  # Thai word break (ZWSP)
        "\u05e9\u05dc\u05d5\u05dd\u200f abc",  # Hebrew with a right-to-left mark
    ],
)
def test_writing_systems_and_emoji_are_kept_exactly(text: str) -> None:
    request = build_request(CATALOGUE, prompt=text, negative_prompt=text)
    assert request.prompt == text
    assert GenerationRequest.from_json(request.to_json()).prompt == text


@pytest.mark.parametrize(
    "text",
    [
        "\u200b\u200d\u2060",  # zero-width space, zero-width joiner, word joiner
        "\ufeff \u200c",  # byte order mark, zero-width non-joiner
        "\u3164\u115f\uffa0",  # Hangul fillers
        "\u2800 \u034f\ufe0f",  # blank Braille pattern, grapheme joiner, variation selector
        "\u202e\u2066 \u00a0",  # only bidi controls and a no-break space
    ],
)
def test_a_text_of_invisible_characters_only_is_empty(text: str) -> None:
    assert clean_text(text) == ""
    with pytest.raises(RequestError, match="The prompt is empty"):
        build_request(CATALOGUE, prompt=text)
    assert build_request(CATALOGUE, prompt="x", negative_prompt=text).negative_prompt == ""


def test_bidi_overrides_are_removed() -> None:
    trojan = "a cat \u202eredro\u202c\u2066x\u2069"
    assert build_request(CATALOGUE, prompt=trojan).prompt == "a cat redrox"


def test_img2img_defaults_to_a_strength_of_point_six() -> None:
    request = build_request(CATALOGUE, prompt="x", init_image=png_bytes())
    assert request.strength == 0.6
    assert request.init_image == png_bytes()


@given(
    prompt=st.text(min_size=1, max_size=200).filter(clean_text),
    seeds=st.lists(st.integers(0, 2**63 - 5), min_size=1, max_size=4),
    guidance=st.floats(0, 20),
    with_image=st.booleans(),
    kind=st.sampled_from(list(JobKind)),
    parent=st.none() | st.integers(1, 10**9),
)
def test_json_round_trip_is_lossless(
    prompt: str,
    seeds: list[int],
    guidance: float,
    with_image: bool,
    kind: JobKind,
    parent: int | None,
) -> None:
    request = build_request(
        CATALOGUE,
        prompt=prompt,
        seeds=seeds,
        guidance=guidance,
        init_image=png_bytes() if with_image else None,
        kind=kind,
        parent_job=parent,
    )
    assert GenerationRequest.from_json(request.to_json()) == request
