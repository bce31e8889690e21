"""A reaction's job posts in the channel itself: where the bot may not post results (no Attach
Files, say, from the channel's overwrites), the person is told so by DM and no job starts,
rather than a job whose result Discord refuses (403 / 50013)."""

from __future__ import annotations

import pytest

from tests.bot.helpers import StudioFactory, answer, job_count, job_id_of, studio_people
from tests.discord.world import Overwrite, Permission

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_a_reaction_where_the_bot_cannot_post_is_told_and_starts_nothing(
    studio_with: StudioFactory,
) -> None:
    world = studio_people()
    bot_role = world.roles["Atelier Bot"].id
    gallery = world.add_channel("gallery", (Overwrite(bot_role, 0, deny=Permission.ATTACH_FILES),))
    async with studio_with(world) as studio:
        fake, alice = studio.fake, studio.fake.user("alice")
        # the slash command's result comes through the interaction (a webhook: no permission)
        ix = await fake.slash(alice, "imagine", {"prompt": "a lighthouse"}, channel=gallery)
        job = job_id_of(await answer(fake, ix))
        result = await studio.result_of(job)
        jobs = await job_count(studio.database)
        posted = len(fake.channel_messages(gallery))

        await fake.react(alice, result, "🔁")
        dm = await fake.wait_for(lambda: fake.dms(alice), what="a DM about the reaction")

        assert "I can't post results in <#" in dm[0].content
        assert "Attach Files" in dm[0].content
        assert await job_count(studio.database) == jobs
        assert len(fake.channel_messages(gallery)) == posted
