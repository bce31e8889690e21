"""Metrics, the /healthz + /metrics endpoint over real HTTP, and structured, redacted logs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.observability import (
    HealthServer,
    Metrics,
    Observability,
    ObservabilityConfigError,
    ObservabilitySettings,
    bind,
    configure_logging,
    log_context,
    log_job_event,
    sqlite_writable,
)
from generation.jobs import (
    JobCancelled,
    JobFailed,
    JobFinished,
    JobProgress,
    JobQueued,
    JobSnapshot,
    JobStarted,
    JobState,
    Priority,
)
from tests.snapshots import snapshot

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789"


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, keyed by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def queued(metrics: Metrics) -> float:
    return sum(metrics.queue_length.labels(p.value)._value.get() for p in Priority)


def ended_jobs(metrics: Metrics) -> float:
    return sum(
        s.value for m in metrics.jobs.collect() for s in m.samples if s.name.endswith("_total")
    )


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


# ---- metrics from a sequence of events ----------------------------------------------------------


class Story:
    """Job events as the pool publishes them, each carrying the job's snapshot."""

    def __init__(self, metrics: Metrics, clock: Clock) -> None:
        self.metrics, self.clock = metrics, clock
        self.jobs: dict[int, JobSnapshot] = {}

    def _tell(self, make: Any, job_id: int, **changes: Any) -> None:
        job = self.jobs[job_id] = dataclasses.replace(self.jobs[job_id], **changes)
        self.metrics.observe(make(job=job))

    def queue(self, job_id: int, model: str = "flux-dev", priority: Any = Priority.NORMAL) -> None:
        self.jobs[job_id] = snapshot(job_id, model=model, priority=priority)
        queued = partial(JobQueued, job_id, 1, 0.0, entered=True)
        self._tell(queued, job_id, queued_at=self.clock.now)

    def move(self, job_id: int, position: int) -> None:
        self._tell(partial(JobQueued, job_id, position, 0.0), job_id, position=position)

    def start(self, job_id: int, worker: str) -> None:
        started = partial(JobStarted, job_id, worker)
        self._tell(
            started, job_id, state=JobState.RUNNING, worker=worker, started_at=self.clock.now
        )

    def step(self, job_id: int, step: int, total: int) -> None:
        self._tell(partial(JobProgress, job_id, step, total), job_id, step=step, total=total)

    def put_back(self, job_id: int) -> None:
        queued = partial(JobQueued, job_id, 1, 0.0, entered=True)
        self._tell(queued, job_id, state=JobState.WAITING, worker=None, queued_at=self.clock.now)

    def finish(self, job_id: int, images: int, gpu_seconds: float) -> None:
        finished = partial(JobFinished, job_id, images, gpu_seconds)
        self._tell(finished, job_id, state=JobState.DONE, image_count=images)

    def fail(self, job_id: int, reason: str, kind: str) -> None:
        failed = partial(JobFailed, job_id, reason, kind)
        self._tell(failed, job_id, state=JobState.FAILED, error=reason, error_kind=kind)

    def cancel(self, job_id: int) -> None:
        self._tell(partial(JobCancelled, job_id), job_id, state=JobState.CANCELLED)


def run_story(metrics: Metrics, clock: Clock) -> None:
    """Four jobs on two GPUs: one done, one failed, one cancelled while queued, one running."""
    story = Story(metrics, clock)
    story.queue(1, "flux-dev")
    story.queue(2, "playground-v2.5")
    story.queue(3, "flux-dev", Priority.RELAX)
    story.queue(4, "flux-schnell", Priority.ADMIN)
    clock.now += 2
    story.move(2, 1)  # a position update changes nothing
    story.start(1, "cuda:0")  # waited 2 s
    story.start(4, "cuda:1")  # waited 2 s
    clock.now += 3
    story.step(1, 1, 4)
    story.finish(1, 2, gpu_seconds=3.0)  # ran 3 s
    story.start(2, "cuda:0")  # waited 5 s
    story.cancel(3)  # never started
    clock.now += 1
    story.fail(2, "The GPU ran out of memory.", "out_of_memory")
    metrics.record_model_load("cuda:0", "flux-dev")
    metrics.record_model_load("cuda:0", "playground-v2.5")
    metrics.record_worker_restart("cuda:1")


