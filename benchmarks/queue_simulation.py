"""The queue's promises under realistic and adversarial load: a seeded discrete-event simulation.

Drives the real `FairScheduler` (never a copy of its policy) on simulated GPUs, next to two
baselines: FIFO (one queue, first come first served) and per-user round robin. A GPU keeps
`max_models` models loaded (1 unless said), unloading the least recently used as a worker does;
running a job whose model it does not hold first loads it (8-25 s). Scenarios, each seeded and
fixed:

- **evening**: 2 GPUs, 3 models, 2 hours of Poisson arrivals at ~85 % load (model loads aside)
  from 60 people with heavy-tailed activity (a few people ask for most jobs); the speed priors
  are 1.5x too optimistic, so estimates must be learnt. Waits per kind of user, Jain index, model
  loads (also those made while no waiting job's model was loaded on an idle GPU, and those of a
  model a busy GPU held), ETA error at submission, ETAs of "0 s" given while a job ahead was
  still running. Each GPU holds one model at a time: a 40 GB card (FLUX.1 needs 34 GB, so it
  fits no second model), or any GPU listed without `max_models`. Next to the baselines,
  `warm_first`, which is not fair: a job whose model an idle GPU holds always goes first, so
  its loads are about the fewest that any policy which never idles a GPU can expect here.
- **evening_two_models_per_gpu**: the same on GPUs keeping 2 models (the README's 80 GB
  example, `max_models = 2`).
- **flood**: 3 people queue 40 jobs each at once on 2 GPUs; a light user asks for one job every
  45 s. Light users' longest wait against the longest single job plus one model load, for
  `max_running` 1, 2 and 4.
- **mixed**: GPU A may run only Playground, GPU B everything; FLUX and Playground jobs mixed.
  Idle GPU-seconds while a job that GPU may run waits.
- **weights**: backlogged people with weights 2 and 1 on 1 and 2 GPUs, and 2, 1, 1, 1 on 4 GPUs;
  each one's GPU time over its fair share (1.0 = exact).
- **relax**: normal traffic at 1.2x the GPUs' capacity for 2 hours; one relax person asks for a
  job every 5 minutes. The relax jobs' longest wait.
- **swaps**: one GPU holding Playground, a stream of one-job Playground people at 0.9x and 1.3x
  load, and one FLUX job: its wait against the swap lead plus the longest job plus one load.
- **one_job_people**: 2 GPUs at 95 % load, each person asks one job (all tie in fair order):
  ETA error at submission against the wait.
- **churn**: the evening with 10 % of waiting jobs cancelled and a worker crash every 5 minutes
  (its job is retried). Jobs lost, run twice, or run out of their person's order.
- **scale**: 100,000 queued jobs from 10,000 people; microseconds per submit, dispatch and
  position query.

Prints one JSON line. Beside this file: `queue_simulation.before.json`, this benchmark run on
the scheduler before the redesign of issue 13 (commit f5f9345), and
`queue_simulation.after.json`, after it.

    python -m benchmarks.queue_simulation
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import json
import math
import random
import statistics
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from generation.jobs import JobOwner, Priority
from generation.scheduler import FairScheduler, SchedulerSettings, WorkerView

PLAYGROUND, FLUX_DEV, FLUX_SCHNELL = "playground-v2.5", "flux-dev", "flux-schnell"
LOAD_S = {PLAYGROUND: 8.0, FLUX_DEV: 25.0, FLUX_SCHNELL: 15.0}
MEAN_JOB_S = {PLAYGROUND: 10.0, FLUX_DEV: 30.0, FLUX_SCHNELL: 6.0}


@dataclass
class Job:
    id: int
    user: int
    model: str
    seconds: float  # true GPU-seconds, load excluded
    arrival: float
    priority: Priority = Priority.NORMAL
    weight: float = 1.0
    cancel_at: float | None = None
    start: float | None = None
    eta: float | None = None
    eta_zero_behind_running: bool = False


@dataclass
class Gpu:
    """A simulated GPU: it keeps up to `max_models` models loaded, unloading the least recently
    used to make room, as a worker does (generation/workers/runtime.py)."""

    id: str
    models: frozenset[str] | None = None
    loaded: tuple[str, ...] = ()  # least recently used first
    max_models: int = 1
    job: Job | None = None
    generation: int = 0  # bumps on a crash so the old completion event is ignored

    def may_run(self, model: str) -> bool:
        return self.models is None or model in self.models

    def holds(self, model: str) -> bool:
        return model in self.loaded

    def use(self, model: str) -> bool:
        """Run a job of `model`: True when it had to be loaded."""
        cold = model not in self.loaded
        kept = [m for m in self.loaded if m != model]
        self.loaded = (*kept[max(0, len(kept) - self.max_models + 1) :], model)
        return cold


# ---- policies --------------------------------------------------------------------------------


class Atelier:
    """The real `FairScheduler` on the simulated clock."""

    name = "atelier"

    def __init__(self, clock: Callable[[], float], gpus: list[Gpu], max_running: int) -> None:
        settings = SchedulerSettings(max_queued=10**6, max_running=max_running)
        priors = {model: 1.0 / 1.5 for model in LOAD_S}  # seconds per unit; truth is 1.0
        self.scheduler = FairScheduler(
            settings, cost_factors=priors, capacity=len(gpus), clock=clock
        )
        self.record_load = getattr(self.scheduler, "record_load", None)

    def submit(self, job: Job) -> None:
        owner = JobOwner(job.user, priority=job.priority, weight=job.weight)
        self.scheduler.submit(job.id, owner, job.model, job.seconds)

    def assign(self, idle: list[Gpu]) -> tuple[int, str] | None:
        views = [WorkerView(g.id, g.models, frozenset(g.loaded)) for g in idle]
        found = self.scheduler.assign(views)
        return (found.job_id, found.worker_id) if found else None

    def finish(self, job: Job, seconds: float) -> None:
        self.scheduler.finish(job.id, seconds)

    def requeue(self, job: Job) -> None:
        self.scheduler.requeue(job.id)

    def cancel(self, job: Job) -> bool:
        return self.scheduler.cancel(job.id)

    def loaded(self, model: str, seconds: float) -> None:
        if self.record_load is not None:
            self.record_load(model, seconds)

    def eta(self, job: Job) -> float | None:
        found = self.scheduler.position(job.id)
        return found[1] if found else None


class Fifo:
    """First come first served: the oldest job any idle GPU may run, on a warm GPU if one is."""

    name = "fifo"

    def __init__(self, clock: Callable[[], float], gpus: list[Gpu], max_running: int) -> None:
        self.queue: dict[int, Job] = {}  # insertion ordered

    def submit(self, job: Job) -> None:
        self.queue[job.id] = job

    def requeue(self, job: Job) -> None:
        self.queue = {job.id: job, **self.queue}

    def _take(self, job: Job, idle: list[Gpu]) -> tuple[int, str]:
        del self.queue[job.id]
        gpu = min((g for g in idle if g.may_run(job.model)), key=lambda g: not g.holds(job.model))
        return job.id, gpu.id

    def assign(self, idle: list[Gpu]) -> tuple[int, str] | None:
        for job in self.queue.values():
            if any(g.may_run(job.model) for g in idle):
                return self._take(job, idle)
        return None

    def finish(self, job: Job, seconds: float) -> None:
        pass

    def cancel(self, job: Job) -> bool:
        return self.queue.pop(job.id, None) is not None

    def loaded(self, model: str, seconds: float) -> None:
        pass

    def eta(self, job: Job) -> float | None:
        return None


class RoundRobin(Fifo):
    """Per-user round robin: people take turns, one job each, oldest job of the person first."""

    name = "round_robin"

    def __init__(self, clock: Callable[[], float], gpus: list[Gpu], max_running: int) -> None:
        super().__init__(clock, gpus, max_running)
        self.turns: deque[int] = deque()  # people in turn order

    def assign(self, idle: list[Gpu]) -> tuple[int, str] | None:
        by_user: dict[int, list[Job]] = defaultdict(list)
        for job in self.queue.values():
            by_user[job.user].append(job)
        for user in by_user:
            if user not in self.turns:
                self.turns.append(user)
        for user in list(self.turns):
            runnable = [j for j in by_user.get(user, ()) if any(g.may_run(j.model) for g in idle)]
            if runnable:
                self.turns.remove(user)
                self.turns.append(user)
                return self._take(runnable[0], idle)
        return None


class WarmFirst(Fifo):
    """A reference for model loads, not a fair policy: a waiting job whose model an idle GPU
    holds always goes first (the oldest such); else the model with the most waiting jobs loads,
    preferring one that no busy GPU holds. It never idles a GPU, so its loads are about the
    fewest that any policy keeping every GPU busy can expect from the same arrivals."""

    name = "warm_first"

    def __init__(self, clock: Callable[[], float], gpus: list[Gpu], max_running: int) -> None:
        super().__init__(clock, gpus, max_running)
        self.gpus = gpus

    def assign(self, idle: list[Gpu]) -> tuple[int, str] | None:
        for gpu in idle:
            for job in self.queue.values():
                if gpu.holds(job.model) and gpu.may_run(job.model):
                    return self._take(job, [gpu])
        busy = {m for g in self.gpus if g.job is not None for m in g.loaded}
        runnable = [j for j in self.queue.values() if any(g.may_run(j.model) for g in idle)]
        if not runnable:
            return None
        counts = defaultdict(int)
        for job in runnable:
            counts[job.model] += 1
        model = max(counts, key=lambda m: (m not in busy, counts[m]))
        return self._take(next(j for j in runnable if j.model == model), idle)


POLICIES = (Atelier, Fifo, RoundRobin)


# ---- the simulator -------------------------------------------------------------------------


@dataclass
class Outcome:
    jobs: list[Job]
    gpus: int
    end: float
    loads: int = 0
    forced_loads: int = 0  # loads when no waiting job's model was loaded on an idle GPU
    copies: int = 0  # loads of a model that a busy GPU held
    load_seconds: float = 0.0
    idle_while_runnable_s: float = 0.0
    ran: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    order_violations: int = 0
    service: dict[int, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))


def simulate(
    policy_type: type,
    jobs: list[Job],
    gpus: list[Gpu],
    *,
    max_running: int = 1,
    crash_every_s: float | None = None,
    until: float | None = None,
    seed: int = 0,
) -> Outcome:
    """Run `jobs` (their arrivals, cancels) on `gpus` under a policy until all are done (or
    `until`). Counts loads, idle GPU-seconds while a job that GPU may run waits, and order."""
    rng = random.Random(seed)
    now = [0.0]
    policy = policy_type(lambda: now[0], gpus, max_running)
    by_id = {job.id: job for job in jobs}
    events: list[tuple[float, int, int, int]] = []  # (time, kind, a, b)
    arrive, done, cancel, crash = 0, 1, 2, 3
    for job in jobs:
        heapq.heappush(events, (job.arrival, arrive, job.id, 0))
        if job.cancel_at is not None:
            heapq.heappush(events, (job.cancel_at, cancel, job.id, 0))
    if crash_every_s:
        t = crash_every_s
        while t < max(job.arrival for job in jobs) + 3600:
            heapq.heappush(events, (t, crash, rng.randrange(len(gpus)), 0))
            t += crash_every_s
    gpu_of = {g.id: g for g in gpus}
    waiting: dict[int, Job] = {}
    asked: dict[int, list[int]] = defaultdict(list)  # person -> waiting ids in the order asked
    out = Outcome(jobs, len(gpus), 0.0)
    last = 0.0

    def runnable_idle() -> int:
        idle = [g for g in gpus if g.job is None]
        return sum(any(g.may_run(j.model) for j in waiting.values()) for g in idle)

    while events:
        t, kind, a, b = heapq.heappop(events)
        if until is not None and t > until:
            break
        out.idle_while_runnable_s += runnable_idle() * (t - last)
        now[0] = last = t
        if kind == arrive:
            job = by_id[a]
            policy.submit(job)
            waiting[job.id] = job
            asked[job.user].append(job.id)
        elif kind == cancel:
            job = by_id[a]
            if job.id in waiting and policy.cancel(job):
                del waiting[job.id]
                asked[job.user].remove(job.id)
        elif kind == done:
            gpu = gpus[a]
            if gpu.generation != b or gpu.job is None:
                continue
            job, gpu.job = gpu.job, None
            policy.finish(job, job.seconds)
        elif kind == crash:
            gpu = gpus[a]
            if gpu.job is None:
                continue
            job, gpu.job = gpu.job, None
            gpu.generation += 1
            gpu.loaded = ()
            out.service[job.user].pop()
            policy.requeue(job)
            waiting[job.id] = job
            asked[job.user].insert(0, job.id)
            out.ran[job.id] -= 1
        while (idle := [g for g in gpus if g.job is None]) and (found := policy.assign(idle)):
            warm_waiting = any(
                g.holds(j.model) and g.may_run(j.model) for g in idle for j in waiting.values()
            )
            job_id, gpu_id = found
            job, gpu = by_id[job_id], gpu_of[gpu_id]
            assert gpu.job is None
            assert gpu.may_run(job.model)
            assert job_id in waiting
            earlier = asked[job.user][: asked[job.user].index(job_id)]
            if any(gpu.may_run(by_id[e].model) for e in earlier):
                out.order_violations += 1
            asked[job.user].remove(job_id)
            del waiting[job_id]
            if job.start is None:
                job.start = t
            load = 0.0
            if gpu.use(job.model):
                load = LOAD_S[job.model]
                out.loads += 1
                out.forced_loads += not warm_waiting
                out.copies += any(g.job and g.holds(job.model) for g in gpus)
                out.load_seconds += load
                policy.loaded(job.model, load)
            gpu.job = job
            out.ran[job_id] += 1
            begin = t + load
            out.service[job.user].append((begin, begin + job.seconds))
            heapq.heappush(events, (begin + job.seconds, done, gpus.index(gpu), gpu.generation))
        if kind == arrive and by_id[a].id in waiting:
            job = by_id[a]
            job.eta = policy.eta(job)
            if job.eta is not None and job.eta <= 0.0 and all(g.job for g in gpus):
                job.eta_zero_behind_running = True
    out.end = now[0]
    return out


# ---- scenarios -------------------------------------------------------------------------------


def evening_jobs(seed: int, hours: float = 2.0, load: float = 0.85, gpus: int = 2) -> list[Job]:
    """Poisson arrivals; people's activity is Zipf-like (person k asks ~1/k as often)."""
    rng = random.Random(seed)
    people = 60
    activity = [1.0 / (k + 1) for k in range(people)]
    mix = [(PLAYGROUND, 0.5), (FLUX_SCHNELL, 0.3), (FLUX_DEV, 0.2)]
    mean_s = sum(MEAN_JOB_S[m] * p for m, p in mix)
    rate = load * gpus / mean_s
    jobs, t = [], 0.0
    favourite = {p: rng.choices([m for m, _ in mix], [w for _, w in mix])[0] for p in range(people)}
    while (t := t + rng.expovariate(rate)) < hours * 3600:
        person = rng.choices(range(people), activity)[0]
        model = favourite[person] if rng.random() < 0.8 else rng.choice([m for m, _ in mix])
        seconds = MEAN_JOB_S[model] * rng.lognormvariate(0, 0.5) / math.exp(0.125)
        jobs.append(Job(len(jobs), person, model, seconds, t))
    return jobs


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def jain(values: list[float]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values)) if values else 1.0


