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
