"""A model held with a memory profile, through the real bot, worker and tiny models: the job
records the profile, 🔁 reruns it with the same one (same pixels, nothing to say), and `/info`
and `/admin gpus` show which profile each loaded model uses."""

from __future__ import annotations

from dataclasses import replace

from bot.ui.notes import rerun_note
from tests.bot.helpers import imagine, job_id_of, private_reply
from tests.bot.test_admin import admin_says
from tests.generation.helpers import pixels


async def test_a_profile_is_recorded_shown_and_kept_by_a_rerun(studio_with) -> None:
    gpus = [{"device": "cpu", "max_models": 3, "profiles": {"flux-schnell": "fp8"}}]
    async with studio_with(gpus=gpus) as studio:
        fake = studio.fake
        alice = fake.user("alice")
        parent_id = await imagine(fake, alice, model="flux-schnell")
        parent = (await studio.delivered(parent_id)).record
        assert parent.profile == "fp8"
        assert parent.facts is not None
        assert parent.facts.profile == "fp8"

        result = await studio.result_of(parent_id)
        clicked = await fake.click(alice, result, f"atelier:rerun:{parent_id}")
        await fake.wait_for(lambda: clicked.original is not None)
        assert clicked.original is not None
        rerun_id = job_id_of(clicked.original)
        rerun = (await studio.delivered(rerun_id)).record
        assert (rerun.profile, rerun.facts) == ("fp8", parent.facts)
        assert rerun_note(rerun, parent) is None
        first = await studio.database.read_image(parent_id, 0)
        again = await studio.database.read_image(rerun_id, 0)
        assert first is not None
        assert again is not None
        assert (pixels(first) == pixels(again)).all()

        # Where the job's profile cannot run, the rerun says so and why.
        elsewhere = replace(parent, facts=replace(parent.facts, profile="nf4-offload"))
        note = rerun_note(rerun, elsewhere) or ""
        assert "may differ" in note
        assert "the memory profile (nf4-offload → fp8)" in note

        assert "flux-schnell (fp8)" in await admin_says(studio, "admin gpus")
        info = await private_reply(fake, await fake.slash(fake.user("carol"), "info", {}))
        assert "loaded on cpu (fp8)" in info
