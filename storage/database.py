"""`Database`: Atelier's durable record, one SQLite file plus a folder of image files."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from storage import schema
from storage.credits import Credits
from storage.images import ImageStore
from storage.jobs import JobLifecycle
from storage.library import Library
from storage.loras import LoraSwitches
from storage.maintenance import Maintenance
from storage.privacy import Privacy
from storage.private import make_private, new_private_file, private_folder
from storage.reports import Reports


class Database(JobLifecycle, Library, Reports, Privacy, Maintenance, Credits, LoraSwitches):
    """Jobs and their lifecycle (implements `generation.jobs.JobStore`), images, users, guild
    settings, the audit log, the owner's maintenance tasks, and API spending (implements
    `generation.hosted.tasks.TaskStore`).

    Open it with `await Database.open(path)`, close it with `await db.close()` or use it as
    `async with await Database.open(path) as db:`. Every write commits (and reaches the disk)
    before the method returns.
    """

    path: Path

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        images_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Database:
        """Open (or create) the database at `path` and bring its schema up to date.

        Images live in `images_dir`, by default `images/` beside the database. Raises
        `NotAtelierDatabase`, `NewerSchema` or `CorruptDatabase` (leaving the file unchanged).
        """
        path = Path(path)
        private_folder(path.parent)
        new_private_file(path)  # SQLite gives -wal and -shm the same mode
        conn = await schema.connect(path)
        make_private(path, *(path.with_name(path.name + end) for end in ("-wal", "-shm")))
        images = ImageStore(private_folder(images_dir or path.parent / "images"))
        database = cls(conn, images, clock)
        database.path = path
        return database

    @property
    def images_dir(self) -> Path:
        return self._images.root

    async def close(self) -> None:
        await self._conn.close()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
