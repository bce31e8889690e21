"""The bot's pure parts: upload fitting, progress text, derived requests, error replies."""

from __future__ import annotations

import io
import logging

import pytest
from PIL import Image

from bot import derived
from bot.attachments import fit_upload, limit_note
from bot.blocklist import first_blocked_term, term_matches
from bot.errors import NotYours, UserError, describe
from bot.ui.progress import Phase, ProgressState, format_duration, progress_bar, status_line
from generation.errors import OutOfMemory
from generation.jobs import JobState
from generation.models import Catalogue
from generation.request import JobKind, RequestError, build_request
from tests.snapshots import snapshot


def noisy_png(side: int) -> bytes:
    image = Image.effect_noise((side, side), 80).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_image_that_fits_is_sent_as_the_original_png() -> None:
    png = noisy_png(64)
    upload = fit_upload("atelier-1-1", png, len(png))
    assert upload.filename == "atelier-1-1.png"
    assert upload.data == png
    assert not upload.reencoded
    assert limit_note([upload], len(png)) is None


def test_an_oversized_image_is_reencoded_under_the_limit_and_said_so() -> None:
    png = noisy_png(256)
    limit = len(png) // 4

    upload = fit_upload("atelier-1-2", png, limit)

    assert upload.reencoded
    assert upload.filename == "atelier-1-2.jpg"
    assert len(upload.data) <= limit
    with Image.open(io.BytesIO(upload.data)) as image:
        assert image.format == "JPEG"
    note = limit_note([fit_upload("a", png, len(png)), upload], limit)
    assert note is not None
    assert note.startswith("Image 2 re-encoded")
    assert "KiB" in note


def test_a_tiny_limit_still_gets_the_smallest_jpeg_rather_than_nothing() -> None:
    upload = fit_upload("x", noisy_png(512), 2_000)
    assert upload.reencoded
    assert len(upload.data) <= 2_000


def test_the_progress_message_shows_each_snapshot_as_it_is() -> None:
    waiting = snapshot(7, position=3, eta_s=75)
    assert status_line(ProgressState.of(waiting)) == (
        "⏳ Queued — #3 in the queue, starts in about 1 min 15 s."
    )
    paused = snapshot(7, position=3, eta_s=None)
    assert status_line(ProgressState.of(paused)) == (
        "⏳ Queued — #3 in the queue, starts once an admin resumes the queue."
    )
    stranded = snapshot(7, position=3, eta_s=None, waiting_for="cuda:0 is not working")
    assert "waiting: cuda:0 is not working" in status_line(ProgressState.of(stranded))

    loading = snapshot(7, JobState.LOADING, worker="cuda:1", total=4)
    assert status_line(ProgressState.of(loading)) == (
        "📦 Loading the model on `cuda:1` before the first step…"
    )
    running = ProgressState.of(
        snapshot(7, JobState.RUNNING, worker="cuda:1", step=2, total=4, preview=b"png")
    )
    assert running.phase is Phase.RUNNING
    assert running.preview == b"png"
    assert "on `cuda:1`" in status_line(running)
    assert "2/4" in status_line(running)
    on_api = status_line(ProgressState.of(snapshot(7, JobState.HOSTED, worker="bfl-api")))
    assert "on `bfl-api`" in on_api  # an API job (no GPU) waits for the hosted API's reply

    stalled = snapshot(
        7,
        JobState.SAVING,
        worker="cuda:1",
        step=4,
        total=4,
        problem="The disk is full.",
        retry_in_s=5.0,
    )
    assert status_line(ProgressState.of(stalled)).endswith(
        "⚠️ The disk is full. Trying again in 5 s. Your job is kept."
    )
    given_up = snapshot(7, JobState.SAVING, step=4, total=4, problem="The disk is full.")
    assert status_line(ProgressState.of(given_up)).endswith(
        "⚠️ The disk is full. It is tried again when the bot starts again. Your job is kept."
    )

    # a stall never hides what happened meanwhile: a cancel asked for, a failure
    cancelling = snapshot(7, JobState.SAVING, problem="The disk is full.", cancelling=True)
    assert status_line(ProgressState.of(cancelling)) == "🚫 Cancelling…\n⚠️ The disk is full. " + (
        "It is tried again when the bot starts again."
    )
    failing = snapshot(
        7, JobState.SAVING, step=2, total=4, error="The GPU ran out of memory.", problem="Full."
    )
    assert status_line(ProgressState.of(failing)) == (
        "⚠️ Failed: The GPU ran out of memory.\n⚠️ Full. It is tried again when the bot starts again."
    )

    done = ProgressState.of(snapshot(7, JobState.DONE, step=3, total=4, image_count=1))
    assert (done.phase, done.step) == (Phase.FINISHED, 4)
    failed = ProgressState.of(
        snapshot(7, JobState.FAILED, error="The GPU ran out of memory.", error_kind="oom")
    )
    assert failed.phase.is_final
    assert "ran out of memory" in status_line(failed)


