"""`/show`, `/rerun`, `/vary`, `/history`, `/queue` and `/cancel` end to end: the real discord.py
client against the fake Discord, real SQLite, the worker pool on tiny CPU models."""

from __future__ import annotations

from typing import Any

import pytest

from generation.jobs import JobOwner, JobStatus
from generation.request import JobKind, build_request
from tests.bot.helpers import (
    SLOW_JOB,
    StudioWorld,
    answer,
    imagine,
    job_count,
    job_id_of,
    paused,
    png_pixels,
    private_reply,
    text_of,
    wait_for_status,
)
from tests.discord import CallbackType, FakeDiscord, Message
from tests.discord.world import User

pytestmark = pytest.mark.asyncio(loop_scope="module")

UNKNOWN_JOB = 987_654_321


# ---- /show, /rerun, /vary -----------------------------------------------------------------------


async def test_show_posts_the_job_again_with_its_images_buttons_and_reactions(
    studio: StudioWorld,
) -> None:
    fake, alice = studio.fake, studio.fake.user("alice")
    job = await imagine(fake, alice, seed=11, count=2)
    await studio.result_of(job)

    ix = await fake.slash(alice, "show", {"job": job})
    shown = await answer(fake, ix)

    assert not shown.ephemeral
    assert f"job `{job}`" in shown.content
    assert "seeds 11, 12" in shown.content
    assert [a.data for a in shown.attachments] == [
        await studio.database.read_image(job, index) for index in range(2)
    ]
    assert f"atelier:rerun:{job}" in shown.custom_ids
    assert await studio.database.job_for_message(shown.id) == job  # reactions find the job

    private = await answer(fake, await fake.slash(alice, "show", {"job": job, "private": True}))
    assert private.ephemeral
    assert len(private.attachments) == 2


async def test_rerun_reproduces_every_image_or_one_of_them_pixel_for_pixel(
    studio: StudioWorld,
) -> None:
    fake, alice = studio.fake, studio.fake.user("alice")
    original = await imagine(fake, alice, seed=500, count=2)
    original_images = (await studio.result_of(original)).attachments

    everything = await imagine_like(fake, alice, "rerun", {"job": original})
    again = (await studio.result_of(everything)).attachments
    assert [png_pixels(a.data) for a in again] == [png_pixels(a.data) for a in original_images]

    second_only = await imagine_like(fake, alice, "rerun", {"job": original, "image": 2})
    [alone] = (await studio.result_of(second_only)).attachments
    assert png_pixels(alone.data) == png_pixels(original_images[1].data)

    stored = await studio.database.get_job(second_only)
    assert stored is not None
    assert stored.record.request.kind is JobKind.RERUN
    assert stored.record.request.parent_job == original
    assert stored.record.request.seeds == (501,)


async def test_vary_starts_from_the_chosen_image_with_the_given_strength(
    studio: StudioWorld,
) -> None:
    fake, alice = studio.fake, studio.fake.user("alice")
    original = await imagine(fake, alice, seed=7, count=2)
    await studio.result_of(original)

    variation = await imagine_like(
        fake, alice, "vary", {"job": original, "image": 2, "strength": 0.5}
    )
    result = await studio.result_of(variation)

    stored = await studio.database.get_job(variation)
    assert stored is not None
    request = stored.record.request
    assert request.kind is JobKind.VARY
    assert request.parent_job == original
    assert request.init_image == await studio.database.read_image(original, 1)
    assert request.strength == 0.5
    assert len(result.attachments) == 2


async def imagine_like(fake: FakeDiscord, user: User, command: str, options: dict[str, Any]) -> int:
    """Run a command that queues a job (/rerun, /vary); the new job's id."""
    reply = await answer(fake, await fake.slash(user, command, options))
    assert not reply.ephemeral, text_of(reply)
    return job_id_of(reply)


