"""The scheduler's records of waiting people and jobs, and the heaps that find the fairest.

People sit in one min-heap per (cap tier, class, model), keyed by the order key of their first
waiting job of that model; a change re-pushes a person's entries and leaves the old ones stale
(lazy deletion), so each update is O(models x log n).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from sortedcontainers import SortedList

from generation.scheduler.book import Key
from generation.scheduler.types import SchedulerSettings, WorkerView

UNDER_CAP, AT_CAP = 0, 1
_SWAP_SCAN = 16  # entries looked at per loaded model for a swap-saving job (a cost bound only)


@dataclass(slots=True, eq=False)
class Job:
    id: int
    user: Person
    model: str
    work: float
    rank: int  # class now (a relax job moves to normal when it has waited ageing_s)
    asked_rank: int  # class it was submitted with
    queued_at: float
    seq: int
    key: Key = (0.0, 1, 0)
    cost: float = 0.0  # estimated GPU-seconds when its tag was set
    charge: float = 0.0  # what its tag added to its person's finish tag (cost / weight then)
    passed_s: float = 0.0  # GPU-seconds of jobs started ahead of it to save a model load
    expected: float = 0.0  # estimated GPU-seconds of occupancy at dispatch, a model load included
    started_at: float = 0.0
    worker: str = ""


@dataclass(slots=True, eq=False)
class Person:
    id: int
    weight: float = 1.0
    cap: int = 1
    cap_override: int | None = None  # a running cap an admin set for them
    running: int = 0
    finish: dict[int, float] = field(default_factory=dict)  # finish tag per class
    by_model: dict[str, deque[Job]] = field(default_factory=dict)  # waiting, in order asked
    entries: dict[str, int] = field(default_factory=dict)  # live heap entry per model
    waiting: int = 0
    waiting_in: dict[int, int] = field(default_factory=dict)  # waiting jobs per class
    last_tag: dict[int, float] = field(default_factory=dict)  # greatest tag given per class
    seqs: SortedList = field(default_factory=SortedList)  # waiting jobs' seqs (own rank)
    waiting_cost: float = 0.0  # estimated GPU-seconds of their waiting jobs

    def jobs(self) -> Iterator[Job]:
        for queue in self.by_model.values():
            yield from queue

    def first_for(self, worker: WorkerView) -> Job | None:
        """Their first waiting job (in the order asked) that `worker` may run."""
        heads = [q[0] for m, q in self.by_model.items() if q and worker.may_run(m)]
        return min(heads, key=lambda job: job.seq, default=None)


class Caps:
    """Running caps: `max_running` x weight, rounded up (or an admin's override), with weights
    taken relative to the least weight below 1 of anyone known, so that a weight of 0.5 next to
    1 holds on any number of GPUs."""

    def __init__(self, settings: SchedulerSettings) -> None:
        self._settings = settings
        self._weights = SortedList()  # (weight, person id) of everyone known
        self._least = 1.0

    def join(self, person: Person, weight: float, override: int | None) -> bool:
        """Set a (new or known) person's weight and override; True when every cap changes."""
        if (person.weight, person.id) in self._weights:
            self._weights.remove((person.weight, person.id))
        person.weight, person.cap_override = weight, override
        self._weights.add((weight, person.id))
        return self._settle()

    def leave(self, person: Person) -> bool:
        """Forget a person; True when every cap changes."""
        self._weights.remove((person.weight, person.id))
        return self._settle()

    def of(self, person: Person) -> int:
        return self._settings.running_cap(person.weight / self._least, person.cap_override)

    def _settle(self) -> bool:
        least = min(1.0, self._weights[0][0]) if self._weights else 1.0
        changed, self._least = least != self._least, least
        return changed


# A heap entry: (*head job key, entry id, person, model); live while person.entries[model] == id.
Entry = tuple[float, int, int, int, Person, str]


class PeopleHeaps:
    """Per (tier, class): model → heap of the people with a waiting job of that model."""

    def __init__(self) -> None:
        self._heaps: dict[tuple[int, int], dict[str, list[Entry]]] = {}
        self._ids = itertools.count()
        self._count = 0  # entries pushed and not yet popped, live or not

    def level(self, tier: int, rank: int) -> dict[str, list[Entry]]:
        return self._heaps.get((tier, rank), {})

    def place(self, person: Person, people: int) -> None:
        """(Re)index each of the person's models under its head job's class and the cap tier.
        `people`: how many are known (to size the stale-entry budget)."""
        tier = AT_CAP if person.running >= person.cap else UNDER_CAP
        person.entries = {}
        for model, queue in person.by_model.items():
            head = queue[0]
            entry = person.entries[model] = next(self._ids)
            heap = self._heaps.setdefault((tier, head.rank), {}).setdefault(model, [])
            heapq.heappush(heap, (*head.key, entry, person, model))
            self._count += 1
        if self._count > 4 * people + 1024:  # keeps the amortised cost O(1) per push
            self._compact()

    def fairest(self, heaps: list[list[Entry]]) -> Entry | None:
        best: Entry | None = None
        for heap in heaps:
            top = self._live_top(heap)
            if top is not None and (best is None or top < best):
                best = top
        return best

    def first_valid(self, heap: list[Entry], worker: WorkerView, limit: float) -> Entry | None:
        """The least live entry with a tag within `limit` whose job is its person's first among
        the jobs `worker` may run (looking at most `_SWAP_SCAN` entries deep)."""
        popped, found = [], None
        while len(popped) < _SWAP_SCAN and (top := self._live_top(heap)) is not None:
            if top[0] > limit:
                break
            if top[4].first_for(worker) is top[4].by_model[top[5]][0]:
                found = top
                break
            popped.append(heapq.heappop(heap))
        for entry in popped:
            heapq.heappush(heap, entry)
        return found

    def passer(
        self,
        job: Job,
        pairs: Sequence[tuple[WorkerView, str]],
        by_model: dict[str, list[Entry]],
        lead: float,
        cost: Callable[[Job], float],
    ) -> tuple[Job, WorkerView] | None:
        """The fairest job in `by_model` (one class and cap tier) of a model paired with an idle
        GPU in `pairs`, whose tag is within `lead` of `job`'s, to start before `job` on that
        GPU; None once the jobs that passed `job` would add up to more than `lead` estimated
        GPU-seconds (`cost`), which is counted on `job`."""
        if lead <= 0:
            return None
        limit = job.key[0] + lead
        best: tuple[Entry, WorkerView] | None = None
        for worker, model in pairs:
            heap = by_model.get(model)
            if not heap or not worker.may_run(model):
                continue
            found = self.first_valid(heap, worker, limit)
            if found is not None and (best is None or found < best[0]):
                best = found, worker
        if best is None:
            return None
        entry, worker = best
        passer = entry[4].by_model[entry[5]][0]
        if job.passed_s + cost(passer) > lead:  # `job` has been passed over all it may be
            return None
        job.passed_s += cost(passer)
        return passer, worker

    def _live_top(self, heap: list[Entry]) -> Entry | None:
        """The heap's least live entry, after dropping the stale ones above it."""
        while heap and heap[0][3] != heap[0][4].entries.get(heap[0][5]):
            heapq.heappop(heap)
            self._count -= 1
        return heap[0] if heap else None

    def _compact(self) -> None:
        for by_model in self._heaps.values():
            for model, heap in by_model.items():
                by_model[model] = [e for e in heap if e[3] == e[4].entries.get(e[5])]
                heapq.heapify(by_model[model])
        self._count = sum(len(h) for m in self._heaps.values() for h in m.values())
