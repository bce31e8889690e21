"""Where the configuration file is, and its `[models]` tables for the command-line tools.

The bot validates the whole file (`bot.config`); the tools that run without it
(`python -m generation`, `python -m generation.download`) need only the models, and read them
here. `Catalogue.from_config` turns the tables into a catalogue.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_PATH = Path("atelier.toml")


def config_path_from_env(env: Mapping[str, str] | None = None) -> Path:
    """The configuration file to read: `$ATELIER_CONFIG` or `./atelier.toml`."""
    env = os.environ if env is None else env
    return Path(env.get("ATELIER_CONFIG") or DEFAULT_CONFIG_PATH)


def read_models_tables(path: Path) -> dict[str, dict[str, Any]]:
    """The `[models.NAME]` tables of the TOML file at `path`; ValueError with a sentence if the
    file cannot be read or its `[models]` is not a table of tables."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"Cannot read {path}: {error}") from None
    models = table.get("models", {})
    if not isinstance(models, dict) or not all(isinstance(m, dict) for m in models.values()):
        raise ValueError(f"{path}: [models] should hold one table per model.")
    return dict(models)


def read_loras_tables(path: Path) -> dict[str, Any]:
    """The `[loras.NAME]` tables of the TOML file at `path` (see `read_models_tables`)."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"Cannot read {path}: {error}") from None
    loras = table.get("loras", {})
    if not isinstance(loras, dict):
        raise ValueError(f"{path}: [loras] should hold one table per LoRA.")
    return dict(loras)
