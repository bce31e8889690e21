"""Hostile input through the real bot (fake Discord, tiny models, a real worker process, real
SQLite): attachments, disguised prompts, markup in prompts, DMs, other bots, and what the bot
leaves on disk and in its workers' environment.

A stand-in `gs` is first on PATH for the bot and its worker: any PostScript decode shows in its
log, so "no decoder but PNG, JPEG and WebP runs" is checked, not assumed.
"""

from __future__ import annotations

import io
import os
import re
import stat
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio
from PIL import Image

from generation.jobs import JobOwner, JobStatus
from generation.request import build_request
from tests.bot.helpers import (
    StudioFactory,
    StudioWorld,
    answer,
    job_count,
    job_id_of,
    paused,
    private_reply,
    studio_people,
    text_of,
    wait_for_status,
)
from tests.discord import InteractionRecord, Message
from tests.discord.world import User, World
from tests.generation.hostile_images import (
    BOMBS,
    DAMAGED_EXIF,
    DISGUISES,
    EPS,
    MODES,
    TRUNCATED,
    encoded,
    forget_ghostscript,
    ghostscript_trap,
    many_scans_jpeg,
    noise,
    path_with,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = "not-for-workers-0123456789"
STALL_TIMEOUT_S = 0.5  # the download timeout while a download never answers (else the default)
BLOCKED = "gore"
MENTION_OR_TIME = re.compile(r"(?<!\\)<(?:@|t:0:)")  # the prompt's, rendered by Discord
UNESCAPED_LINK = re.compile(r"(?<!\\)\[[^\]]*\]\(\s*<?https?://")  # Discord's masked link


def people() -> World:
    world = studio_people()
    world.add_user("mallory")
    world.users["otherbot"] = User(world.ids.next(), "otherbot", (), bot=True)
    return world


@pytest.fixture(scope="module")
def gs_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The trap's log; secrets in the environment the worker is started from."""
    folder = tmp_path_factory.mktemp("trap")
    log = ghostscript_trap(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", path_with(folder))
        patch.setenv("DISCORD_TOKEN", SECRET)
        patch.setenv("HF_TOKEN", SECRET)
        forget_ghostscript()
        yield log
    forget_ghostscript()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def studio(studio_with: StudioFactory, gs_log: Path) -> Iterator[StudioWorld]:
    # guild_ids empty: commands are synced globally, as with the default configuration
    async with studio_with(people(), guild_ids=[]) as world:
        await world.database.block_term(world.fake.world.guild_id, BLOCKED, by=1)
        yield world


def trap_runs(log: Path) -> str:
    """What the stand-in `gs` was run with ("" when it never ran)."""
    return log.read_text() if log.exists() else ""


async def attach(
    studio: StudioWorld, user: User, upload: tuple[str, bytes, str], **options: object
) -> InteractionRecord:
    return await studio.fake.slash(
        user, "imagine", {"prompt": "a boat", **options}, attachments=[upload]
    )


# ---- attachments --------------------------------------------------------------------------------

_MB26 = 26 * 2**20
PNG = "image/png"
SMALL = encoded(noise((8, 8)), "PNG")
NOT_ACCEPTED = "not a PNG, JPEG or WebP"
HOSTILE: dict[str, tuple[tuple[str, bytes, str], int | bytes | None, str]] = {
    # id: ((filename, bytes, content type), how the CDN serves it instead, expected sentence)
    **{
        f"{name} as drawing.png": (("drawing.png", data, PNG), ..., NOT_ACCEPTED)
        for name, data in DISGUISES.items()
    },
    **{
        f"bomb: {name}": (("big.png", make(), "image/png"), ..., "up to 40 megapixels")
        for name, make in BOMBS.items()
    },
    **{
        f"truncated {name}": (("cut.png", data, "image/png"), ..., "damaged or cut off")
        for name, data in TRUNCATED.items()
    },
    "a JPEG of 33 progressive scans": (
        ("scans.jpg", many_scans_jpeg(33), "image/jpeg"), ..., "more than 32 progressive scans"
    ),
    "PostScript sent as image/jpeg": (("a.jpg", EPS, "image/jpeg"), ..., NOT_ACCEPTED),
    "PostScript with no content type": (("a.png", EPS, ""), ..., NOT_ACCEPTED),
    "declared larger than 25 MiB": (("huge.png", bytes(_MB26), PNG), ..., "larger than 25 MiB"),
    "served larger than declared": (
        ("small.png", SMALL, PNG),
        bytes(_MB26),
        "larger than 25 MiB",
    ),
    "download answers 404": (("gone.png", SMALL, PNG), 404, "HTTP 404"),
    "download answers 500": (("oops.png", SMALL, PNG), 500, "HTTP 500"),
    "download never answers": (
        ("slow.png", SMALL, PNG),
        None,
        f"did not arrive within {STALL_TIMEOUT_S:g} s",
    ),
}  # fmt: skip


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's, from 89 MP
@pytest.mark.parametrize("case", list(HOSTILE))
async def test_hostile_attachments_are_refused_with_a_sentence_and_queue_nothing(
    studio: StudioWorld, gs_log: Path, case: str
) -> None:
    upload, serving, expected = HOSTILE[case]
    bot, settings = studio.bot, studio.bot.settings
    if serving is not ...:
        studio.fake.attachment_serving[upload[0]] = serving
    if serving is None:  # waiting for it is the test: no need to wait the default 20 s
        bot.settings = replace(settings, download_timeout_s=STALL_TIMEOUT_S)
    before = await job_count(studio.database)
    try:
        reply = await private_reply(
            studio.fake, await attach(studio, studio.fake.user("mallory"), upload)
        )
    finally:
        studio.fake.attachment_serving.pop(upload[0], None)
        bot.settings = settings

    assert expected in reply
    assert "Something went wrong" not in reply
    assert await job_count(studio.database) == before
    assert trap_runs(gs_log) == ""


ACCEPTED: dict[str, tuple[tuple[str, bytes, str], tuple[int, int, int], int]] = {
    **{name: (("start.png", c.data, PNG), c.rgb, c.tolerance) for name, c in MODES.items()},
    "png with no content type": (("start.png", MODES["png RGB"].data, ""), (10, 20, 30), 1),
    "png sent as text/plain": (("start.txt", MODES["png RGB"].data, "text/plain"), (10, 20, 30), 1),
    "jpeg named .png": (("start.png", MODES["jpeg RGB"].data, "image/png"), (200, 100, 50), 6),
    **{name: (("start.png", data, PNG), (10, 20, 30), 3) for name, data in DAMAGED_EXIF.items()},
}  # fmt: skip


@pytest.mark.parametrize("case", list(ACCEPTED))
async def test_every_accepted_image_is_stored_canonical_in_its_colour(
    studio: StudioWorld, case: str
) -> None:
    upload, rgb, tolerance = ACCEPTED[case]
    async with paused(studio):
        reply = await answer(studio.fake, await attach(studio, studio.fake.user("dave"), upload))
        job_id = job_id_of(reply)
        stored = await studio.database.get_job(job_id)
        await studio.services.pool.cancel(job_id)

    assert stored is not None
    with Image.open(io.BytesIO(stored.record.request.init_image or b"")) as image:
        assert (image.format, image.mode) == ("PNG", "RGB")
        pixel = image.getpixel((3, 3))
    assert all(abs(a - b) <= tolerance for a, b in zip(pixel, rgb, strict=True)), pixel


async def test_a_worker_refuses_a_hostile_init_image_by_itself(
    studio: StudioWorld, gs_log: Path
) -> None:
    # what a job recorded before canonical images (or any other front end) could hand a worker
    request = replace(
        build_request(studio.settings.catalogue, prompt="a boat", init_image=MODES["png RGB"].data),
        init_image=EPS,
    )
    queued = await studio.services.pool.submit(request, JobOwner(user_id=4242))

    await wait_for_status(studio.database, queued.job_id, JobStatus.FAILED)

    stored = await studio.database.get_job(queued.job_id)
    assert stored is not None
    assert stored.record.error == (
        "The init image cannot be used: That file is not a PNG, JPEG or WebP image."
    )
    assert trap_runs(gs_log) == ""


# ---- prompts: disguised terms, markup -----------------------------------------------------------

DISGUISED_PROMPTS = {
    "full-width": "a ｇｏｒｅ scene",
    "capitals": "a GORE scene",
    "cyrillic o": "a gоre scene",
    "greek omicron": "a gοre scene",
    "zero-width space": "a go\u200bre scene",
    "soft hyphen": "a go\u00adre scene",
    "word joiner": "a go\u2060re scene",
    "byte order mark": "a go\ufeffre scene",
    "invisible times": "a go\u2062re scene",
    "zero-width non-joiner": "a go\u200cre scene",
    "zero-width joiner": "a go\u200dre scene",
    "left-to-right mark": "a go\u200ere scene",
    "tag characters": "a go\U000e0067re scene",
    "combining mark forming no letter": "a go\u0332re scene",
    "greek capital epsilon": "a GORΕ scene",
    "regional indicators": "a 🇬🇴🇷🇪 scene",
    "negative squared letters": "a 🅶🅾🆁🅴 scene",
    "maths bold": "a 𝐠𝐨𝐫𝐞 scene",
    "small capitals": "a ɢᴏʀᴇ scene",
}


@pytest.mark.parametrize("field", ["prompt", "negative"])
@pytest.mark.parametrize("disguise", list(DISGUISED_PROMPTS))
async def test_a_disguised_blocked_term_is_refused(
    studio: StudioWorld, disguise: str, field: str
) -> None:
    text = DISGUISED_PROMPTS[disguise]
    options = {"prompt": text} if field == "prompt" else {"prompt": "a boat", "negative": text}
    before = await job_count(studio.database)

    ix = await studio.fake.slash(studio.fake.user("mallory"), "imagine", options)

    assert "contains a term this server has blocked" in await private_reply(studio.fake, ix)
    assert await job_count(studio.database) == before


async def test_a_disguised_blocked_term_is_refused_as_a_personal_default(
    studio: StudioWorld,
) -> None:
    mallory = studio.fake.user("mallory")

    ix = await studio.fake.slash(mallory, "settings", {"negative": "ｇｏｒｅ"})

    assert "contains a term this server has blocked" in await private_reply(studio.fake, ix)
    assert (await studio.database.get_user(mallory.id)).default_negative_prompt is None


async def test_a_word_near_a_blocked_term_passes_and_is_kept_as_written(
    studio: StudioWorld,
) -> None:
    prompt = "a ｇｏｒｇｅｏｕｓ gorge, an ogre, göre, gøre"  # Turkish, Danish: not disguises
    async with paused(studio):
        ix = await studio.fake.slash(studio.fake.user("erin"), "imagine", {"prompt": prompt})
        job_id = job_id_of(await answer(studio.fake, ix))
        stored = await studio.database.get_job(job_id)
        await studio.services.pool.cancel(job_id)

    assert stored is not None
    assert stored.record.request.prompt == prompt


MARKUP = "[free nitro](https://evil.example) **loud** <@123456789012345678> <t:0:R>"
LIVE_URL = re.compile(r"[A-Za-z]://")  # Discord links (and previews) `scheme://…` only


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def finished(studio: StudioWorld) -> Message:
    """Frank's finished job, with markup in its prompt."""
    ix = await studio.fake.slash(studio.fake.user("frank"), "imagine", {"prompt": MARKUP})
    job_id = job_id_of(await answer(studio.fake, ix))
    await studio.delivered(job_id)
    return await studio.result_of(job_id)


async def test_markup_in_a_prompt_is_shown_as_text(studio: StudioWorld, finished: Message) -> None:
    fake = studio.fake
    frank = fake.user("frank")
    history = await answer(fake, await fake.slash(frank, "history"))
    info = await answer(
        fake, await fake.click(frank, finished, f"atelier:info:{job_id_of(finished)}")
    )

    for message in (finished, history, info):
        shown = text_of(message)
        assert "free nitro" in shown
        assert not UNESCAPED_LINK.search(shown), shown
        assert "\\*\\*loud\\*\\*" in shown
        assert not MENTION_OR_TIME.search(shown), shown
        assert "evil.example" in shown
        assert not LIVE_URL.search(shown), shown


async def test_another_bots_reaction_starts_nothing(studio: StudioWorld, finished: Message) -> None:
    fake = studio.fake
    other, frank = fake.user("otherbot"), fake.user("frank")
    before = await job_count(studio.database)

    await fake.react(other, finished, "🎲")
    await fake.react(frank, finished, "🎲")  # after the bot's: its job shows that both were seen

    reroll = await fake.wait_for_message(
        lambda m: (
            m.id != finished.id
            and any(e.get("title", "").startswith("Job ") for e in m.embeds)
            and job_id_of(m) > job_id_of(finished)
        )
    )
    await studio.services.pool.cancel(job_id_of(reroll))
    assert await job_count(studio.database) == before + 1
    assert (await studio.database.history(other.id, limit=10)).jobs == []
    assert fake.dms(other) == []


async def test_the_queue_views_do_not_load_init_images(studio: StudioWorld) -> None:
    fake, pool = studio.fake, studio.services.pool
    dave = fake.user("dave")
    image = encoded(noise((2048, 1365)), "PNG")  # 8 MiB of noise
    request = build_request(studio.settings.catalogue, prompt="a heavy start", init_image=image)
    async with paused(studio):
        queued = await pool.submit(request, JobOwner(user_id=dave.id))
        tracemalloc.start()
        try:
            shown = text_of(await answer(fake, await fake.slash(dave, "queue")))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            await pool.cancel(queued.job_id)

    assert f"`{queued.job_id}` a heavy start" in shown
    assert peak < len(image) / 4, f"/queue took {peak:,} bytes; the init image is {len(image):,}"


# ---- where commands work -------------------------------------------------------------------------


async def test_commands_are_declared_and_enforced_guild_only_by_default(
    studio: StudioWorld,
) -> None:
    fake = studio.fake
    mallory = fake.user("mallory")
    imagine = fake.command("imagine", guild=False)
    assert imagine is not None
    assert imagine["contexts"] == [0]  # guilds only
    assert imagine["integration_types"] == [0]  # installed to servers only
    before = await job_count(studio.database)

    # a client that ignores the declaration: the bot itself refuses
    ix = await fake.slash(
        mallory, "imagine", {"prompt": "a gore scene"}, channel=fake.world.dm_channel(mallory)
    )

    assert "I only work in servers" in await private_reply(fake, ix)
    assert await job_count(studio.database) == before


async def test_with_dms_allowed_dm_jobs_obey_the_installation_blocklist(
    studio_with: StudioFactory,
) -> None:
    async with studio_with(people(), guild_ids=[], allow_dms=True, dm_blocklist=["gore*"]) as dm:
        fake = dm.fake
        erin = fake.user("erin")
        channel = fake.world.dm_channel(erin)
        imagine = fake.command("imagine", guild=False)
        assert imagine is not None
        assert sorted(imagine["contexts"]) == [0, 1]

        refused = await fake.slash(erin, "imagine", {"prompt": "ｇｏｒｅｆｅｓｔ"}, channel=channel)
        assert "contains a term this bot has blocked" in await private_reply(fake, refused)

        async with paused(dm):
            ix = await fake.slash(erin, "imagine", {"prompt": "a lighthouse"}, channel=channel)
            job_id = job_id_of(await answer(fake, ix))
            stored = await dm.database.get_job(job_id)
            await dm.services.pool.cancel(job_id)
        assert stored is not None
        assert stored.record.owner.guild_id is None


# ---- secrets and files ---------------------------------------------------------------------------


def _worker_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid() and b"generation.workers.child" in command:
            pids.append(int(entry.name))
    return pids


def _environment(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


async def test_workers_get_only_the_environment_they_need(studio: StudioWorld) -> None:
    pids = _worker_pids()
    assert pids

    for pid in pids:
        environment = _environment(pid)
        assert "DISCORD_TOKEN" not in environment
        assert "HF_TOKEN" not in environment
        assert SECRET not in "".join(environment.values())
        assert "PYTHONPATH" in environment
        assert "PATH" in environment


async def test_everything_the_bot_writes_is_private(studio: StudioWorld, finished: Message) -> None:
    data_dir = studio.settings.database_path.parent
    found = [data_dir, *data_dir.rglob("*")]
    assert studio.settings.images_dir in found
    assert any(path.name.endswith("-wal") for path in found)
    assert sum(1 for path in found if path.suffix == ".png") >= 1

    for path in found:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"


@pytest.mark.parametrize(
    ("options", "upload"),
    [
        ({"aspect": MARKUP}, None),
        ({"model": MARKUP}, None),
        ({"aspect": f"`tick {MARKUP}"}, None),
        ({"model": f"`tick {MARKUP}"}, None),
        ({}, (f"`tick {MARKUP}.png", b"not an image", PNG)),
    ],
)
async def test_markup_in_a_refused_value_is_shown_as_text(
    studio: StudioWorld, options: dict[str, str], upload: tuple[str, bytes, str] | None
) -> None:
    fake = studio.fake
    ix = await fake.slash(
        fake.user("mallory"),
        "imagine",
        {"prompt": "a boat", **options},
        attachments=[upload] if upload else [],
    )

    reply = await private_reply(fake, ix)

    assert "free nitro" in reply
    assert not UNESCAPED_LINK.search(reply), reply
    assert not MENTION_OR_TIME.search(reply), reply
    assert not LIVE_URL.search(reply), reply
    if "`tick" in str(options) + str(upload):
        assert "\\`tick" in reply  # escaped once: shown as a backtick, opening no code span
    assert "\\\\" not in reply  # never escaped twice


@pytest.mark.parametrize(
    ("prompt", "channel", "expected"),
    [
        ("a gore scene", None, "contains a term this server has blocked"),
        ("a boat", "dm", "I only work in servers"),
    ],
)
async def test_what_costs_nothing_is_checked_before_an_attachment_is_downloaded(
    studio: StudioWorld, prompt: str, channel: str | None, expected: str
) -> None:
    fake = studio.fake
    mallory = fake.user("mallory")
    fake.attachment_serving["never.png"] = None  # a download would hang for 20 s
    try:
        ix = await fake.slash(
            mallory,
            "imagine",
            {"prompt": prompt},
            attachments=[("never.png", SMALL, PNG)],
            channel=fake.world.dm_channel(mallory) if channel == "dm" else None,
        )
        reply = await private_reply(fake, ix)
    finally:
        fake.attachment_serving.pop("never.png", None)

    assert expected in reply


async def test_a_full_queue_is_told_before_an_attachment_is_downloaded(
    studio: StudioWorld,
) -> None:
    fake, pool = studio.fake, studio.services.pool
    erin = fake.user("erin")
    request = build_request(studio.settings.catalogue, prompt="a boat")
    fake.attachment_serving["never.png"] = None  # a download would hang for 20 s
    async with paused(studio):
        await studio.database.set_limits(erin.id, max_queued=2, by=1)
        owner = (await studio.database.get_user(erin.id)).owner()
        waiting = [(await pool.submit(request, owner)).job_id for _ in range(2)]
        try:
            ix = await fake.slash(
                erin, "imagine", {"prompt": "a boat"}, attachments=[("never.png", SMALL, PNG)]
            )
            reply = await private_reply(fake, ix)
        finally:
            fake.attachment_serving.pop("never.png", None)
            await studio.database.set_limits(erin.id, max_queued=None, by=1)
            for job_id in waiting:
                await pool.cancel(job_id)

    assert "You already have 2 jobs waiting" in reply
