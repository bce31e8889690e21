"""`ClassBook`: one priority class's waiting jobs in fair order, and its virtual time."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sortedcontainers import SortedList

if TYPE_CHECKING:
    from generation.scheduler.people import Job

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

    def tag(self, job: Job, cost: float) -> None:
        """Give `job` (of this class, `cost` estimated GPU-seconds) its start tag and advance its
        person's finish tag by its charge (cost over their weight), kept with the job so that
        exactly it can be given back."""
        user, rank, floor = job.user, job.rank, self.floor()
        earlier = user.waiting_in.get(rank, 0) > 0
        start = user.finish.get(rank, floor)
        if earlier:  # never before their own earlier job of the class
            start = max(start, user.last_tag[rank])
        job.cost, job.charge = cost, cost / user.weight
        newcomer = not earlier and start <= floor  # first in line: ahead of the served on ties
        job.key = (max(start, floor), 0 if newcomer else 1, job.seq)
        user.last_tag[rank] = job.key[0]
        user.finish[rank] = job.key[0] + job.charge
        self.max_finish = max(self.max_finish, user.finish[rank])

    def give_back(self, job: Job, running: Iterable[Job]) -> None:
        """`job` (no longer waiting here) will not run in this class: its person's finish tag
        and their later jobs of the class move back by exactly its charge, but never before
        their earlier waiting ones (tags can be closer than charges: a run shorter than its
        estimate moves the finish tag back, and a job is then tagged at its person's last tag).
        Of the `running` jobs, theirs move too: a job requeued after its worker died runs at
        its tag again."""
        user, rank = job.user, job.rank
        user.finish[rank] -= job.charge
        mine = [j for j in user.jobs() if j.rank == rank and j is not job]
        before = max((j.key for j in mine if j.seq < job.seq), default=None)

        def moved(other: Job) -> Key:
            key = (other.key[0] - job.charge, *other.key[1:])
            return key if before is None or key > before else (*before[:2], other.seq)

        later = [j for j in mine if j.seq > job.seq]
        for other in later:
            self.remove(other.key, other.id, other.model, other.work)
            other.key = moved(other)
            self.add(other.key, other.id, other.model, other.work)
        if later:
            user.last_tag[rank] = max(user.last_tag[rank] - job.charge, *(o.key[0] for o in later))
        for other in running:
            if other.user is user and other.rank == rank and other.seq > job.seq:
                other.key = moved(other)
