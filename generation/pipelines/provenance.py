"""The model's revision, recorded with every job (`RunFacts.model_revision`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from generation.models import ModelSpec

_CHUNK = 1 << 20
_hashes: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) → sha256, per process


def model_revision(spec: ModelSpec, path: Path) -> str:
    """The Hub snapshot's commit (the snapshot folder is named by it), or for a local folder
    `sha256:` over the relative names and SHA-256 of its `.safetensors` weight files."""
    if not spec.is_local:
        return path.name
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*.safetensors")):
        digest.update(f"{file.relative_to(path).as_posix()}\0{_file_sha256(file)}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def _file_sha256(file: Path) -> str:
    stat = file.stat()
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hashes:
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        _hashes[key] = digest.hexdigest()
    return _hashes[key]
