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
    return anchored_models(models, path.parent)


def read_loras_tables(path: Path) -> dict[str, Any]:
    """The `[loras.NAME]` tables of the TOML file at `path` (see `read_models_tables`)."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"Cannot read {path}: {error}") from None
    loras = table.get("loras", {})
    if not isinstance(loras, dict):
        raise ValueError(f"{path}: [loras] should hold one table per LoRA.")
    return anchored_loras(loras, path.parent)


def anchored_models(models: Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
    """`[models.NAME]` tables with relative local paths read from `base_dir` (the config file's
    folder, as `data_dir` is): `gguf`, and a `source` written `./…` or `../…` (else a Hub id)."""
    return {
        name: _anchored(table, base_dir, ("gguf",), ("source",)) for name, table in models.items()
    }


def anchored_loras(loras: Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
    """`[loras.NAME]` tables with a relative local file (a `source` without `file`, which would
    name one in a Hub repository) read from `base_dir`."""
    return {
        name: _anchored(table, base_dir, ("source",))
        if isinstance(table, Mapping) and "file" not in table
        else table
        for name, table in loras.items()
    }


def _anchored(
    table: object, base_dir: Path, paths: tuple[str, ...], dotted: tuple[str, ...] = ()
) -> object:
    """`table` with each relative path under `paths`, and each under `dotted` written `./…` or
    `../…`, made absolute under `base_dir`; anything not a table or text as it was (refused
    later, with its key's path)."""
    if not isinstance(table, Mapping):
        return table
    anchored = dict(table)
    for key in (*paths, *dotted):
        value = table.get(key)
        if not isinstance(value, str) or not value or value.startswith(("/", "~")):
            continue
        if key in paths or value.startswith("."):
            anchored[key] = str(base_dir / value)
    return anchored
