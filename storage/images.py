"""The image store: PNG files on disk, named by the sha256 of their bytes.

Files are immutable. A file is written to a temporary name, flushed to disk and renamed, so a
file under its final name is always complete; identical images share one file. These functions
block: the database runs them in a thread.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from storage.errors import StorageUnavailable
from storage.private import private_folder

_TEMP_SUFFIX = ".tmp"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ImageStore:
    """Content-addressed files under `root`: `root/ab/ab12….png`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.png"

    def ensure(self, data: bytes, sha256: str) -> None:
        """Make sure the file for `data` is complete on disk (written once, then kept)."""
        path = self.path_for(sha256)
        if path.exists():
            return
        if not path.parent.is_dir():
            private_folder(path.parent)
            fsync_dir(self.root)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=_TEMP_SUFFIX)  # 0600
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)

    def read(self, sha256: str) -> bytes | None:
        """The file's bytes; None when it is gone from a folder that is there (pruned).
        `StorageUnavailable` when the folder itself cannot be read (missing, unmounted, no
        permission, a file in its way): the image may come back with it."""
        try:
            return self.path_for(sha256).read_bytes()
        except FileNotFoundError:
            if self.root.is_dir():
                return None
            raise StorageUnavailable(
                "The image folder cannot be read right now (it is missing)."
            ) from None
        except OSError as error:
            raise StorageUnavailable(
                f"The image folder cannot be read right now ({error.strerror or error})."
            ) from error

    def remove(self, sha256: str) -> int:
        """Delete the file; returns the bytes freed (0 when it was already gone)."""
        path = self.path_for(sha256)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def stored_hashes(self) -> Iterator[tuple[str, Path]]:
        """Every complete file in the store, as (sha256 named by the file, path)."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and len(folder.name) == 2:
                for path in sorted(folder.glob("*.png")):
                    yield path.stem, path

    def stale_temp_files(self, older_than_s: float) -> list[Path]:
        """Temporary files left by a writer that died (older than `older_than_s`)."""
        if not self.root.is_dir():
            return []
        cutoff = time.time() - older_than_s
        return [
            path for path in self.root.glob(f"*/.*{_TEMP_SUFFIX}") if path.stat().st_mtime < cutoff
        ]


def fsync_dir(folder: Path) -> None:
    """Make a rename durable: the directory entry is data too."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
