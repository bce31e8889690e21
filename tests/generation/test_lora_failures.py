"""A LoRA file that fails to load (a rank-0 layer: peft refuses `r=0` half way through) fails its
job with a sentence and leaves the model clean: the next jobs, with and without a LoRA, make a
fresh engine's pixels, not black/NaN images (issue 18 review)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from generation.engine import Engine
from generation.errors import EngineError
from generation.loras import LoraCatalogue
from generation.models import Catalogue
from generation.request import build_request
from tests.conftest import lora_tables
from tests.generation.helpers import pixels


def _rank_zero(good: Path, out: Path) -> Path:
    """`good` with its last down/up pair cut to rank 0: down (0, in), up (out, 0)."""
    import torch

    weights = load_file(good)
    down = sorted(k for k in weights if k.endswith(("lora.down.weight", "lora_A.weight")))[-1]
    up = down.replace("lora.down", "lora.up").replace("lora_A", "lora_B")
    weights[down] = torch.zeros(0, weights[down].shape[1])
    weights[up] = torch.zeros(weights[up].shape[0], 0)
    save_file(weights, out)
    return out


def test_a_lora_that_fails_to_load_leaves_the_model_clean(
    tiny_catalogue: Catalogue, tiny_loras: dict[str, Path], tmp_path: Path
) -> None:
    tables = lora_tables(tiny_loras)
    bad = _rank_zero(tiny_loras["playground"], tmp_path / "zero.safetensors")
    tables["zero"] = {"source": str(bad), "family": "playground"}
    loras = LoraCatalogue.from_config(tables)

    def request(*asked: tuple[str, float]) -> object:
        return build_request(
            tiny_catalogue,
            prompt="a red fox",
            model="playground-v2.5",
            seed=9,
            loras=asked,
            lora_catalogue=loras,
        )

    engine = Engine(tiny_catalogue, loras=loras)
    with pytest.raises(EngineError, match="could not be loaded into the model") as failed:
        engine.generate(request(("zero", 1.0)))
    assert "`r`" not in str(failed.value)  # a sentence, not peft's message
    after_none = pixels(engine.generate(request())[0].png)
    after_good = pixels(engine.generate(request(("pg", 1.0)))[0].png)

    fresh = Engine(tiny_catalogue, loras=loras)
    assert np.array_equal(after_none, pixels(fresh.generate(request())[0].png))
    assert np.array_equal(after_good, pixels(fresh.generate(request(("pg", 1.0)))[0].png))
    assert np.isfinite(after_none).all()
    assert after_none.std() > 1  # not a black image
