"""Every documented outcome of an API job, end to end: the real client and backend against the
fake BFL API (real HTTP on three ports), tasks stored in a real SQLite database."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from generation.hosted.backend import HostedBackend, HostedProgress
from generation.hosted.outcomes import SENTENCES, Outcome
from generation.hosted.settings import ApiSettings
from generation.hosted.tasks import HostedTask
from generation.metadata import PARAMETERS_KEY, read_record
from generation.models import Catalogue
from storage import Database
from tests.hosted.conftest import FAST, new_job, settings
from tests.hosted.fake_bfl import KEY, FakeBfl, sample_png


def _png_of(seed: int, width: int, height: int) -> bytes:
    with Image.open(io.BytesIO(sample_png(seed, width, height))) as image:
        return image.convert("RGB").tobytes()


async def test_a_ready_job_gives_its_images_with_metadata_and_stores_its_tasks(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    fake.scripts = [["Pending:0.25", "Pending:0.75", "Ready"], ["Ready"]]
    job_id, request = await new_job(db, catalogue, count=2, width=512, height=768)
    seen: list[HostedProgress] = []

    result = await backend.run(job_id, request, seen.append)

    assert result.outcome is Outcome.READY
    assert result.reason is None
    assert [image.seed for image in result.images] == [42, 43]
    for image in result.images:
        with Image.open(io.BytesIO(image.png)) as decoded:
            assert decoded.format == "PNG"
            assert decoded.size == (512, 768)
            assert decoded.convert("RGB").tobytes() == _png_of(image.seed, 512, 768)
            assert "Model: flux-pro-1.1" in decoded.text[PARAMETERS_KEY]
        record = read_record(image.png)
        assert record["seed"] == image.seed
        assert record["request"]["model"] == "flux-pro-1.1"
        assert record["made_with"]["device_type"] == "bfl-api"
    assert result.cost == 8  # 4 credits an image, as the reply said
    tasks = await db.hosted_tasks(job_id)
    assert [t.index for t in tasks] == [0, 1]
    assert all(t.polling_url.startswith(fake.poll_url) for t in tasks)  # another port
    assert {p.progress for p in seen if p.state == "pending"} >= {0.25, 0.75}
    assert [body["seed"] for body in fake.submitted] == [42, 43]
    assert all(body["output_format"] == "png" for body in fake.submitted)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("Request Moderated", Outcome.REQUEST_MODERATED),
        ("Content Moderated", Outcome.CONTENT_MODERATED),
        ("Error", Outcome.FAILED),
        ("Failed", Outcome.FAILED),
        ("Task not found", Outcome.NOT_FOUND),
        ("Something new", Outcome.BAD_REPLY),
    ],
)
async def test_each_final_status_ends_the_job_with_its_sentence(
    fake: FakeBfl,
    backend: HostedBackend,
    db: Database,
    catalogue: Catalogue,
    status: str,
    outcome: Outcome,
) -> None:
    fake.scripts = [["Pending", status]]
    job_id, request = await new_job(db, catalogue)
    result = await backend.run(job_id, request)
    assert result.outcome is outcome
    assert result.reason == SENTENCES[outcome]
    assert result.images == ()
    assert result.cost == 4  # submitted: charged by the reply


async def test_a_rejected_request_is_logged_for_the_admins(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    fake.faults["submit"] = [422]
    job_id, request = await new_job(db, catalogue)
    result = await backend.run(job_id, request)
    assert result.outcome is Outcome.REFUSED
    assert "injected 422" in (result.admin_note or "")
    assert await db.hosted_tasks(job_id) == []


@pytest.mark.parametrize(("key", "status"), [("bfl_wrong", 403), ("", 401)])
async def test_a_bad_or_missing_key_tells_the_admins_and_never_shows_the_key(
    fake: FakeBfl, db: Database, catalogue: Catalogue, key: str, status: int
) -> None:
    backend = HostedBackend(settings(fake, key), db, timing=FAST)
    try:
        job_id, request = await new_job(db, catalogue)
        result = await backend.run(job_id, request)
    finally:
        await backend.close()
    assert result.outcome is Outcome.KEY_REFUSED
    assert "BFL_API_KEY" in (result.admin_note or "")
    assert key not in repr(settings(fake, key)) or not key
    assert fake.submitted == []


async def test_out_of_credits_pauses_api_jobs_once_until_a_probe_finds_credits(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    fake.credits = 2  # less than any image costs
    first_id, request = await new_job(db, catalogue)
    first = await backend.run(first_id, request)
    assert first.outcome is Outcome.NO_CREDITS
    assert first.cost == 0
    assert "out of credits" in (first.admin_note or "")

    second_id, _ = await new_job(db, catalogue)
    second = await backend.run(second_id, request)
    assert second.outcome is Outcome.NO_CREDITS
    assert second.admin_note is None  # the admins were told once
    assert await backend.probe() is False

    fake.credits = 100
    assert await backend.probe() is True
    third_id, _ = await new_job(db, catalogue)
    assert (await backend.run(third_id, request)).outcome is Outcome.READY


async def test_an_admin_resume_lifts_the_pause(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    fake.faults["submit"] = [402]
    job_id, request = await new_job(db, catalogue)
    assert (await backend.run(job_id, request)).outcome is Outcome.NO_CREDITS
    backend.gate.resume()
    assert (await backend.run(job_id, request)).outcome is Outcome.READY


async def test_too_many_active_tasks_waits_instead_of_failing(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    # Kontext [max] allows 6 active tasks per key: 6 held open, then a 7th job waits for one.
    fake.scripts = [["Pending"] for _ in range(6)]  # Pending until the test finishes them
    holders = [await new_job(db, catalogue, model="flux-kontext-max") for _ in range(7)]
    submitted = asyncio.Semaphore(0)

    def count(progress: HostedProgress) -> None:
        if progress.state == "submitted":
            submitted.release()

    held = [asyncio.create_task(backend.run(job, req, count)) for job, req in holders[:6]]
    for _ in range(6):
        await submitted.acquire()
    assert fake.active(settings(fake).key, "flux-kontext-max") == 6

    states: list[str] = []

    def finish_others_once_waiting(progress: HostedProgress) -> None:
        states.append(progress.state)
        if progress.state == "waiting":
            for task in fake.tasks.values():
                task.script = ["Ready"]

    job_id, request = holders[6]
    result = await backend.run(job_id, request, finish_others_once_waiting)
    assert result.outcome is Outcome.READY
    assert states[0] == "waiting"  # refused with 429 first, then sent: never failed
    assert all(r.outcome is Outcome.READY for r in await asyncio.gather(*held))


async def test_server_errors_are_retried_and_then_given_up(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    fake.faults = {"submit": [500, 503], "poll": [502], "download": [503]}
    job_id, request = await new_job(db, catalogue)
    assert (await backend.run(job_id, request)).outcome is Outcome.READY

    fake.faults = {"poll": [503] * 1000}
    job_id, request = await new_job(db, catalogue)
    result = await backend.run(job_id, request)
    assert result.outcome is Outcome.UNAVAILABLE
    assert result.reason == SENTENCES[Outcome.UNAVAILABLE]


async def test_a_restart_mid_poll_polls_the_stored_task_without_paying_again(
    fake: FakeBfl, db: Database, catalogue: Catalogue
) -> None:
    fake.scripts = [["Pending"] * 1000]
    job_id, request = await new_job(db, catalogue)
    before = HostedBackend(settings(fake), db, timing=FAST)
    polling = asyncio.Event()
    running = asyncio.create_task(
        before.run(job_id, request, lambda p: polling.set() if p.state == "pending" else None)
    )
    await polling.wait()
    running.cancel()  # the bot stops mid-poll
    with pytest.raises(asyncio.CancelledError):
        await running
    await before.close()

    task = next(iter(fake.tasks.values()))
    task.script = ["Ready"]
    after = HostedBackend(settings(fake), db, timing=FAST)
    try:
        result = await after.run(job_id, request)
    finally:
        await after.close()
    assert result.outcome is Outcome.READY
    assert len(result.images) == 1
    assert len(fake.submitted) == 1  # polled again, not resubmitted
    assert result.cost == 4


async def test_a_sample_that_expired_during_a_restart_fails_with_that_reason(
    fake: FakeBfl, db: Database, catalogue: Catalogue
) -> None:
    fake.scripts = [["Ready"]]
    job_id, request = await new_job(db, catalogue)
    fake.faults["download"] = [503] * 1000  # the first process never gets the sample
    before = HostedBackend(settings(fake), db, timing=FAST)
    assert (await before.run(job_id, request)).outcome is Outcome.UNAVAILABLE
    await before.close()

    fake.faults.clear()
    fake.now += 601  # back more than 10 minutes after Ready
    after = HostedBackend(settings(fake), db, timing=FAST)
    try:
        result = await after.run(job_id, request)
    finally:
        await after.close()
    assert result.outcome is Outcome.EXPIRED
    assert "expired" in (result.reason or "")
    assert len(fake.submitted) == 1


async def test_a_polling_url_on_a_foreign_host_never_gets_the_key(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    fake.polling_host = "http://collector.example.net"
    job_id, request = await new_job(db, catalogue)
    result = await backend.run(job_id, request)
    assert result.outcome is Outcome.BAD_REPLY
    assert "unexpected host" in (result.admin_note or "")


async def test_reference_images_are_sent_as_base64_and_priced(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    reference = sample_png(5, 1024, 1024)
    job_id, request = await new_job(
        db, catalogue, model="flux-2-pro", input_images=[reference, reference]
    )
    result = await backend.run(job_id, request)
    assert result.outcome is Outcome.READY
    body = fake.submitted[0]
    assert {"input_image", "input_image_2"} <= set(body)
    # 3 for the first output megapixel, 1.5 for each input megapixel (published prices)
    assert result.cost == 6
    assert catalogue.hosted["flux-2-pro"].estimate(request) == 6


def test_the_readme_quotes_what_a_person_sees_on_moderation() -> None:
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    for outcome in (Outcome.REQUEST_MODERATED, Outcome.CONTENT_MODERATED, Outcome.TIMED_OUT):
        assert SENTENCES[outcome] in readme


async def test_out_of_credits_on_a_several_image_job_tells_the_admins_once(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    fake.credits = 0
    job_id, request = await new_job(db, catalogue, count=4)
    result = await backend.run(job_id, request)
    assert result.outcome is Outcome.NO_CREDITS
    assert "out of credits" in (result.admin_note or "")
    assert result.images == ()


async def test_api_images_are_stored_like_local_ones_and_the_job_reads_back(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    reference = sample_png(8, 512, 512)
    job_id, request = await new_job(
        db, catalogue, model="flux-kontext-max", aspect="21:9", input_images=[reference]
    )
    await db.mark_running(job_id, "bfl-api")
    result = await backend.run(job_id, request)
    await db.mark_done(job_id, result.images, 0.0)

    stored = await db.get_job(job_id)
    assert stored is not None
    assert stored.record.request == request  # reference images and aspect ratio included
    assert stored.record.facts == result.images[0].facts
    png = await db.read_image(job_id, 0)
    assert png == result.images[0].png
    record = read_record(png)["request"]
    assert record["aspect_ratio"] == "21:9"
    assert "input_images" not in record  # megabytes: named by their hash instead
    assert record["input_images_sha256"] == [hashlib.sha256(reference).hexdigest()]
    assert fake.submitted[0]["aspect_ratio"] == "21:9"


async def test_a_partly_moderated_job_keeps_the_images_made_and_says_which_were_blocked(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    fake.seed_scripts = {43: ["Pending", "Content Moderated"], 45: ["Content Moderated"]}
    job_id, request = await new_job(db, catalogue, count=4)  # seeds 42-45

    result = await backend.run(job_id, request)

    assert result.outcome is Outcome.READY
    assert [(image.index, image.seed) for image in result.images] == [(0, 42), (2, 44)]
    assert result.reason == "⚠️ Images 2, 4 of 4 were blocked by Black Forest Labs' moderation."
    assert result.cost == 16  # BFL charged every task it accepted, the blocked ones too
    assert result.admin_note is None


async def test_images_missing_for_different_reasons_are_each_named(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    fake.seed_scripts = {42: ["Error"], 44: ["Request Moderated"]}
    job_id, request = await new_job(db, catalogue, count=3)

    result = await backend.run(job_id, request)

    assert [image.index for image in result.images] == [1]
    assert result.reason == (
        "⚠️ Image 1 of 3 was not made: Black Forest Labs' API reported an error.\n"
        "⚠️ Image 3 of 3 was refused by Black Forest Labs' moderation."
    )


async def test_a_job_with_every_image_blocked_fails_with_the_moderation_sentence(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    fake.seed_scripts = {42: ["Content Moderated"], 43: ["Content Moderated"]}
    job_id, request = await new_job(db, catalogue, count=2)

    result = await backend.run(job_id, request)

    assert (result.outcome, result.images) == (Outcome.CONTENT_MODERATED, ())
    assert result.reason == SENTENCES[Outcome.CONTENT_MODERATED]
    assert result.cost == 8


async def test_an_image_whose_submit_reply_was_lost_is_named_as_maybe_charged(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    job_id, request = await new_job(db, catalogue, count=2)
    await db.save_hosted_task(job_id, HostedTask.being_sent(1, 0.0))  # stopped while sent

    result = await backend.run(job_id, request)

    assert [image.index for image in result.images] == [0]
    assert result.reason == (
        "⚠️ Image 2 of 2 was sent, but its answer never came (the bot stopped or the "
        "connection broke): Black Forest Labs may have made and charged it, so it was not sent "
        "again and its estimated cost counts on the budgets."
    )
    assert len(fake.submitted) == 1  # never sent twice
    assert result.cost == 8  # the reply's 4 and the lost one's estimate


async def test_a_base_url_whose_prefix_the_api_lacks_names_the_variable_to_the_admins(
    fake: FakeBfl, db: Database, catalogue: Catalogue
) -> None:
    wrong = HostedBackend(
        ApiSettings(key=KEY, base_url=f"{fake.submit_url}/api"), db, timing=FAST
    )  # a proxy's prefix that is not there: every call answers 404
    job_id, request = await new_job(db, catalogue)
    try:
        result = await wrong.run(job_id, request)
    finally:
        await wrong.close()
    assert result.outcome is Outcome.REFUSED
    assert "check BFL_API_URL" in (result.admin_note or "")
    assert fake.submitted == []
