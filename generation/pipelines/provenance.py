"""The model's revision, recorded with every job (`RunFacts.model_revision`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from generation.models import ModelSpec

_CHUNK = 1 << 20
# (path, size, mtime_ns, inode, ctime_ns) → sha256, per process: a file replaced by one of the
# same size with its mtime kept (`cp -p`, `rsync -a`) still has a new ctime, which no one can set.
_hashes: dict[tuple[str, int, int, int, int], str] = {}


class Revisions(NamedTuple):
    """What a job records of the files its model was read from (`RunFacts`)."""

    model: str
    config: str | None
    gguf: str | None


def revisions(spec: ModelSpec, path: Path, gguf_used: bool) -> Revisions | None:
    """`spec`'s revisions read from `path` (its folder) and its `.gguf` file where a GGUF profile
    reads it; None where a file cannot be read. Taken before and after a load: where they differ,
    a file changed while it was read, and the bytes that ran are not known."""
    try:
        return Revisions(
            model_revision(spec, path),
            config_revision(spec, path),
            gguf_revision(spec, gguf_used),
        )
    except OSError:
        return None


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
    """The SHA-256 of `file`'s bytes, hex; cached per process by path, size, mtime, inode and
    ctime (a changed file has a new ctime even where its size and mtime were kept)."""
    stat = file.stat()
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns)
    if key not in _hashes:
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        _hashes[key] = digest.hexdigest()
    return _hashes[key]
