"""Editing from Discord, end to end: `/edit` and the Edit button's modal through the real
discord.py client against the strict fake Discord, a real CPU worker on the tiny FLUX.1 Kontext
(the default editing model), real SQLite; and a bot with no editing model."""

from __future__ import annotations

import pytest

from bot.editing import NO_EDITING_MODEL
from generation.input_images import canonical_png
from generation.request import JobKind
from tests.bot.helpers import (
    StudioFactory,
    StudioWorld,
    answer,
    imagine,
    job_count,
    job_id_of,
    png_pixels,
    private_reply,
    studio_people,
)
from tests.discord import InteractionRecord, Message
from tests.discord.limits import (
    MAX_CUSTOM_ID,
    MAX_MODAL_TITLE,
    MAX_TEXT_INPUT_LABEL,
    MAX_TEXT_INPUT_VALUE,
)
from tests.discord.records import walk_components

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def made(studio: StudioWorld, user: str, **options: object) -> Message:
    """The delivered result of a new /imagine job of `user`."""
    job_id = await imagine(studio.fake, studio.fake.user(user), **options)
    await studio.delivered(job_id)
    return await studio.result_of(job_id)


async def edit_job(studio: StudioWorld, ix: InteractionRecord) -> int:
    """The edit job an interaction queued, once its result is delivered."""
    reply = await answer(studio.fake, ix)
    assert not reply.ephemeral, reply.content
    job_id = job_id_of(reply)
    await studio.delivered(job_id)
    return job_id


async def test_edit_from_a_past_job_uses_that_image_as_the_kontext_reference(
    studio: StudioWorld,
) -> None:
    fake = studio.fake
    parent = await made(studio, "carol", prompt="a red fox", seed=5, count=2)
    parent_id = job_id_of(parent)
    ix = await fake.slash(
        fake.user("carol"),
        "edit",
        {"job": parent_id, "image": 2, "instruction": "make it a winter scene"},
    )
    edit_id = await edit_job(studio, ix)

    stored = (await studio.database.get_job(edit_id)).record
    request = stored.request
    assert (request.model, request.kind) == ("flux-kontext-dev", JobKind.EDIT)
    assert (request.parent_job, request.parent_image) == (parent_id, 1)
    assert request.prompt == "make it a winter scene"
    assert request.input_images == (canonical_png(await studio.database.read_image(parent_id, 1)),)
    assert stored.owner.user_id == fake.user("carol").id
    result = await studio.result_of(edit_id)
    assert len(result.attachments) == 1
    assert f"An edit of image 2 of job `{parent_id}` by flux-kontext-dev." in result.content
    # Kontext has no img2img: V strong (a reference), 🔁 🎲, Edit; no U, no V subtle
    labels = [c.get("label") for c in walk_components(result.components) if c.get("type") == 2]
    assert labels == ["V1 strong", "✏️ Edit 1", "Rerun", "Reroll", "Parameters", "Delete"]

    rerun = await fake.click(fake.user("carol"), result, f"atelier:rerun:{edit_id}")
    again = await studio.result_of(await edit_job(studio, rerun))
    assert png_pixels(again.attachments[0].data) == png_pixels(result.attachments[0].data)


async def test_the_edit_button_works_after_a_restart_for_anyone_who_sees_it(
    studio: StudioWorld,
) -> None:
    fake = studio.fake
    parent = await made(studio, "alice", prompt="a lighthouse", seed=9)
    parent_id = job_id_of(parent)
    await studio.runner.restart()  # a new bot object: nothing of the result in memory

    bob = fake.user("bob")  # not the job's author: buttons work for everyone
    click = await fake.click(bob, parent, f"atelier:edit:{parent_id}:0")
    modal = await fake.wait_for(lambda: click.modal)
    assert modal["title"] == f"Edit image 1 of job {parent_id}"
    assert len(modal["title"]) <= MAX_MODAL_TITLE
    assert len(modal["custom_id"]) <= MAX_CUSTOM_ID
    (text_input,) = [c for c in walk_components(modal["components"]) if c.get("type") == 4]
    # the instruction is Kontext's prompt: at most its prompt limit
    kontext_limit = studio.settings.catalogue["flux-kontext-dev"].limits.max_prompt_chars
    assert text_input["max_length"] == min(kontext_limit, MAX_TEXT_INPUT_VALUE)
    assert len(text_input["label"]) <= MAX_TEXT_INPUT_LABEL

    # a modal is its own interaction: submitted after another restart, it still makes the edit
    await studio.runner.restart()
    submitted = await fake.submit_modal(bob, click, {"instruction": "add a red scarf"})
    edit_id = await edit_job(studio, submitted)
    stored = (await studio.database.get_job(edit_id)).record
    assert stored.owner.user_id == bob.id
    assert (stored.request.kind, stored.request.parent_job) == (JobKind.EDIT, parent_id)
    assert stored.request.prompt == "add a red scarf"


async def test_edits_that_cannot_be_made_are_refused_with_a_sentence(studio: StudioWorld) -> None:
    fake = studio.fake
    theirs = job_id_of(await made(studio, "erin", prompt="erin's boat", seed=2))
    dave = fake.user("dave")
    before = await job_count(studio.database)
    cases = [
        ({"job": theirs, "instruction": "x"}, "someone else's"),
        ({"job": 10**12, "instruction": "x"}, f"There is no job `{10**12}`"),
    ]
    own = job_id_of(await made(studio, "dave", prompt="dave's kite", seed=3))
    before = await job_count(studio.database)
    cases += [
        ({"job": own, "image": 3, "instruction": "x"}, "made 1 image, not 3"),
        ({"job": own, "instruction": "   "}, "The instruction is empty."),
    ]
    for options, words in cases:
        ix = await fake.slash(dave, "edit", options)
        assert words in await private_reply(fake, ix)
    assert await job_count(studio.database) == before


async def test_without_an_editing_model_there_is_no_edit_button_and_edit_says_so(
    studio_with: StudioFactory,
) -> None:
    only_playground = [{"device": "cpu", "max_models": 1, "models": ["playground-v2.5"]}]
    async with studio_with(studio_people(), gpus=only_playground) as bare:
        fake = bare.fake
        result = await made(bare, "alice", prompt="a lighthouse", seed=1)
        assert not [c for c in result.custom_ids if c.startswith("atelier:edit:")]
        assert "atelier:upscale:" in " ".join(result.custom_ids)
        ix = await fake.slash(
            fake.user("alice"), "edit", {"job": job_id_of(result), "instruction": "snow"}
        )
        assert NO_EDITING_MODEL in await private_reply(fake, ix)
