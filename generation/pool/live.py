"""The pool's own record of each job and worker it manages (one owner: the `WorkerPool`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from generation.jobs import JobOwner, JobProgress, JobSnapshot, JobState, JobStatus
from generation.pool.types import WorkerMemory, WorkerState
from generation.request import GenerationRequest
from generation.workers.config import WorkerConfig
from generation.workers.protocol import WorkerLink
from generation.workers.supervision import WorkerHealth

CRASH_REASON = (
    "This job made its GPU worker crash twice, so it was not tried again. "
    "Try a smaller size or fewer images."
)


@dataclass(eq=False)
class LiveJob:
    id: int
    request: GenerationRequest
    owner: JobOwner
    queued_at: float  # Unix time it was first queued
    reply_to: object | None = None  # the submitter's handle (see `JobQueued.reply_to`)
    state: JobState = JobState.WAITING
    waiting_for: str | None = None  # why no GPU may run it now (see `JobSnapshot`)
    ran_on: str | None = None  # the worker it was last handed to
    step: int = 0
    total: int = 0
    preview: bytes | None = None
    problem: str | None = None  # why the store cannot record it now (see `JobStalled`)
    retry_in_s: float | None = None
    error: str | None = None
    error_kind: str | None = None
    image_count: int = 0
    crashes: int = 0
    worker: LiveWorker | None = None
    started_at: float = 0.0  # when its current run started (the pool's clock)
    run_sent: bool = False
    cancel_requested: bool = False
    ended: bool = False
    # Set while no `mark_running` for this job is in flight: later writes wait for it.
    start_recorded: asyncio.Event = field(default_factory=asyncio.Event)
    # Steps the worker reported before JobStarted could be announced; published right after it.
    early_steps: list[Callable[..., JobProgress]] = field(default_factory=list)
    outcome: asyncio.Future[JobStatus] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def __post_init__(self) -> None:
        self.start_recorded.set()

    def snapshot(self, place: tuple[int, float | None] | None) -> JobSnapshot:
        """This job now; `place`: its (position, ETA) while it waits."""
        waiting = self.state is JobState.WAITING
        return JobSnapshot(
            self.id,
            self.owner,
            self.request.model,
            self.state,
            position=place[0] if place and waiting else None,
            eta_s=place[1] if place and waiting else None,
            waiting_for=self.waiting_for if waiting else None,
            worker=None if waiting else self.ran_on,
            step=self.step,
            total=self.total,
            preview=self.preview,
            problem=self.problem,
            retry_in_s=self.retry_in_s if self.problem else None,
            error=self.error,
            error_kind=self.error_kind,
            image_count=self.image_count,
            queued_at=self.queued_at,
            started_at=None if waiting else self.started_at,
            cancelling=self.cancel_requested and not self.state.is_final,
        )


@dataclass(eq=False)
class LiveWorker:
    config: WorkerConfig
    link: WorkerLink | None = None
    state: WorkerState = WorkerState.STARTING
    job: LiveJob | None = None
    loaded: tuple[str, ...] = ()
    restarts: int = 0
    model_loads: int = 0
    memory: WorkerMemory = field(default_factory=WorkerMemory)
    held_profiles: Mapping[str, str] = field(default_factory=dict)  # as the worker last said
    last_error: str | None = None
    acks: dict[str, list[asyncio.Future[None]]] = field(default_factory=dict)
    started: asyncio.Event = field(default_factory=asyncio.Event)  # ready at least once
    supervisor: asyncio.Task[None] | None = None
    health: WorkerHealth | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)  # an admin's hold ended

    @property
    def id(self) -> str:
        return self.config.id
