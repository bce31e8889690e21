"""The engine's vocabulary shared by every layer: images, job events, and the storage protocol.

Everything here is plain data (picklable, JSON-friendly) so it can cross process boundaries and,
later, machine boundaries (Ray actors).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, Protocol

from generation.request import GenerationRequest


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class JobState(StrEnum):
    """Where a job stands, as the pool (its one owner) sees it; every live view reads it from a
    `JobSnapshot`. A new stage (a hosted API or a remote node awaited) is one more member here,
    set by the pool where that stage begins, and one more line where views render it."""

    WAITING = "waiting"  # in the queue
    STARTING = "starting"  # handed to a worker; its start not yet recorded
    LOADING = "loading"  # its worker loads the job's model first (no step yet)
    RUNNING = "running"  # denoising: `step` of `total`
    HOSTED = "hosted"  # sent to the hosted API (no GPU): waiting for its reply (`step` of 100)
    SAVING = "saving"  # ended on the worker; the store is recording it (retried if need be)
    DONE = "done"  # the last snapshot of a job: its images are stored
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class Priority(StrEnum):
    """Strict priority classes, highest first (see `generation.scheduler`)."""

    ADMIN = "admin"
    NORMAL = "normal"
    RELAX = "relax"


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What decided a job's pixels besides its request (README, "Exact reruns").

    `model_revision`: the Hub snapshot's commit, or `sha256:` over a local folder's weight files;
    `diffusers`, `torch`: library versions; `device_type`: "cpu" or "cuda"; `precision`: the
    weights' dtype plus any pixel-changing speed option (fp8, compile, eager attention);
    `batching`: "per-image" (exact) or "fast" (`[speed] fast_batches`). `prompt_cut_at`: the
    character of the prompt where the text encoder stopped reading (None: it read all of it),
    `prompt_limit` the encoder's limit in words ("77 CLIP tokens"); `negative_cut_at` the same
    for the negative prompt. `model_config`: `sha256:` over a local folder's configuration and
    tokenizer files (None for a Hub snapshot, and for jobs made before it was recorded);
    `settings`: the pipeline arguments besides the request that change pixels (FLUX's
    `max_sequence_length`), None for jobs made before it was recorded; `profile`: the memory
    profile the model ran with (`generation.profiles`; "full" for jobs made before profiles).
    A None on either side of a comparison is unknown, not a difference. `loras`: each LoRA the
    run applied as `NAME sha256:HEX unfused` (the SHA-256 of its file's bytes; unfused: applied
    as an adapter beside the weights), joined by "; ", "" for none. `prompt_encoder`: "plain" or
    "compel VERSION". Both None for jobs made before they were recorded. `profile_reason`: why
    a rerun ran with another memory profile than its parent's (None: it did not). `gguf`:
    `NAME sha256:HEX` of the `.gguf` file a GGUF profile read the transformer from (None: none).
    """

    model_revision: str
    diffusers: str
    torch: str
    device_type: str
    precision: str
    batching: str = "per-image"
    prompt_cut_at: int | None = None
    prompt_limit: str = ""
    negative_cut_at: int | None = None
    model_config: str | None = None
    settings: str | None = None
    profile: str = "full"
    profile_reason: str | None = None
    loras: str | None = None
    prompt_encoder: str | None = None
    gguf: str | None = None

    def lora_sha256(self) -> dict[str, str]:
        """LoRA name → the SHA-256 (hex) of the file the run applied."""
        found = {}
        for entry in filter(None, (self.loras or "").split("; ")):
            name, digest, *_ = entry.split(" ")
            found[name] = digest.removeprefix("sha256:")
        return found

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunFacts:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def differences(self, before: RunFacts) -> list[str]:
        """What differs from `before` that can change the pixels, one phrase each, showing the
        part of each value that differs."""
        names = {
            "model_revision": "the model's weights",
            "model_config": "the model's configuration files",
            "settings": "the pipeline settings",
            "loras": "the LoRA files",
            "gguf": "the GGUF file",
            "prompt_encoder": "the prompt encoder",
            "diffusers": "diffusers",
            "torch": "PyTorch",
            "device_type": "the device type",
            "precision": "the precision settings",
            "batching": "the batching setting",
            "profile": "the memory profile",
        }
        changes = []
        for name, label in names.items():
            old, new = getattr(before, name), getattr(self, name)
            if old is not None and new is not None and _compared(name, old) != _compared(name, new):
                why = (
                    f": {self.profile_reason}" if name == "profile" and self.profile_reason else ""
                )
                changes.append(f"{label} ({' → '.join(_differing(old, new))}{why})")
        return changes