def test_metric_values_match_a_sequence_of_events() -> None:
    clock = Clock()
    metrics = Metrics(clock=clock, busy_window_s=60)
    run_story(metrics, clock)
    clock.now += 4  # job 4 still runs on cuda:1: 8 s of the 10 s since start

    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    assert value(text, "atelier_queue_length", priority="normal") == 0
    assert value(text, "atelier_queue_length", priority="relax") == 0
    assert value(text, "atelier_queue_length", priority="admin") == 0
    assert value(text, "atelier_job_wait_seconds_count", model="flux-dev") == 1
    assert value(text, "atelier_job_wait_seconds_sum", model="flux-dev") == 2
    assert value(text, "atelier_job_wait_seconds_sum", model="playground-v2.5") == 5
    assert value(text, "atelier_job_wait_seconds_bucket", model="playground-v2.5", le="1.0") == 0
    assert value(text, "atelier_job_wait_seconds_bucket", model="playground-v2.5", le="5.0") == 1
    assert value(text, "atelier_job_run_seconds_sum", model="flux-dev") == 3
    assert ("atelier_job_run_seconds_count", (("model", "playground-v2.5"),)) not in samples(text)
    assert value(text, "atelier_jobs_total", model="flux-dev", outcome="done") == 1
    assert value(text, "atelier_jobs_total", model="flux-dev", outcome="cancelled") == 1
    assert value(text, "atelier_jobs_total", model="playground-v2.5", outcome="failed") == 1
    assert (
        value(
            text, "atelier_job_failures_total", model="playground-v2.5", error_kind="out_of_memory"
        )
        == 1
    )
    assert value(text, "atelier_images_total", model="flux-dev") == 2
    assert value(text, "atelier_model_loads_total", worker="cuda:0", model="flux-dev") == 1
    assert value(text, "atelier_worker_restarts_total", worker="cuda:1") == 1
    # cuda:0 ran job 1 (3 s) then job 2 (1 s) out of 10 s; cuda:1 has run job 4 for 8 s.
    assert value(text, "atelier_gpu_busy_seconds_total", worker="cuda:0") == 4
    assert value(text, "atelier_gpu_busy_ratio", worker="cuda:0") == pytest.approx(0.4)
    assert value(text, "atelier_gpu_busy_ratio", worker="cuda:1") == pytest.approx(0.8)
    assert metrics.running_jobs == 1  # only the running job's GPU time is still open


def test_queue_length_counts_waiting_jobs_per_priority_class() -> None:
    clock = Clock()
    metrics = Metrics(clock=clock)
    story = Story(metrics, clock)
    for job_id, priority in enumerate([Priority.NORMAL, Priority.NORMAL, Priority.RELAX], 1):
        story.queue(job_id, priority=priority)
    assert metrics.queue_length.labels("normal")._value.get() == 2
    story.start(1, "cuda:0")
    assert metrics.queue_length.labels("normal")._value.get() == 1
    # Its worker died: the pool puts the job back in the queue, and the GPU is idle again.
    clock.now += 3
    story.put_back(1)
    assert metrics.queue_length.labels("normal")._value.get() == 2
    assert metrics.queue_length.labels("relax")._value.get() == 1
    assert metrics.running_jobs == 0
    assert metrics.busy_seconds("cuda:0") == 3
    clock.now += 2
    story.start(1, "cuda:0")  # its second wait counts from when it was put back
    assert metrics.wait_seconds.labels("flux-dev")._sum.get() == 2


