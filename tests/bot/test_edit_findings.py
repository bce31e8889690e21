"""Issue 17's tester findings on editing, through the real parts (discord.py against the fake
Discord, a real CPU worker on tiny models, real SQLite), with FLUX.2 [klein] as the editing model:
every action that makes a job starts from the complete record, Edit is offered only where it makes
a job, /edit and the Edit modal answer before reading images, blocked and invisible instructions
are refused with a sentence, ℹ️ names the image an edit changed."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from tests.bot.helpers import (
    StudioFactory,
    StudioWorld,
    answer,
    imagine,
    job_count,
    job_id_of,
    private_reply,
    text_of,
)
from tests.discord import CallbackType, Message

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def klein(studio_with: StudioFactory) -> AsyncIterator[StudioWorld]:
    async with studio_with(edit={"model": "flux2-klein-4b"}) as world:
        yield world


def _upload(name: str, colour: tuple[int, int, int]) -> tuple[str, bytes, str]:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 80), colour).save(buffer, format="PNG")
    return (name, buffer.getvalue(), "image/png")


async def made(studio: StudioWorld, user: str, **options: Any) -> Message:
    job_id = await imagine(studio.fake, studio.fake.user(user), **options)
    await studio.delivered(job_id)
    return await studio.result_of(job_id)


async def queued_by(studio: StudioWorld, ix: Any) -> int:
    reply = await answer(studio.fake, ix)
    assert not reply.ephemeral, reply.content
    job_id = job_id_of(reply)
    await studio.delivered(job_id)
    return job_id


async def test_v_strong_keeps_the_parents_references(klein: StudioWorld) -> None:
    fake, bob = klein.fake, klein.fake.user("bob")
    red, blue = _upload("red.png", (220, 30, 30)), _upload("blue.png", (30, 30, 220))
    parent = await made(klein, "bob", prompt="fox", model="flux2-klein-4b", ref1=red, ref2=blue)
    parent_id = job_id_of(parent)
    given = (await klein.database.get_job(parent_id)).record.request.input_images
    assert len(given) == 2

    click = await fake.click(bob, parent, f"atelier:vary-strong:{parent_id}:0")
    varied = (await klein.database.get_job(await queued_by(klein, click))).record.request
    clicked = await klein.database.read_image(parent_id, 0)
    assert varied.input_images == (clicked, *given)


async def test_v_strong_on_a_klein_edit_replaces_the_edited_image(klein: StudioWorld) -> None:
    fake, bob = klein.fake, klein.fake.user("bob")
    parent_id = job_id_of(await made(klein, "bob", prompt="a red fox", seed=4, count=2))
    ix = await fake.slash(bob, "edit", {"job": parent_id, "image": 2, "instruction": "snow"})
    edit_id = await queued_by(klein, ix)
    edit = (await klein.database.get_job(edit_id)).record.request
    assert edit.model == "flux2-klein-4b"

    result = await klein.result_of(edit_id)
    click = await fake.click(bob, result, f"atelier:vary-strong:{edit_id}:0")
    varied = (await klein.database.get_job(await queued_by(klein, click))).record.request
    # the edited result takes the original's place: it is not kept as a second reference
    assert varied.input_images == (await klein.database.read_image(edit_id, 0),)

    # so it does on a reroll of the edit (its kind is followed back to the edit)
    reroll = await fake.click(bob, result, f"atelier:reroll:{edit_id}")
    reroll_id = await queued_by(klein, reroll)
    rerolled = await klein.result_of(reroll_id)
    click = await fake.click(bob, rerolled, f"atelier:vary-strong:{reroll_id}:0")
    varied = (await klein.database.get_job(await queued_by(klein, click))).record.request
    assert varied.input_images == (await klein.database.read_image(reroll_id, 0),)

    info = await fake.click(bob, result, f"atelier:info:{edit_id}")
    assert f"Edited image\n{parent_id}/2" in await private_reply(fake, info)


async def test_edit_is_offered_only_on_images_it_can_edit(klein: StudioWorld) -> None:
    fake, alice = klein.fake, klein.fake.user("alice")
    strip = await made(klein, "alice", prompt="a thin strip", width=256, height=32, seed=1)
    strip_id = job_id_of(strip)
    assert not [c for c in strip.custom_ids if c.startswith("atelier:edit:")]
    before = await job_count(klein.database)
    ix = await fake.slash(alice, "edit", {"job": strip_id, "instruction": "make it blue"})
    assert "That image is 256x32; both sides must be at least 64 pixels." in await private_reply(
        fake, ix
    )
    assert await job_count(klein.database) == before
    # a klein strip: V strong would make it a reference too, so neither is offered
    klein_strip = await made(
        klein, "alice", prompt="a strip", model="flux2-klein-4b", width=256, height=32
    )
    assert not [
        c for c in klein_strip.custom_ids if c.startswith(("atelier:edit:", "atelier:vary"))
    ]


async def test_edit_answers_first_and_reads_the_image_after(
    klein: StudioWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, carol = klein.fake, klein.fake.user("carol")
    parent = await made(klein, "carol", prompt="a lighthouse", seed=2)
    parent_id = job_id_of(parent)
    gate, reads = asyncio.Event(), []
    real = klein.database.read_image

    async def held(job_id: int, index: int) -> bytes | None:
        reads.append((job_id, index))
        await gate.wait()
        return await real(job_id, index)

    monkeypatch.setattr(klein.database, "read_image", held)
    slash = await fake.slash(carol, "edit", {"job": parent_id, "instruction": "make it night"})
    await fake.interaction_response(slash)
    assert slash.response is not None
    assert slash.response.type is CallbackType.DEFERRED_MESSAGE  # "thinking…" before reading

    click = await fake.click(carol, parent, f"atelier:edit:{parent_id}:0")
    await fake.wait_for(lambda: click.modal)
    submitted = await fake.submit_modal(carol, click, {"instruction": "make it dawn"})
    await fake.interaction_response(submitted)
    assert submitted.response is not None
    assert submitted.response.type is CallbackType.DEFERRED_MESSAGE

    gate.set()
    await queued_by(klein, slash)
    await queued_by(klein, submitted)
    assert reads


async def test_blocked_and_invisible_instructions_are_refused_before_any_image_is_read(
    klein: StudioWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, dave = klein.fake, klein.fake.user("dave")
    parent = await made(klein, "dave", prompt="a cat", seed=3)
    parent_id = job_id_of(parent)
    await klein.database.block_term(fake.world.guild_id, "zebra", by=1)
    reads: list[object] = []
    real = klein.database.read_image

    async def counted(*args: Any) -> bytes | None:
        reads.append(args)
        return await real(*args)

    monkeypatch.setattr(klein.database, "read_image", counted)
    before = await job_count(klein.database)
    ix = await fake.slash(dave, "edit", {"job": parent_id, "instruction": "add a ZEBRA"})
    assert "Your instruction contains a term this server has blocked." in await private_reply(
        fake, ix
    )
    click = await fake.click(dave, parent, f"atelier:edit:{parent_id}:0")
    await fake.wait_for(lambda: click.modal)
    submitted = await fake.submit_modal(dave, click, {"instruction": "add a zebra"})
    assert "Your instruction contains" in await private_reply(fake, submitted)
    for invisible in ("\u200b\u200d\u2060", "\u3164 \ufeff"):
        ix = await fake.slash(dave, "edit", {"job": parent_id, "instruction": invisible})
        assert "The instruction is empty." in await private_reply(fake, ix)
        ix = await fake.slash(dave, "imagine", {"prompt": invisible})
        assert "The prompt is empty." in await private_reply(fake, ix)
    assert reads == []
    assert await job_count(klein.database) == before


async def test_the_edit_button_of_a_deleted_job_says_so_instead_of_a_modal(
    klein: StudioWorld,
) -> None:
    fake = klein.fake
    parent = await made(klein, "erin", prompt="a boat", seed=5)
    parent_id = job_id_of(parent)
    await klein.database.delete_job(parent_id)
    click = await fake.click(fake.user("frank"), parent, f"atelier:edit:{parent_id}:0")
    reply = await answer(fake, click)
    assert click.modal is None
    assert reply.ephemeral
    assert f"There is no job `{parent_id}`" in text_of(reply)


async def test_the_instruction_is_at_most_the_editing_models_prompt_limit(
    klein: StudioWorld,
) -> None:
    fake = klein.fake
    limit = klein.settings.catalogue["flux2-klein-4b"].limits.max_prompt_chars
    parent = await made(klein, "alice", prompt="a harbour")
    before = await job_count(klein.database)
    ix = await fake.slash(
        fake.user("alice"), "edit", {"job": job_id_of(parent), "instruction": "x" * (limit + 1)}
    )
    assert (
        f"The instruction is {limit + 1:,} characters long; flux2-klein-4b takes at most {limit:,}."
        in await private_reply(fake, ix)
    )
    assert await job_count(klein.database) == before


async def test_a_drafts_parameters_name_its_final_model(klein: StudioWorld) -> None:
    fake, alice = klein.fake, klein.fake.user("alice")
    draft = await made(klein, "alice", prompt="a harbour", model="flux-dev", draft=True)
    info = await fake.click(alice, draft, f"atelier:info:{job_id_of(draft)}")
    assert "Final model\nflux-dev" in await private_reply(fake, info)