def normalised_service(out: Outcome, horizon: float) -> list[float]:
    """Each person's GPU time in [0, horizon] over their max-min fair share of the GPUs, given
    the demand that had arrived by then (1.0: exactly fair)."""
    demand: dict[int, float] = defaultdict(float)
    for job in out.jobs:
        if job.arrival < horizon:
            demand[job.user] += job.seconds
    received = {
        user: sum(max(0.0, min(b, horizon) - a) for a, b in out.service[user] if a < horizon)
        for user in demand
    }
    capacity, left, share = out.gpus * horizon, sorted(demand, key=demand.__getitem__), {}
    while left:
        user = left.pop(0)
        share[user] = min(demand[user], capacity / (len(left) + 1))
        capacity -= share[user]
    return [min(1.0, received[u] / share[u]) for u in demand if share[u] > 0]


def waits(jobs: list[Job]) -> list[float]:
    return [job.start - job.arrival for job in jobs if job.start is not None]


def evening_report(out: Outcome) -> dict[str, object]:
    per_user: dict[int, int] = defaultdict(int)
    for job in out.jobs:
        per_user[job.user] += 1
    light = [j for j in out.jobs if per_user[j.user] <= 10]
    heavy = [j for j in out.jobs if per_user[j.user] > 10]
    eta_errors = [
        abs(job.eta - (job.start - job.arrival))
        for job in out.jobs
        if job.eta is not None and job.start is not None
    ]
    return {
        "light_p95_wait_s": round(percentile(waits(light), 0.95), 1),
        "light_max_wait_s": round(max(waits(light), default=0.0), 1),
        "heavy_p95_wait_s": round(percentile(waits(heavy), 0.95), 1),
        "mean_wait_s": round(statistics.fmean(waits(out.jobs)), 1),
        "jain": round(jain(normalised_service(out, 3600.0)), 4),
        "model_loads": out.loads,
        "loads_with_no_warm_job_waiting": out.forced_loads,
        "loads_copying_a_busy_gpus_model": out.copies,
        "idle_gpu_s_while_runnable": round(out.idle_while_runnable_s, 1),
        "eta_abs_error_p95_s": round(percentile(eta_errors, 0.95), 1) if eta_errors else None,
        "eta_zero_behind_running": sum(j.eta_zero_behind_running for j in out.jobs),
    }