def test_busy_fraction_only_counts_the_recent_window() -> None:
    clock = Clock()
    metrics = Metrics(clock=clock, busy_window_s=10)
    story = Story(metrics, clock)
    story.queue(1)
    story.start(1, "cuda:0")
    clock.now += 5
    story.finish(1, 1, 5.0)
    clock.now += 20  # the busy interval is now older than the window
    assert metrics.busy_fraction("cuda:0") == 0
    assert metrics.busy_seconds("cuda:0") == 5


def test_the_next_job_announced_before_the_last_one_ended_keeps_both_busy_spans() -> None:
    clock = Clock()
    metrics = Metrics(clock=clock, busy_window_s=60)
    story = Story(metrics, clock)
    for job_id in (1, 2):
        story.queue(job_id)
    story.start(1, "cuda:0")
    clock.now += 4
    story.start(2, "cuda:0")  # the pool freed the worker before announcing
    story.finish(1, 1, 4.0)
    clock.now += 6
    story.finish(2, 1, 6.0)
    assert metrics.busy_seconds("cuda:0") == 10
    assert metrics.busy_fraction("cuda:0") == 1
    assert metrics.run_seconds.labels("flux-dev")._sum.get() == 10


def test_a_job_is_labelled_by_its_snapshot_whatever_the_metrics_saw_before() -> None:
    """Metrics keep no job records: a job's model and class come with each of its events."""
    clock = Clock()
    metrics = Metrics(clock=clock)
    story = Story(metrics, clock)
    story.jobs[9] = snapshot(9, model="flux-schnell", priority=Priority.RELAX)
    story.cancel(9)  # never seen queued here: still counted under its own model
    assert metrics.jobs.labels("flux-schnell", "cancelled")._value.get() == 1
    assert metrics.running_jobs == 0


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.record_worker_restart("cuda:0")
    assert second.worker_restarts.labels("cuda:0")._value.get() == 0


# ---- the HTTP endpoint --------------------------------------------------------------------------


async def test_healthz_and_metrics_over_http() -> None:
    clock = Clock()
    metrics = Metrics(clock=clock)
    state = {"discord": True}

    async def database_writable() -> bool:
        return True

    checks = {
        "discord": lambda: state["discord"],
        "database": database_writable,
        "workers": lambda: True,
    }
    async with HealthServer(checks, metrics.registry, port=0) as server:
        status, content_type, body = await get(f"{server.url}/healthz")
        assert status == 200
        assert content_type.startswith("application/json")
        assert json.loads(body) == {
            "status": "ok",
            "checks": {"discord": "ok", "database": "ok", "workers": "ok"},
        }

        state["discord"] = False
        status, _, body = await get(f"{server.url}/healthz")
        assert status == 503
        assert json.loads(body)["checks"]["discord"] == "failing"

        run_story(metrics, clock)
        status, content_type, text = await get(f"{server.url}/metrics")
        assert status == 200
        assert content_type.startswith("text/plain")
        assert value(text, "atelier_jobs_total", model="flux-dev", outcome="done") == 1
        assert value(text, "atelier_worker_restarts_total", worker="cuda:1") == 1
        # The global registry's default collectors are not mixed in.
        assert "process_cpu_seconds_total" not in text


async def test_a_check_that_raises_or_hangs_is_unhealthy_and_reported_without_secrets() -> None:
    def broken() -> bool:
        raise ConnectionError(f"could not connect with token {TOKEN}")

    async def hangs() -> bool:
        await asyncio.sleep(30)
        return True

    checks = {"database": broken, "workers": hangs}
    async with HealthServer(checks, Metrics().registry, port=0, check_timeout_s=0.2) as server:
        status, _, body = await get(f"{server.url}/healthz")
    assert status == 503
    checks_state = json.loads(body)["checks"]
    assert checks_state["database"].startswith("error: ConnectionError: could not connect")
    assert TOKEN not in body
    assert checks_state["workers"] == "timed out after 0.2 s"


