"""Buttons on results of the reference-image families (FLUX.2 [klein], FLUX.1 Kontext): only
those that make a valid job; V strong re-draws with the result as the first reference; a
reroll keeps the references (`bot.derived`, on the catalogue of the real built-in models)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.actions import Action
from bot.derived import derive, offered_actions
from bot.errors import UserError
from generation.models import Catalogue
from generation.request import JobKind, build_request

CATALOGUE = Catalogue.builtin()


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (128, 128), (value, 40, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("model", ["flux2-klein-4b", "flux2-klein-9b", "flux-kontext-dev"])
def test_reference_families_offer_v_strong_and_no_img2img_buttons(model: str) -> None:
    request = build_request(CATALOGUE, prompt="a fox", model=model, seed=3, count=2)
    assert offered_actions(CATALOGUE, request) == (
        Action.VARY_STRONG,
        Action.RERUN,
        Action.REROLL,
    )
    assert Action.UPSCALE in offered_actions(
        CATALOGUE, build_request(CATALOGUE, prompt="a fox", model="flux-dev", seed=3)
    )


def test_v_strong_uses_the_result_as_first_reference_within_the_limit() -> None:
    parent_refs = tuple(_png(n) for n in range(4))
    request = build_request(
        CATALOGUE, prompt="a fox", model="flux2-klein-4b", seed=3, input_images=parent_refs
    )
    clicked = _png(200)
    varied = derive(CATALOGUE, Action.VARY_STRONG, request, 42, clicked)
    assert varied.input_images == (clicked, *parent_refs[:3])
    assert (varied.kind, varied.parent_job, varied.init_image) == (JobKind.VARY, 42, None)
    assert varied.seeds != request.seeds
    with pytest.raises(UserError, match="no image-to-image"):
        derive(CATALOGUE, Action.UPSCALE, request, 42, clicked)
    rerolled = derive(CATALOGUE, Action.REROLL, request, 42)
    assert rerolled.input_images == parent_refs
