"""What decides the pixels besides the request: the model's revision, the library versions, the
device and precision, and how much of the prompt the text encoder read (`RunFacts`).

Only worker processes import this (it needs the loaded pipeline's tokenizers).
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

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


def prompt_cut_at(prompt: str, tokenizer: Any, max_tokens: int) -> int | None:
    """The character of `prompt` where an encoder reading at most `max_tokens` tokens (special
    tokens included, as the pipelines pad and truncate) stops: the start of the first word it
    does not read whole. None when it reads the whole prompt."""

    def tokens(text: str) -> int:
        return len(tokenizer(text, truncation=False).input_ids)

    # Counting a long prompt without truncation is the point here, not a mistake to warn about.
    quiet = logging.getLogger("transformers.tokenization_utils_base")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        if tokens(prompt) <= max_tokens:
            return None
        words = list(re.finditer(r"\S+", prompt))
        read, unread = 0, len(words)  # words[:read] fit; words[:unread] do not
        while unread - read > 1:
            middle = (read + unread) // 2
            if tokens(prompt[: words[middle - 1].end()]) <= max_tokens:
                read = middle
            else:
                unread = middle
        return words[read].start() if read < len(words) else None
    finally:
        quiet.setLevel(level)
