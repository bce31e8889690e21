"""Admission limits: waiting jobs per person and in all, counting places being taken."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from generation.jobs import JobOwner
from generation.scheduler.types import NotAccepting, QueueFull, SchedulerSettings


class Places:
    """Checks `max_queued` and `queue_capacity`, counting the places held by admissions in
    progress (a job being written down before it is submitted) as waiting jobs."""

    def __init__(self, settings: SchedulerSettings) -> None:
        self._settings = settings
        self._held: Counter[int] = Counter()  # user id → places held

    def check(self, owner: JobOwner, waiting: int, queued: int, accepting: bool) -> None:
        """Raise `QueueFull` (or `NotAccepting`) if `owner`, with `waiting` jobs waiting, may
        not queue one more while `queued` jobs wait in all."""
        if not accepting:
            raise NotAccepting()
        limit = owner.max_queued or self._settings.max_queued
        waiting += self._held[owner.user_id]
        if waiting >= limit:
            raise QueueFull(
                f"You already have {waiting} job{'s' if waiting != 1 else ''} waiting, the most "
                f"allowed at once. Wait for one to start, or cancel one."
            )
        capacity = self._settings.queue_capacity
        if capacity is not None and queued + self._held.total() >= capacity:
            raise QueueFull(
                f"The queue is full ({capacity:,} jobs waiting); try again in a few minutes."
            )

    @contextmanager
    def held(self, owner: JobOwner) -> Iterator[None]:
        """Count one more place for `owner` while the block runs."""
        self._held[owner.user_id] += 1
        try:
            yield
        finally:
            self._held[owner.user_id] -= 1
            if not self._held[owner.user_id]:
                del self._held[owner.user_id]
