"""Every request body the bots sent in this test session (the real bot's and the demo bot's,
through discord.py) matches the JSON schemas of Discord's OpenAPI spec (``tests.discord.spec``).

Runs after every other test (``tests/discord/conftest.py``), so it sees what the whole suite sent;
it first drives the demo bot through each kind of request, so it checks something when run alone.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.discord import FakeDiscord, run_bot
from tests.discord.spec import RECORDED_BODIES, SPEC_PATH, spec_validator
from tests.discord.test_fake_discord import PNG, DemoBot

EXPECTED_ROUTES = {
    ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands"),
    ("POST", "/interactions/{interaction_id}/{interaction_token}/callback"),
    ("POST", "/webhooks/{webhook_id}/{webhook_token}"),
    ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/@original"),
    ("POST", "/channels/{channel_id}/messages"),
}


async def drive_demo_bot(fake: FakeDiscord) -> None:
    """One of each: command sync, a reply with a file, a deferred follow-up with buttons, an
    edit, a channel message, a modal."""
    alice = fake.user("alice")
    async with run_bot(fake, lambda: DemoBot(fake.world.guild_id)):
        ix = await fake.slash(alice, "imagine", {"prompt": "a fox"}, attachments=[("i.png", PNG)])
        await fake.interaction_response(ix)
        render = await fake.slash(alice, "render", {"prompt": "a fox"})
        await fake.wait_for(lambda: render.original and not render.original.loading)
        status = await fake.slash(alice, "status")
        await fake.wait_for(lambda: status.original and status.original.edits)
        await fake.slash(alice, "post")
        await fake.wait_for_message(lambda m: m.content == "react here" and m.reactions)
        await fake.interaction_response(await fake.slash(alice, "feedback"))


async def test_every_body_the_bots_sent_matches_the_spec(fake_discord: FakeDiscord) -> None:
    validator = spec_validator()
    if validator is None:
        pytest.skip(f"Discord's OpenAPI spec is not at {SPEC_PATH} (it is beside CI checkouts)")
    await drive_demo_bot(fake_discord)
    sent = [body for body in RECORDED_BODIES if not body.probe]

    unknown = {(body.method, body.path) for body in sent if body.route is None}
    assert not unknown, f"requests to routes the spec does not have: {unknown}"
    invalid = [
        (body.method, body.route, errors)
        for body in sent
        if (errors := validator.errors(body.method, body.route, body.content_type, body.payload))
    ]
    assert invalid == []
    routes = Counter((body.method, body.route) for body in sent)
    assert set(routes) >= EXPECTED_ROUTES, routes