async def test_unknown_foreign_and_deleted_jobs_get_a_private_answer_and_change_nothing(
    studio: StudioWorld,
) -> None:
    fake, alice, bob = studio.fake, studio.fake.user("alice"), studio.fake.user("bob")
    mine = await imagine(fake, alice, seed=3, count=2)
    await studio.result_of(mine)
    deleted = await imagine(fake, alice, seed=4)
    await studio.result_of(deleted)
    await studio.database.delete_job(deleted)
    jobs_before = await job_count(studio.database)

    cases = [
        (alice, "show", {"job": UNKNOWN_JOB}, f"no job `{UNKNOWN_JOB}`"),
        (alice, "rerun", {"job": UNKNOWN_JOB}, f"no job `{UNKNOWN_JOB}`"),
        (alice, "vary", {"job": UNKNOWN_JOB, "image": 1}, f"no job `{UNKNOWN_JOB}`"),
        (alice, "cancel", {"job": UNKNOWN_JOB}, f"no job `{UNKNOWN_JOB}`"),
        (bob, "show", {"job": mine}, "someone else's"),
        (bob, "rerun", {"job": mine}, "someone else's"),
        (bob, "vary", {"job": mine, "image": 1}, "someone else's"),
        (bob, "cancel", {"job": mine}, "someone else's"),
        (alice, "show", {"job": deleted}, "deleted"),
        (alice, "rerun", {"job": deleted}, "deleted"),
        (alice, "vary", {"job": deleted, "image": 1}, "deleted"),
        (alice, "vary", {"job": mine, "image": 3}, "made 2 images, not 3"),
        (alice, "rerun", {"job": mine, "image": 4}, "made 2 images, not 4"),
        (alice, "cancel", {"job": mine}, "already done"),
    ]
    for user, command, options, expected in cases:
        reply = await private_reply(fake, await fake.slash(user, command, options))
        assert expected in reply, (command, options, reply)

    assert await job_count(studio.database) == jobs_before
    stored = await studio.database.get_job(mine)
    assert stored is not None
    assert stored.record.status is JobStatus.DONE


# ---- /history -----------------------------------------------------------------------------------


async def test_history_pages_through_every_job_with_buttons_also_after_a_restart(
    studio: StudioWorld,
) -> None:
    fake, carol = studio.fake, studio.fake.user("carol")
    made = await finished_jobs(studio, carol, 27, prompt="a quiet harbour")
    made += await finished_jobs(studio, carol, 3, prompt="a red lighthouse")

    first = await fake.slash(carol, "history")
    page = await answer(fake, first)
    assert page.ephemeral
    seen = [listed_job_ids(page)]
    while not is_disabled(page, "o"):
        if len(seen) == 2:  # the buttons hold their state: they work after a restart
            await studio.runner.restart()
        shown = listed_job_ids(page)
        click = await fake.click(carol, page, button(page, "o"))
        await fake.interaction_response(click)
        assert click.response is not None
        assert click.response.type is CallbackType.DEFERRED_UPDATE  # at once; the page follows
        await fake.wait_for(lambda s=shown: listed_job_ids(page) != s, what="the older page")
        seen.append(listed_job_ids(page))

    assert [len(ids) for ids in seen] == [10, 10, 10]
    assert [job for ids in seen for job in ids] == sorted(made, reverse=True)
    assert is_disabled(page, "o")

    await fake.click(carol, page, button(page, "n"))  # back one page
    await fake.wait_for(lambda: listed_job_ids(page) == seen[1], what="the newer page")
    assert not is_disabled(page, "n")

    narrowed = await answer(fake, await fake.slash(carol, "history", {"contains": "LIGHTHOUSE"}))
    assert listed_job_ids(narrowed) == sorted(made[-3:], reverse=True)
    assert is_disabled(narrowed, "o")
    assert "prompts containing" in text_of(narrowed)


