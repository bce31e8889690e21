"""Prometheus metrics for the bot process, fed with the engine's job events.

Every event carries the job's snapshot (`event.job`: model, priority class, when it last entered
the queue, so jobs taken back after a restart count their whole wait; when and where it runs):
`Metrics` reads labels and times from it and keeps counters, not job state. The one per-job thing
it holds is each GPU's occupancy (which jobs it runs since when, for the busy ratio between
events). Nothing is looked up in storage. The bot runs `await metrics.feed(pool.subscribe())`;
`observe(event)` is the same for one event. The pool reports model loads and worker restarts
directly (`Metrics` is a `generation.pool.PoolObserver`).

Every metric lives in the instance's own `CollectorRegistry`, never the global one, so tests and
several bots in one process do not mix.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from generation.jobs import (
    JobCancelled,
    JobEvent,
    JobFailed,
    JobFinished,
    JobQueued,
    JobSnapshot,
    JobStarted,
    JobStatus,
    Priority,
)

WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
RUN_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, float("inf"))


@dataclass(slots=True)
class _Busy:
    """One worker's finished busy intervals inside the window, its busy time ever, and the
    start of each job it runs now (more than one only briefly: the pool may announce the next
    job's start before the previous job's end)."""

    intervals: deque[tuple[float, float]] = field(default_factory=deque)
    running: dict[int, float] = field(default_factory=dict)
    total_s: float = 0.0


class Metrics:
    """Queue length per priority class, wait and run time per model, GPU busy fraction, jobs by
    outcome, model loads and worker restarts.

    `clock` returns Unix time (so a job's stored `queued_at` can be passed for jobs resubmitted
    after a restart); `busy_window_s` is the window the GPU busy fraction is measured over.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        busy_window_s: float = 300.0,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._clock = clock
        self._started = clock()
        self._window_s = busy_window_s
        self._busy: dict[str, _Busy] = {}
        r = self.registry
        self.queue_length = Gauge(
            "atelier_queue_length",
            "Jobs waiting to start, by priority class.",
            ["priority"],
            registry=r,
        )
        for priority in Priority:
            self.queue_length.labels(priority.value).set(0)
        self.wait_seconds = Histogram(
            "atelier_job_wait_seconds",
            "Seconds from queued to started, by model.",
            ["model"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.run_seconds = Histogram(
            "atelier_job_run_seconds",
            "Seconds from started to finished, finished jobs, by model.",
            ["model"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.jobs = Counter(
            "atelier_jobs",
            "Jobs that ended, by model and outcome (done, failed, cancelled).",
            ["model", "outcome"],
            registry=r,
        )
        self.failures = Counter(
            "atelier_job_failures",
            "Failed jobs by model and kind of error.",
            ["model", "error_kind"],
            registry=r,
        )
        self.images = Counter(
            "atelier_images", "Images generated, by model.", ["model"], registry=r
        )
        self.model_loads = Counter(
            "atelier_model_loads", "Models loaded onto a worker.", ["worker", "model"], registry=r
        )
        self.worker_restarts = Counter(
            "atelier_worker_restarts",
            "Worker processes restarted after a crash or hang.",
            ["worker"],
            registry=r,
        )
        r.register(_BusyCollector(self))

    # ---- feeding ---------------------------------------------------------------------------

    def observe(self, event: JobEvent) -> None:
        """Account for one job event, labelled by its snapshot (`event.job`)."""
        now, job = self._clock(), event.job
        match event:
            case JobQueued(entered=True):  # queued, taken back, or put back after its GPU died
                self._stop_running(job.job_id, now)
                self.queue_length.labels(job.priority.value).inc()
            case JobStarted():
                self.queue_length.labels(job.priority.value).dec()
                if job.queued_at is not None:
                    self.wait_seconds.labels(job.model).observe(max(0.0, now - job.queued_at))
                self._stop_running(job.job_id, now)  # a start announced twice counts once
                self._busy.setdefault(event.worker, _Busy()).running[job.job_id] = now
            case JobFinished() | JobFailed() | JobCancelled():
                self._end(event, job, now)

    async def feed(self, events: AsyncIterable[JobEvent]) -> None:
        """Observe every event of `events` (say `pool.subscribe()`) until it ends."""
        async for event in events:
            self.observe(event)

    def record_model_load(self, worker: str, model: str) -> None:
        """A worker loaded `model` (the pool reports it)."""
        self.model_loads.labels(worker, model).inc()

    def record_worker_restart(self, worker: str) -> None:
        """The pool restarted `worker`'s process."""
        self.worker_restarts.labels(worker).inc()

    def busy_fraction(self, worker: str) -> float:
        """The share of the last `busy_window_s` (or of the uptime) that `worker` was busy."""
        now = self._clock()
        start = max(now - self._window_s, self._started)
        busy = self._busy.get(worker)
        if busy is None or now <= start:
            return 0.0
        self._prune(busy, start)
        spans = [*busy.intervals, *((begin, now) for begin in busy.running.values())]
        covered = sum(max(0.0, min(end, now) - max(begin, start)) for begin, end in spans)
        return min(1.0, covered / (now - start))

    def busy_seconds(self, worker: str) -> float:
        """Seconds `worker` has spent running jobs since this object was made."""
        busy = self._busy.get(worker)
        if busy is None:
            return 0.0
        now = self._clock()
        return busy.total_s + sum(now - begin for begin in busy.running.values())

    @property
    def workers(self) -> tuple[str, ...]:
        return tuple(self._busy)

    @property
    def running_jobs(self) -> int:
        """Jobs the GPUs run now, as the metrics saw them start (the occupancy kept for the
        busy ratio)."""
        return sum(len(busy.running) for busy in self._busy.values())

    # ---- internals -------------------------------------------------------------------------

    def _end(
        self, event: JobFinished | JobFailed | JobCancelled, job: JobSnapshot, now: float
    ) -> None:
        ran_s = self._stop_running(job.job_id, now)
        if ran_s is None:  # ended while it waited
            self.queue_length.labels(job.priority.value).dec()
        match event:
            case JobFinished():
                outcome = JobStatus.DONE
                if ran_s is not None:
                    self.run_seconds.labels(job.model).observe(ran_s)
                self.images.labels(job.model).inc(event.image_count)
            case JobFailed():
                outcome = JobStatus.FAILED
                self.failures.labels(job.model, event.error_kind).inc()
            case JobCancelled():
                outcome = JobStatus.CANCELLED
        self.jobs.labels(job.model, outcome.value).inc()

    def _stop_running(self, job_id: int, now: float) -> float | None:
        """Close `job_id`'s busy interval on its GPU; the seconds it ran (None: not running)."""
        for busy in self._busy.values():
            begin = busy.running.pop(job_id, None)
            if begin is not None:
                busy.intervals.append((begin, now))
                busy.total_s += now - begin
                return max(0.0, now - begin)
        return None

    def _prune(self, busy: _Busy, start: float) -> None:
        while busy.intervals and busy.intervals[0][1] <= start:
            busy.intervals.popleft()


class _BusyCollector(Collector):
    """Computes the GPU busy metrics at scrape time, so a running job counts up to the second."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        fraction = GaugeMetricFamily(
            "atelier_gpu_busy_ratio",
            "Share of the recent window each worker (GPU) spent running jobs, 0 to 1.",
            labels=["worker"],
        )
        seconds = CounterMetricFamily(
            "atelier_gpu_busy_seconds",
            "Seconds each worker (GPU) spent running jobs.",
            labels=["worker"],
        )
        for worker in self._metrics.workers:
            fraction.add_metric([worker], self._metrics.busy_fraction(worker))
            seconds.add_metric([worker], self._metrics.busy_seconds(worker))
        yield fraction
        yield seconds
