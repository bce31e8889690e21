"""Every query the bot needs, on a real SQLite file."""

from __future__ import annotations

import re

import pytest

from generation.jobs import Priority
from generation.request import JobKind
from storage import KEEP, Database, InvalidTransition, InvalidValue, JobMessage, UnknownJob
from tests.storage.conftest import Clock, finished_job, images_for, owner, png


async def test_a_message_finds_its_job_and_attachments_are_recorded(
    db: Database, make_request
) -> None:
    job_id = await finished_job(db, make_request(count=2), owner(), base=1)
    await db.record_message(job_id, message_id=9001, channel_id=6)
    await db.set_image_attachment(job_id, 1, message_id=9002, attachment_id=777)

    assert await db.job_for_message(9001) == job_id
    assert await db.job_for_message(9002) == job_id  # the attachment's message shows it too
    assert await db.job_for_message(1234) is None
    images = await db.images_of(job_id)
    assert (images[1].message_id, images[1].attachment_id) == (9002, 777)
    assert (images[0].message_id, images[0].attachment_id) == (None, None)
    with pytest.raises(InvalidValue, match="no image 5"):
        await db.set_image_attachment(job_id, 5, 1, 2)
    with pytest.raises(UnknownJob):
        await db.record_message(4242, 9003, 6)


async def test_the_messages_of_a_job_are_listed_oldest_first(
    db: Database, make_request, clock: Clock
) -> None:
    job_id = await db.create_job(make_request(), owner())
    other = await db.create_job(make_request(), owner())
    await db.record_message(job_id, message_id=500, channel_id=6)  # the progress message
    clock.advance(10)
    await db.record_message(other, message_id=400, channel_id=6)
    await db.record_message(job_id, message_id=300, channel_id=7)
    await db.record_message(job_id, message_id=500, channel_id=None)  # edited into the result

    assert await db.messages_of(job_id) == [
        JobMessage(500, 6, clock.now - 10),
        JobMessage(300, 7, clock.now),
    ]
    assert [m.message_id for m in await db.messages_of(other)] == [400]
    assert await db.messages_of(4242) == []


async def test_deleting_a_job_leaves_a_tombstone_and_keeps_shared_files(
    db: Database, make_request
) -> None:
    request = make_request(count=2)
    mine = await finished_job(db, request, owner(user_id=1), base=50)
    rerun = await finished_job(db, request, owner(user_id=2), base=50)  # same images, shared
    other = await finished_job(db, make_request(seed=99), owner(user_id=1), base=60)
    await db.record_message(mine, 501, 6)
    (other_file,) = [image.path for image in await db.images_of(other)]

    assert await db.delete_job(mine) is True
    assert await db.delete_job(mine) is False

    stored = await db.get_job(mine)
    assert stored is not None
    assert stored.deleted
    assert await db.images_of(mine) == []
    assert await db.read_image(mine, 0) is None
    assert await db.job_for_message(501) == mine  # a reaction still finds it: "deleted"
    assert [job.id for job in (await db.history(1)).jobs] == [other]
    # the rerun shares the files, so they stay
    assert [await db.read_image(rerun, i) for i in (0, 1)] == [png(50), png(51)]
    # deleting the rerun releases them
    await db.delete_job(rerun)
    assert list(db.images_dir.glob("*/*.png")) == [other_file]
    with pytest.raises(UnknownJob):
        await db.delete_job(31337)


async def test_history_filters_by_model_and_prompt_text(db: Database, make_request) -> None:
    ids = {}
    for prompt, model in [
        ("a Red fox", "playground-v2.5"),
        ("a blue whale", "flux-schnell"),
        ("red_100% tomato", "flux-schnell"),
        ("a red barn", "flux-schnell"),
    ]:
        ids[prompt] = await db.create_job(make_request(prompt, model=model), owner(user_id=8))
    await db.create_job(make_request("red for someone else"), owner(user_id=9))

    async def prompts(**filters) -> list[str]:
        return [job.request.prompt for job in (await db.history(8, **filters)).jobs]

    assert await prompts() == ["a red barn", "red_100% tomato", "a blue whale", "a Red fox"]
    assert await prompts(model="flux-schnell") == ["a red barn", "red_100% tomato", "a blue whale"]
    assert await prompts(text="RED") == ["a red barn", "red_100% tomato", "a Red fox"]
    assert await prompts(text="red", model="flux-schnell") == ["a red barn", "red_100% tomato"]
    assert await prompts(text="_100%") == ["red_100% tomato"]
    assert await prompts(text="d_1") == ["red_100% tomato"]
    assert await prompts(text="0%t") == []  # % and _ are literal, not wildcards
    assert await prompts(model="no-such-model") == []
    with pytest.raises(InvalidValue):
        await db.history(8, limit=0)
    with pytest.raises(InvalidValue):
        await db.history(8, before=3, after=1)


