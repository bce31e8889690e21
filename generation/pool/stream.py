"""`EventStream`: one subscriber's job events, in order, in a bounded buffer."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from generation.jobs import JobEvent, JobProgress, JobQueued

STREAM_LIMIT = 1_000  # buffered events per subscriber before superseded ones are dropped


def _superseded(event: JobEvent | None) -> bool:
    """A step, or a mere change of place: a later event of the same job carries a newer
    snapshot. (A `JobQueued` that enters a job in the queue is never dropped: it may carry
    the submitter's reply target, and metrics count it.)"""
    return isinstance(event, JobProgress) or (isinstance(event, JobQueued) and not event.entered)


class EventStream:
    """One subscriber's job events, in order; iteration ends when the pool shuts down.

    The buffer holds at most `limit` events that a later one supersedes (a step, a change of
    place): a subscriber that falls behind loses the oldest of those (counted in `dropped`),
    never a start or an end, so memory stays bounded by `limit` plus one start and one end per
    job the pool holds.
    """

    def __init__(self, subscribers: set[EventStream], limit: int = STREAM_LIMIT) -> None:
        self._subscribers = subscribers
        self._limit = limit
        self._buffer: deque[JobEvent | None] = deque()
        self._ready = asyncio.Event()
        self.dropped = 0

    def __aiter__(self) -> AsyncIterator[JobEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[JobEvent]:
        try:
            while True:
                while not self._buffer:
                    self._ready.clear()
                    await self._ready.wait()
                event = self._buffer.popleft()
                if event is None:
                    return
                yield event
        finally:
            self.close()

    def put(self, event: JobEvent | None) -> None:
        """Buffer `event` (None: the end of the stream)."""
        if len(self._buffer) >= self._limit and not self._make_room(event):
            self.dropped += 1
            return
        self._buffer.append(event)
        self._ready.set()

    def _make_room(self, event: JobEvent | None) -> bool:
        """Drop the oldest superseded event; False when `event` itself should be dropped."""
        if _superseded(event):
            return False
        for index, held in enumerate(self._buffer):
            if _superseded(held):
                del self._buffer[index]
                self.dropped += 1
                break
        return True

    def close(self) -> None:
        """Stop receiving events."""
        self._subscribers.discard(self)
