"""`/admin ...` end to end: the real discord.py client against the fake Discord, real SQLite, the
worker pool on tiny CPU models. Admins here: "admin" (configured admin role), "manager" (Manage
Server), "owner" (the server's owner) and "deputy" (in the configuration's owner ids)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from bot.permissions import REFUSED_ACTION, SERVER_COMMANDS
from generation.jobs import JobStatus
from storage import AuditEntry
from tests.bot.helpers import (
    SLOW_JOB,
    StudioFactory,
    StudioWorld,
    answer,
    imagine,
    job_count,
    job_id_of,
    paused,
    polled,
    private_reply,
    studio_people,
    text_of,
    wait_for_status,
)
from tests.discord import Message
from tests.discord.options import SUB_COMMAND, SUB_COMMAND_GROUP
from tests.discord.world import Channel

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def studio(studio_with: StudioFactory) -> AsyncIterator[StudioWorld]:
    """The shared studio, plus "deputy" among the configured owner ids; #general is the one
    channel the configuration allows."""
    world = studio_people()
    deputy = world.add_user("deputy")
    general = world.channel("general")
    async with studio_with(
        world, owner_ids=[deputy.id], allowed_channel_ids=[general.id]
    ) as started:
        yield started


async def admin_says(
    studio: StudioWorld, command: str, options: dict[str, Any] | None = None
) -> str:
    """Run an admin command as the "admin" user; its (private) answer."""
    fake = studio.fake
    return await private_reply(fake, await fake.slash(fake.user("admin"), command, options))


async def audit_since(studio: StudioWorld, last_id: int) -> list[AuditEntry]:
    """Audit entries written after entry `last_id`, oldest first."""
    entries = await studio.database.recent_audit(limit=100)
    return sorted((e for e in entries if e.id > last_id), key=lambda e: e.id)


async def last_audit_id(studio: StudioWorld) -> int:
    entries = await studio.database.recent_audit(limit=1)
    return entries[0].id if entries else 0


def admin_command_paths(definition: dict[str, Any]) -> set[str]:
    """Every `/admin ...` command path as synced to Discord (`"admin models load"`, ...)."""
    paths = set()
    for option in definition["options"]:
        if option["type"] == SUB_COMMAND:
            paths.add(f"admin {option['name']}")
        elif option["type"] == SUB_COMMAND_GROUP:
            paths |= {f"admin {option['name']} {sub['name']}" for sub in option["options"]}
    return paths


# ---- who may -----------------------------------------------------------------------------------


async def test_a_non_admin_is_refused_every_admin_command_audited_and_nothing_changes(
    studio: StudioWorld,
) -> None:
    fake, alice, bob = studio.fake, studio.fake.user("alice"), studio.fake.user("bob")
    running = await imagine(fake, bob, prompt="bob's slow painting", **SLOW_JOB)
    await wait_for_status(studio.database, running, JobStatus.RUNNING)
    guild = fake.world.guild_id
    attempts = {
        "admin queue": {},
        "admin cancel": {"job": running},
        "admin pause": {},
        "admin resume": {},
        "admin ban": {"user": bob, "reason": "spam"},
        "admin unban": {"user": bob},
        "admin limits": {"user": bob, "max_queued": 1, "priority": "relax"},
        "admin gpus": {},
        "admin stats": {},
        "admin models list": {},
        "admin models load": {"gpu": "cpu", "model": "flux-schnell"},
        "admin models unload": {"gpu": "cpu", "model": "playground-v2.5"},
        "admin models pin": {"gpu": "cpu", "model": "flux-schnell"},
        "admin blocklist add": {"term": "fox"},
        "admin blocklist remove": {"term": "fox"},
        "admin blocklist list": {},
        "admin channels allow": {"channel": fake.channel("art")},
        "admin channels disallow": {"channel": fake.channel("general")},
        "admin channels list": {},
        "admin worker fail": {"gpu": "cpu", "reason": "mine now"},
        "admin worker restore": {"gpu": "cpu"},
        "admin loras list": {},
        "admin loras enable": {"name": "pg"},
        "admin loras disable": {"name": "pg"},
    }
    assert set(attempts) == admin_command_paths(fake.command("admin") or {})
    before_audit = await last_audit_id(studio)
    bob_before = await studio.database.get_user(bob.id)

    async def loaded() -> tuple[str, ...] | None:  # a running job's model is reported loaded
        return studio.bot.pool.snapshot().workers[0].loaded or None  # a moment after it starts

    loaded_before = await polled(loaded)

    for command, options in attempts.items():
        reply = await private_reply(fake, await fake.slash(alice, command, options))
        if command.startswith(SERVER_COMMANDS):
            assert reply == (
                f"/{command} is for this server's managers (Manage Server) and this bot's admins."
            )
        else:
            assert reply == f"/{command} is for this bot's admins only."

    refusals = await audit_since(studio, before_audit)
    assert [(e.actor_id, e.action, e.target) for e in refusals] == [
        (alice.id, REFUSED_ACTION, f"command:/{command}") for command in attempts
    ]
    assert refusals[0].details == {"guild_id": guild, "channel_id": fake.channel("general").id}
    assert not studio.bot.pool.paused
    assert await studio.database.get_user(bob.id) == bob_before
    assert await studio.database.blocklist(guild) == []
    assert await studio.database.allowed_channels(guild) == []
    assert studio.bot.pool.snapshot().workers[0].loaded == loaded_before
    stored = await studio.database.get_job(running)
    assert stored is not None
    assert stored.record.status is JobStatus.RUNNING

    cancelled = await admin_says(studio, "admin cancel", {"job": running})
    assert f"Cancelled job `{running}` of <@{bob.id}>" in cancelled
    assert await wait_for_status(studio.database, running, JobStatus.CANCELLED)


async def test_admin_roles_and_owner_ids_are_installation_admins(studio: StudioWorld) -> None:
    fake = studio.fake
    for name in ("admin", "deputy"):
        reply = await private_reply(fake, await fake.slash(fake.user(name), "admin queue"))
        assert reply.startswith("Queue\nThe queue is running"), (name, reply)


INSTALLATION_WIDE = {
    "admin queue": {},
    "admin pause": {},
    "admin ban": {"user": "bob", "reason": "spam"},
    "admin limits": {"user": "bob", "max_queued": 1},
    "admin models load": {"gpu": "cpu", "model": "flux-schnell"},
    "admin gpus": {},
    "admin stats": {},
}


@pytest.mark.parametrize("name", ["manager", "owner"])  # Manage Server; the server's owner
async def test_manage_server_administers_only_its_own_servers_settings(
    studio: StudioWorld, name: str
) -> None:
    fake, db = studio.fake, studio.database
    manager, bob, guild = fake.user(name), fake.user("bob"), fake.world.guild_id
    before_audit = await last_audit_id(studio)
    bob_before = await db.get_user(bob.id)

    for command, options in INSTALLATION_WIDE.items():
        given = {k: fake.user(v) if k == "user" else v for k, v in options.items()}
        reply = await private_reply(fake, await fake.slash(manager, command, given))
        assert f"/{command} acts on every server this bot serves" in reply, reply
        assert "Manage Server covers this server's" in reply
    refusals = await audit_since(studio, before_audit)
    assert [(e.actor_id, e.action) for e in refusals] == [(manager.id, REFUSED_ACTION)] * len(
        INSTALLATION_WIDE
    )
    assert not studio.bot.pool.paused
    assert await db.get_user(bob.id) == bob_before

    added = await private_reply(
        fake, await fake.slash(manager, "admin blocklist add", {"term": f"{name}-term"})
    )
    assert "are now refused here" in added
    assert f"{name}-term" in await db.blocklist(guild)
    listed = await private_reply(fake, await fake.slash(manager, "admin channels list"))
    assert "channel" in listed.lower()
    await db.unblock_term(guild, f"{name}-term", by=manager.id)


# ---- the queue and the GPUs --------------------------------------------------------------------


async def test_queue_gpus_pause_and_cancel_show_and_do_the_right_thing(studio: StudioWorld) -> None:
    fake, pool, db = studio.fake, studio.bot.pool, studio.database
    alice, bob, carol = fake.user("alice"), fake.user("bob"), fake.user("carol")
    busy = await imagine(fake, carol, prompt="carol's slow painting", **SLOW_JOB)
    await wait_for_status(db, busy, JobStatus.RUNNING)
    before_audit = await last_audit_id(studio)

    assert "Paused" in await admin_says(studio, "admin pause")
    assert pool.paused
    assert "already paused" in await admin_says(studio, "admin pause")
    waiting = [
        await imagine(fake, alice, prompt="a"),
        await imagine(fake, alice, prompt="b"),
        await imagine(fake, bob, prompt="c"),
    ]

    queue = await admin_says(studio, "admin queue")
    assert "The queue is **paused**: 3 waiting (3 normal), 1 running." in queue
    assert f"`cpu` · job `{busy}` · <@{carol.id}>" in queue
    for job in waiting:
        assert f"#{pool.job(job).position} · job `{job}` ·" in queue

    gpus = await admin_says(studio, "admin gpus")
    assert f"busy on `cpu` · job `{busy}`" in gpus
    assert "models: playground-v2.5" in gpus
    assert "memory: RAM" in gpus

    assert f"Cancelled job `{busy}`" in await admin_says(studio, "admin cancel", {"job": busy})
    everyone = await admin_says(studio, "admin cancel", {"user": alice})
    assert f"Cancelled 2 jobs of <@{alice.id}>" in everyone
    for job in (busy, *waiting[:2]):
        assert await wait_for_status(db, job, JobStatus.CANCELLED)
    assert "Give either a job id or a user" in await admin_says(studio, "admin cancel")
    assert "already cancelled" in await admin_says(studio, "admin cancel", {"job": busy})

    assert "Resumed" in await admin_says(studio, "admin resume")
    assert not pool.paused
    assert await wait_for_status(db, waiting[2], JobStatus.DONE)
    assert "not paused" in await admin_says(studio, "admin resume")
    audited = [(e.action, e.target) for e in await audit_since(studio, before_audit)]
    assert audited == [
        ("pool.pause", "pool"),
        ("job.cancel", f"job:{busy}"),
        ("user.cancel_jobs", f"user:{alice.id}"),
        ("pool.resume", "pool"),
    ]


async def test_models_are_listed_loaded_pinned_and_unloaded_per_gpu(studio: StudioWorld) -> None:
    pool, fake = studio.bot.pool, studio.fake
    warm = await imagine(fake, fake.user("admin"), prompt="a warm-up")  # the worker is ready
    await wait_for_status(studio.database, warm, JobStatus.DONE)
    listing = await admin_says(studio, "admin models list")
    assert "`cpu` · idle · holds playground-v2.5 (full) · may run any" in listing

    loaded = await admin_says(studio, "admin models load", {"gpu": "cpu", "model": "flux-schnell"})
    assert "Loaded `flux-schnell` on `cpu`" in loaded
    assert "flux-schnell" in pool.snapshot().workers[0].loaded
    pinned = await admin_says(studio, "admin models pin", {"gpu": "cpu", "model": "flux-schnell"})
    assert "Pinned" in pinned
    assert "pinned flux-schnell" in await admin_says(studio, "admin models list")
    await admin_says(studio, "admin models unload", {"gpu": "cpu", "model": "flux-schnell"})
    worker = pool.snapshot().workers[0]
    assert "flux-schnell" not in worker.loaded
    assert worker.pinned == ()

    unknown_gpu = await admin_says(
        studio, "admin models load", {"gpu": "gpu9", "model": "flux-dev"}
    )
    assert "There is no worker 'gpu9'; workers: cpu." in unknown_gpu
    unknown_model = await admin_says(studio, "admin models load", {"gpu": "cpu", "model": "sd1"})
    assert "Unknown model 'sd1'" in unknown_model
    actions = [e.action for e in await studio.database.recent_audit(limit=3)]
    assert actions == ["worker.unload_model", "worker.pin_model", "worker.load_model"]

    gpus = await fake.autocomplete(
        fake.user("admin"), "admin models load", {"gpu": ""}, focused="gpu"
    )
    assert [choice["value"] for choice in gpus] == ["cpu"]


async def test_autocomplete_suggests_nothing_to_whoever_may_not_run_the_command(
    studio: StudioWorld,
) -> None:
    fake, carol = studio.fake, studio.fake.user("carol")
    for name in ("alice", "manager"):  # not an admin; Manage Server only
        gpus = await fake.autocomplete(
            fake.user(name), "admin models load", {"gpu": ""}, focused="gpu"
        )
        assert gpus == [], name
    assert await fake.autocomplete(carol, "imagine", {"model": ""}, focused="model") != []

    await admin_says(studio, "admin ban", {"user": carol, "reason": "testing"})
    try:
        assert await fake.autocomplete(carol, "imagine", {"model": ""}, focused="model") == []
    finally:
        await admin_says(studio, "admin unban", {"user": carol})


# ---- people ------------------------------------------------------------------------------------


async def test_a_ban_takes_effect_on_the_next_imagine_and_everywhere_until_unbanned(
    studio: StudioWorld,
) -> None:
    fake, db, bob = studio.fake, studio.database, studio.fake.user("bob")
    earlier = await imagine(fake, bob, prompt="before the ban", count=2)
    result = await studio.result_of(earlier)

    banned = await admin_says(studio, "admin ban", {"user": bob, "reason": "spamming the queue"})
    assert f"Banned <@{bob.id}>" in banned
    [entry] = await db.recent_audit(limit=1)
    assert (entry.actor_id, entry.action, entry.target) == (
        fake.user("admin").id,
        "user.ban",
        f"user:{bob.id}",
    )
    jobs = await job_count(db)

    attempts = [
        ("imagine", {"prompt": "after the ban"}),
        ("show", {"job": earlier}),
        ("rerun", {"job": earlier}),
        ("vary", {"job": earlier, "image": 1}),
        ("history", {}),
        ("queue", {}),
        ("cancel", {"job": earlier}),
        ("settings", {"aspect": "16:9"}),
        ("info", {}),
    ]
    for command, options in attempts:
        reply = await private_reply(fake, await fake.slash(bob, command, options))
        assert reply == "You are banned from using this bot (spamming the queue).", command
    buttons = ("rerun:{}", "info:{}", "delete:{}", "vary-subtle:{}:0")
    for button in (f"atelier:{b.format(earlier)}" for b in buttons):
        click = await fake.click(bob, result, button)
        assert "You are banned" in await private_reply(fake, click), button
    told = len(fake.dms(bob))
    for emoji in ("✉️", "❌", "🎲"):
        await fake.react(bob, result, emoji)
    dms = await fake.wait_for(lambda: len(fake.dms(bob)) >= told + 3 and fake.dms(bob)[told:])
    assert all("You are banned" in dm.content for dm in dms)
    assert not result.deleted
    assert not (await db.get_job(earlier)).deleted
    assert await job_count(db) == jobs
    assert (await db.get_user(bob.id)).default_aspect is None

    assert f"Unbanned <@{bob.id}>" in await admin_says(studio, "admin unban", {"user": bob})
    assert "is not banned" in await admin_says(studio, "admin unban", {"user": bob})

    reason = "**spam** <@123456789012345678> [appeal](https://evil.example)"
    await admin_says(studio, "admin ban", {"user": bob, "reason": reason})
    told = await private_reply(fake, await fake.slash(bob, "info"))
    assert told == (
        "You are banned from using this bot (\\*\\*spam\\*\\* \\<@\u200b123456789012345678\\> "
        "\\[appeal\\]\\(https\\://evil.example\\))."
    )
    await admin_says(studio, "admin unban", {"user": bob})
    after = await imagine(fake, bob, prompt="after the unban")
    await studio.result_of(after)


async def test_limits_are_shown_changed_and_apply_to_the_next_imagine(studio: StudioWorld) -> None:
    fake, pool, db = studio.fake, studio.bot.pool, studio.database
    alice, carol = fake.user("alice"), fake.user("carol")
    shown = await admin_says(studio, "admin limits", {"user": carol})
    assert "Max waiting\n5 (default)" in shown
    assert "Priority\nnormal" in shown

    changed = await admin_says(
        studio, "admin limits", {"user": carol, "max_queued": 1, "priority": "admin"}
    )
    assert "Limits changed" in changed
    assert "Max waiting\n1" in changed
    [entry] = await db.recent_audit(limit=1)
    assert (entry.action, entry.details) == ("user.limits", {"max_queued": 1, "priority": "admin"})

    async with paused(studio):
        ahead = [await imagine(fake, alice, prompt=f"alice {n}") for n in range(2)]
        first = await imagine(fake, carol, prompt="carol first")
        assert pool.job(first).position == 1  # the admin class goes before everyone
        full = await private_reply(
            fake, await fake.slash(carol, "imagine", {"prompt": "carol second"})
        )
        assert "You already have 1 job waiting" in full

        reset = await admin_says(studio, "admin limits", {"user": carol, "reset": True})
        assert "Max waiting\n5 (default)" in reset
        second = await imagine(fake, carol, prompt="carol second")
        assert pool.job(second).position is not None
    for job in (*ahead, first, second):
        await wait_for_status(db, job, JobStatus.DONE)


async def test_stats_count_jobs_images_and_gpu_time_per_person_and_model(
    studio: StudioWorld,
) -> None:
    fake, frank = studio.fake, studio.fake.user("frank")
    jobs = [await imagine(fake, frank, prompt="stats", count=n) for n in (2, 1)]
    for job in jobs:
        await studio.result_of(job)

    stats = await admin_says(studio, "admin stats", {"period": 0})
    usage = await studio.database.stats(0, 2**40)
    frank_gpu = next(u.gpu_seconds for u in usage.by_user if u.key == frank.id)

    assert stats.startswith("Usage, all time")
    assert f"<@{frank.id}> · 2 jobs · 3 images · {frank_gpu:.1f} GPU-s · mean wait" in stats
    playground = next(u for u in usage.by_model if u.key == "playground-v2.5")
    assert f"`playground-v2.5` · {playground.jobs} jobs · {playground.images} images" in stats
    assert "Usage, last 7 days" in await admin_says(studio, "admin stats")


# ---- the blocklist -----------------------------------------------------------------------------


@pytest.mark.parametrize("term", ["\u200b", "\u2060\u200d \ufeff", "*", "\u3164*"])
async def test_a_blocked_term_with_nothing_visible_is_refused(
    studio: StudioWorld, term: str
) -> None:
    before = await admin_says(studio, "admin blocklist list")
    said = await admin_says(studio, "admin blocklist add", {"term": term})
    assert said == "A blocked term needs at least one visible letter, digit or sign."
    assert await admin_says(studio, "admin blocklist list") == before
    # nothing blocks an ordinary prompt ending in a full stop
    fake = studio.fake
    assert await imagine(fake, fake.user("alice"), prompt="a quiet harbour.")


async def test_the_blocklist_refuses_prompts_however_the_job_is_made(studio: StudioWorld) -> None:
    fake, db, alice = studio.fake, studio.database, studio.fake.user("alice")
    dragon = await imagine(fake, alice, prompt="a dragon over the hills")
    result = await studio.result_of(dragon)

    added = await admin_says(studio, "admin blocklist add", {"term": "Dragon*"})
    assert "Prompts containing Dragon\\* are" in added  # shown as text: Dragon*
    assert "already blocked" in await admin_says(studio, "admin blocklist add", {"term": "dragon*"})
    assert "dragon\\*" in await admin_says(studio, "admin blocklist list")
    jobs = await job_count(db)

    refused = "Your prompt contains a term this server has blocked."
    for command, options in [
        ("imagine", {"prompt": "two DRAGONS fighting"}),
        ("rerun", {"job": dragon}),
        ("vary", {"job": dragon, "image": 1}),
    ]:
        assert await private_reply(fake, await fake.slash(alice, command, options)) == refused
    click = await fake.click(alice, result, f"atelier:reroll:{dragon}")
    assert await private_reply(fake, click) == refused
    await fake.react(alice, result, "🔁")
    dm = await fake.wait_for_message(lambda m: refused in m.content, channel=fake.dm_channel(alice))
    assert dm is not None
    assert await job_count(db) == jobs
    allowed = await imagine(fake, alice, prompt="a drake by the river")  # not a dragon*
    await studio.result_of(allowed)

    removed = await admin_says(studio, "admin blocklist remove", {"term": "dragon*"})
    assert "allowed again" in removed
    assert "not on the blocklist" in await admin_says(
        studio, "admin blocklist remove", {"term": "dragon*"}
    )
    rerun = await answer(fake, await fake.slash(alice, "rerun", {"job": dragon}))
    assert not rerun.ephemeral, text_of(rerun)
    actions = [e.action for e in await db.recent_audit(limit=10)]
    assert actions.count("guild.block_term") == 1
    assert actions.count("guild.unblock_term") == 1


# ---- allowed channels --------------------------------------------------------------------------


async def test_admins_allow_channels_on_top_of_the_configured_ones_and_take_them_back(
    studio: StudioWorld,
) -> None:
    fake, db, guild = studio.fake, studio.database, studio.fake.world.guild_id
    alice, admin = fake.user("alice"), fake.user("admin")
    general, art, log = fake.channel("general"), fake.channel("art"), fake.channel("bot-log")

    async def imagine_in(channel: Channel) -> Message:
        return await answer(
            fake, await fake.slash(alice, "imagine", {"prompt": "a quiet studio"}, channel=channel)
        )

    listing = await admin_says(studio, "admin channels list")
    assert f"set in the configuration file: <#{general.id}>" in listing
    assert "allowed with" not in listing
    refused = await imagine_in(art)
    assert refused.ephemeral
    assert text_of(refused) == f"I only make images in <#{general.id}>."
    before_audit, jobs = await last_audit_id(studio), await job_count(db)

    allowed = await admin_says(studio, "admin channels allow", {"channel": art})
    assert (
        f"<#{art.id}> takes jobs now. Only these channels do: <#{general.id}>, <#{art.id}>."
        in allowed
    )
    accepted = await imagine_in(art)
    assert not accepted.ephemeral, text_of(accepted)
    await studio.result_of(job_id_of(accepted))
    listing = await admin_says(studio, "admin channels list")
    assert f"allowed with `/admin channels allow`: <#{art.id}>" in listing
    assert "already takes jobs" in await admin_says(
        studio, "admin channels allow", {"channel": art}
    )
    assert "allowed by the configuration file" in await admin_says(
        studio, "admin channels disallow", {"channel": general}
    )
    assert "was not allowed with `/admin channels allow`" in await admin_says(
        studio, "admin channels disallow", {"channel": log}
    )

    taken_back = await admin_says(studio, "admin channels disallow", {"channel": art})
    assert f"<#{art.id}> takes no more jobs; only these channels do: <#{general.id}>." in taken_back
    assert text_of(await imagine_in(art)) == f"I only make images in <#{general.id}>."
    assert await job_count(db) == jobs + 1
    assert await db.allowed_channels(guild) == []
    audited = [
        (e.actor_id, e.action, e.target, e.details) for e in await audit_since(studio, before_audit)
    ]
    assert audited == [
        (admin.id, "guild.allow_channel", f"guild:{guild}", {"channel_id": art.id}),
        (admin.id, "guild.disallow_channel", f"guild:{guild}", {"channel_id": art.id}),
    ]
