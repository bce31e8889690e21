"""Opening the SQLite file: recognising it, configuring the connection, applying migrations.

A file is Atelier's when its `PRAGMA application_id` says so (or when it is new and empty); its
`PRAGMA user_version` is the number of the last migration applied. Everything that decides
whether a file is usable only reads it, so a file that is refused is left byte for byte as it was.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import aiosqlite

from storage.errors import CorruptDatabase, NewerSchema, NotAtelierDatabase, StorageError

APPLICATION_ID = 0x41544C52  # "ATLR"
BUSY_TIMEOUT_MS = 10_000
_SQLITE_MAGIC = b"SQLite format 3\x00"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def migrations() -> tuple[Migration, ...]:
    """The migrations shipped in `storage/migrations`, numbered 1, 2, ... without gaps."""
    found = []
    for entry in resources.files("storage").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError("storage/migrations must be numbered 0001, 0002, ... without gaps")
    return tuple(found)


def latest_version() -> int:
    return len(migrations())


async def connect(path: Path) -> aiosqlite.Connection:
    """Open `path` (creating it when missing), check it is Atelier's, and migrate it.

    Raises `NotAtelierDatabase`, `NewerSchema` or `CorruptDatabase` (the file unchanged), or
    `StorageError` when the file cannot be opened at all.
    """
    _check_header(path)
    try:
        conn = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as error:
        raise StorageError(f"Cannot open the database {path}: {error}.") from None
    try:
        conn.row_factory = aiosqlite.Row
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await _check_identity(conn, path)
        await _configure(conn)
        await _migrate(conn, path)
    except BaseException:
        await conn.close()
        raise
    return conn


def _check_header(path: Path) -> None:
    """Refuse, without SQLite touching it, a file that is not SQLite at all."""
    try:
        with path.open("rb") as file:
            header = file.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as error:
        raise StorageError(f"Cannot read {path}: {error.strerror}.") from None
    if header and header != _SQLITE_MAGIC:
        raise NotAtelierDatabase(
            f"{path} is not an Atelier database: it is not a SQLite file at all "
            "(or its header is damaged). It has not been changed."
        )


async def _check_identity(conn: aiosqlite.Connection, path: Path) -> None:
    try:
        app_id = await _pragma(conn, "application_id")
        version = await _pragma(conn, "user_version")
        async with conn.execute("SELECT count(*) FROM sqlite_schema") as cursor:
            (objects,) = await cursor.fetchone()
        if app_id == APPLICATION_ID:
            async with conn.execute("PRAGMA quick_check(1)") as cursor:
                (verdict,) = await cursor.fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(verdict)
    except sqlite3.DatabaseError as error:
        raise CorruptDatabase(
            f"{path} is damaged ({error}). It has not been changed; restore it from a backup."
        ) from None
    if app_id != APPLICATION_ID and (app_id != 0 or objects or version):
        raise NotAtelierDatabase(
            f"{path} is a SQLite database of another program, not Atelier's. "
            "It has not been changed."
        )
    if version > latest_version():
        raise NewerSchema(
            f"{path} has schema version {version}, newer than this Atelier understands "
            f"({latest_version()}). Upgrade Atelier; the file has not been changed."
        )


async def _configure(conn: aiosqlite.Connection) -> None:
    # WAL lets readers (the backup, the CLI) run beside the writer. synchronous=FULL makes every
    # commit fsync the WAL: NORMAL could lose the last commits on power loss, and a job that was
    # acknowledged must survive that.
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA synchronous = FULL")
    await conn.execute("PRAGMA foreign_keys = ON")


async def _migrate(conn: aiosqlite.Connection, path: Path) -> None:
    for migration in migrations():
        await conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the write lock: another process may have migrated meanwhile.
            version = await _pragma(conn, "user_version")
            if version > latest_version():
                raise NewerSchema(f"{path} was upgraded by a newer Atelier meanwhile.")
            if migration.version <= version:
                await conn.execute("ROLLBACK")
                continue
            for statement in _statements(migration.sql):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            await conn.execute(f"PRAGMA user_version = {migration.version}")
            await conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (executescript would commit on its own)."""
    statements, pending = [], ""
    for line in sql.splitlines(keepends=True):
        if not pending and (not line.strip() or line.lstrip().startswith("--")):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise RuntimeError(f"Unterminated statement in a migration: {pending[:80]!r}")
    return statements


async def _pragma(conn: aiosqlite.Connection, name: str) -> int:
    async with conn.execute(f"PRAGMA {name}") as cursor:
        (value,) = await cursor.fetchone()
    return int(value)