def _compared(name: str, value: str) -> str:
    """The part of a fact that changes pixels: of `gguf` (`NAME sha256:HEX`), the hash alone (a
    renamed file with the same bytes runs the same)."""
    return value.rpartition(" sha256:")[2] if name == "gguf" else value


_SHOWN = 60  # characters of a value a note shows; eight notes stay far below 2,000


def _differing(before: str, after: str) -> tuple[str, str]:
    """`before` and `after` whole when short, else from a little before where they first
    differ, so a note never hides the change (a long GPU name, a setting added at the end)."""
    if max(len(before), len(after)) <= _SHOWN:
        return before, after
    common = next(
        (i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b),
        min(len(before), len(after)),
    )
    start = max(0, common - 12)

    def window(value: str) -> str:
        shown = value[start : start + _SHOWN]
        return ("…" if start else "") + shown + ("…" if start + _SHOWN < len(value) else "")

    return window(before), window(after)


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """One finished image: PNG bytes (with metadata chunks), the seed that made it, its size as
    made, and what else decided its pixels (`facts`, the same for every image of a job)."""

    index: int
    seed: int
    png: bytes
    width: int
    height: int
    facts: RunFacts | None = None


@dataclass(frozen=True, slots=True)
class JobOwner:
    """Who asked, where, and with which scheduling rights."""

    user_id: int
    guild_id: int | None = None
    channel_id: int | None = None
    priority: Priority = Priority.NORMAL
    weight: float = 1.0
    max_queued: int | None = None  # None: the installation's default
    max_running: int | None = None


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as storage holds it."""

    id: int
    owner: JobOwner
    request: GenerationRequest
    status: JobStatus
    queued_at: float  # Unix time
    started_at: float | None = None
    finished_at: float | None = None
    worker: str | None = None
    gpu_seconds: float | None = None
    error: str | None = None  # why it failed; for a done job, why some images are missing
    facts: RunFacts | None = None  # None until done, and for jobs made before it was recorded
    profile: str = "full"  # the memory profile it ran with; a rerun asks for the same


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """A job at one moment, complete (`WorkerPool.job`, and `.job` of every event): who asked,
    for which model, where it stands. Frozen: a subscriber keeps it as is, folding nothing.

    `position` (1 = next) and `eta_s` (seconds until it starts; None while the queue is paused)
    only while it waits, with `waiting_for` when no GPU may run it now; `worker`, `step` and
    `total` once it is on a GPU; `preview`: the latest small PNG the worker sent (None before
    the first); `problem`: a sentence while the store cannot record it, with `retry_in_s`
    (seconds until the next try; None: tried again when the pool starts again); `error` and
    `error_kind` once failed; `image_count` once done; `cancelling`: a cancel was asked for and
    the job has not ended yet (it stops within a step; its end waits for the store).
    `queued_at`: Unix time it last entered the queue (first queued, or put back after its
    worker died; the original time for a job taken back after a restart); `started_at`: Unix
    time its current run started (None while it waits)."""

    job_id: int
    owner: JobOwner
    model: str
    state: JobState
    position: int | None = None
    eta_s: float | None = None
    waiting_for: str | None = None
    worker: str | None = None
    step: int = 0
    total: int = 0
    preview: bytes | None = field(default=None, repr=False)
    problem: str | None = None
    retry_in_s: float | None = None
    error: str | None = None
    error_kind: str | None = None
    image_count: int = 0
    queued_at: float | None = None
    started_at: float | None = None
    cancelling: bool = False

    @property
    def priority(self) -> Priority:
        return self.owner.priority


# ---- events: what a front end sees of a job, in order -------------------------------------------
#
# Every event carries `job`: the complete `JobSnapshot` right after the change it names. A
# subscriber shows or counts from the snapshot; the event's own fields say what changed.


@dataclass(frozen=True, slots=True)
class JobQueued:
    """The job waits: queued, put back after its worker died, or its place changed.

    `entered`: the job (re)entered the queue (submitted, taken back after a restart, put back
    after its worker died), not a mere change of place."""

    job_id: int
    position: int  # 1 = next to run
    eta_s: float | None  # estimated seconds until it starts; None while the queue is paused
    waiting_for: str | None = None  # why it cannot start now (no worker may run it), if so
    entered: bool = False
    # The submitter's own handle for its reply (the bot's progress message), stored with the
    # job so that no follower learns of the job before the code that submitted it; in-process
    # only, opaque to the engine.
    reply_to: object | None = field(default=None, compare=False, repr=False)
    job: JobSnapshot = field(kw_only=True, repr=False)


@dataclass(frozen=True, slots=True)
class JobStarted:
    job_id: int
    worker: str  # e.g. "cuda:0"
    job: JobSnapshot = field(kw_only=True, repr=False)


@dataclass(frozen=True, slots=True)
class JobProgress:
    job_id: int
    step: int
    total: int
    preview: bytes | None = None  # a small PNG, every few steps
    job: JobSnapshot = field(kw_only=True, repr=False)


@dataclass(frozen=True, slots=True)
class JobFinished:
    """The job is done and its images are stored (read them from the store: events stay small)."""

    job_id: int
    image_count: int
    gpu_seconds: float
    job: JobSnapshot = field(kw_only=True, repr=False)


@dataclass(frozen=True, slots=True)
class JobFailed:
    job_id: int
    reason: str  # a sentence for the person who asked
    error_kind: str  # "out_of_memory", "worker_crash", "model_unavailable", "error"
    job: JobSnapshot = field(kw_only=True, repr=False)


@dataclass(frozen=True, slots=True)
class JobCancelled:
    job_id: int
    job: JobSnapshot = field(kw_only=True, repr=False)


@dataclass(frozen=True, slots=True)
class JobStalled:
    """The store could not record the job's new state; the pool keeps the job and tries again.

    `problem`: a sentence (the store's own, such as "The database is read-only ...");
    `retry_in_s`: seconds until the next try; None when the pool stops before it: the job stays
    unfinished in storage and is taken back when the pool starts again. The job's next event
    ends the stall.
    """

    job_id: int
    problem: str
    retry_in_s: float | None
    job: JobSnapshot = field(kw_only=True, repr=False)


JobEvent = (
    JobQueued | JobStarted | JobProgress | JobFinished | JobFailed | JobCancelled | JobStalled
)


class StoreUnavailable(Exception):
    """The store cannot write right now (a read-only or full disk, an unwritable image folder):
    the same write may succeed later. `str(error)` is a sentence for the person waiting."""


class JobStore(Protocol):
    """What the engine needs from storage; `storage.Database` implements it.

    Every method commits before it returns: a job is durable before anyone is told about it.
    A write that fails for a passing reason raises `StoreUnavailable` (the pool retries it);
    one for a job the store no longer holds (erased while it ran) raises a `LookupError`.
    """

    async def create_job(self, request: GenerationRequest, owner: JobOwner) -> int: ...

    async def mark_running(self, job_id: int, worker: str) -> None: ...

    async def mark_done(
        self,
        job_id: int,
        images: Sequence[GeneratedImage],
        gpu_seconds: float,
        missing: str | None = None,
    ) -> None: ...

    async def mark_failed(self, job_id: int, error: str) -> None: ...

    async def mark_cancelled(self, job_id: int) -> None: ...

    async def requeue(self, job_id: int) -> None:
        """running → queued, for a job whose worker died or that shutdown interrupted."""

    async def unfinished_jobs(self) -> list[JobRecord]:
        """Jobs left queued or running, in their original (queued) order."""
