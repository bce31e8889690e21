"""What storage's queries return (besides `generation.jobs.JobRecord`): plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generation.jobs import JobOwner, JobRecord, Priority


@dataclass(frozen=True, slots=True)
class StoredJob:
    """A job with what only storage knows about it: deleted by its owner? result delivered?"""

    record: JobRecord
    deleted_at: float | None = None
    delivered_at: float | None = None

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True, slots=True)
class StoredImage:
    """One image of a job. `path` is where its file is (or was, once `pruned`)."""

    job_id: int
    index: int
    seed: int
    sha256: str
    path: Path
    width: int
    height: int
    bytes: int
    created_at: float
    message_id: int | None
    attachment_id: int | None
    pruned: bool


@dataclass(frozen=True, slots=True)
class JobMessage:
    """A Discord message that shows a job (its progress, its result, or a /show of it)."""

    message_id: int
    channel_id: int | None
    created_at: float


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of a user's history, newest first.

    Pass `older` as `before=` for the next page and `newer` as `after=` for the previous one;
    each is None where there is nothing more in that direction.
    """

    jobs: list[JobRecord]
    older: int | None
    newer: int | None


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a job came from (`ancestors`, root first) and what was made from it (`children`)."""

    ancestors: list[JobRecord]
    children: list[JobRecord]


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """The queue as an admin sees it: running jobs, the next queued ones, and counts."""

    running: list[JobRecord]
    next_up: list[JobRecord]
    queued_total: int
    queued_by_user: dict[int, int]


@dataclass(frozen=True, slots=True)
class Usage:
    """Totals for one user or one model over a period. `mean_wait_s` covers started jobs."""

    key: int | str
    jobs: int
    images: int
    gpu_seconds: float
    mean_wait_s: float | None


@dataclass(frozen=True, slots=True)
class Stats:
    since: float
    until: float
    by_user: list[Usage]
    by_model: list[Usage]


@dataclass(frozen=True, slots=True)
class UserSettings:
    """A user's standing: ban, limits, scheduling rights and personal defaults.

    `max_queued`/`max_running` None mean the installation's default.
    """

    user_id: int
    banned_at: float | None = None
    ban_reason: str | None = None
    banned_by: int | None = None
    max_queued: int | None = None
    max_running: int | None = None
    weight: float = 1.0
    priority: Priority = Priority.NORMAL
    default_model: str | None = None
    default_aspect: str | None = None
    default_negative_prompt: str | None = None

    @property
    def banned(self) -> bool:
        return self.banned_at is not None

    def owner(self, guild_id: int | None = None, channel_id: int | None = None) -> JobOwner:
        """The `JobOwner` for a new job of this user."""
        return JobOwner(
            user_id=self.user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            priority=self.priority,
            weight=self.weight,
            max_queued=self.max_queued,
            max_running=self.max_running,
        )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: float
    actor_id: int
    action: str
    target: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PruneReport:
    images_pruned: int
    files_removed: int
    bytes_freed: int


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What `Database.check` found. `ok` ignores orphans: they are harmless and reported."""

    integrity: list[str] = field(default_factory=list)
    missing_files: list[Path] = field(default_factory=list)
    damaged_files: list[Path] = field(default_factory=list)
    incomplete_jobs: list[int] = field(default_factory=list)
    orphan_files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.integrity or self.missing_files or self.damaged_files or self.incomplete_jobs
        )


@dataclass(frozen=True, slots=True)
class ExportReport:
    json_path: Path
    jobs: int
    images: int
