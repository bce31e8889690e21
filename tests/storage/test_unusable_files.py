"""Corrupt, foreign and newer files: a clear error, and the file left byte for byte as it was."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from storage import CorruptDatabase, Database, NewerSchema, NotAtelierDatabase
from storage.cli import main as cli
from tests.storage.conftest import finished_job, owner


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


async def _real_database(path: Path, make_request) -> None:
    async with await Database.open(path) as db:
        for n in range(60):
            await finished_job(db, make_request(f"job {n} " + "x" * 500), owner(), base=n)
    # fold the WAL into the file, as a clean shutdown does
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _newer(path: Path) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA user_version = 999")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _foreign(path: Path) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE recipes (name TEXT)")
        conn.execute("INSERT INTO recipes VALUES ('soup')")


def _corrupt_pages(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for offset in range(4096 * 2, len(data) - 4096, 4096 * 3):  # scribble over many pages
        data[offset + 8 : offset + 400] = b"\xa5" * 392
    path.write_bytes(bytes(data))


def _text(path: Path) -> None:
    path.write_text("name,prompt\nfox,a red fox\n")


CASES = {
    "newer": (_newer, NewerSchema, "newer than this Atelier"),
    "foreign": (_foreign, NotAtelierDatabase, "another program"),
    "text": (_text, NotAtelierDatabase, "not a SQLite file"),
    "corrupt": (_corrupt_pages, CorruptDatabase, "damaged"),
}


@pytest.mark.parametrize("case", CASES)
async def test_an_unusable_file_is_refused_and_left_unchanged(
    tmp_path: Path, make_request, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spoil, error, message = CASES[case]
    path = tmp_path / "atelier.db"
    if case in ("newer", "corrupt"):
        await _real_database(path, make_request)
    spoil(path)
    before = _snapshot(tmp_path)

    with pytest.raises(error, match=message) as raised:
        await Database.open(path)
    assert "not been changed" in str(raised.value)
    assert _snapshot(tmp_path) == before

    for command in (["check"], ["migrate"], ["stats"], ["prune", "--older-than", "1"]):
        assert await asyncio.to_thread(cli, ["--db", str(path), *command]) == 2
        assert message in capsys.readouterr().err
    assert _snapshot(tmp_path) == before
