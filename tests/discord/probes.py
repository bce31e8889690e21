"""Requests a test sends by hand, as a bot would, to see the fake refuse them like Discord."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tests.discord.server import FakeDiscord
from tests.discord.spec import PROBE_HEADER

Body = dict[str, Any]
MiB = 2**20


async def call(
    fake: FakeDiscord,
    method: str,
    path: str,
    body: Any = None,
    files: list[tuple[str, bytes]] = (),  # type: ignore[assignment]
) -> tuple[int, Any]:
    """One REST request as discord.py makes it (JSON, or multipart with ``payload_json``),
    marked as a probe: these bodies are meant to break rules (``tests.discord.test_spec``)."""
    headers = {"Authorization": f"Bot {fake.token}", PROBE_HEADER: "1"}
    async with aiohttp.ClientSession() as session:
        if files:
            form = aiohttp.FormData()
            form.add_field("payload_json", json.dumps(body), content_type="application/json")
            for index, (name, data) in enumerate(files):
                form.add_field(f"files[{index}]", data, filename=name)
            request = session.request(method, fake.api_base + path, data=form, headers=headers)
        else:
            request = session.request(method, fake.api_base + path, json=body, headers=headers)
        async with request as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None


def error_codes(answer: Any, *path: str | int) -> list[str]:
    """The ``_errors`` codes at ``path`` of a 50035 answer."""
    node = answer["errors"]
    for key in path:
        node = node[str(key)]
    return [error["code"] for error in node["_errors"]]


def refused(status: int, answer: Any, *path: str | int) -> list[str]:
    assert status == 400, answer
    assert answer["code"] == 50035
    assert answer["message"] == "Invalid Form Body"
    return error_codes(answer, *path)


async def assert_message_refused(
    fake: FakeDiscord, body: Body, path: tuple[str | int, ...], code: str
) -> None:
    """Posting ``body`` in #general is refused with ``code`` at ``path``, and posts nothing."""
    channel = fake.channel("general")
    status, answer = await call(fake, "POST", f"/channels/{channel.id}/messages", body)
    assert code in refused(status, answer, *path)
    assert fake.channel_messages(channel) == []
