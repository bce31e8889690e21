"""`python -m generation.download [--config atelier.toml] [MODEL ...]`: fetch model weights once.

Workers read weights from disk only (a download in the middle of a job would stall it for many
minutes), so the models are fetched ahead of time: `scripts/start` runs this before the bot.
For each catalogue model whose `source` is a Hugging Face Hub id and that is not complete in the
Hugging Face cache, it downloads what diffusers needs and nothing else (configurations,
tokenizer files and the components' safetensors weights; Playground's fp16 variant), showing
huggingface_hub's progress bars. Pickle weights (.bin, .ckpt, .pt) and single-file checkpoints
are never fetched. With no MODEL named, every model of the configuration's catalogue is checked,
and every `[loras.NAME]` from the Hub (its one safetensors `file`; a local LoRA file is checked).

Needs no torch. Exit status: 0 when every model is ready, 1 when some could not be fetched
(each with a sentence saying why and what to do), 2 for a bad command line or configuration.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)

from generation.config_file import config_path_from_env, read_loras_tables, read_models_tables
from generation.config_schema import SettingsProblems
from generation.loras import LoraCatalogue, LoraSpec
from generation.models import Catalogue, CatalogueError, ModelSpec

MODEL_INDEX = "model_index.json"
TOKEN_PAGE = "https://huggingface.co/settings/tokens"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one model: `ready` (present or fetched) and a sentence for the owner."""

    model: str
    ready: bool
    message: str


def allow_patterns(spec: ModelSpec) -> list[str]:
    """The repository files diffusers reads for `spec`: the pipeline index, each component's
    configuration and tokenizer files, and its safetensors weights (only the variant's, if any).

    Patterns need a folder (`*/`), so top-level single-file checkpoints are left out.
    """
    weights = f"*/*.{spec.variant}.safetensors" if spec.variant else "*/*.safetensors"
    return [MODEL_INDEX, "*/*.json", "*/*.txt", "*/*.model", weights]


def missing_weights(folder: Path, spec: ModelSpec) -> list[str]:
    """The components of the pipeline in `folder` that lack weights (all of it when it has no
    model index). Components with a `config.json` are models and need safetensors weights."""
    index_file = folder / MODEL_INDEX
    if not index_file.is_file():
        return [MODEL_INDEX]
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):
        return [MODEL_INDEX]
    missing = []
    for component, entry in index.items():
        if component.startswith("_") or not isinstance(entry, list) or None in entry:
            continue
        part = folder / component
        is_model = (part / "config.json").is_file()  # tokenizers and schedulers have no weights
        if not part.is_dir() or (is_model and not _has_complete_weights(part, spec.variant)):
            missing.append(component)
    return missing


def _has_complete_weights(part: Path, variant: str | None) -> bool:
    """True when `part` holds one complete set of safetensors weights, the variant's (files
    named `*.fp16.*`) or the plain one, with every shard that set's index names."""
    sets: dict[bool, set[str]] = {True: set(), False: set()}
    for file in part.iterdir():
        sets[variant is not None and f".{variant}." in file.name].add(file.name)
    return any(_is_complete(part, names) for names in sets.values())


