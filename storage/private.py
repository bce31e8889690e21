"""Everything storage writes is private to the bot's user: files 0600, folders it creates 0700.

A folder that already exists is the owner's choice (a shared 1777 folder, one owned by another
account) and is left as it is; the files in it are private all the same.

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
    """Create `path` and its missing parents, each 0700; folders that exist are left alone.
    Raises `FileExistsError` when `path` is a file, `OSError` when it cannot be created."""
    missing = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:  # made meanwhile by someone else: theirs
            continue
        os.chmod(folder, FOLDER_MODE)  # mkdir's mode passes through the umask
    if not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder.")
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
