"""The one policy for a worker that is not running, whatever the cause (a GPU that is gone, a
process that crashes as it starts; later a lost remote node or a model that no longer fits).

- A worker that reports it cannot start (`WorkerFailed`), or dies before it is ready
  `failed_after` times in a row, is **failed**, with the reason. It is retried with a delay that
  doubles from `backoff_s` up to `max_backoff_s`, never in a tight loop.
- While it is failed, the jobs already accepted stay queued and their people are told why they
  wait; a new job for a model that no running or recovering worker may run is refused.
- A worker failed for `fail_jobs_after_s`, or marked failed by an admin, turns the waiting jobs
  that no other worker may run into failures with its reason. A job running on a worker an
  admin marks failed fails the same way, or waits for another worker that may run it, told why.

`WorkerHealth` keeps one worker's side of this (the pool acts on it); its clock is the pool's,
so tests drive the delays with a clock of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from generation.config_schema import TABLE, Float, Int


@dataclass(frozen=True, slots=True)
class SupervisionSettings:
    """See the module docstring; this is also the `[workers]` table of the configuration."""

    __pydantic_config__ = TABLE

    failed_after: Annotated[Int, Field(ge=1)] = 3  # deaths in a row before ready: failed
    backoff_s: Annotated[Float, Field(gt=0)] = 2.0  # the first retry delay; doubles each time
    max_backoff_s: Annotated[Float, Field(gt=0)] = 300.0
    fail_jobs_after_s: Annotated[Float, Field(ge=0)] = 600.0  # 0: at once


class WorkerHealth:
    """Whether one worker is failed, why, since when, and how long to wait before the next try."""

    def __init__(self, settings: SupervisionSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._clock = clock
        self.failures = 0  # deaths in a row that no job explains
        self.reason: str | None = None  # why it failed (or was marked failed)
        self.failed_since: float | None = None
        self.held_by_admin = False  # marked failed by an admin: not retried until released
        self.retry_at: float | None = None

    @property
    def failed(self) -> bool:
        return self.failed_since is not None

    def ready(self) -> None:
        """The worker started: it is healthy again."""
        self.failures, self.reason, self.failed_since, self.retry_at = 0, None, None, None

    def died(self, reason: str, *, recovered: bool, cannot_start: bool) -> float:
        """Count a death; the seconds to wait before the next start.

        `recovered`: it had run long enough, or died running a job (the job's retry handles
        that), so this death does not count towards failing. `cannot_start`: it said it cannot
        start here; trying again soon would fail the same way.
        """
        if recovered:
            self.failures = 0
        self.failures += 1
        if cannot_start:
            self.failures = max(self.failures, self.settings.failed_after)
        if self.failures >= self.settings.failed_after and not self.failed:
            self.failed_since = self._clock()
        if self.failed or self.failures > 1:
            self.reason = reason
        delay = 0.0 if self.failures <= 1 else self.settings.backoff_s * 2 ** (self.failures - 2)
        delay = min(delay, self.settings.max_backoff_s)
        self.retry_at = self._clock() + delay
        return delay

    def hold(self, reason: str) -> None:
        """An admin marked the worker failed."""
        self.held_by_admin, self.reason = True, reason
        if not self.failed:
            self.failed_since = self._clock()

    def release(self) -> None:
        self.held_by_admin = False
        self.failures, self.retry_at = 0, None

    def jobs_should_fail(self) -> bool:
        """True once waiting jobs that only this worker could run should fail."""
        if self.held_by_admin:
            return True
        return (
            self.failed_since is not None
            and self._clock() - self.failed_since >= self.settings.fail_jobs_after_s
        )

    def describe(self) -> str | None:
        """`failed: REASON (next try in N s)` for people, or None when healthy."""
        if not self.failed or self.reason is None:
            return None
        if self.held_by_admin:
            return f"marked failed by an admin: {self.reason}"
        wait = "" if self.retry_at is None else f" (next try in {self._seconds_left():.0f} s)"
        return f"{self.reason}{wait}"

    def _seconds_left(self) -> float:
        assert self.retry_at is not None
        return max(0.0, self.retry_at - self._clock())