async def test_database_check_needs_the_file_and_its_write_lock(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "atelier.sqlite3"
    check = sqlite_writable(path, timeout_s=0.1)
    async with HealthServer({"database": check}, Metrics().registry, port=0) as server:
        status, _, body = await get(f"{server.url}/healthz")
        assert status == 503
        assert json.loads(body)["checks"]["database"].startswith("error: OperationalError")
        assert not path.exists()  # the check never creates a database

        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("CREATE TABLE t (x)")
        assert (await get(f"{server.url}/healthz"))[0] == 200
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        status, _, body = await get(f"{server.url}/healthz")
        holder.execute("ROLLBACK")
        holder.close()
    assert status == 503
    assert json.loads(body)["checks"]["database"] == "error: OperationalError: database is locked"


async def test_health_server_listens_on_localhost_only_by_default() -> None:
    async with HealthServer({}, Metrics().registry, port=0) as server:
        assert server.url.startswith("http://127.0.0.1:")


async def test_the_docker_probe_reports_healthy_and_unhealthy(tmp_path) -> None:
    state = {"ok": True}
    async with HealthServer({"discord": lambda: state["ok"]}, Metrics().registry, port=0) as srv:
        config = tmp_path / "atelier.toml"
        config.write_text(f"[observability]\nport = {srv.port}\n")
        env = {"ATELIER_CONFIG": str(config), "PATH": ""}
        probe = [sys.executable, "-m", "bot.observability"]
        healthy = await asyncio.to_thread(
            subprocess.run, probe, env=env, capture_output=True, text=True, timeout=30
        )
        state["ok"] = False
        unhealthy = await asyncio.to_thread(
            subprocess.run, probe, env=env, capture_output=True, text=True, timeout=30
        )
    assert healthy.returncode == 0, healthy.stderr
    assert json.loads(healthy.stdout)["status"] == "ok"
    assert unhealthy.returncode == 1
    assert json.loads(unhealthy.stdout)["checks"]["discord"] == "failing"
    gone = await asyncio.to_thread(
        subprocess.run, probe, env=env, capture_output=True, text=True, timeout=30
    )
    assert gone.returncode == 1
    assert "does not answer" in gone.stderr


def test_observability_settings_are_validated_with_every_problem_named() -> None:
    assert ObservabilitySettings.from_config({}) == ObservabilitySettings()
    parsed = ObservabilitySettings.from_config({"port": 9000, "log_format": "json"})
    assert (parsed.port, parsed.log_format, parsed.host) == (9000, "json", "127.0.0.1")
    with pytest.raises(ObservabilityConfigError) as caught:
        ObservabilitySettings.from_config({"port": 70000, "log_format": "xml", "colour": True})
    assert caught.value.problems == [
        "Unknown setting `observability.colour`.",
        "`observability.port` should be at most 65535, not 70000.",
        '`observability.log_format` should be one of "kv" or "json", not "xml".',
    ]


# ---- logs -------------------------------------------------------------------------------------


@contextlib.contextmanager
def captured_logging(**options: Any) -> Iterator[io.StringIO]:
    """`configure_logging` into a string, undone afterwards (handler and root level)."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(stream=stream, **options)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def log_stream():
    with captured_logging(level="DEBUG", style="json", secrets=[TOKEN]) as stream:
        yield stream


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_job_ids_are_on_every_line_about_a_job(log_stream) -> None:
    log = logging.getLogger("atelier.test")
    with log_context(job_id=17):
        log.info("loading model")
        logging.getLogger("storage.test").info("row written")  # knows nothing about jobs
    bind(log, job_id=18, user_id=5).info("delivered")
    log_job_event(log, JobQueued(19, 2, 12.5, job=snapshot(19, position=2, eta_s=12.5)))
    log_job_event(log, JobFinished(19, 2, 3.25, job=snapshot(19, JobState.DONE, image_count=2)))
    failed = snapshot(20, JobState.FAILED, error="Out of memory.")
    log_job_event(log, JobFailed(20, "Out of memory.", "out_of_memory", job=failed))
    log.info("unrelated")

    records = lines(log_stream)
    assert [r.get("job_id") for r in records] == [17, 17, 18, 19, 19, 20, None]
    assert records[2]["user_id"] == 5
    assert records[3] | {"ts": None} == {
        "ts": None,
        "level": "info",
        "logger": "atelier.test",
        "msg": "job.queued",
        "job_id": 19,
        "position": 2,
        "eta_s": 12.5,
    }
    assert records[4]["image_count"] == 2
    assert records[4]["gpu_seconds"] == 3.25
    assert records[5]["level"] == "warning"
    assert records[5]["error_kind"] == "out_of_memory"


def test_the_token_is_redacted_from_messages_fields_and_tracebacks(log_stream) -> None:
    log = logging.getLogger("discord.http")
    log.info("Authorization: Bot %s", TOKEN)
    log.info("headers", extra={"authorization": f"Bot {TOKEN}"})
    try:
        raise RuntimeError(f"login failed for {TOKEN}")
    except RuntimeError:
        log.exception("login failed")
    other = "MTExMTExMTExMTExMTExMTExMQ.Xy12Ab.ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ"
    log.warning("an unknown token-shaped string %s", other)

    text = log_stream.getvalue()
    assert TOKEN not in text
    assert other not in text
    records = lines(log_stream)
    assert records[0]["msg"] == "Authorization: Bot [redacted]"
    assert records[1]["authorization"] == "Bot [redacted]"
    assert "RuntimeError: login failed for [redacted]" in records[2]["exc"]
    assert records[3]["msg"] == "an unknown token-shaped string [redacted]"


def test_key_value_lines_stay_on_one_line() -> None:
    with captured_logging(style="kv") as stream:
        logging.getLogger("atelier.test").info(
            "prompt received", extra={"prompt": 'a "cat"\non a mat', "job_id": 3}
        )
    (line,) = stream.getvalue().splitlines()
    assert ' msg="prompt received" ' in line
    assert 'prompt="a \\"cat\\"\\non a mat" job_id=3' in line
    assert line.startswith("ts=")
    assert " level=info logger=atelier.test " in line


# ---- the real thing: a worker pool running tiny models, observed over HTTP ---------------------


class BotStandIn:
    """What the plug-in reads of `AtelierBot`, around a real pool and database; the Discord
    connection (`is_ready`) is the bot's own tests' business."""

    def __init__(self, pool, database, database_path) -> None:
        self.pool, self.database = pool, database
        self.settings = SimpleNamespace(database_path=database_path)

    def is_ready(self) -> bool:
        return True

    def is_closed(self) -> bool:
        return False


async def test_the_plugin_follows_jobs_run_on_tiny_models_over_http(
    tmp_path, tiny_catalogue, caplog
) -> None:
    from generation.jobs import JobOwner
    from generation.pool import WorkerPool
    from generation.request import build_request
    from generation.workers.config import WorkerConfig
    from storage import Database

    caplog.set_level(logging.INFO, logger="bot.jobs")
    path = tmp_path / "atelier.sqlite3"
    database = await Database.open(path)
    schnell = build_request(tiny_catalogue, prompt="a hare", model="flux-schnell")
    leftover = await database.create_job(schnell, JobOwner(user_id=4))  # from a previous run
    plugin = Observability(ObservabilitySettings(port=0))
    worker = WorkerConfig("cpu", "cpu", max_models=2)
    pool = WorkerPool(tiny_catalogue, database, [worker], observer=plugin.metrics)
    await plugin.start(BotStandIn(pool, database, path))
    url = plugin.server.url
    try:
        status, _, body = await get(f"{url}/healthz")
        assert status == 503  # no worker runs yet
        assert json.loads(body)["checks"] == {
            "discord": "ok",
            "database": "ok",
            "workers": "failing",
        }

        events = pool.subscribe()
        pool.pause()
        await pool.start()
        playground = build_request(tiny_catalogue, prompt="a fox", model="playground-v2.5", count=2)
        first = await pool.submit(playground, JobOwner(user_id=1))
        second = await pool.submit(schnell, JobOwner(user_id=2))
        relaxed = await pool.submit(playground, JobOwner(user_id=3, priority=Priority.RELAX))
        ids = {leftover, first.job_id, second.job_id, relaxed.job_id}
        await asyncio.wait_for(wait_until(lambda: queued(plugin.metrics) == 4), 30)
        _, _, text = await get(f"{url}/metrics")
        assert value(text, "atelier_queue_length", priority="normal") == 3
        assert value(text, "atelier_queue_length", priority="relax") == 1

        await pool.cancel(relaxed.job_id)
        pool.resume()
        ended = set()
        async for event in events:
            if isinstance(event, JobStarted) and event.job_id == first.job_id:
                status, _, body = await get(f"{url}/healthz")
                assert (status, json.loads(body)["status"]) == (200, "ok")
            if isinstance(event, JobFinished | JobFailed | JobCancelled):
                ended.add(event.job_id)
            if ended == ids:
                break
        await asyncio.wait_for(wait_until(lambda: ended_jobs(plugin.metrics) == 4), 30)
        _, _, text = await get(f"{url}/metrics")
    finally:
        await pool.shutdown(drain=False)
        await plugin.stop()

    records = {job_id: (await database.get_job(job_id)).record for job_id in ids}
    await database.close()
    assert value(text, "atelier_jobs_total", model="playground-v2.5", outcome="done") == 1
    assert value(text, "atelier_jobs_total", model="flux-schnell", outcome="done") == 2
    assert value(text, "atelier_jobs_total", model="playground-v2.5", outcome="cancelled") == 1
    assert value(text, "atelier_images_total", model="playground-v2.5") == 2
    assert value(text, "atelier_images_total", model="flux-schnell") == 2
    runs = {"playground-v2.5": 1, "flux-schnell": 2}
    for model, count in runs.items():
        assert value(text, "atelier_model_loads_total", worker="cpu", model=model) == 1
        assert value(text, "atelier_job_wait_seconds_count", model=model) == count
        assert value(text, "atelier_job_run_seconds_count", model=model) == count
    for priority in ("admin", "normal", "relax"):
        assert value(text, "atelier_queue_length", priority=priority) == 0
    # The times agree with storage's (to event-delivery latency); the leftover job's wait
    # counts from when the previous run queued it.
    done = [records[job_id] for job_id in ids - {relaxed.job_id}]
    run = sum(value(text, "atelier_job_run_seconds_sum", model=model) for model in runs)
    wait = sum(value(text, "atelier_job_wait_seconds_sum", model=model) for model in runs)
    assert run == pytest.approx(sum(r.finished_at - r.started_at for r in done), abs=1.0)
    assert wait == pytest.approx(sum(r.started_at - r.queued_at for r in done), abs=1.0)
    assert value(text, "atelier_gpu_busy_seconds_total", worker="cpu") == pytest.approx(run)
    assert 0 < value(text, "atelier_gpu_busy_ratio", worker="cpu") <= 1
    # One log line per job event, each with its job id (a waiting job's place may move).
    lines = [(r.msg, r.job_id) for r in caplog.records if r.name == "bot.jobs"]

    def moves(job_id: int) -> list[str]:
        said = [m for m, j in lines if j == job_id and m != "job.progress"]
        return [m for i, m in enumerate(said) if i == 0 or m != said[i - 1]]

    for job_id in ids - {relaxed.job_id}:
        assert moves(job_id) == ["job.queued", "job.started", "job.finished"]
    assert moves(relaxed.job_id) == ["job.queued", "job.cancelled"]


async def wait_until(condition) -> None:
    """Yield until `condition()` holds: it reads state that the metrics' own feeding task
    changes, which offers nothing to wait on (callers bound the wait with wait_for)."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.01)