async def test_history_filters_by_model_and_says_so_when_nothing_matches(
    studio: StudioWorld,
) -> None:
    fake, carol = studio.fake, studio.fake.user("carol")
    reply = await answer(fake, await fake.slash(carol, "history", {"model": "flux-schnell"}))
    assert listed_job_ids(reply) == []
    assert "No job of yours matches" in text_of(reply)

    wrong = await private_reply(fake, await fake.slash(carol, "history", {"model": "dall-e"}))
    assert "Unknown model 'dall-e'. Available models: playground-v2.5" in wrong

    choices = await fake.autocomplete(carol, "history", {"model": "flux"}, focused="model")
    assert {choice["value"] for choice in choices} == {
        "flux-dev",
        "flux-schnell",
        "flux2-klein-4b",
        "flux2-klein-9b",
        "flux-kontext-dev",
    }


async def finished_jobs(studio: StudioWorld, user: User, count: int, *, prompt: str) -> list[int]:
    """`count` ended jobs of `user` written straight to storage (history only reads them)."""
    owner = JobOwner(user.id, studio.fake.world.guild_id, studio.fake.channel("general").id)
    ids = []
    for index in range(count):
        request = build_request(studio.settings.catalogue, prompt=f"{prompt} {index}", seed=index)
        job_id = await studio.database.create_job(request, owner)
        await studio.database.mark_cancelled(job_id)
        ids.append(job_id)
    return ids


def listed_job_ids(message: Message) -> list[int]:
    """The job ids a history page lists, in order (each line starts with the id)."""
    lines = message.embeds[0].get("description", "").splitlines()
    return [int(line.split("`")[1]) for line in lines if line.startswith("`")]


def button(message: Message, direction: str) -> str:
    return next(c for c in message.custom_ids if c.startswith(f"atelier:history:{direction}:"))


def is_disabled(message: Message, direction: str) -> bool:
    return bool(message.component(button(message, direction)).get("disabled"))


# ---- /queue and /cancel -------------------------------------------------------------------------


async def test_queue_lists_your_waiting_jobs_with_positions_and_cancel_removes_one(
    studio: StudioWorld,
) -> None:
    fake, pool = studio.fake, studio.bot.pool
    alice, bob = fake.user("alice"), fake.user("bob")
    async with paused(studio):
        first = await imagine(fake, alice, prompt="first")
        theirs = await imagine(fake, bob, prompt="theirs")
        second = await imagine(fake, alice, prompt="second")

        listing = await private_reply(fake, await fake.slash(alice, "queue"))
        for job in (first, second):
            assert f"`{job}`" in listing
            assert f"#{pool.job(job).position} in the queue" in listing
        # paused: nothing starts, so no number of seconds is claimed
        assert listing.count("starts once an admin resumes the queue") == 2
        assert "starts in about" not in listing
        assert f"`{theirs}`" not in listing
        shown = await private_reply(fake, await fake.slash(alice, "show", {"job": first}))
        assert f"#{pool.job(first).position} in the queue" in shown
        assert f"Job {first} — parameters" in shown
        assert "the queue is paused" in listing

        refused = await private_reply(fake, await fake.slash(bob, "cancel", {"job": second}))
        assert "someone else's" in refused
        cancelled = await private_reply(fake, await fake.slash(alice, "cancel", {"job": second}))
        assert f"Cancelled job `{second}`" in cancelled
        assert await wait_for_status(studio.database, second, JobStatus.CANCELLED)
        assert pool.job(second) is None  # no longer live

        after = await private_reply(fake, await fake.slash(alice, "queue"))
        assert f"`{second}`" not in after
        assert f"`{first}`" in after
    await studio.result_of(first)
    await studio.result_of(theirs)
    assert "You have no job waiting or running" in await private_reply(
        fake, await fake.slash(alice, "queue")
    )


async def test_cancel_stops_your_running_job(studio: StudioWorld) -> None:
    fake, alice = studio.fake, studio.fake.user("alice")
    job = await imagine(fake, alice, prompt="a very slow painting", **SLOW_JOB)
    await wait_for_status(studio.database, job, JobStatus.RUNNING)

    reply = await private_reply(fake, await fake.slash(alice, "cancel", {"job": job}))

    assert f"Cancelled job `{job}`" in reply
    stored = await studio.database.get_job(job)
    assert stored is not None
    assert stored.record.status is JobStatus.CANCELLED
    assert await studio.database.images_of(job) == []
