"""/imagine end to end: the immediate reply, progress edits, the result, and its record."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.bot.conftest import StudioWorld, job_id_of

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_imagine_replies_at_once_then_edits_progress_into_the_result(
    studio: StudioWorld,
) -> None:
    fake = studio.fake
    alice = fake.user("alice")

    ix = await fake.slash(alice, "imagine", {"prompt": "a red fox", "count": 2, "seed": 1234})
    await fake.interaction_response(ix)
    assert ix.latency is not None
    assert ix.latency < 3.0

    first = await fake.wait_for(lambda: ix.original)
    first_embed = first.versions[0].embeds[0]
    job_id = job_id_of(first)
    assert "Queued" in first_embed["description"]
    assert "#1 in the queue" in first_embed["description"]
    assert "starts in about" in first_embed["description"]

    result = await studio.result_of(job_id)
    assert result is first  # the same message, edited
    states = [v.embeds[0]["description"] for v in first.versions if v.embeds]
    assert any("Generating" in s for s in states)
    assert len(result.attachments) == 2
    assert "a red fox" in result.content
    assert "seeds 1234, 1235" in result.content

    stored = await studio.delivered(job_id)
    request = stored.record.request
    assert request.seeds == (1234, 1235)
    assert request.prompt == "a red fox"
    for index, attachment in enumerate(result.attachments):
        assert attachment.data == await studio.database.read_image(job_id, index)
        with Image.open(__import__("io").BytesIO(attachment.data)) as image:
            assert (image.width, image.height) == (request.width, request.height)
            assert f"Seed: {request.seeds[index]}" in image.text["parameters"]
    assert await studio.database.job_for_message(result.id) == job_id
    assert "U1" in [c.get("label") for c in _buttons(result)]


def _buttons(message) -> list[dict]:
    from tests.discord.records import walk_components

    return [c for c in walk_components(message.components) if c.get("type") == 2]


_ = json
