"""Embeds that list things without bound: the queue (`/admin queue`, `/queue`), GPUs, models and
usage (`/info`, `/admin gpus`, `/admin stats`). Pure functions of the data they show; each fits
Discord's limits by construction (`bot.ui.fit`), however many jobs, people, GPUs or models.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import discord

from bot.ui.fit import FittedEmbed
from bot.ui.progress import format_duration, starts_in
from bot.ui.text import plain
from generation.hosted.catalogue import HostedModel
from generation.models import ModelSpec
from generation.pool import PoolSnapshot, WorkerStatus
from storage import Usage

ADMIN_COLOUR = discord.Colour.dark_gold()
USER_COLOUR = discord.Colour.blurple()
NO_JOBS = "You have no job waiting or running."
ERROR_SHOWN = 200  # characters of a worker's last error
PROBLEM_SHOWN = 300  # characters of why a worker is not working


def worker_line(worker: WorkerStatus) -> str:
    """`cpu` · busy with job `12` · holds playground-v2.5"""
    if worker.problem:
        return f"`{worker.id}` · ⚠️ not working: {plain(worker.problem, PROBLEM_SHOWN)}"
    state = f"busy with job `{worker.job_id}`" if worker.job_id else worker.state.value
    holds = ", ".join(map(worker.held, worker.loaded)) or "no model"
    return f"`{worker.id}` · {state} · holds {holds}"


def admin_queue_embed(snapshot: PoolSnapshot, owners: Mapping[int, int]) -> discord.Embed:
    """`/admin queue`: every running job (`owners`: job id → user id) and, in the description
    (which holds the most), the first waiting ones of `snapshot.waiting`; the rest are counted
    ("… and N more")."""
    running = [
        f"`{worker.id}` · job `{worker.job_id}` · "
        + (f"<@{owners[worker.job_id]}>" if worker.job_id in owners else "?")
        for worker in snapshot.workers
        if worker.job_id is not None
    ]
    waiting = [
        f"#{job.position} · job `{job.job_id}` · <@{job.owner.user_id}> · {job.model} · "
        f"{job.priority.value} · {starts_in(job.eta_s)}"
        for job in snapshot.waiting
    ]
    by_class = ", ".join(f"{n} {c.value}" for c, n in snapshot.queued_by_class.items() if n)
    state = "**paused**" if snapshot.paused else "running"
    summary = (
        f"The queue is {state}: {snapshot.queued} waiting"
        f"{f' ({by_class})' if by_class else ''}, {snapshot.running} running."
    )
    if snapshot.api_queued or snapshot.api_running:
        summary += (
            f" On Black Forest Labs' API: {snapshot.api_queued} waiting, "
            f"{snapshot.api_running} running."
        )
    embed = FittedEmbed(title="Queue", colour=ADMIN_COLOUR)
    embed.add_lines("Running", running, empty="nothing")
    hidden = max(snapshot.queued - len(waiting), 0)
    listing = [summary, "", "**Waiting**", *waiting] if waiting or hidden else [summary]
    return embed.describe_lines(listing, hidden=hidden)


def user_queue_embed(lines: Sequence[str], hidden: int, snapshot: PoolSnapshot) -> discord.Embed:
    """`/queue`: the person's jobs (`lines`, plus `hidden` more not listed) and the totals."""
    queued, running = snapshot.queued + snapshot.api_queued, snapshot.running + snapshot.api_running
    total = f"{queued} waiting and {running} running in all"
    paused = " · the queue is paused by an admin" if snapshot.paused else ""
    embed = FittedEmbed(
        title="Your queue", colour=USER_COLOUR, footer=f"{total}{paused} · /cancel JOB stops one"
    )
    return embed.describe_lines(lines, hidden=hidden, empty=NO_JOBS)


def memory_text(worker: WorkerStatus) -> str:
    memory = worker.memory
    parts = []
    if memory.gpu_used_mib is not None and memory.gpu_total_mib is not None:
        used, total = memory.gpu_used_mib / 1024, memory.gpu_total_mib / 1024
        parts.append(f"GPU {used:.1f}/{total:.1f} GiB")
    if memory.rss_mib is not None:
        parts.append(f"RAM {memory.rss_mib:.0f} MiB")
    return ", ".join(parts) or "not reported yet"