async def test_lineage_lists_ancestors_root_first_and_children(db: Database, make_request) -> None:
    root = await db.create_job(make_request("root"), owner())
    child = await db.create_job(make_request("child", parent_job=root, kind=JobKind.VARY), owner())
    grandchild = await db.create_job(
        make_request("grandchild", parent_job=child, kind=JobKind.RERUN), owner()
    )
    sibling = await db.create_job(make_request("sibling", parent_job=root), owner(user_id=5))
    gone = await db.create_job(make_request("gone", parent_job=child), owner())
    await db.delete_job(gone)

    lineage = await db.lineage(grandchild)
    assert [job.id for job in lineage.ancestors] == [root, child]
    assert lineage.children == []
    lineage = await db.lineage(child)
    assert [job.id for job in lineage.ancestors] == [root]
    assert [job.id for job in lineage.children] == [grandchild]
    assert [job.id for job in (await db.lineage(root)).children] == [child, sibling]
    with pytest.raises(UnknownJob):
        await db.lineage(999)


async def test_queue_snapshot_shows_running_next_and_counts(db: Database, make_request) -> None:
    ids = [await db.create_job(make_request(), owner(user_id=u)) for u in (1, 2, 1, 3, 1)]
    await db.mark_running(ids[1], "cuda:0")
    await db.mark_cancelled(ids[3])

    snapshot = await db.queue_snapshot(limit=2)
    assert [job.id for job in snapshot.running] == [ids[1]]
    assert [job.id for job in snapshot.next_up] == [ids[0], ids[2]]
    assert snapshot.queued_total == 3
    assert snapshot.queued_by_user == {1: 3}


async def test_stats_per_user_and_model_over_a_period(
    db: Database, clock: Clock, make_request
) -> None:
    await finished_job(db, make_request(count=2), owner(user_id=1), base=1)  # before the period
    clock.advance(100)
    since = clock.now
    a = await db.create_job(make_request(count=2), owner(user_id=1))
    b = await db.create_job(make_request(model="flux-schnell"), owner(user_id=2))
    c = await db.create_job(make_request(model="flux-schnell"), owner(user_id=1))
    clock.advance(10)
    await db.mark_running(a, "cuda:0")
    await db.mark_done(a, images_for(make_request(count=2), 20), gpu_seconds=4.0)
    clock.advance(20)
    await db.mark_running(b, "cuda:1")
    await db.mark_done(b, images_for(make_request(), 30), gpu_seconds=1.5)
    await db.mark_failed(c, "out of memory")
    clock.advance(1)

    stats = await db.stats(since, clock.now)
    by_user = {row.key: row for row in stats.by_user}
    assert (by_user[1].jobs, by_user[1].images, by_user[1].gpu_seconds) == (2, 2, 4.0)
    assert by_user[1].mean_wait_s == 10.0  # only the started job counts
    assert (by_user[2].jobs, by_user[2].images, by_user[2].mean_wait_s) == (1, 1, 30.0)
    by_model = {row.key: row for row in stats.by_model}
    assert (by_model["flux-schnell"].jobs, by_model["flux-schnell"].images) == (2, 1)
    assert by_model["playground-v2.5"].gpu_seconds == 4.0
    assert [row.key for row in stats.by_user] == [1, 2]  # most GPU time first
    assert (await db.stats(clock.now + 1, clock.now + 2)).by_user == []


async def test_results_wait_for_delivery_oldest_first(db: Database, make_request) -> None:
    done = await finished_job(db, make_request(), owner(), base=1)
    queued = await db.create_job(make_request(), owner())
    failed = await db.create_job(make_request(), owner())
    await db.mark_failed(failed, "no GPU")
    deleted = await finished_job(db, make_request(), owner(), base=2)
    await db.delete_job(deleted)

    assert [job.id for job in await db.undelivered_jobs()] == [done, failed]
    await db.mark_delivered(done)
    await db.mark_delivered(done)  # twice is harmless
    assert [job.id for job in await db.undelivered_jobs()] == [failed]
    assert (await db.get_job(done)).delivered_at is not None
    with pytest.raises(InvalidTransition, match="queued"):
        await db.mark_delivered(queued)


