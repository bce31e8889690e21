"""`/settings` and `/info` end to end: the real discord.py client against the fake Discord, real
SQLite, the worker pool on tiny CPU models."""

from __future__ import annotations

import pytest

from storage import UserSettings
from tests.bot.helpers import StudioWorld, answer, imagine, paused, private_reply
from tests.discord.world import User

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def request_of(studio: StudioWorld, user: User, prompt: str) -> tuple[str, int, int, str]:
    """Run `/imagine prompt` with no option; (model, width, height, negative) of the job."""
    job = await imagine(studio.fake, user, prompt=prompt)
    await studio.result_of(job)
    stored = await studio.database.get_job(job)
    assert stored is not None
    request = stored.record.request
    return request.model, request.width, request.height, request.negative_prompt


async def test_personal_defaults_are_shown_saved_and_used_by_the_next_imagine(
    studio: StudioWorld,
) -> None:
    fake, alice = studio.fake, studio.fake.user("alice")
    catalogue = studio.settings.catalogue
    shown = await private_reply(fake, await fake.slash(alice, "settings"))
    assert "server default (`playground-v2.5`)" in shown
    assert "server default (`1:1`)" in shown

    saved = await private_reply(
        fake,
        await fake.slash(
            alice, "settings", {"model": "flux-schnell", "aspect": "16x9", "negative": " blurry "}
        ),
    )
    assert "saved" in saved
    assert "`flux-schnell`" in saved
    assert "`16:9`" in saved
    assert "blurry" in saved
    standing = await studio.database.get_user(alice.id)
    assert (standing.default_model, standing.default_aspect) == ("flux-schnell", "16:9")
    assert standing.default_negative_prompt == "blurry"

    flux_side = catalogue["flux-schnell"].size_for_aspect(16, 9)
    assert await request_of(studio, alice, "a harbour") == ("flux-schnell", *flux_side, "")

    await private_reply(fake, await fake.slash(alice, "settings", {"model": "playground-v2.5"}))
    playground_side = catalogue["playground-v2.5"].size_for_aspect(16, 9)
    assert await request_of(studio, alice, "a harbour") == (
        "playground-v2.5",
        *playground_side,
        "blurry",
    )

    reset = await private_reply(fake, await fake.slash(alice, "settings", {"reset": "all"}))
    assert "server default (`playground-v2.5`)" in reset
    assert await studio.database.get_user(alice.id) == UserSettings(alice.id)
    square = catalogue["playground-v2.5"].size_for_aspect(1, 1)
    assert await request_of(studio, alice, "a harbour") == ("playground-v2.5", *square, "")


async def test_bad_settings_are_explained_and_change_nothing(studio: StudioWorld) -> None:
    fake, bob = studio.fake, studio.fake.user("bob")
    await private_reply(fake, await fake.slash(bob, "settings", {"aspect": "3:2"}))
    before = await studio.database.get_user(bob.id)

    cases = [
        ({"aspect": "banana"}, "should look like `16:9`"),
        ({"aspect": "10:1"}, "limited to 4:1"),
        ({"model": "dall-e"}, "Unknown model 'dall-e'"),
        ({"negative": "\t\n"}, "A negative prompt has 1 to"),
        ({"model": "flux-dev", "aspect": "0:1"}, "zero side"),
    ]
    for options, expected in cases:
        reply = await private_reply(fake, await fake.slash(bob, "settings", options))
        assert expected in reply, (options, reply)

    assert await studio.database.get_user(bob.id) == before


async def test_settings_offers_models_and_aspects_as_you_type(studio: StudioWorld) -> None:
    fake, bob = studio.fake, studio.fake.user("bob")
    models = await fake.autocomplete(bob, "settings", {"model": "play"}, focused="model")
    assert [choice["value"] for choice in models] == ["playground-v2.5"]
    aspects = await fake.autocomplete(bob, "settings", {"aspect": "wide"}, focused="aspect")
    assert [choice["value"] for choice in aspects] == ["16:9"]


async def test_info_shows_gpus_models_the_queue_and_your_usage(studio: StudioWorld) -> None:
    fake, carol = studio.fake, studio.fake.user("carol")
    done = await imagine(fake, carol, prompt="one", count=2)
    await studio.result_of(done)
    async with paused(studio):
        waiting = [await imagine(fake, carol, prompt=f"waiting {n}") for n in range(2)]
        info = await answer(fake, await fake.slash(carol, "info"))
    text = "\n".join(f"{f['name']}: {f['value']}" for f in info.embeds[0]["fields"])

    assert info.ephemeral
    assert "GPUs: `cpu`" in text
    for name, spec in studio.settings.catalogue.items():
        assert f"`{name}`" in text
        licence_note = f"`{name}` — {spec.title} · non-commercial licence"
        assert (licence_note in text) is (
            name in ("flux-dev", "flux2-klein-9b", "flux-kontext-dev")
        )
    assert "Queue: 2 waiting, 0 running · **paused**" in text
    assert "You: 2 waiting, 0 running now · last 30 days: 3 jobs, 2 images" in text
    for job in waiting:
        await studio.result_of(job)
