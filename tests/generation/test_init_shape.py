"""An init image with no size given sets the job's aspect (mapped to the model's native sizes);
with a size of another shape, the request says what is done to it."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from generation.models import Catalogue
from generation.request import build_request, init_fit_note

CATALOGUE = Catalogue.builtin()


def _png(size: tuple[int, int], orientation: int | None = None) -> bytes:
    image = Image.new("RGB", size, "teal")
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if orientation else "PNG", exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("model", "size", "expected"),
    [
        ("playground-v2.5", (1920, 1080), (1344, 768)),
        ("playground-v2.5", (1080, 1920), (768, 1344)),
        ("flux-dev", (1920, 1080), (1360, 768)),
        ("flux-schnell", (600, 600), (1024, 1024)),
    ],
)
def test_no_size_takes_the_init_images_aspect(
    model: str, size: tuple[int, int], expected: tuple[int, int]
) -> None:
    request = build_request(CATALOGUE, prompt="a boat", model=model, init_image=_png(size))
    assert (request.width, request.height) == expected
    assert init_fit_note(request) is None


def test_the_upright_shape_counts_for_a_rotated_photo() -> None:
    # EXIF orientation 6: stored 1920x1080, shown 1080x1920 (and fitted upright by the engine).
    request = build_request(CATALOGUE, prompt="a boat", init_image=_png((1920, 1080), 6))
    assert (request.width, request.height) == (768, 1344)


def test_a_given_size_of_another_shape_says_what_is_done() -> None:
    request = build_request(
        CATALOGUE, prompt="a boat", width=1024, height=1024, init_image=_png((1920, 1080))
    )
    note = init_fit_note(request)
    assert note is not None
    assert "(1920x1080)" in note
    assert "1024x1024" in note
    assert "cropped" in note
    aspect = build_request(CATALOGUE, prompt="a boat", aspect="1:1", init_image=_png((160, 90)))
    assert (aspect.width, aspect.height) == (1024, 1024)
    assert init_fit_note(aspect) is not None
