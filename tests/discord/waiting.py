"""Waiting for the bot without polling: every recorded change wakes the waiters, which re-check.

Changes are signalled from plain (non-async) code too (task done-callbacks, state mutations), so
the signal is a set of futures rather than an ``asyncio.Condition``, whose ``notify`` needs its
lock held by a coroutine; the effect is the same: waiters sleep until something changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class BotCrashed(AssertionError):
    """The bot's client task (or bot process) ended unexpectedly; the test fails at once."""


class ChangeSignal:
    """Wakes every waiter whenever the fake's state changes or the bot crashes."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []
        self.crash: BaseException | None = None

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def report_crash(self, error: BaseException) -> None:
        """Record the first crash; every current and future wait raises ``BotCrashed``."""
        if self.crash is None:
            self.crash = error
        self.notify()

    def raise_if_crashed(self) -> None:
        if self.crash is not None:
            raise BotCrashed(f"the bot crashed: {self.crash!r}") from self.crash

    async def wait_for(self, predicate: Callable[[], T], timeout: float, what: str) -> T:  # noqa: ASYNC109
        """Return ``predicate()``'s first truthy value; ``TimeoutError`` naming ``what``."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self.raise_if_crashed()
                    result = predicate()
                    if result:
                        return result
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiters.append(waiter)
                    await waiter
        except TimeoutError:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}") from None
