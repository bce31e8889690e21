"""Commands whose work grows with the history or the queue answer first ("thinking…"), then
do it: a slow query never turns into "The application did not respond" (Discord wants the first
answer within 3 s). Each query is held on an event until the test has seen that answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.bot.helpers import StudioWorld, private_reply
from tests.discord import CallbackType

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize(
    ("user", "command", "options", "query"),
    [
        ("admin", "admin stats", {"period": 0}, "stats"),  # all time: the whole history
        ("alice", "info", {}, "user_usage"),
        ("alice", "history", {"contains": "lighthouse"}, "history"),
        ("alice", "queue", {}, None),  # walks the whole queue
    ],
    ids=["admin-stats", "info", "history", "queue"],
)
async def test_the_first_answer_comes_before_the_query(
    studio: StudioWorld,
    monkeypatch: pytest.MonkeyPatch,
    user: str,
    command: str,
    options: dict[str, Any],
    query: str | None,
) -> None:
    fake, database = studio.fake, studio.database
    gate = asyncio.Event()
    if query is not None:
        real = getattr(database, query)

        async def held(*args: Any, **kwargs: Any) -> Any:
            await gate.wait()
            return await real(*args, **kwargs)

        monkeypatch.setattr(database, query, held)

    ix = await fake.slash(fake.user(user), command, options)
    await fake.interaction_response(ix)
    assert ix.response is not None
    assert ix.response.type is CallbackType.DEFERRED_MESSAGE  # "thinking…" while it works

    gate.set()
    reply = await private_reply(fake, ix)
    assert "Something went wrong" not in reply