def test_durations_and_bars_read_naturally() -> None:
    assert [format_duration(s) for s in (None, 4.4, 60, 3725)] == [
        "unknown",
        "4 s",
        "1 min",
        "1 h 2 min",
    ]
    assert progress_bar(5, 10, width=4) == "▰▰▱▱ 5/10"
    assert progress_bar(0, 0) == "starting…"


@pytest.mark.parametrize(
    ("term", "prompt", "blocked"),
    [
        ("gore", "a gore scene", True),
        ("gore", "Gore!", True),
        ("gore", "gorgeous mountains", False),
        ("gore*", "gorefest", True),
        ("red panda", "a RED  PANDA", False),  # phrases match as written (single spaces)
        ("red panda", "a red panda eating", True),
    ],
)
def test_blocklist_terms_match_whole_words(term: str, prompt: str, blocked: bool) -> None:
    assert term_matches(term, prompt) is blocked
    assert first_blocked_term(["nothing", term], prompt) == (term if blocked else None)


def test_rerun_keeps_seeds_and_reroll_changes_them() -> None:
    catalogue = Catalogue.builtin()
    request = build_request(catalogue, prompt="a fox", seed=10, count=3)

    again = derived.rerun(catalogue, request, 5)
    one = derived.rerun(catalogue, request, 5, index=2)
    other = derived.reroll(catalogue, request, 5)

    assert again.seeds == (10, 11, 12)
    assert again.kind is JobKind.RERUN
    assert again.parent_job == 5
    assert one.seeds == (12,)
    assert other.count == 3
    assert other.seeds != request.seeds
    assert other.kind is JobKind.REROLL
    assert (again.prompt, again.width, again.steps) == (request.prompt, 1024, request.steps)


def test_vary_and_upscale_start_from_the_image_within_the_model_limits() -> None:
    catalogue = Catalogue.builtin()
    png = noisy_png(64)
    request = build_request(catalogue, prompt="a fox", seed=1, count=2, width=512, height=768)

    subtle = derived.vary(catalogue, request, 9, png)
    strong = derived.vary(catalogue, request, 9, png, strong=True)
    bigger = derived.upscale(catalogue, request, 9, png, seed=2)

    assert subtle.init_image == png
    assert subtle.strength < strong.strength
    assert subtle.count == 2
    assert subtle.kind is JobKind.VARY
    assert subtle.parent_job == 9
    assert (bigger.width, bigger.height, bigger.seeds) == (1024, 1536, (2,))
    # Doubling would pass the model's limits: the largest size it allows, same aspect.
    big = build_request(catalogue, prompt="a fox", width=1536, height=1536)
    assert derived.upscale(catalogue, big, 9, png, seed=1).width == 2048
    largest = build_request(catalogue, prompt="a fox", width=2048, height=2048)
    with pytest.raises(UserError, match="already at the largest size"):
        derived.upscale(catalogue, largest, 9, png, seed=1)


def test_domain_errors_read_as_they_are_and_others_get_a_logged_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert describe(NotYours("Not yours.")).message == "Not yours."
    assert describe(RequestError("steps", "Steps must be between 1 and 100.")).error_id is None
    assert "ran out of memory" in describe(OutOfMemory("The GPU ran out of memory.")).message

    with caplog.at_level(logging.ERROR):
        reply = describe(ZeroDivisionError("boom"))

    assert reply.error_id is not None
    assert reply.error_id in reply.message
    assert reply.error_id in caplog.text
    assert "ZeroDivisionError" in caplog.text
    assert "boom" not in reply.message
