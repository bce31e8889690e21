"""What a job's record says is what was made: the size (for every family and configured limit)
and how much of the prompt the model read (with the tiny models' real tokenizers)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generation.engine import Engine
from generation.metadata import RECORD_KEY, read_record
from generation.models import Catalogue, CatalogueError
from generation.request import build_request
from generation.tiny import catalogue_config
from tests.generation.helpers import pixels

MODELS = {"playground-v2.5": 8, "flux-dev": 16, "flux-schnell": 16}  # the family's side step


@pytest.fixture(scope="module")
def engine(tiny_model_dirs: dict[str, Path]) -> Engine:
    return Engine(Catalogue.from_config(catalogue_config(tiny_model_dirs)))


def _catalogue(tiny_model_dirs: dict[str, Path], model: str, step: int) -> Catalogue:
    config = catalogue_config(tiny_model_dirs)
    config[model] |= {"multiple_of": step, "min_side": step, "max_side": 8 * step}
    return Catalogue.from_config(config)


@pytest.mark.parametrize("model", MODELS)
def test_recorded_size_is_the_png_size_for_every_allowed_limit(
    tiny_model_dirs: dict[str, Path], model: str
) -> None:
    family_step = MODELS[model]
    for step in (family_step, 2 * family_step, 3 * family_step):
        catalogue = _catalogue(tiny_model_dirs, model, step)
        engine = Engine(catalogue)
        for width, height in ((3 * step, 5 * step), (step, 2 * step)):
            request = build_request(
                catalogue, prompt="a fox", model=model, width=width, height=height, seed=1
            )
            (image,) = engine.generate(request)
            with Image.open(io.BytesIO(image.png)) as png:
                made = png.size
                parameters = png.text["parameters"]
            assert made == (width, height) == (image.width, image.height), (step, made)
            record = read_record(image.png)
            assert record is not None
            assert (record["request"]["width"], record["request"]["height"]) == made
            assert f"Size: {width}x{height}" in parameters


@pytest.mark.parametrize("model", ["flux-dev", "flux-schnell"])
@pytest.mark.parametrize("step", [8, 24, 40])
def test_limits_flux_cannot_honour_are_refused_when_read(
    tiny_model_dirs: dict[str, Path], model: str, step: int
) -> None:
    # FLUX.1 would silently make 64x32 for 72x40: refused before any job is accepted.
    with pytest.raises(CatalogueError, match="multiples of 16"):
        _catalogue(tiny_model_dirs, model, step)
    with pytest.raises(CatalogueError, match="multiples of 16"):
        Catalogue.from_config({"my-flux": {"family": "flux", "source": "/m", "multiple_of": 8}})


@pytest.mark.parametrize("model", MODELS)
def test_a_cut_prompt_is_recorded_where_it_was_cut(
    engine: Engine, tiny_model_dirs: dict[str, Path], model: str
) -> None:
    catalogue = engine.catalogue
    words = " ".join(f"word{n}" for n in range(100))

    def run(prompt: str) -> tuple[np.ndarray, dict]:
        # The plain encoder cuts (compel reads a long Playground prompt whole: see
        # test_prompt_encoding.py); jobs made before compel keep it.
        request = build_request(
            catalogue, prompt=prompt, model=model, seed=3, prompt_encoder="plain"
        )
        (image,) = engine.generate(request)
        assert image.facts is not None
        with Image.open(io.BytesIO(image.png)) as png:
            record = json.loads(png.text[RECORD_KEY])
        assert record["made_with"]["prompt_cut_at"] == image.facts.prompt_cut_at
        return pixels(image.png), image.facts.to_dict()

    cut_a, facts_a = run(words + " a red fox")
    cut_b, _facts_b = run(words + " a blue whale")
    # The end was never read: identical images, and the record says where reading stopped.
    assert np.array_equal(cut_a, cut_b)
    cut_at = facts_a["prompt_cut_at"]
    assert cut_at is not None
    assert 0 < cut_at < len(words)
    # Cut at the exact character (not the last space): what follows it is never read. (FLUX's
    # CLIP summary reads 77 tokens, more than the tiny T5's 64: Playground only.)
    if model == "playground-v2.5":
        assert np.array_equal(run(words[:cut_at] + "q" * 80)[0], cut_a)
    encoder = "T5" if model.startswith("flux") else "CLIP"
    assert facts_a["prompt_limit"].endswith(f"{encoder} tokens")
    # Changing a word the model did read changes the image.
    changed = words[: cut_at - 8] + "XXXXXXX" + words[cut_at - 1 :]
    assert not np.array_equal(run(changed + " a red fox")[0], cut_a)
    _, short = run("a red fox")
    assert short["prompt_cut_at"] is None
    assert short["model_revision"].startswith("sha256:")  # a local folder: its weights' hashes
    assert short["diffusers"]
    assert short["torch"]
    assert short["device_type"] == "cpu"


def test_the_bot_refuses_such_a_limit_when_it_reads_its_configuration() -> None:
    from bot.config import ConfigError, settings_from_mapping

    table = {
        "owner_ids": [1],
        "models": {"my-flux": {"family": "flux", "source": "/models/flux", "multiple_of": 8}},
    }
    with pytest.raises(ConfigError, match="multiple_of = 8 cannot be honoured"):
        settings_from_mapping(table, {})
