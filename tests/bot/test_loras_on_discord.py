"""LoRAs on Discord end to end: /imagine's lora options with autocomplete, what is refused, and
`/admin loras` turning one off and on (audited), with the real client, fake Discord, SQLite and
a worker on the tiny models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from PIL import Image

from generation.jobs import JobStatus
from generation.loras import LoraCatalogue, LoraUse, withdrawn_lora
from tests.bot.helpers import (
    StudioFactory,
    StudioWorld,
    imagine,
    private_reply,
    wait_for_status,
)
from tests.conftest import lora_tables

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def studio(
    studio_with: StudioFactory, tiny_loras: dict[str, Path]
) -> AsyncIterator[StudioWorld]:
    async with studio_with(loras=lora_tables(tiny_loras)) as started:
        yield started


async def _values(studio: StudioWorld, typed: str, model: str | None = None) -> list[str]:
    fake = studio.fake
    options = {"prompt": "a fox", "lora1": typed} | ({"model": model} if model else {})
    choices = await fake.autocomplete(fake.user("bob"), "imagine", options, focused="lora1")
    return [choice["value"] for choice in choices]


async def test_autocomplete_offers_the_loras_that_fit_the_model(studio: StudioWorld) -> None:
    assert await _values(studio, "", "playground-v2.5") == ["pg", "pg2"]
    assert await _values(studio, "", "flux-dev") == ["fx"]
    assert await _values(studio, "pg:0.3", "playground-v2.5") == ["pg:0.3", "pg2:0.3"]
    assert set(await _values(studio, "")) == {"pg", "pg2", "fx"}
    assert await _values(studio, "pg:nan", "playground-v2.5") == ["pg", "pg2"]
    assert await _values(studio, "fx:", "flux-dev") == ["fx"]  # the weight not typed yet


async def test_a_lora_job_is_made_recorded_and_tagged(studio: StudioWorld) -> None:
    fake = studio.fake
    job_id = await imagine(
        fake, fake.user("bob"), model="playground-v2.5", lora1="pg:0.5", lora2="pg2", seed=3
    )
    assert await wait_for_status(studio.database, job_id, JobStatus.DONE) is JobStatus.DONE
    stored = await studio.database.get_job(job_id)
    assert stored is not None
    assert stored.record.request.loras == (LoraUse("pg", 0.5), LoraUse("pg2", 1.0))
    result = await studio.result_of(job_id)
    assert "LoRA `pg:0.5` · LoRA `pg2:1`" in result.content
    (image,) = await studio.database.images_of(job_id)
    with Image.open(image.path) as png:
        assert "<lora:pg:0.5> <lora:pg2:1>" in png.text["parameters"]


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"model": "playground-v2.5", "lora1": "fx"}, "The LoRA 'fx' is for flux models"),
        ({"model": "flux-dev", "lora1": "nope"}, "There is no LoRA called 'nope'; for flux-dev"),
        ({"model": "flux-dev", "lora1": "fx:5"}, "between -2 and 2"),
        ({"model": "flux-dev", "lora1": "fx", "lora2": "fx:0.2"}, "asked for twice"),
    ],
)
async def test_a_lora_that_cannot_be_used_is_refused_with_a_sentence(
    studio: StudioWorld, options: dict[str, str], said: str
) -> None:
    fake = studio.fake
    before = len((await studio.database.history(fake.user("carol").id, limit=100)).jobs)
    ix = await fake.slash(fake.user("carol"), "imagine", {"prompt": "a fox", **options})
    assert said in await private_reply(fake, ix)
    assert len((await studio.database.history(fake.user("carol").id, limit=100)).jobs) == before


async def test_an_admin_turns_a_lora_off_and_on_audited(studio: StudioWorld) -> None:
    fake = studio.fake
    admin = fake.user("admin")
    off = await private_reply(fake, await fake.slash(admin, "admin loras disable", {"name": "pg"}))
    assert off == "The LoRA pg is now off for new jobs."
    again = await private_reply(
        fake, await fake.slash(admin, "admin loras disable", {"name": "pg"})
    )
    assert again == "The LoRA pg was already off."
    listed = await private_reply(fake, await fake.slash(admin, "admin loras list", {}))
    assert "**pg** · playground · weight 0.8 · off (admin)" in listed
    assert "**fx** · flux · weight 1 · on" in listed
    assert await _values(studio, "", "playground-v2.5") == ["pg2"]
    ix = await fake.slash(
        fake.user("bob"), "imagine", {"prompt": "a fox", "model": "playground-v2.5", "lora1": "pg"}
    )
    assert "There is no LoRA called 'pg'; for playground-v2.5 you can use: pg2." in (
        await private_reply(fake, ix)
    )
    on = await private_reply(fake, await fake.slash(admin, "admin loras enable", {"name": "pg"}))
    assert on == "The LoRA pg is now on for new jobs."
    unknown = await fake.slash(admin, "admin loras enable", {"name": "zzz"})
    assert "There is no LoRA called `zzz`" in await private_reply(fake, unknown)
    entries = await studio.database.recent_audit(limit=2)
    assert [(e.action, e.target, e.actor_id) for e in reversed(entries)] == [
        ("lora.disable", "lora:pg", admin.id),
        ("lora.enable", "lora:pg", admin.id),
    ]


async def test_a_disabled_lora_is_refused_for_reruns_and_variations(studio: StudioWorld) -> None:
    fake = studio.fake
    bob, admin = fake.user("bob"), fake.user("admin")
    job_id = await imagine(fake, bob, model="playground-v2.5", lora1="pg", seed=5)
    assert await wait_for_status(studio.database, job_id, JobStatus.DONE) is JobStatus.DONE
    before = len((await studio.database.history(bob.id, limit=100)).jobs)
    await fake.slash(admin, "admin loras disable", {"name": "pg"})
    try:
        for command, options in [("rerun", {}), ("vary", {"image": 1})]:
            ix = await fake.slash(bob, command, {"job": job_id, **options})
            assert "LoRA 'pg', which an admin has since disabled or removed" in (
                await private_reply(fake, ix)
            ), command
        assert len((await studio.database.history(bob.id, limit=100)).jobs) == before
    finally:
        await fake.slash(admin, "admin loras enable", {"name": "pg"})


async def test_a_lora_removed_from_the_configuration_is_refused_for_derived_jobs(
    tiny_loras: dict[str, Path],
) -> None:
    tables = lora_tables(tiny_loras)
    uses = (LoraUse("pg2", 1.0), LoraUse("pg", 0.5))
    assert withdrawn_lora(LoraCatalogue.from_config(tables), uses) is None
    del tables["pg"]
    problem = withdrawn_lora(LoraCatalogue.from_config(tables), uses)
    assert problem is not None
    assert "'pg'" in problem
    tables["pg2"]["enabled"] = False
    assert "'pg2'" in (withdrawn_lora(LoraCatalogue.from_config(tables), uses) or "")


async def test_autocomplete_shows_trigger_words_also_where_notes_exist() -> None:
    from bot.ui.choices import lora_choices
    from generation.models import Family

    loras = LoraCatalogue.from_config(
        {
            "wc": {
                "source": "/l/wc.safetensors",
                "family": "playground",
                "weight": 0.1234567,
                "triggers": ["wcstyle"],
                "notes": "soft watercolour washes " * 10,
            }
        }
    )
    (choice,) = lora_choices(loras, {Family.PLAYGROUND}, frozenset(), "wcsty")  # by trigger
    assert choice.name.startswith("wc (weight 0.1234567) — say wcstyle — soft watercolour")
    assert len(choice.name) <= 100
    (typed,) = lora_choices(loras, {Family.PLAYGROUND}, frozenset(), "wc:0.1234567")
    assert typed.value == "wc:0.1234567"
