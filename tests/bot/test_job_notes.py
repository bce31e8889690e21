"""What a person is told about how a job is made, through the real bot, worker and tiny models:
where the prompt is cut (reply and result), the init image's shape, and a rerun whose model or
libraries changed."""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from PIL import Image

from bot.ui.notes import rerun_note
from generation.jobs import RunFacts
from tests.bot.helpers import StudioWorld, job_id_of, paused
from tests.discord import InteractionRecord

pytestmark = pytest.mark.asyncio(loop_scope="module")

LONG = " ".join(f"word{n}" for n in range(40)) + " and a red fox at the very end"


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "navy").save(buffer, format="PNG")
    return buffer.getvalue()


async def _reply_and_result(
    studio: StudioWorld, command: Callable[[], Awaitable[InteractionRecord]], note: str | None
) -> tuple[str, str, int]:
    """Run `command` with the queue paused until its reply shows `note` (None: until it shows
    the job), so a fast job cannot finish first; then the reply's progress embeds (every
    version, as one text), the result's text and the job id."""

    def progress(ix: InteractionRecord) -> str:
        versions = ix.original.versions if ix.original else []
        return "\n".join(json.dumps(v.embeds, ensure_ascii=False) for v in versions if v.embeds)

    async with paused(studio):
        ix = await command()
        await studio.fake.wait_for(lambda: (note or "Job ") in progress(ix))
    first = ix.original
    assert first is not None
    job_id = job_id_of(first)
    await studio.delivered(job_id)
    result = await studio.result_of(job_id)
    return progress(ix), result.content, job_id


def _slash(studio: StudioWorld, user: str, options: dict[str, Any], **extra: Any) -> Any:
    return lambda: studio.fake.slash(studio.fake.user(user), "imagine", options, **extra)


@pytest.mark.parametrize(("model", "encoder"), [("flux-dev", "T5")])
async def test_a_cut_prompt_is_told_in_the_reply_and_the_result_and_recorded(
    studio: StudioWorld, model: str, encoder: str
) -> None:
    reply, result, job_id = await _reply_and_result(
        studio, _slash(studio, "alice", {"prompt": LONG, "model": model}), f"{encoder} tokens"
    )

    facts = (await studio.delivered(job_id)).record.facts
    assert facts is not None
    assert facts.prompt_cut_at is not None
    unread = LONG[facts.prompt_cut_at :]
    assert unread.endswith("at the very end")
    for text in (reply, result):
        assert f"{encoder} tokens" in text
        assert f"“{unread[:20]}" in text


async def test_a_long_playground_prompt_is_read_whole_by_compel(studio: StudioWorld) -> None:
    reply, result, job_id = await _reply_and_result(
        studio, _slash(studio, "alice", {"prompt": LONG, "model": "playground-v2.5"}), None
    )
    assert "✂️" not in reply
    assert "✂️" not in result
    facts = (await studio.delivered(job_id)).record.facts
    assert facts is not None
    assert facts.prompt_cut_at is None
    assert (facts.prompt_encoder or "").startswith("compel ")


async def test_a_short_prompt_has_no_cut_note(studio: StudioWorld) -> None:
    reply, result, job_id = await _reply_and_result(
        studio, _slash(studio, "alice", {"prompt": "a red fox"}), None
    )
    assert "✂️" not in reply
    assert "✂️" not in result
    facts = (await studio.delivered(job_id)).record.facts
    assert facts is not None
    assert facts.prompt_cut_at is None


async def test_an_init_image_with_no_size_gives_the_job_its_aspect(studio: StudioWorld) -> None:
    command = _slash(
        studio,
        "carol",
        {"prompt": "a boat", "strength": 0.5},
        attachments=[("wide.png", _png((100, 60)), "image/png")],
    )
    reply, result, job_id = await _reply_and_result(studio, command, None)
    request = (await studio.delivered(job_id)).record.request
    assert (request.width, request.height) == (80, 48)  # 5:3 at the tiny native size
    assert "cropped" not in reply
    assert "cropped" not in result


async def test_an_init_image_of_another_shape_is_told_what_was_done(studio: StudioWorld) -> None:
    command = _slash(
        studio,
        "carol",
        {"prompt": "a boat", "strength": 0.5, "width": 64, "height": 64},
        attachments=[("wide.png", _png((160, 90)), "image/png")],
    )
    reply, result, _ = await _reply_and_result(studio, command, "cropped")
    for text in (reply, result):
        assert "(160x90)" in text
        assert "64x64" in text
        assert "cropped" in text


async def test_a_rerun_says_why_it_may_differ(studio: StudioWorld) -> None:
    _, _, parent_id = await _reply_and_result(
        studio, _slash(studio, "alice", {"prompt": "a red fox"}), None
    )
    result = await studio.result_of(parent_id)

    async def click() -> InteractionRecord:
        alice = studio.fake.user("alice")
        return await studio.fake.click(alice, result, f"atelier:rerun:{parent_id}")

    _, content, rerun_id = await _reply_and_result(studio, click, None)
    assert "may differ" not in content  # same model, libraries and device: nothing to say

    parent = (await studio.delivered(parent_id)).record
    rerun = (await studio.delivered(rerun_id)).record
    assert rerun.facts == parent.facts
    assert parent.facts is not None
    older = replace(parent, facts=replace(parent.facts, diffusers="0.30.0", model_revision="abc"))
    note = rerun_note(rerun, older)
    assert note is not None
    assert f"may differ from job `{parent_id}`" in note
    assert "diffusers (0.30.0 → " in note
    assert "the model's weights (abc → sha256:" in note
    assert "made before" in (rerun_note(rerun, replace(parent, facts=None)) or "")
    assert isinstance(rerun.facts, RunFacts)
