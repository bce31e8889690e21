"""Fixtures shared by the pool tests: the built-in catalogue and a fresh database per test."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from generation.models import Catalogue
from storage import Database
from tests.conftest import child_environment


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.builtin()


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = await Database.open(tmp_path / "atelier.sqlite3")
    yield db
    await db.close()


_MAKE_LORAS = (
    "import sys; from pathlib import Path; from tests.generation.lora_files import make_lora\n"
    "for family, model, out, seed in zip(*[iter(sys.argv[1:])] * 4):\n"
    "    make_lora(Path(model), Path(out), int(seed))"
)
LORA_FAMILIES = {"playground": "playground", "flux-dev": "flux"}  # tiny model → LoRA family


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