def _is_complete(part: Path, names: set[str]) -> bool:
    for index in (name for name in names if ".safetensors.index." in name):
        try:
            shards = set(json.loads((part / index).read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            return False
        if not shards <= names:
            return False
    return any(name.endswith(".safetensors") for name in names)


def model_folder(spec: ModelSpec) -> Path | None:
    """The folder of `spec`'s weights on this machine: its local folder, or the Hub cache's
    complete snapshot (None: not downloaded yet). Offline."""
    return Path(spec.source).expanduser() if spec.is_local else cached_snapshot(spec)


def cached_snapshot(spec: ModelSpec) -> Path | None:
    """The cached snapshot of `spec`'s Hub repository if it is complete, else None. Offline."""
    try:
        folder = Path(
            snapshot_download(
                spec.source, allow_patterns=allow_patterns(spec), local_files_only=True
            )
        )
    except LocalEntryNotFoundError:  # nothing cached, or an interrupted download
        return None
    return None if missing_weights(folder, spec) else folder


def ensure_downloaded(spec: ModelSpec) -> Outcome:
    """Make sure `spec`'s weights are on this machine, downloading them if needed."""
    if spec.is_local:
        folder = Path(spec.source).expanduser()
        if (folder / MODEL_INDEX).is_file():
            return Outcome(spec.name, True, f"{spec.name}: uses the local folder {folder}.")
        return Outcome(
            spec.name,
            False,
            f"{spec.name}: the local folder {folder} is not a diffusers folder (no {MODEL_INDEX});"
            f" fix `source` for {spec.name} in the configuration.",
        )
    folder = cached_snapshot(spec)
    if folder is not None:
        return Outcome(spec.name, True, f"{spec.name}: already downloaded ({folder}).")
    print(f"{spec.name}: downloading {spec.source} ...", file=sys.stderr, flush=True)
    try:
        folder = Path(snapshot_download(spec.source, allow_patterns=allow_patterns(spec)))
    except GatedRepoError:
        return Outcome(spec.name, False, _gated_message(spec))
    except RepositoryNotFoundError:
        return Outcome(
            spec.name,
            False,
            f"{spec.name}: {spec.source} was not found on the Hugging Face Hub. Check `source` "
            f"for {spec.name}; if it is a private repository, set HF_TOKEN ({TOKEN_PAGE}).",
        )
    except LocalEntryNotFoundError:
        return Outcome(spec.name, False, _unreachable_message(spec))
    except HfHubHTTPError as error:
        return Outcome(
            spec.name, False, f"{spec.name}: the Hugging Face Hub refused the download: {error}"
        )
    except OSError as error:  # a full disk, an unwritable cache
        return Outcome(spec.name, False, f"{spec.name}: the download failed: {error}")
    missing = missing_weights(folder, spec)
    if missing:
        return Outcome(
            spec.name,
            False,
            f"{spec.name}: {spec.source} was downloaded but has no diffusers safetensors weights "
            f"for {', '.join(missing)}; Atelier cannot load it.",
        )
    return Outcome(spec.name, True, f"{spec.name}: downloaded to {folder}.")


def ensure_lora_downloaded(lora: LoraSpec) -> Outcome:
    """Make sure `lora`'s safetensors file is on this machine, downloading it if needed."""
    path = lora.path()
    if lora.is_local:
        if path is not None and path.is_file():
            return Outcome(lora.name, True, f"LoRA {lora.name}: uses the local file {path}.")
        return Outcome(
            lora.name, False, f"LoRA {lora.name}: {path} is not a file; fix its `source`."
        )
    if path is not None:
        return Outcome(lora.name, True, f"LoRA {lora.name}: already downloaded ({path}).")
    print(f"LoRA {lora.name}: downloading {lora.source} {lora.file} ...", file=sys.stderr)
    try:
        path = Path(hf_hub_download(lora.source, lora.file or ""))
    except GatedRepoError:
        return Outcome(lora.name, False, _gated_message(lora))
    except RepositoryNotFoundError:
        return Outcome(
            lora.name,
            False,
            f"LoRA {lora.name}: {lora.source} was not found on the Hugging Face Hub; check its "
            f"`source`, or set HF_TOKEN for a private repository ({TOKEN_PAGE}).",
        )
    except LocalEntryNotFoundError:
        return Outcome(lora.name, False, _unreachable_message(lora))
    except HfHubHTTPError as error:  # also a `file` the repository does not have
        return Outcome(lora.name, False, f"LoRA {lora.name}: the download failed: {error}")
    except OSError as error:
        return Outcome(lora.name, False, f"LoRA {lora.name}: the download failed: {error}")
    return Outcome(lora.name, True, f"LoRA {lora.name}: downloaded to {path}.")


def load_loras(config: Path | None) -> LoraCatalogue:
    """The configuration file's `[loras]` (none when there is no file). Raises ValueError."""
    path = config or config_path_from_env()
    if config is None and not path.exists():
        return LoraCatalogue()
    try:
        return LoraCatalogue.from_config(read_loras_tables(path))
    except SettingsProblems as error:
        raise ValueError(f"{path}: {error}") from None


def _gated_message(spec: ModelSpec | LoraSpec) -> str:  # a LoRA is named the same way
    page = f"https://huggingface.co/{spec.source}"
    if os.environ.get("HF_TOKEN"):
        return (
            f"{spec.name}: {spec.source} is gated and the account of HF_TOKEN has no access yet. "
            f"Accept the licence at {page} with that account, then run this again."
        )
    return (
        f"{spec.name}: {spec.source} is gated: accept its licence at {page}, create a read token "
        f"at {TOKEN_PAGE}, set it as HF_TOKEN (in .env with Docker), then run this again."
    )


def _unreachable_message(spec: ModelSpec | LoraSpec) -> str:
    if constants.HF_HUB_OFFLINE:
        reason = "HF_HUB_OFFLINE is set, so nothing may be downloaded"
        fix = "unset HF_HUB_OFFLINE and run this again"
    else:
        reason = "the Hugging Face Hub could not be reached (no network?)"
        fix = "check the network and run this again"
    if isinstance(spec, LoraSpec):
        who, local = f"LoRA {spec.name}", "its `source` to a local .safetensors file"
    else:
        who, local = spec.name, f"`source` for {spec.name} to a local diffusers folder"
    return (
        f"{who}: {spec.source} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
        f"and {reason}. To get it, {fix}, or set {local}."
    )


def load_catalogue(config: Path | None) -> Catalogue:
    """The catalogue of the configuration file's `[models]` tables (the built-in models when
    no file was named and the default one does not exist yet). Raises ValueError."""
    path = config or config_path_from_env()
    if config is None and not path.exists():
        return Catalogue.builtin()
    try:
        return Catalogue.from_config(read_models_tables(path))
    except (CatalogueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m generation.download",
        description="Download the models' weights into the Hugging Face cache, once.",
    )
    parser.add_argument(
        "--config", type=Path, help="configuration file (default: $ATELIER_CONFIG or atelier.toml)"
    )
    parser.add_argument("models", nargs="*", metavar="MODEL", help="default: every model")
    args = parser.parse_args(argv)
    try:
        catalogue = load_catalogue(args.config)
        loras = load_loras(args.config)
    except ValueError as error:
        print(f"The configuration cannot be used: {error}", file=sys.stderr)
        return 2
    unknown = [name for name in args.models if name not in catalogue]
    if unknown:
        print(
            f"Unknown model(s) {', '.join(unknown)}; available: {', '.join(catalogue)}.",
            file=sys.stderr,
        )
        return 2
    failed = []
    outcomes = (ensure_downloaded(catalogue[name]) for name in args.models or catalogue)
    lora_outcomes = (ensure_lora_downloaded(lora) for lora in loras.values() if not args.models)
    for outcome in itertools.chain(outcomes, lora_outcomes):  # each printed as it comes
        name = outcome.model
        print(outcome.message, file=sys.stdout if outcome.ready else sys.stderr, flush=True)
        if not outcome.ready:
            failed.append(name)
    if failed:
        print(f"Not ready: {', '.join(failed)}.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
