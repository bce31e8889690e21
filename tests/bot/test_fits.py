"""Property tests: every embed and message the bot builds for its listings and results fits
Discord's limits, for arbitrary queues (0-10,000 jobs), many people, GPUs and models, and
prompts of any length. Checked with the same rules the fake Discord enforces
(`tests.discord.limits`), on the JSON discord.py would send.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import discord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.actions import Action
from bot.attachments import Upload
from bot.commands.library import HistoryFilters, history_embed
from bot.targets import Message
from bot.ui.embeds import failure_content, parameters_embed, progress_embed
from bot.ui.fit import fit_lines
from bot.ui.listings import (
    admin_queue_embed,
    gpus_embed,
    info_embed,
    models_embed,
    stats_embed,
    user_queue_embed,
)
from bot.ui.progress import Phase, ProgressState
from bot.ui.results import REQUEST_BYTES, result_messages
from generation.hosted.catalogue import HOSTED_MODELS
from generation.jobs import JobOwner, JobRecord, JobSnapshot, JobState, JobStatus, Priority
from generation.models import Family, ModelSpec
from generation.pool import PoolSnapshot, WorkerMemory, WorkerState, WorkerStatus
from generation.request import MAX_COUNT, GenerationRequest
from storage import Usage
from tests.discord.limits import FormErrors, Route, check_message

MiB = 2**20
SNOWFLAKES = st.integers(min_value=1, max_value=2**63 - 1)
# Long texts are drawn on purpose (hypothesis's own text strategy seldom draws them).
TEXT = st.text(max_size=200) | st.builds(
    lambda piece, times: piece * times, st.text(min_size=1, max_size=4), st.integers(300, 2500)
)
NAMES = st.text(min_size=1, max_size=8) | st.text(min_size=90, max_size=100)
LOOSE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_fits(*, content: str | None = None, embed: discord.Embed | None = None, **extra: Any):
    """The message passes every check of the fake Discord."""
    payload: dict[str, Any] = {"content": content, **extra}
    if embed is not None:
        payload["embeds"] = [embed.to_dict()]
    errors = FormErrors()
    check_message(payload, Route.INTERACTION, errors)
    assert errors.tree == {}, errors.tree


def workers(max_size: int = 40) -> st.SearchStrategy[tuple[WorkerStatus, ...]]:
    worker = st.builds(
        WorkerStatus,
        id=NAMES,
        device=NAMES,
        state=st.sampled_from(WorkerState),
        job_id=st.none() | SNOWFLAKES,
        loaded=st.lists(NAMES, max_size=5).map(tuple),
        pinned=st.lists(NAMES, max_size=3).map(tuple),
        models=st.none() | st.lists(NAMES, max_size=5).map(tuple),
        pid=st.none(),
        restarts=st.integers(0, 10**6),
        model_loads=st.integers(0, 10**6),
        memory=st.builds(WorkerMemory, rss_mib=st.floats(0, 10**6)),
        last_error=st.none() | TEXT,
    )
    return st.lists(worker, max_size=max_size).map(tuple)


@st.composite
def snapshots(draw: st.DrawFn) -> PoolSnapshot:
    """A pool with up to 10,000 waiting jobs (the first ones listed, as the pool gives them)."""
    listed = draw(st.integers(0, 60))
    waiting = tuple(
        JobSnapshot(
            job_id=draw(SNOWFLAKES),
            owner=JobOwner(draw(SNOWFLAKES), priority=draw(st.sampled_from(Priority))),
            model=draw(NAMES),
            state=JobState.WAITING,
            position=position + 1,
            eta_s=draw(st.floats(0, 10**8)),
        )
        for position in range(listed)
    )
    queued = listed + draw(st.integers(0, 10_000 - listed))
    pool_workers = draw(workers())
    return PoolSnapshot(
        paused=draw(st.booleans()),
        accepting=True,
        queued=queued,
        running=sum(1 for w in pool_workers if w.job_id),
        queued_by_class={p: draw(st.integers(0, queued)) for p in Priority},
        waiting=waiting,
        workers=pool_workers,
        model_speeds={},
    )


def request(prompt: str, count: int = 4, model: str = "playground-v2.5") -> GenerationRequest:
    return GenerationRequest(
        model=model,
        prompt=prompt,
        negative_prompt=prompt,
        width=2048,
        height=2048,
        steps=50,
        guidance=3.0,
        scheduler="euler",
        seeds=tuple(range(2**31, 2**31 + count)),
    )


@st.composite
def records(draw: st.DrawFn, status: JobStatus | None = None) -> JobRecord:
    return JobRecord(
        id=draw(SNOWFLAKES),
        owner=JobOwner(user_id=draw(SNOWFLAKES)),
        request=request(draw(TEXT), draw(st.integers(1, MAX_COUNT)), draw(NAMES)),
        status=status or draw(st.sampled_from(JobStatus)),
        queued_at=draw(st.floats(0, 4 * 10**9)),
        error=draw(st.none() | TEXT),
    )


@LOOSE
@given(snapshots(), st.dictionaries(SNOWFLAKES, SNOWFLAKES))
def test_admin_queue_fits(snapshot: PoolSnapshot, owners: dict[int, int]) -> None:
    embed = admin_queue_embed(snapshot, owners)
    assert_fits(embed=embed)
    waiting = embed.description or ""
    if snapshot.queued > 0:
        listed = waiting.count("· job `")
        assert listed == snapshot.queued or waiting.endswith(
            f"… and {snapshot.queued - listed:,} more"
        )


@LOOSE
@given(st.lists(TEXT, max_size=200), st.integers(0, 10_000), snapshots())
def test_user_queue_fits(lines: list[str], hidden: int, snapshot: PoolSnapshot) -> None:
    assert_fits(embed=user_queue_embed(lines, hidden, snapshot))


@LOOSE
@given(
    st.lists(records(), max_size=10),
    st.builds(HistoryFilters, st.none() | NAMES, st.none() | st.text(max_size=40)),
)
def test_history_page_fits(jobs: list[JobRecord], filters: HistoryFilters) -> None:
    assert_fits(embed=history_embed(jobs, filters))


def usages(keys: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Usage]]:
    usage = st.builds(
        Usage,
        key=keys,
        jobs=st.integers(0, 10**9),
        images=st.integers(0, 10**9),
        gpu_seconds=st.floats(0, 10**12),
        mean_wait_s=st.none() | st.floats(0, 10**9),
    )
    return st.lists(usage, max_size=300)


@LOOSE
@given(NAMES, usages(SNOWFLAKES), usages(NAMES), st.integers(1, 300))
def test_admin_stats_fit(
    period: str, by_user: list[Usage], by_model: list[Usage], shown: int
) -> None:
    assert_fits(embed=stats_embed(period, by_user, by_model, shown))


def specs() -> st.SearchStrategy[list[ModelSpec]]:
    spec = st.builds(
        ModelSpec,
        name=NAMES,
        family=st.sampled_from(Family),
        source=NAMES,
        title=st.text(max_size=500),
        steps=st.just(4),
        guidance=st.just(0.0),
        schedulers=st.just(("euler",)),
    )
    return st.lists(spec, max_size=100)


@LOOSE
@given(snapshots(), specs(), TEXT)
def test_info_fits(snapshot: PoolSnapshot, models: list[ModelSpec], you: str) -> None:
    assert_fits(embed=info_embed(snapshot, models, you, HOSTED_MODELS))


@LOOSE
@given(workers(max_size=80))
def test_admin_gpus_and_models_fit(pool_workers: Sequence[WorkerStatus]) -> None:
    assert_fits(embed=gpus_embed(pool_workers))
    assert_fits(embed=models_embed(pool_workers))


def check_result(messages: list[Message], count: int) -> None:
    shown: list[str] = []
    for message in messages:
        components = message.view.to_components() if message.view else []
        assert_fits(content=message.content, components=components)
        files = message.uploads or ()
        assert len(files) <= 10
        assert sum(len(upload.data) for upload in files) <= REQUEST_BYTES - 64 * 2**10
        shown += [upload.filename for upload in files]
        custom_ids = [c["custom_id"] for row in components for c in row["components"]]
        assert any(":rerun:" in custom_id for custom_id in custom_ids)
    assert len(shown) == count  # every image once


@settings(max_examples=25, deadline=None)
@given(
    records(JobStatus.DONE),
    st.lists(st.integers(1, 24 * MiB), min_size=MAX_COUNT, max_size=MAX_COUNT),
)
def test_result_messages_fit(record: JobRecord, sizes: list[int]) -> None:
    sizes = sizes[: record.request.count]
    uploads = [
        Upload(f"atelier-{record.id}-{i + 1}.png", bytes(size)) for i, size in enumerate(sizes)
    ]
    every_button = set(Action)
    check_result(result_messages(record, uploads, ["a note " * 50], every_button), len(uploads))


@LOOSE
@given(records(), st.sampled_from(Phase), st.none() | TEXT, st.none() | NAMES)
def test_progress_parameters_and_failure_fit(
    record: JobRecord, phase: Phase, reason: str | None, worker: str | None
) -> None:
    state = ProgressState(record.id, phase=phase, reason=reason, worker=worker, position=10**4)
    assert_fits(embed=progress_embed(state, record.request, show_preview=True))
    assert_fits(embed=parameters_embed(record))
    assert_fits(content=failure_content(record, state))


@LOOSE
@given(st.lists(TEXT, max_size=500), st.integers(1, 5000), st.integers(0, 10**6), TEXT)
def test_fit_lines_stays_within_its_limit(
    lines: list[str], limit: int, hidden: int, empty: str
) -> None:
    text = fit_lines(lines, limit, hidden=hidden, empty=empty or "—")
    assert 0 < len(text) <= limit
    assert text.strip()
