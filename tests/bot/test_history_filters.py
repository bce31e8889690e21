"""`/history` pages through any filters its options accept: the longest model name (100
characters, not ASCII) and the longest search text keep working buttons, because the buttons'
custom_id holds a short key of the filters saved in the database, never the filters themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.jobs import JobOwner
from generation.request import build_request
from generation.tiny import catalogue_config
from tests.bot.helpers import StudioFactory, answer, text_of
from tests.bot.test_library import button, is_disabled, listed_job_ids
from tests.discord.limits import MAX_CUSTOM_ID

pytestmark = pytest.mark.asyncio(loop_scope="module")

LONG_MODEL = ("ß-модель-画像-" * 10)[:100]  # the most `model:` accepts (max_length 100)
LONG_TEXT = "ÿ灯塔" * 13 + "ÿ"  # 40 characters: the most `contains:` accepts


async def test_the_longest_filters_page_with_short_custom_ids(
    studio_with: StudioFactory, tiny_model_dirs: dict[str, Path]
) -> None:
    models = catalogue_config(tiny_model_dirs)
    models[LONG_MODEL] = {**models["flux-schnell"], "family": "flux"}
    async with studio_with(models=models) as studio:
        fake, carol = studio.fake, studio.fake.user("carol")
        owner = JobOwner(carol.id, fake.world.guild_id, fake.channel("general").id)
        made = []
        for index in range(13):
            request = build_request(
                studio.settings.catalogue, prompt=f"x {LONG_TEXT} {index}", model=LONG_MODEL
            )
            made.append(await studio.database.create_job(request, owner))
            await studio.database.mark_cancelled(made[-1])
        other = build_request(studio.settings.catalogue, prompt=f"x {LONG_TEXT}")
        await studio.database.mark_cancelled(await studio.database.create_job(other, owner))

        filters = {"model": LONG_MODEL, "contains": LONG_TEXT}
        page = await answer(fake, await fake.slash(carol, "history", filters))
        assert "model " in text_of(page)
        assert "prompts containing" in text_of(page)
        assert all(len(custom_id) <= MAX_CUSTOM_ID for custom_id in page.custom_ids)
        assert listed_job_ids(page) == sorted(made, reverse=True)[:10]

        await studio.runner.restart()  # the filters come back from the database
        await fake.click(carol, page, button(page, "o"))
        await fake.wait_for(
            lambda: listed_job_ids(page) == sorted(made, reverse=True)[10:], what="the older page"
        )
        assert is_disabled(page, "o")
        assert not is_disabled(page, "n")