def evening(max_models: int = 1) -> dict[str, object]:
    """`max_models` 1: GPUs that hold one of these models at a time (a 40 GB card, or any
    GPU listed without `max_models`); 2: the README's 80 GB example (`max_models = 2`)."""
    return {
        p.name: evening_report(
            simulate(p, evening_jobs(7), [Gpu(f"g{i}", max_models=max_models) for i in range(2)])
        )
        for p in (*POLICIES, WarmFirst)
    }


def flood() -> dict[str, object]:
    result = {}
    for max_running in (1, 2, 4):
        rng = random.Random(11)
        jobs = [
            Job(u * 100 + i, u, PLAYGROUND, rng.uniform(8, 40), 0.0)
            for u in range(3)
            for i in range(40)
        ]
        jobs += [
            Job(1000 + k, 100 + k, PLAYGROUND, rng.uniform(4, 12), 10.0 + 45.0 * k)
            for k in range(40)
        ]
        longest = max(j.seconds for j in jobs) + LOAD_S[PLAYGROUND]
        by_policy = {}
        for policy in POLICIES:
            copies = [Job(j.id, j.user, j.model, j.seconds, j.arrival) for j in jobs]
            simulate(policy, copies, [Gpu("g0"), Gpu("g1")], max_running=max_running)
            light = [j for j in copies if j.user >= 100]
            by_policy[policy.name] = round(max(waits(light)), 1)
        result[f"max_running_{max_running}"] = {
            "light_max_wait_s": by_policy,
            "bound_s": round(longest, 1),
        }
    return result


