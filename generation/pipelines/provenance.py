"""The model's revision, recorded with every job (`RunFacts.model_revision`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from generation.models import ModelSpec

_CHUNK = 1 << 20
_hashes: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) → sha256, per process


def model_revision(spec: ModelSpec, path: Path) -> str:
    """The Hub snapshot's commit (the snapshot folder is named by it), or for a local folder
    `sha256:` over the relative names and SHA-256 of its `.safetensors` weight files."""
    if not spec.is_local:
        return path.name
    return _folder_hash(path, lambda file: file.suffix == ".safetensors")


def gguf_revision(spec: ModelSpec, used: bool) -> str | None:
    """`NAME sha256:HEX` of the `.gguf` file a GGUF profile read the transformer from (`used`),
    else None (`RunFacts.gguf`)."""
    if not used or spec.gguf is None:
        return None
    path = Path(spec.gguf).expanduser()
    return f"{path.name} sha256:{file_sha256(path)}"


def config_revision(spec: ModelSpec, path: Path) -> str | None:
    """For a local folder, `sha256:` over its other files that change pixels: `model_index.json`,
    each component's `config.json`, the scheduler's `scheduler_config.json`, the tokenizers'
    files (`*.json`, `*.txt`, `*.model`). None for a Hub snapshot, whose commit covers them."""
    if not spec.is_local:
        return None
    return _folder_hash(path, lambda file: file.suffix in _CONFIG_SUFFIXES)


_CONFIG_SUFFIXES = frozenset({".json", ".txt", ".model"})


def _folder_hash(path: Path, wanted: Callable[[Path], bool]) -> str:
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        relative = file.relative_to(path)
        if any(part.startswith(".") for part in relative.parts) or not file.is_file():
            continue  # hidden: caches and VCS data, not the model
        if wanted(file):
            digest.update(f"{relative.as_posix()}\0{file_sha256(file)}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def file_sha256(file: Path) -> str:
    """The SHA-256 of `file`'s bytes, hex; cached per process by path, size and mtime."""
    stat = file.stat()
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hashes:
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        _hashes[key] = digest.hexdigest()
    return _hashes[key]
