"""What the pool shows of itself: its errors, its workers' states, and a snapshot of the queue."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from generation.errors import EngineError
from generation.jobs import JobSnapshot, Priority


class PoolError(EngineError):
    """An admin request the pool cannot do (unknown worker, model not allowed there, ...)."""

    kind = "pool"


class PoolObserver(Protocol):
    """Receives counts for metrics (`bot.observability.Metrics` fits)."""

    def record_model_load(self, worker: str, model: str) -> None: ...

    def record_worker_restart(self, worker: str) -> None: ...


class WorkerState(StrEnum):
    STARTING = "starting"  # process launched, engine loading
    IDLE = "idle"
    BUSY = "busy"
    RESTARTING = "restarting"  # died; waiting to start again
    FAILED = "failed"  # cannot start (see `WorkerStatus.problem`); retried with backoff
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class WorkerMemory:
    """What a worker last reported of its memory, in MiB; None: not reported (no CUDA device,
    or no report yet). `gpu_*` are the whole device's, as `torch.cuda.mem_get_info` sees it."""

    rss_mib: float | None = None  # the worker process's resident memory
    gpu_used_mib: float | None = None
    gpu_total_mib: float | None = None
    gpu_allocated_mib: float | None = None  # held by torch's tensors in the worker

    @classmethod
    def from_report(cls, report: Mapping[str, float]) -> WorkerMemory:
        """From a worker's report (`generation.workers.runtime.memory_report`'s keys)."""
        return cls(
            rss_mib=report.get("rss_mib"),
            gpu_used_mib=report.get("gpu_used_mib"),
            gpu_total_mib=report.get("gpu_total_mib"),
            gpu_allocated_mib=report.get("gpu_allocated_mib"),
        )


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One worker as an admin sees it."""

    id: str
    device: str
    state: WorkerState
    job_id: int | None
    loaded: tuple[str, ...]
    pinned: tuple[str, ...]
    models: tuple[str, ...] | None  # allowed; None: any
    pid: int | None
    restarts: int
    model_loads: int
    memory: WorkerMemory
    last_error: str | None
    problem: str | None = None  # a failed worker: why, and when it is tried next
    profiles: tuple[tuple[str, str], ...] = ()  # model → its memory profile here (absent: full)

    def profile_of(self, model: str) -> str:
        return dict(self.profiles).get(model, "full")

    def held(self, model: str) -> str:
        """`model` with the memory profile it is loaded with here: `flux-dev (fp8)`."""
        return f"{model} ({self.profile_of(model)})"


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """The queue and the workers at one moment. `queued`/`running` count GPU jobs; `api_queued`
    /`api_running` API jobs (their own queue: `generation.pool.hosted`)."""

    paused: bool
    accepting: bool
    queued: int
    running: int
    queued_by_class: Mapping[Priority, int]
    waiting: tuple[JobSnapshot, ...]  # the first ones, in projected order, with places and ETAs
    workers: tuple[WorkerStatus, ...]
    model_speeds: Mapping[str, float]  # measured seconds per work unit (see `work_units`)
    api_queued: int = 0
    api_running: int = 0
