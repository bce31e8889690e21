"""Every result button and reaction, through the real client, also after a bot restart."""

from __future__ import annotations

import sqlite3

import pytest
import pytest_asyncio

from generation.request import JobKind
from tests.bot.helpers import StudioWorld, job_id_of, paused, png_pixels, polled
from tests.discord import InteractionRecord, Message
from tests.discord.world import User

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def imagine(studio: StudioWorld, user: User, **options: object) -> Message:
    ix = await studio.fake.slash(user, "imagine", {"prompt": "a lighthouse", **options})
    first = await studio.fake.wait_for(lambda: ix.original)
    job_id = job_id_of(first)
    await studio.delivered(job_id)
    return await studio.result_of(job_id)


async def new_job_from(studio: StudioWorld, ix: InteractionRecord) -> int:
    """The id of the job a click started (its progress message is the click's reply)."""
    reply = await studio.fake.wait_for(lambda: ix.original)
    assert not reply.ephemeral, reply.content
    return job_id_of(reply)


async def ephemeral_reply(studio: StudioWorld, ix: InteractionRecord) -> Message:
    reply = await studio.fake.wait_for(lambda: ix.original)
    assert reply.ephemeral
    return reply


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def original(studio: StudioWorld) -> Message:
    """Alice's two-image result that most tests act on."""
    return await imagine(studio, studio.fake.user("alice"), count=2, seed=77)


async def test_rerun_button_gives_pixel_identical_images(
    studio: StudioWorld, original: Message
) -> None:
    alice = studio.fake.user("alice")
    parent = job_id_of(original)

    ix = await studio.fake.click(alice, original, f"atelier:rerun:{parent}")
    job_id = await new_job_from(studio, ix)
    result = await studio.result_of(job_id)

    assert [png_pixels(a.data) for a in result.attachments] == [
        png_pixels(a.data) for a in original.attachments
    ]
    record = (await studio.delivered(job_id)).record
    assert record.request.kind is JobKind.RERUN
    assert record.request.parent_job == parent
    assert record.request.seeds == (77, 78)


async def test_reroll_vary_and_upscale_buttons_make_the_right_jobs(
    studio: StudioWorld, original: Message
) -> None:
    alice = studio.fake.user("alice")
    parent = job_id_of(original)
    parent_request = (await studio.database.get_job(parent)).record.request

    made = {}
    for custom_id in (
        f"atelier:reroll:{parent}",
        f"atelier:vary-subtle:{parent}:1",
        f"atelier:vary-strong:{parent}:0",
        f"atelier:upscale:{parent}:1",
    ):
        ix = await studio.fake.click(alice, original, custom_id)
        made[custom_id.split(":")[1]] = await new_job_from(studio, ix)
    requests = {kind: (await studio.delivered(job)).record.request for kind, job in made.items()}

    assert requests["reroll"].kind is JobKind.REROLL
    assert requests["reroll"].seeds != parent_request.seeds
    second_png = await studio.database.read_image(parent, 1)
    assert requests["vary-subtle"].init_image == second_png
    assert requests["vary-subtle"].strength < requests["vary-strong"].strength
    assert requests["vary-strong"].kind is JobKind.VARY
    upscale = requests["upscale"]
    assert upscale.kind is JobKind.UPSCALE
    assert (upscale.width, upscale.height) == (parent_request.width * 2, parent_request.height * 2)
    assert upscale.seeds == (parent_request.seeds[1],)
    big = await studio.result_of(made["upscale"])
    assert len(big.attachments) == 1
    for request in requests.values():
        assert request.parent_job == parent


async def test_parameters_button_answers_only_the_clicker(
    studio: StudioWorld, original: Message
) -> None:
    bob = studio.fake.user("bob")
    parent = job_id_of(original)

    ix = await studio.fake.click(bob, original, f"atelier:info:{parent}")
    reply = await ephemeral_reply(studio, ix)

    fields = {f["name"]: f["value"] for f in reply.embeds[0]["fields"]}
    assert fields["Seeds"] == "77, 78"
    assert fields["Prompt"] == "a lighthouse"
    assert fields["Model"] == "playground-v2.5"


async def test_delete_by_someone_else_is_refused_and_changes_nothing(
    studio: StudioWorld,
) -> None:
    fake = studio.fake
    result = await imagine(studio, fake.user("alice"))
    job_id = job_id_of(result)

    ix = await fake.click(fake.user("bob"), result, f"atelier:delete:{job_id}")
    reply = await ephemeral_reply(studio, ix)
    await fake.react(fake.user("carol"), result, "❌")
    dm = await fake.wait_for(lambda: fake.dms(fake.user("carol")))

    assert "Only the person who made this job" in reply.content
    assert "Only the person who made this job" in dm[0].content
    assert not result.deleted
    stored = await studio.database.get_job(job_id)
    assert not stored.deleted
    assert await studio.database.read_image(job_id, 0) is not None


