"""`EventStream`: one subscriber's job events, in order, in a bounded buffer."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from generation.jobs import JobEvent, JobProgress, JobQueued, JobStalled

STREAM_LIMIT = 1_000  # buffered events per subscriber before a job's events are coalesced


def _superseded(event: JobEvent) -> bool:
    """A step, a mere change of place, or a stall: the job's next event carries a newer complete
    snapshot, so a subscriber that has fallen behind needs only the latest. (A `JobQueued` that
    enters a job in the queue never is: it may carry the submitter's reply target, and metrics
    count it; nor is a start or an end.)"""
    return isinstance(event, JobProgress | JobStalled) or (
        isinstance(event, JobQueued) and not event.entered
    )


class _Held:
    """One buffered event; a later superseding event of its job may replace it in place."""

    __slots__ = ("event",)

    def __init__(self, event: JobEvent | None) -> None:
        self.event = event


class EventStream:
    """One subscriber's job events, in order; iteration ends when the pool shuts down.

    Up to `limit` events are buffered as they come. Beyond that, a step, a change of place or a
    stall (`_superseded`) replaces its job's buffered one of those where no start or end of the
    job follows it (counted in `coalesced`): a subscriber that falls behind gets each job's
    latest snapshot, in order with the job's other events, and loses nothing a person must see
    (a place the `PositionBoard` announced reaches it, or a newer one does). Memory stays
    bounded by `limit` plus, per job the pool holds, its few starts and ends and one superseded
    event after each.
    """

    def __init__(self, subscribers: set[EventStream], limit: int = STREAM_LIMIT) -> None:
        self._subscribers = subscribers
        self._limit = limit
        self._buffer: deque[_Held] = deque()
        self._latest: dict[int, _Held] = {}  # job → its last buffered event, if superseded
        self._ready = asyncio.Event()
        self.coalesced = 0

    def __len__(self) -> int:
        """Events buffered, not yet read."""
        return len(self._buffer)

    def __aiter__(self) -> AsyncIterator[JobEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[JobEvent]:
        try:
            while True:
                while not self._buffer:
                    self._ready.clear()
                    await self._ready.wait()
                held = self._buffer.popleft()
                event = held.event
                if event is None:
                    return
                if self._latest.get(event.job_id) is held:
                    del self._latest[event.job_id]
                yield event
        finally:
            self.close()

    def put(self, event: JobEvent | None) -> None:
        """Buffer `event` (None: the end of the stream)."""
        if event is None:
            self._buffer.append(_Held(None))
        else:
            superseded = _superseded(event)
            earlier = self._latest.get(event.job_id)
            if superseded and earlier is not None and len(self._buffer) >= self._limit:
                earlier.event = event
                self.coalesced += 1
                return
            held = _Held(event)
            self._buffer.append(held)
            if superseded:
                self._latest[event.job_id] = held
            else:
                self._latest.pop(event.job_id, None)
        self._ready.set()

    def close(self) -> None:
        """Stop receiving events."""
        self._subscribers.discard(self)
