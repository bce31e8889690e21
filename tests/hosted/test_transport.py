"""What the network and the API may do besides the happy path, through the real client and
backend against the fake BFL API: large chunked samples, redirects, oversized replies, tasks that
never finish, samples of the wrong size, errors from the delivery host, a 402 while polling."""

from __future__ import annotations

import asyncio
import socket
import threading
from contextlib import AbstractContextManager

import aiohttp
import pytest

import generation.hosted.samples as samples
from generation.hosted.backend import HostedBackend, HostedProgress
from generation.hosted.client import MAX_REPLY_BYTES, ApiError, BflClient
from generation.hosted.outcomes import SENTENCES, Outcome
from generation.hosted.settings import ApiSettings
from generation.models import Catalogue
from storage import Database
from tests.hosted.conftest import FAST, new_job, settings
from tests.hosted.fake_bfl import KEY, FakeBfl


async def test_a_realistic_chunked_sample_is_read_in_full(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    fake.noisy = True  # ~2.3 MB of PNG, sent in 64 KiB chunks
    job_id, request = await new_job(db, catalogue, width=1024, height=768)
    result = await backend.run(job_id, request)
    assert result.outcome is Outcome.READY, result.admin_note
    assert (result.images[0].width, result.images[0].height) == (1024, 768)


@pytest.mark.parametrize("kind", ["submit", "poll", "credits"])
async def test_a_redirect_never_carries_the_key_elsewhere(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue, kind: str
) -> None:
    fake.redirect = kind
    if kind == "credits":
        assert await backend.probe() is True  # no answer: nothing changes
    else:
        job_id, request = await new_job(db, catalogue)
        result = await backend.run(job_id, request)
        assert result.outcome is Outcome.BAD_REPLY
        assert "redirect" in (result.admin_note or "")
    assert fake.stolen_keys == []


async def test_an_oversized_json_reply_is_refused_without_reading_it_all(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    fake.reply_padding = 2 * MAX_REPLY_BYTES
    job_id, request = await new_job(db, catalogue)
    result = await backend.run(job_id, request)
    assert result.outcome is Outcome.BAD_REPLY
    assert "larger than 1 MiB" in (result.admin_note or "")


async def test_a_task_pending_past_the_cap_ends_with_a_sentence(
    fake: FakeBfl, db: Database, catalogue: Catalogue
) -> None:
    now = [1000.0]
    backend = HostedBackend(settings(fake), db, timing=FAST, clock=lambda: now[0])
    fake.scripts = [["Pending:0.1"]]  # forever

    def later(progress: HostedProgress) -> None:
        if progress.state == "pending":
            now[0] += FAST.max_pending / 2  # past the cap on the third poll

    try:
        job_id, request = await new_job(db, catalogue)
        result = await backend.run(job_id, request, later)
    finally:
        await backend.close()
    assert result.outcome is Outcome.TIMED_OUT
    assert result.reason == SENTENCES[Outcome.TIMED_OUT]
    assert result.cost == 4  # charged all the same


async def test_a_sample_of_another_size_is_refused(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    fake.sample_size = (2048, 2304)
    job_id, request = await new_job(db, catalogue, model="flux-2-pro", width=2048, height=2048)
    result = await backend.run(job_id, request)
    assert result.outcome is Outcome.BAD_REPLY
    assert "2048x2304 sample for a 2048x2048 request" in (result.admin_note or "")
    assert result.images == ()


async def test_the_sample_is_decoded_off_the_event_loop(
    fake: FakeBfl,
    backend: HostedBackend,
    db: Database,
    catalogue: Catalogue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop_thread = threading.get_ident()
    decoded_on: list[int] = []
    real = samples.opened

    def watched(data: bytes) -> AbstractContextManager:
        decoded_on.append(threading.get_ident())
        return real(data)

    monkeypatch.setattr(samples, "opened", watched)  # records the thread, decodes for real
    job_id, request = await new_job(db, catalogue, width=512, height=512)
    result = await backend.run(job_id, request)
    assert result.outcome is Outcome.READY
    assert len(decoded_on) == 1
    assert decoded_on[0] != loop_thread


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refusal_by_the_delivery_host_is_not_blamed_on_the_key(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue, status: int
) -> None:
    fake.faults["download"] = [status]
    job_id, request = await new_job(db, catalogue)
    result = await backend.run(job_id, request)
    assert result.outcome is Outcome.EXPIRED
    assert result.admin_note is None


async def test_another_delivery_error_is_a_bad_reply_not_a_credit_problem(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    fake.faults["download"] = [402]
    job_id, request = await new_job(db, catalogue)
    result = await backend.run(job_id, request)
    assert result.outcome is Outcome.BAD_REPLY
    assert "sample host answered HTTP 402" in (result.admin_note or "")
    assert not backend.gate.paused


async def test_a_402_while_polling_pauses_api_jobs_with_a_sentence(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    fake.faults["poll"] = [402]
    job_id, request = await new_job(db, catalogue)
    result = await backend.run(job_id, request)
    assert result.outcome is Outcome.NO_CREDITS
    assert backend.gate.paused
    assert (result.admin_note or "").startswith("Black Forest Labs' account is out of credits")
    second_id, _ = await new_job(db, catalogue)
    assert (await backend.run(second_id, request)).outcome is Outcome.NO_CREDITS
    assert len(fake.submitted) == 1


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("steps", True, "body.steps"),
        ("steps", 20.5, "body.steps"),
        ("guidance", "5", "body.guidance"),
        ("prompt_upsampling", 1, "body.prompt_upsampling"),
        ("seed", -1, "body.seed"),
        ("seed", 2**64, "body.seed"),
        ("input_image", "R0lGODlhAQABAAAAACw=", "body.input_image"),  # a GIF
    ],
)
async def test_the_fake_refuses_what_bfl_documents_as_invalid(
    fake: FakeBfl, field: str, value: object, words: str
) -> None:
    body = {"prompt": "x", "width": 1024, "height": 1024, field: value}
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ApiError) as refused:
            await BflClient(settings(fake), session).submit("flux-2-flex", body)
    assert refused.value.status == 422
    assert words in refused.value.detail
    assert fake.tasks == {}


async def test_the_fake_refuses_raw_that_is_not_a_boolean(fake: FakeBfl) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ApiError) as refused:
            await BflClient(settings(fake), session).submit(
                "flux-pro-1.1-ultra", {"prompt": "x", "raw": "yes"}
            )
    assert "body.raw" in refused.value.detail
    assert KEY not in refused.value.detail


async def test_a_streamed_reply_arrives_whole(fake: FakeBfl) -> None:
    """Control: the streamed replies of the fake arrive in pieces and are still whole."""
    fake.reply_padding = 300_000
    async with aiohttp.ClientSession() as session:
        client = BflClient(settings(fake), session)
        submitted = await client.submit("flux-pro-1.1", {"prompt": "x"})
        polled = await asyncio.wait_for(client.poll(submitted.polling_url), 10)
    assert polled.status == "Pending"


async def test_a_submit_that_never_reached_the_api_is_retried_and_not_counted(
    db: Database, catalogue: Catalogue
) -> None:
    with socket.socket() as probe:  # a port nothing listens on: no connection is made
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = ApiSettings(key=KEY, base_url=f"http://127.0.0.1:{port}")
    closed = HostedBackend(nowhere, db, timing=FAST)
    try:
        job_id, request = await new_job(db, catalogue)
        seen: list[HostedProgress] = []
        result = await closed.run(job_id, request, seen.append)
    finally:
        await closed.close()
    assert result.outcome is Outcome.UNAVAILABLE  # retried for the whole patience, then given up
    assert result.cost == 0
    assert await db.hosted_tasks(job_id) == []  # nothing is recorded as possibly sent
    assert [p.state for p in seen].count("retrying") > 1
    assert "trying again" in seen[0].detail


async def test_refused_submits_leave_no_record_of_a_send(
    fake: FakeBfl, backend: HostedBackend, db: Database, catalogue: Catalogue
) -> None:
    fake.faults["submit"] = [429, 503, 429]
    job_id, request = await new_job(db, catalogue)
    result = await backend.run(job_id, request)
    assert result.outcome is Outcome.READY
    assert len(fake.submitted) == 1
    [task] = await db.hosted_tasks(job_id)
    assert not task.sending
    assert task.cost == 4