async def test_delete_by_the_author_and_by_an_admin(studio: StudioWorld) -> None:
    fake = studio.fake
    alice, admin = fake.user("alice"), fake.user("admin")
    mine = await imagine(studio, alice)
    other = await imagine(studio, fake.user("bob"))

    ix = await fake.click(alice, mine, f"atelier:delete:{job_id_of(mine)}")
    reply = await ephemeral_reply(studio, ix)
    await fake.react(admin, other, "❌")
    await fake.wait_for(lambda: other.deleted)

    assert mine.deleted
    assert "Deleted job" in reply.content
    for message in (mine, other):
        stored = await studio.database.get_job(job_id_of(message))
        assert stored.deleted
        assert await studio.database.read_image(stored.record.id, 0) is None


async def test_manage_server_deletes_only_results_made_in_its_own_server(
    studio: StudioWorld,
) -> None:
    fake, manager = studio.fake, studio.fake.user("manager")  # Manage Server in this server
    here = await imagine(studio, fake.user("alice"))
    elsewhere = await imagine(studio, fake.user("bob"))
    with sqlite3.connect(studio.settings.database_path) as conn:  # as if made in another server
        conn.execute("UPDATE jobs SET guild_id = 1 WHERE id = ?", (job_id_of(elsewhere),))

    refused = await ephemeral_reply(
        studio, await fake.click(manager, elsewhere, f"atelier:delete:{job_id_of(elsewhere)}")
    )
    deleted = await ephemeral_reply(
        studio, await fake.click(manager, here, f"atelier:delete:{job_id_of(here)}")
    )

    assert "Only the person who made this job" in refused.content
    assert not elsewhere.deleted
    assert not (await studio.database.get_job(job_id_of(elsewhere))).deleted
    assert "Deleted job" in deleted.content
    assert here.deleted


async def test_buttons_and_reactions_work_after_a_restart(
    studio: StudioWorld, original: Message
) -> None:
    fake = studio.fake
    alice = fake.user("alice")
    parent = job_id_of(original)
    await studio.runner.restart()  # a new bot object: empty caches, nothing in memory

    ix = await fake.click(alice, original, f"atelier:rerun:{parent}")
    by_button = await new_job_from(studio, ix)
    before = set(fake.messages)
    await fake.react(alice, original, "🔁")
    progress = await fake.wait_for_message(
        lambda m: m.id not in {x.id for x in before} and alice.id in m.mentions and bool(m.embeds)
    )
    by_reaction = job_id_of(progress)

    originals = [png_pixels(a.data) for a in original.attachments]
    for job_id in (by_button, by_reaction):
        result = await studio.result_of(job_id)
        assert [png_pixels(a.data) for a in result.attachments] == originals
    reaction_result = await studio.result_of(by_reaction)
    assert alice.id in reaction_result.mentions
    assert await fake.wait_for(lambda: progress.deleted)  # it gives way to the result


async def test_reactions_reroll_vary_and_send_parameters_by_dm(
    studio: StudioWorld, original: Message
) -> None:
    fake = studio.fake
    bob = fake.user("bob")
    parent = job_id_of(original)

    for emoji in ("🎲", "✨", "✉️"):
        await fake.react(bob, original, emoji)
    dm = await fake.wait_for(lambda: fake.dms(bob))
    results = await fake.wait_for(
        lambda: (
            len(mine := [m for m in fake.messages if bob.id in m.mentions and m.attachments]) == 2
            and mine
        )
    )

    fields = {f["name"]: f["value"] for f in dm[0].embeds[0]["fields"]}
    assert fields["Seeds"] == "77, 78"
    jobs = [(await studio.delivered(job_id_of(m))).record for m in results]
    assert {job.request.kind for job in jobs} == {JobKind.REROLL, JobKind.VARY}
    assert all(job.request.parent_job == parent for job in jobs)
    assert all(job.owner.user_id == bob.id for job in jobs)


async def test_a_button_of_a_deleted_job_says_so(studio: StudioWorld) -> None:
    fake = studio.fake
    alice = fake.user("alice")
    result = await imagine(studio, alice)
    job_id = job_id_of(result)
    await studio.database.delete_job(job_id)  # e.g. deleted from another message or by /admin

    for custom_id in (f"atelier:rerun:{job_id}", f"atelier:vary-subtle:{job_id}:0"):
        ix = await fake.click(alice, result, custom_id)
        reply = await ephemeral_reply(studio, ix)
        assert f"There is no job `{job_id}`" in reply.content


async def test_a_waiting_job_s_progress_message_finds_its_job_but_is_not_deleted(
    studio: StudioWorld,
) -> None:
    fake, db = studio.fake, studio.database
    alice = fake.user("alice")
    async with paused(studio):
        ix = await fake.slash(alice, "imagine", {"prompt": "a lighthouse at night"})
        progress = await fake.wait_for(lambda: ix.original)
        job_id = job_id_of(progress)
        # recorded as soon as it is posted, so that a restart finds it
        assert await polled(lambda: db.job_for_message(progress.id)) == job_id
        told = len(fake.dms(alice))
        await fake.react(alice, progress, "❌")
        dm = await fake.wait_for(lambda: fake.dms(alice)[told:])

        assert f"Job `{job_id}` is still queued; cancel it first" in dm[0].content
        assert not progress.deleted
        assert not (await db.get_job(job_id)).deleted
    await studio.result_of(job_id)
