"""pytest fixtures for the fake Discord; use them from another test package's conftest.py::

from tests.discord.plugin import fake_discord as fake_discord
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.discord.server import FakeDiscord


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A started ``FakeDiscord`` with the default world, closed after the test."""
    async with FakeDiscord() as fake:
        yield fake
