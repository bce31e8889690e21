"""Reference images on Discord, end to end: the real discord.py client against the fake Discord,
a real CPU worker on the tiny FLUX.2 [klein] and Kontext, real SQLite."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from generation.input_images import canonical_png
from tests.bot.helpers import StudioWorld, answer, imagine, job_count, job_id_of, private_reply

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _upload(name: str, colour: tuple[int, int, int], size: tuple[int, int] = (96, 80)):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return (name, buffer.getvalue(), "image/png")


RED, BLUE = _upload("red.png", (220, 30, 30)), _upload("blue.png", (30, 30, 220))


async def test_imagine_with_two_reference_attachments_keeps_them_in_order(
    studio: StudioWorld,
) -> None:
    fake, bob = studio.fake, studio.fake.user("bob")
    ix = await fake.slash(
        bob, "imagine", {"prompt": "this fox in that style", "model": "flux2-klein-4b",
                         "ref1": RED, "ref2": BLUE},
    )  # fmt: skip
    job_id = job_id_of(await answer(fake, ix))
    result = await studio.result_of(job_id)
    assert result.attachments
    stored = (await studio.database.get_job(job_id)).record.request
    assert stored.input_images == (canonical_png(RED[1]), canonical_png(BLUE[1]))


async def test_refs_names_a_past_result_and_autocompletes_from_recent_ones(
    studio: StudioWorld,
) -> None:
    fake, carol = studio.fake, studio.fake.user("carol")
    first = await imagine(fake, carol, prompt="a teapot", model="flux2-klein-4b")
    made = await studio.result_of(first)
    offered = await fake.autocomplete(
        carol, "imagine", {"prompt": "x", "refs": f"{first}/"}, focused="refs"
    )
    assert f"{first}/1" in [choice["value"] for choice in offered]
    second = await imagine(
        fake, carol, prompt="the teapot, in gold", model="flux-kontext-dev", refs=f"{first}/1"
    )
    await studio.result_of(second)
    stored = (await studio.database.get_job(second)).record.request
    past = await studio.database.read_image(first, 0)
    assert stored.input_images == (canonical_png(past),)
    assert made.attachments


async def test_references_beyond_the_models_limit_or_not_yours_are_refused(
    studio: StudioWorld,
) -> None:
    fake, dave, erin = studio.fake, studio.fake.user("dave"), studio.fake.user("erin")
    before = await job_count(studio.database)
    too_many = await fake.slash(
        dave, "imagine", {"prompt": "x", "model": "flux-kontext-dev", "ref1": RED, "ref2": BLUE}
    )
    assert "flux-kontext-dev takes at most 1 reference images" in await private_reply(
        fake, too_many
    )
    none_taken = await fake.slash(
        dave, "imagine", {"prompt": "x", "model": "flux-dev", "ref1": RED}
    )
    assert "flux-dev takes no reference images." in await private_reply(fake, none_taken)
    assert await job_count(studio.database) == before
    theirs = await imagine(fake, erin, prompt="erin's", model="flux2-klein-4b")
    await studio.result_of(theirs)
    stolen = await fake.slash(
        dave, "imagine", {"prompt": "x", "model": "flux2-klein-4b", "refs": f"{theirs}/1"}
    )
    assert "someone else's" in await private_reply(fake, stolen)
    bad = await fake.slash(dave, "imagine", {"prompt": "x", "refs": "forty-two"})
    assert "like `42/2 57/1`" in await private_reply(fake, bad)
