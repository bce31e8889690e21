"""`ClassBook`: one priority class's waiting jobs in fair order, and its virtual time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sortedcontainers import SortedList

# A job's order key within its class: (start tag, 0 for a newcomer's job else 1, submission seq).
Key = tuple[float, int, int]


@dataclass(slots=True)
class ClassBook:
    """The waiting jobs of one class as (key, job id) in a sorted list (a job's rank is
    O(log n)), the class's virtual time, and what ETAs need: the waiting work units per
    model."""

    order: SortedList = field(default_factory=SortedList)
    virtual: float = 0.0  # the greatest start tag dispatched (start-time fair queuing's v(t))
    max_finish: float = 0.0  # the greatest finish tag given
    work: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.order)

    def floor(self) -> float:
        """Where a newcomer's tag starts: the virtual time, or the least waiting tag if lower."""
        return min(self.virtual, self.order[0][0][0]) if self.order else self.virtual

    def add(self, key: Key, job_id: int, model: str, work: float) -> None:
        self.order.add((key, job_id))
        self.work[model] = self.work.get(model, 0.0) + work

    def remove(self, key: Key, job_id: int, model: str, work: float) -> None:
        self.order.remove((key, job_id))
        self.work[model] -= work

    def rank(self, key: Key, job_id: int) -> int:
        """How many waiting jobs of this class come before this one."""
        return self.order.index((key, job_id))

    def work_s(self, speed: Callable[[str], float]) -> float:
        """Estimated GPU-seconds of all the waiting work of this class."""
        return sum(units * speed(model) for model, units in self.work.items())