def mixed() -> dict[str, object]:
    rng = random.Random(5)
    jobs, t = [], 0.0
    for _ in range(400):
        t += rng.expovariate(1 / 14.0)
        user = rng.randrange(12)
        model = FLUX_DEV if rng.random() < 0.5 else PLAYGROUND
        jobs.append(Job(len(jobs), user, model, MEAN_JOB_S[model] * rng.uniform(0.5, 1.5), t))
    result = {}
    for policy in POLICIES:
        copies = [Job(j.id, j.user, j.model, j.seconds, j.arrival) for j in jobs]
        gpus = [Gpu("a", frozenset({PLAYGROUND})), Gpu("b")]
        out = simulate(policy, copies, gpus)
        result[policy.name] = {
            "idle_gpu_s_while_runnable": round(out.idle_while_runnable_s, 1),
            "mean_wait_s": round(statistics.fmean(waits(copies)), 1),
        }
    return result


def weights() -> dict[str, object]:
    """Each backlogged person's GPU time over the first 2 hours / its weighted share."""
    result = {}
    for gpus, weight_list in ((1, (2.0, 1.0)), (2, (2.0, 1.0)), (4, (2.0, 1.0, 1.0, 1.0))):
        rng = random.Random(3)
        jobs = [
            Job(len_id, u, PLAYGROUND, rng.uniform(5, 15), 0.0, weight=w)
            for u, w in enumerate(weight_list)
            for len_id in range(u * 10_000, u * 10_000 + 2000)
        ]
        out = simulate(Atelier, jobs, [Gpu(f"g{i}") for i in range(gpus)], until=7200.0)
        got = {
            u: sum(min(b, 7200.0) - a for a, b in spans if a < 7200.0)
            for u, spans in out.service.items()
        }
        total = sum(got.values())
        shares = [
            round(got[u] / total / (w / sum(weight_list)), 3) for u, w in enumerate(weight_list)
        ]
        result[f"{gpus}_gpus"] = shares
    return result


