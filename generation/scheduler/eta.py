"""When a waiting job is expected to start, from the work ahead of it and the GPUs' state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from generation.scheduler.book import ClassBook
from generation.scheduler.estimates import Estimates, left_s, start_after
from generation.scheduler.people import Job


def eta_s(
    job: Job,
    ahead: int,
    now: float,
    *,
    books: Sequence[ClassBook],
    running: Iterable[Job],
    workers: Mapping[str, frozenset[str] | None],
    capacity: int,
    estimates: Estimates,
) -> float:
    """Seconds until `job` starts, with `ahead` jobs listed before it.

    The work ahead is the waiting work of higher classes, plus each job of its class before
    it at the class's mean estimated size, plus the expected model loads of the jobs ahead.
    It is spread over the GPUs that may run its model (with fewer jobs ahead than those GPUs,
    each job ahead takes one whole), each from when its running job is expected to end
    (overrunning jobs are never counted as done). Its person's own earlier jobs are spread over
    at most their running cap."""
    free = {w: 0.0 for w, models in workers.items() if models is None or job.model in models}
    own_free = []
    for other in running:
        left = left_s(other.expected, now - other.started_at)
        if other.worker in free:
            free[other.worker] = left
        if other.user is job.user:
            own_free.append(left)
    unseen = max(0, capacity - len(workers))
    free_in = [*free.values(), *[0.0] * unseen] or [0.0]
    higher = books[: job.rank]
    work = sum(book.work_s(estimates.speed) for book in higher)
    book = books[job.rank]
    in_class = ahead - sum(len(b) for b in higher)
    work += in_class * book.work_s(estimates.speed) / len(book)
    work += ahead * estimates.cold_share * estimates.mean_load_s()
    # fewer jobs ahead than GPUs: each takes a GPU whole, and this one the next to free
    eta = sorted(free_in)[ahead] if ahead < len(free_in) else start_after(free_in, work)
    user = job.user
    mine = user.seqs.bisect_left(job.seq) * user.waiting_cost / user.waiting
    others = sum(b.work_s(estimates.speed) for b in books) - user.waiting_cost
    if mine and others >= mine:  # the cap holds while others wait
        lanes = min(user.cap, len(free_in))
        own = sorted(own_free)[:lanes] + [0.0] * max(0, lanes - len(own_free))
        eta = max(eta, start_after(own, mine))
    return eta
