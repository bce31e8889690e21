"""Fixtures shared by the pool tests: the built-in catalogue and a fresh database per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from generation.models import Catalogue
from storage import Database


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.builtin()


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = await Database.open(tmp_path / "atelier.sqlite3")
    yield db
    await db.close()
