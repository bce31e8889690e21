"""The owner's housekeeping: retention, consistency checks, and online backups."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

from storage.errors import InvalidValue, StorageError
from storage.images import fsync_dir, sha256_of
from storage.private import new_private_file
from storage.records import CheckReport, PruneReport
from storage.store import Store

DAY_S = 86_400.0
TEMP_FILE_GRACE_S = 3600.0  # a temporary file younger than this may belong to a live writer
_BATCH = 500


class Maintenance(Store):
    async def prune(self, older_than_days: float) -> PruneReport:
        """Remove the files of images made more than `older_than_days` ago, keeping their rows
        (seed and parameters, so a rerun recreates them); also clears files no row uses."""
        if not older_than_days > 0:
            raise InvalidValue("The retention period must be more than 0 days.")
        cutoff = self._clock() - older_than_days * DAY_S
        pruned = removed = freed = 0
        while True:
            async with self._transaction() as conn:
                rows = await conn.execute_fetchall(
                    "UPDATE images SET pruned_at = ?1 WHERE (job_id, idx) IN (SELECT job_id, idx"
                    " FROM images WHERE created_at < ?2 AND pruned_at IS NULL LIMIT ?3)"
                    " RETURNING sha256",
                    (self._clock(), cutoff, _BATCH),
                )
            if not rows:
                break
            pruned += len(rows)
            files, size = await self._release_files(row[0] for row in rows)
            removed, freed = removed + files, freed + size
        orphans = await self._orphans()
        files, size = await self._release_files(sha for sha, _ in orphans)
        for temp in await asyncio.to_thread(self._images.stale_temp_files, TEMP_FILE_GRACE_S):
            temp.unlink(missing_ok=True)
        return PruneReport(pruned, removed + files, freed + size)

    async def check(self, *, deep: bool = False) -> CheckReport:
        """SQLite's integrity and foreign-key checks, and the image files: every live image row
        has its complete file (`deep` also re-hashes each file); files no row uses are listed as
        orphans (harmless: a crash between writing a file and committing its row leaves one)."""
        async with self._snapshot() as conn:
            integrity = [row[0] for row in await conn.execute_fetchall("PRAGMA integrity_check")]
            foreign = await conn.execute_fetchall("PRAGMA foreign_key_check")
            incomplete = await conn.execute_fetchall(
                "SELECT id FROM jobs AS j WHERE status = 'done' AND deleted_at IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM images WHERE job_id = j.id) ORDER BY id"
            )
            missing: list[Path] = []
            damaged: list[Path] = []
            async with conn.execute(
                "SELECT DISTINCT sha256, bytes FROM images WHERE pruned_at IS NULL"
            ) as cursor:
                while batch := await cursor.fetchmany(_BATCH):
                    found = await asyncio.to_thread(self._verify_files, batch, deep)
                    missing += found[0]
                    damaged += found[1]
        problems = [] if integrity == ["ok"] else integrity
        problems += [f"row {row[1]} of {row[0]} points at a missing {row[2]}" for row in foreign]
        return CheckReport(
            integrity=problems,
            missing_files=missing,
            damaged_files=damaged,
            incomplete_jobs=[row[0] for row in incomplete],
            orphan_files=[path for _, path in await self._orphans()],
        )

    async def backup(self, out: Path) -> None:
        """Copy the database to `out` with SQLite's online backup (a consistent snapshot, taken
        while others keep writing). Image files are immutable: copy `images/` after this."""
        out = Path(out)
        if out.exists():
            raise InvalidValue(f"{out} exists already; choose a new file for the backup.")
        if not out.parent.is_dir():
            raise InvalidValue(f"The folder {out.parent} does not exist.")
        temp = out.with_name(f".{out.name}.partial")
        temp.unlink(missing_ok=True)
        new_private_file(temp)
        target = sqlite3.connect(temp, check_same_thread=False)
        try:
            async with self._lock:
                await self._conn.backup(target)
            target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        except sqlite3.Error as error:
            target.close()
            temp.unlink(missing_ok=True)
            raise StorageError(f"The backup failed: {error}.") from None
        target.close()
        os.replace(temp, out)
        fsync_dir(out.parent)

    async def _orphans(self) -> list[tuple[str, Path]]:
        """Files in the image store that no live image row uses."""
        files = await asyncio.to_thread(lambda: list(self._images.stored_hashes()))
        rows = await self._fetchall("SELECT DISTINCT sha256 FROM images WHERE pruned_at IS NULL")
        used = {row[0] for row in rows}
        return [(sha, path) for sha, path in files if sha not in used]

    def _verify_files(
        self, rows: list[tuple[str, int]], deep: bool
    ) -> tuple[list[Path], list[Path]]:
        missing, damaged = [], []
        for sha, size in rows:
            path = self._images.path_for(sha)
            try:
                if path.stat().st_size != size or (deep and sha256_of(path.read_bytes()) != sha):
                    damaged.append(path)
            except FileNotFoundError:
                missing.append(path)
        return missing, damaged
