"""The model-swap rule: which idle GPU the fairest job starts on, or which job of the same class
and cap tier starts before it to save a model load (rule 5 of `generation.scheduler.core`).

A job that passes the fairest one is found by `PeopleHeaps.passer`, within `swap_lead_s` of its
tag and a `swap_lead_s` budget of GPU-seconds kept with the job passed over.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from generation.scheduler.book import ClassBook
from generation.scheduler.people import Entry, Job, PeopleHeaps
from generation.scheduler.types import SchedulerSettings, WorkerView


class Swaps:
    """Rule 5 over the scheduler's state. `running` is a live view of the running jobs;
    `estimate(model, work)` gives a job's estimated GPU-seconds."""

    def __init__(
        self,
        settings: SchedulerSettings,
        people: PeopleHeaps,
        books: Sequence[ClassBook],
        running: Collection[Job],
        estimate: Callable[[str, float], float],
    ) -> None:
        self._settings = settings
        self._people = people
        self._books = books
        self._running = running
        self._estimate = estimate

    def choose(
        self, job: Job, idle: Sequence[WorkerView], by_model: dict[str, list[Entry]]
    ) -> tuple[Job, WorkerView]:
        """The job to start and its GPU, for `job` the fairest of one class and cap tier
        (`by_model`) and at least one of `idle` allowed its model."""
        choice = self._warm_choice(job, idle, by_model) or self._spread_choice(job, idle, by_model)
        if choice is None:
            choice = job, min((w for w in idle if w.may_run(job.model)), key=self._load_order)
        return choice

    def _warm_choice(
        self, job: Job, idle: Sequence[WorkerView], by_model: dict[str, list[Entry]]
    ) -> tuple[Job, WorkerView] | None:
        """`job` on a GPU that holds its model; else the fairest job of the same class and
        cap tier whose model an idle GPU holds (see `PeopleHeaps.passer`); else None (`job`
        loads its model)."""
        warm = [w for w in idle if job.model in w.loaded and w.may_run(job.model)]
        if warm:
            return job, min(warm, key=lambda w: (_breadth(w), len(w.loaded)))
        return self._pass(job, [(w, m) for w in idle for m in w.loaded], by_model)

    def _spread_choice(
        self, job: Job, idle: Sequence[WorkerView], by_model: dict[str, list[Entry]]
    ) -> tuple[Job, WorkerView] | None:
        """When a busy GPU is running a job of `job`'s model (so `job` can start there without
        a load), the fairest job of the same class and cap tier whose model no GPU holds, to
        load its model on an idle GPU rather than a second copy of `job`'s; within the same lead
        and budget as any job passing `job` (see `PeopleHeaps.passer`). Else None."""
        busy = {running.model for running in self._running}
        if job.model not in busy:
            return None
        free = [m for m in by_model if m not in busy.union(*(w.loaded for w in idle))]
        pairs = [(w, m) for w in sorted(idle, key=self._load_order) for m in free]
        return self._pass(job, pairs, by_model)

    def _pass(
        self, job: Job, pairs: list[tuple[WorkerView, str]], by_model: dict[str, list[Entry]]
    ) -> tuple[Job, WorkerView] | None:
        return self._people.passer(
            job,
            pairs,
            by_model,
            self._settings.swap_lead_s,
            lambda j: self._estimate(j.model, j.work),
        )

    def _load_order(self, worker: WorkerView) -> tuple[float, float]:
        """Which idle GPU loads a model first: the one allowed the fewest models, then the one
        whose loaded models have the least waiting work (a load evicts them)."""
        return _breadth(worker), self._demand(worker.loaded)

    def _demand(self, models: frozenset[str]) -> float:
        """Waiting work units for `models`: a load evicts the GPU's least wanted models."""
        return sum(book.work.get(model, 0.0) for book in self._books for model in models)


def _breadth(worker: WorkerView) -> float:
    """How many models a worker may run: the narrowest GPU that may run a job is kept busy
    first, leaving broader ones for jobs only they can run."""
    return float("inf") if worker.models is None else len(worker.models)
