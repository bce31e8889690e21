"""Reference images for a job: uploads (`/imagine`'s `ref1`…`ref4`) and past results named by
`job/image` in one text option (`refs: 42/2 57/1`), with autocomplete from the person's recent
results. A past result may be one of the person's own jobs only (the rule of every command that
reads a job). Every image goes through the same checks and canonical form as an upload.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.commands.library import image_index, own_job
from bot.downloads import read_init_image
from bot.errors import UserError
from bot.ui.choices import MAX_CHOICE_NAME, MAX_CHOICES, Choices
from bot.ui.fit import MAX_NAME_CHARS, clip
from generation.jobs import JobStatus

if TYPE_CHECKING:
    from bot.app import AtelierBot

_PAST = re.compile(r"^#?(\d{1,18})/(\d{1,2})$")
_RECENT_JOBS = 10  # autocomplete offers the images of this many of the person's latest jobs


def parse_refs(text: str | None) -> list[tuple[int, int]]:
    """`"42/2 57/1"` (also `#42/2`, commas) → [(42, 2), (57, 1)]: job ids and 1-based image
    numbers, in order. Raises UserError naming the first word that is not `job/image`."""
    pairs = []
    for word in re.split(r"[\s,]+", (text or "").strip()):
        if not word:
            continue
        match = _PAST.match(word)
        if match is None:
            raise UserError(
                f"`refs` takes past images as job/image, like `42/2 57/1`; "
                f"`{clip(word, 30)}` is not one."
            )
        pairs.append((int(match[1]), int(match[2])))
    return pairs


async def gather_references(
    bot: AtelierBot,
    user: discord.abc.User,
    uploads: Sequence[discord.Attachment],
    past: Sequence[tuple[int, int]],
) -> tuple[bytes, ...]:
    """The canonical PNGs of `uploads` (in order), then of the past results `past`: each one
    the person's own, finished job's image. Raises UserError (NotFound, NotYours) saying why."""
    studio, settings = bot.studio, bot.settings
    images = [
        await read_init_image(upload, settings.download_timeout_s, studio.decodes)
        for upload in uploads
    ]
    for job_id, number in past:
        record = await own_job(bot, user, job_id)
        # NotFound where the job is not done
        images.append(await studio.reference_image(record, image_index(record, number)))
    return tuple(images)


async def refs_choices(bot: AtelierBot, user_id: int, current: str) -> Choices:
    """Completions of the last word of `refs` from the person's recent finished images, each
    value the whole option (the words already typed kept)."""
    words = current.split()
    done, last = (words[:-1], words[-1]) if words and not current.endswith(" ") else (words, "")
    kept = " ".join(done)
    page = await bot.studio.database.history(user_id, limit=_RECENT_JOBS)
    choices = []
    for record in page.jobs:
        if record.status is not JobStatus.DONE:
            continue
        for number in range(1, record.request.count + 1):
            word = f"{record.id}/{number}"
            value = f"{kept} {word}".strip()
            if not word.startswith(last.lstrip("#")) or len(value) > MAX_NAME_CHARS:
                continue
            name = clip(f"{word} · {record.request.prompt}", MAX_CHOICE_NAME)
            choices.append(app_commands.Choice(name=name, value=value))
    return choices[:MAX_CHOICES]
