"""Fixtures shared by every test area: tiny offline models, built once per session.

The Hugging Face Hub is switched off for the whole run, so any accidental download fails at once.
Torch runs one thread per process: the tiny models gain nothing from more, and on a shared 2-core
machine spinning OpenMP threads of several processes slow each other down tenfold.
The tiny models are built in a child process: the test process imports torch only where a test
needs it (the bot's tests never do, as the bot process never does).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")  # read by torch at import, inherited by children

import subprocess
import sys
from pathlib import Path

import pytest

from generation.models import Catalogue
from generation.tiny import FAMILIES, catalogue_config

REPO = Path(__file__).resolve().parents[1]
_BUILD = (
    "import sys; from pathlib import Path; from generation.tiny import build; "
    "[build(Path(sys.argv[1]) / f, f) for f in sys.argv[2:]]"
)


def child_environment() -> dict[str, str]:
    """The environment for a child Python process: this checkout importable, the Hub off."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Family ("playground", "flux-dev", "flux-schnell") → directory of its tiny pipeline."""
    root = tmp_path_factory.mktemp("tiny-models")
    subprocess.run(
        [sys.executable, "-c", _BUILD, str(root), *FAMILIES],
        check=True,
        env=child_environment(),
        capture_output=True,
    )
    return {family: root / family for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_catalogue(tiny_model_dirs: dict[str, Path]) -> Catalogue:
    """The built-in model names pointing at the tiny models (64-pixel native size, few steps)."""
    return Catalogue.from_config(catalogue_config(tiny_model_dirs))


_MAKE_LORAS = (
    "import sys; from pathlib import Path; from generation.tiny import build_lora\n"
    "for family, model, out, seed in zip(*[iter(sys.argv[1:])] * 4):\n"
    "    build_lora(Path(model), Path(out), int(seed))"
)


@pytest.fixture(scope="session")
def tiny_loras(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Tiny model ("playground", "flux-dev") → a LoRA file made with peft for it (seed 1), and
    "playground-2" → a second Playground LoRA (seed 2). Made in a child process (torch)."""
    root = tmp_path_factory.mktemp("loras")
    wanted = {"playground": 1, "flux-dev": 1, "playground-2": 2}
    argv = []
    for name, seed in wanted.items():
        model = tiny_model_dirs[name.removesuffix("-2")]
        argv += [name, str(model), str(root / f"{name}.safetensors"), str(seed)]
    subprocess.run(
        [sys.executable, "-c", _MAKE_LORAS, *argv],
        check=True,
        env=child_environment(),
        capture_output=True,
    )
    return {name: root / f"{name}.safetensors" for name in wanted}


def lora_tables(tiny_loras: dict[str, Path]) -> dict[str, dict[str, object]]:
    """`[loras]` tables naming the tiny LoRAs: "pg" and "pg2" (Playground), "fx" (FLUX)."""
    return {
        "pg": {"source": str(tiny_loras["playground"]), "family": "playground", "weight": 0.8},
        "pg2": {"source": str(tiny_loras["playground-2"]), "family": "playground"},
        "fx": {"source": str(tiny_loras["flux-dev"]), "family": "flux"},
    }


@pytest.fixture(scope="session")
def klein_loras(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """ "fits" → a LoRA made with peft for the tiny FLUX.2 [klein] (seed 1); "wider" → the same
    with every adapted layer 16 features wider on both sides, as a LoRA for klein 9B is to klein
    4B (one family, wider layers), so it does not fit the tiny klein."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    root = tmp_path_factory.mktemp("klein-loras")
    fits, wider = root / "klein.safetensors", root / "klein-wider.safetensors"
    model = str(tiny_model_dirs["flux2-klein"])
    subprocess.run(
        [sys.executable, "-c", _MAKE_LORAS, "flux2-klein", model, str(fits), "1"],
        check=True,
        env=child_environment(),
        capture_output=True,
    )
    widened = {}
    for name, matrix in load_file(fits).items():
        down = "lora_A" in name or "lora.down" in name  # (rank, in); up: (out, rank)
        widened[name] = np.pad(matrix, ((0, 0), (0, 16)) if down else ((0, 16), (0, 0)))
    save_file(widened, wider)
    return {"fits": fits, "wider": wider}