def gpus_embed(workers: Iterable[WorkerStatus]) -> discord.Embed:
    """`/admin gpus`: one field per worker (then "… and N more")."""
    embed = FittedEmbed(title="GPUs", colour=ADMIN_COLOUR)
    for worker in workers:
        lines = [
            f"{worker.state.value} on `{worker.device}`"
            + (f" · job `{worker.job_id}`" if worker.job_id else ""),
            f"models: {', '.join(map(worker.held, worker.loaded)) or 'none'}"
            + (f" (pinned: {', '.join(worker.pinned)})" if worker.pinned else ""),
            f"memory: {memory_text(worker)}",
            f"restarts: {worker.restarts} · model loads: {worker.model_loads}",
        ]
        if worker.problem:
            lines.append(f"⚠️ not working: {plain(worker.problem, PROBLEM_SHOWN)}")
        elif worker.last_error:
            lines.append(f"last error: {plain(worker.last_error, ERROR_SHOWN)}")
        embed.add_lines(worker.id, lines)
    if not embed.fields:
        embed.description = "No GPU worker is configured."
    return embed


def models_embed(workers: Iterable[WorkerStatus]) -> discord.Embed:
    """`/admin models list`: per worker, what it holds, pins and may run."""
    lines = [
        f"{worker_line(worker)}"
        + (f" · pinned {', '.join(worker.pinned)}" if worker.pinned else "")
        + f" · may run {', '.join(worker.models) if worker.models is not None else 'any'}"
        for worker in workers
    ]
    return FittedEmbed(
        title="Models", description="\n".join(lines) or "No GPU worker.", colour=ADMIN_COLOUR
    )


def usage_line(name: str, usage: Usage) -> str:
    wait = format_duration(usage.mean_wait_s) if usage.mean_wait_s is not None else "—"
    return (
        f"{name} · {usage.jobs} jobs · {usage.images} images · "
        f"{usage.gpu_seconds:.1f} GPU-s · mean wait {wait}"
    )


def stats_embed(
    period: str, by_user: Sequence[Usage], by_model: Sequence[Usage], shown: int
) -> discord.Embed:
    """`/admin stats`: totals, then the first `shown` people and models by use."""
    total_jobs = sum(u.jobs for u in by_user)
    total_gpu = sum(u.gpu_seconds for u in by_user)
    embed = FittedEmbed(
        title=f"Usage, {period}",
        description=f"{total_jobs} jobs, {total_gpu:.1f} GPU-seconds in all.",
        colour=ADMIN_COLOUR,
    )
    people = [usage_line(f"<@{u.key}>", u) for u in by_user[:shown]]
    models = [usage_line(f"`{u.key}`", u) for u in by_model[:shown]]
    hidden_people = max(len(by_user) - shown, 0)
    hidden_models = max(len(by_model) - shown, 0)
    embed.add_lines("By person", people, hidden=hidden_people, empty="nobody")
    embed.add_lines("By model", models, hidden=hidden_models, empty="none")
    return embed


def info_embed(
    snapshot: PoolSnapshot,
    models: Iterable[ModelSpec],
    you: str,
    api_models: Iterable[HostedModel] = (),
) -> discord.Embed:
    """`/info`: the GPUs, the models (and where each is loaded; then those of BFL's API), the
    queues (the GPUs' and, where API models are offered, the API's), and `you`."""
    loaded_on: dict[str, list[str]] = {}
    for worker in snapshot.workers:
        for name in worker.loaded:
            loaded_on.setdefault(name, []).append(f"{worker.id} ({worker.profile_of(name)})")
    model_lines = [
        f"`{spec.name}` — {spec.title}"
        + (" · non-commercial licence" if spec.non_commercial else "")
        + (f" · loaded on {', '.join(loaded_on[spec.name])}" if spec.name in loaded_on else "")
        for spec in models
    ]
    api_models = list(api_models)
    model_lines += [f"`{m.name}` — {m.title} · on Black Forest Labs' API" for m in api_models]
    paused = " · **paused** by an admin" if snapshot.paused else ""
    queue = f"{snapshot.queued} waiting, {snapshot.running} running"
    if api_models:
        queue = (
            f"GPUs: {queue} · API: {snapshot.api_queued} waiting, {snapshot.api_running} running"
        )
    embed = FittedEmbed(title="Atelier", colour=USER_COLOUR)
    embed.add_lines("GPUs", [worker_line(w) for w in snapshot.workers], empty="none")
    embed.add_lines("Models", model_lines, empty="none")
    embed.add_field(
        name="Queue",
        value=f"{queue}{paused}",
        inline=False,
    )
    embed.add_field(name="You", value=you, inline=False)
    return embed