def relax() -> dict[str, object]:
    rng = random.Random(9)
    gpus = 2
    jobs, t = [], 0.0
    while (t := t + rng.expovariate(1.2 * gpus / 10.0)) < 7200:
        user = rng.randrange(20)
        jobs.append(Job(len(jobs), user, PLAYGROUND, rng.uniform(5, 15), t))
    for k in range(24):
        jobs.append(Job(100_000 + k, 999, PLAYGROUND, 10.0, 60.0 + 300.0 * k, Priority.RELAX))
    result = {}
    for policy in (Atelier,):
        copies = [Job(j.id, j.user, j.model, j.seconds, j.arrival, j.priority) for j in jobs]
        simulate(policy, copies, [Gpu(f"g{i}") for i in range(gpus)], until=7200.0)
        mine = [j for j in copies if j.priority is Priority.RELAX]
        started = [j.start - j.arrival for j in mine if j.start is not None]
        unstarted = [7200.0 - j.arrival for j in mine if j.start is None]
        result[policy.name] = {
            "relax_max_wait_s": round(max(started + unstarted), 1),
            "relax_started": len(started),
            "relax_asked": len(mine),
        }
    return result


def swaps() -> dict[str, object]:
    """One GPU holding Playground, a Poisson stream of one-job people asking 10 s Playground
    jobs; at t=5 someone asks one FLUX job. Its wait against the swap lead plus the longest job
    plus its model's load (each newcomer used to get a fresh lead: it never started at 1.3x)."""
    result = {}
    lead = SchedulerSettings().swap_lead_s
    for load in (0.9, 1.3):
        rng = random.Random(3)
        jobs, t = [Job(0, 1, FLUX_DEV, 30.0, 5.0)], 0.0
        while (t := t + rng.expovariate(load / 10.0)) < 5000:
            jobs.append(Job(len(jobs), 100 + len(jobs), PLAYGROUND, 10.0, t))
        by_policy = {}
        for policy in POLICIES:
            copies = [Job(j.id, j.user, j.model, j.seconds, j.arrival) for j in jobs]
            simulate(policy, copies, [Gpu("g0", loaded=(PLAYGROUND,))], until=5000.0)
            flux = copies[0]
            by_policy[policy.name] = round(flux.start - 5.0, 1) if flux.start else None
        result[f"load_{load}"] = {
            "flux_wait_s": by_policy,
            "bound_s": lead + 30.0 + LOAD_S[FLUX_DEV],
        }
    return result


