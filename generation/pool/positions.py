"""`PositionBoard`: keeps the place in the queue that people see current, so nothing polls.

Whenever the queue may have moved (a job queued, started, cancelled, put back; the queue paused
or resumed) the pool calls `moved()`. Once per turn of the event loop, however many moves came,
the board lists the first `shown` waiting jobs (O(shown x log n) in the scheduler, whatever the
queue's length) and tells the pool (which publishes a `JobQueued`) each whose place changed, or
whose estimate appeared or vanished (pause, resume). A job pushed out of the first `shown` hears
its new place once; further back, a place is told when the job is queued and when it comes into
the first `shown` again (a moving queue would otherwise cost an edit per job per move).
What the board told is what every subscriber gets: a subscriber's stream that falls behind
coalesces a job's places to the latest, never drops one (`generation.pool.stream`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from generation.scheduler import FairScheduler

PUSHED_POSITIONS = 20  # waiting jobs whose place is kept current (each change: one edit)


class PositionBoard:
    """What place each of the first `shown` waiting jobs was last told (see the module)."""

    def __init__(
        self,
        scheduler: FairScheduler,
        tell: Callable[[int, int, float | None], None],
        shown: int = PUSHED_POSITIONS,
    ) -> None:
        """`tell(job_id, position, eta_s)`: announce a job's new place."""
        self._scheduler = scheduler
        self._tell = tell
        self._shown = shown
        self._told: dict[int, tuple[int, bool]] = {}  # job → (place, has an estimate)
        self._pending = False

    def told(self, job_id: int, position: int, eta_s: float | None) -> None:
        """The pool itself announced this place (a job queued or put back)."""
        if position <= self._shown:
            self._told[job_id] = (position, eta_s is not None)

    def moved(self) -> None:
        """The queue may have moved: push the changed places once this turn's moves are done."""
        if not self._pending:
            self._pending = True
            asyncio.get_running_loop().call_soon(self.push)

    def push(self) -> None:
        """Publish the places that changed since they were last told."""
        self._pending = False
        listed = set()
        for waiting in self._scheduler.waiting(self._shown):
            listed.add(waiting.job_id)
            seen = (waiting.position, waiting.eta_s is not None)
            if self._told.get(waiting.job_id) != seen:
                self._told[waiting.job_id] = seen
                self._tell(waiting.job_id, waiting.position, waiting.eta_s)
        for job_id in [job_id for job_id in self._told if job_id not in listed]:
            del self._told[job_id]
            found = self._scheduler.position(job_id)  # None: it started or ended
            if found is not None:
                self._tell(job_id, *found)
