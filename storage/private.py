"""Everything storage writes is private to the bot's user: files 0600, folders 0700.

Prompts, images and the audit log are personal data; a umask of 022 (the usual default) would
make them readable by every account on the machine. SQLite creates a database's `-wal` and
`-shm` files with the database file's own permissions, so a private database keeps them private.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folder(path: Path) -> Path:
    """Create `path` (and missing parents) if needed and make `path` itself 0700."""
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    os.chmod(path, FOLDER_MODE)
    return path


def new_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists (then it is left as it is)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))


def make_private(*paths: Path) -> None:
    """chmod 0600 each of `paths` that exists."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path, FILE_MODE)
