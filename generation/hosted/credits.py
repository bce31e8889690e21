"""The out-of-credits state: after a 402, API jobs are refused until an admin resumes them or
a probe (`HostedBackend.probe`) finds credits again. One `CreditGate` per key, owned by the
backend."""

from __future__ import annotations


class CreditGate:
    def __init__(self) -> None:
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> bool:
        """Refuse API jobs from now on; True the first time (tell the admins once)."""
        first = not self._paused
        self._paused = True
        return first

    def resume(self) -> None:
        self._paused = False