async def test_user_bans_limits_and_defaults(db: Database) -> None:
    fresh = await db.get_user(10)
    assert (fresh.banned, fresh.priority, fresh.weight, fresh.max_queued) == (
        False, Priority.NORMAL, 1.0, None,
    )  # fmt: skip

    await db.ban(10, "  spamming   the queue ", by=1)
    banned = await db.get_user(10)
    assert banned.banned
    assert (banned.ban_reason, banned.banned_by) == ("spamming the queue", 1)
    await db.unban(10, by=1)
    assert not (await db.get_user(10)).banned
    with pytest.raises(InvalidValue):
        await db.ban(10, "   ", by=1)

    limited = await db.set_limits(10, by=1, max_queued=3, priority=Priority.RELAX)
    assert (limited.max_queued, limited.max_running, limited.priority) == (3, None, Priority.RELAX)
    limited = await db.set_limits(10, by=1, weight=2.0, max_queued=None)
    assert (limited.max_queued, limited.weight, limited.priority) == (None, 2.0, Priority.RELAX)
    for bad in ({"weight": 0.0}, {"max_running": -1}):
        with pytest.raises(InvalidValue):
            await db.set_limits(10, by=1, **bad)
    job_owner = limited.owner(guild_id=5, channel_id=6)
    assert (job_owner.weight, job_owner.priority, job_owner.guild_id) == (2.0, Priority.RELAX, 5)

    mine = await db.set_defaults(10, model="flux-dev", aspect="16:9")
    mine = await db.set_defaults(10, negative_prompt="blurry", aspect=None, model=KEEP)
    assert (mine.default_model, mine.default_aspect, mine.default_negative_prompt) == (
        "flux-dev", None, "blurry",
    )  # fmt: skip

    actions = [entry.action for entry in await db.recent_audit(target="user:10")]
    assert actions == ["user.limits", "user.limits", "user.unban", "user.ban"]
    assert (await db.recent_audit(1))[0].details == {"max_queued": None, "weight": 2.0}


async def test_guild_channels_blocklist_and_audit(db: Database) -> None:
    assert await db.allowed_channels(5) == []
    assert await db.allow_channel(5, 61, by=1) is True
    assert await db.allow_channel(5, 60, by=1) is True
    assert await db.allow_channel(5, 60, by=1) is False
    assert await db.allowed_channels(5) == [60, 61]
    assert await db.disallow_channel(5, 61, by=1) is True
    assert await db.allowed_channels(5) == [60]
    assert await db.allowed_channels(6) == []

    assert await db.block_term(5, "  Gore ", by=2) is True
    assert await db.block_term(5, "gore", by=2) is False
    await db.block_term(5, "brand x", by=2)
    assert await db.blocklist(5) == ["brand x", "gore"]
    assert await db.unblock_term(5, "GORE", by=2) is True
    assert await db.blocklist(5) == ["brand x"]
    with pytest.raises(InvalidValue):
        await db.block_term(5, " ", by=2)

    entry_id = await db.audit(3, "job.cancel", "job:17", {"reason": "stuck"})
    newest = await db.recent_audit(2)
    assert (newest[0].id, newest[0].action, newest[0].actor_id, newest[0].details) == (
        entry_id, "job.cancel", 3, {"reason": "stuck"},
    )  # fmt: skip
    assert newest[1].action == "guild.unblock_term"
    assert [e.action for e in await db.recent_audit(10, target="guild:5")] == [
        "guild.unblock_term",
        "guild.block_term",
        "guild.block_term",
        "guild.disallow_channel",
        "guild.allow_channel",
        "guild.allow_channel",
    ]


_FULL_SCAN = re.compile(
    r"\bSCAN (jobs|images|job_messages|users|guild_channels|guild_blocklist|audit_log|init_images"
    r"|j|i|ii|p|old)\b(?! USING)"
)


async def test_every_query_the_bot_makes_uses_an_index(db: Database, make_request) -> None:
    parent = await finished_job(db, make_request(count=2), owner(user_id=1), base=1)
    statements: list[str] = []
    await db._conn.set_trace_callback(statements.append)

    child = await db.create_job(make_request(parent_job=parent, init_image=png(4)), owner())
    await db.mark_running(child, "cuda:0")
    await db.mark_done(child, images_for(make_request(), 9), 1.0)
    await db.get_job(parent)
    await db.images_of(parent)
    await db.read_image(parent, 0)
    await db.record_message(parent, 1, 2)
    await db.job_for_message(1)
    await db.messages_of(parent)
    await db.set_image_attachment(parent, 0, 3, 4)
    await db.history(1, text="fox", model="flux-dev", before=100)
    await db.history(1, after=0)
    await db.lineage(child)
    await db.queue_snapshot()
    await db.stats(0, 2e9)
    await db.mark_delivered(parent)
    await db.undelivered_jobs()
    await db.unfinished_jobs()
    await db.ban(1, "reason", by=2)
    await db.get_user(1)
    await db.allow_channel(5, 6, by=2)
    await db.allowed_channels(5)
    await db.block_term(5, "x", by=2)
    await db.blocklist(5)
    await db.recent_audit(5, target="user:1")
    await db.delete_job(child)
    await db._conn.set_trace_callback(None)

    queries = [s for s in statements if s.split()[0].upper() in {"SELECT", "UPDATE", "DELETE"}]
    assert len(queries) > 20
    for sql in queries:
        plan = await db._conn.execute_fetchall(f"EXPLAIN QUERY PLAN {sql}")
        details = " | ".join(row[3] for row in plan)
        assert not _FULL_SCAN.search(details), f"{sql}\n  → {details}"