def one_job_people() -> dict[str, object]:
    """2 GPUs at 95 % load from people who each ask one 10-20 s job (equal tags: every one is
    a newcomer). ETA error at submission against the wait."""
    rng = random.Random(7)
    jobs, t = [], 0.0
    while (t := t + rng.expovariate(0.95 * 2 / 15.0)) < 7200:
        jobs.append(Job(len(jobs), len(jobs), PLAYGROUND, rng.uniform(10, 20), t))
    simulate(Atelier, jobs, [Gpu("g0", loaded=(PLAYGROUND,)), Gpu("g1", loaded=(PLAYGROUND,))])
    errors = [abs(j.eta - (j.start - j.arrival)) for j in jobs if j.eta is not None and j.start]
    return {
        "atelier": {
            "wait_p95_s": round(percentile(waits(jobs), 0.95), 1),
            "eta_abs_error_p95_s": round(percentile(errors, 0.95), 1),
        }
    }


def churn() -> dict[str, object]:
    result = {}
    for policy in POLICIES:
        rng = random.Random(13)
        jobs = evening_jobs(21)
        for job in jobs:
            if rng.random() < 0.1:
                job.cancel_at = job.arrival + rng.uniform(1, 300)
        out = simulate(policy, jobs, [Gpu("g0"), Gpu("g1")], crash_every_s=300.0, seed=2)
        ran = [out.ran.get(j.id, 0) for j in jobs]
        result[policy.name] = {
            "run_twice": sum(r > 1 for r in ran),
            "lost": sum(r == 0 and j.cancel_at is None for r, j in zip(ran, jobs, strict=True)),
            "out_of_order": out.order_violations,
        }
    return result


def scale() -> dict[str, object]:
    rng = random.Random(4)
    clock = [0.0]
    models = (PLAYGROUND, FLUX_DEV, FLUX_SCHNELL)
    scheduler = FairScheduler(
        SchedulerSettings(max_queued=10**6),
        cost_factors=dict.fromkeys(models, 0.1),
        capacity=8,
        clock=lambda: clock[0],
    )
    ids = itertools.count()
    submit_ns = []
    for _ in range(100_000):
        priority = Priority.RELAX if rng.random() < 0.1 else Priority.NORMAL
        owner = JobOwner(rng.randrange(10_000), priority=priority)
        started = time.perf_counter_ns()
        scheduler.submit(next(ids), owner, rng.choice(models), rng.uniform(1, 50))
        submit_ns.append(time.perf_counter_ns() - started)
    gpus = [WorkerView(f"g{i}", loaded=frozenset({models[i % 3]})) for i in range(8)]
    dispatch_ns, position_ns = [], []
    for round_ in range(2000):
        clock[0] += 0.5
        started = time.perf_counter_ns()
        found = scheduler.assign([gpus[round_ % 8]])
        dispatch_ns.append(time.perf_counter_ns() - started)
        assert found is not None
        scheduler.finish(found.job_id, found.estimate_s)
    sample = rng.sample(range(2000, 100_000), 200)
    for job_id in sample:
        started = time.perf_counter_ns()
        scheduler.position(job_id)
        position_ns.append(time.perf_counter_ns() - started)
    return {
        "queued": scheduler.queued_count,
        "submit_median_us": round(statistics.median(submit_ns) / 1000, 1),
        "dispatch_median_us": round(statistics.median(dispatch_ns) / 1000, 1),
        "position_median_us": round(statistics.median(position_ns) / 1000, 1),
        "position_p99_us": round(percentile(position_ns, 0.99) / 1000, 1),
    }


def settings_fields() -> list[str]:
    return sorted(inspect.signature(SchedulerSettings).parameters)


def main() -> None:
    print(
        json.dumps(
            {
                "benchmark": "queue_simulation",
                "settings": settings_fields(),
                "evening": evening(),
                "evening_two_models_per_gpu": evening(max_models=2),
                "flood": flood(),
                "mixed": mixed(),
                "weights": weights(),
                "relax": relax(),
                "swaps": swaps(),
                "one_job_people": one_job_people(),
                "churn": churn(),
                "scale": scale(),
            }
        )
    )


if __name__ == "__main__":
    main()
