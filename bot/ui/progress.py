"""A job's progress as one value, rendered into the one message that follows the job."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from generation.jobs import JobSnapshot, JobState

BAR_WIDTH = 20


class Phase(StrEnum):
    QUEUED = "queued"
    LOADING = "loading"  # its GPU loads the model first
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (Phase.FINISHED, Phase.FAILED, Phase.CANCELLED)


_PHASES = {
    JobState.WAITING: Phase.QUEUED,
    JobState.STARTING: Phase.RUNNING,
    JobState.LOADING: Phase.LOADING,
    JobState.RUNNING: Phase.RUNNING,
    JobState.HOSTED: Phase.RUNNING,  # on the hosted API: its worker reads `bfl-api`
    JobState.SAVING: Phase.RUNNING,
    JobState.DONE: Phase.FINISHED,
    JobState.FAILED: Phase.FAILED,
    JobState.CANCELLED: Phase.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class ProgressState:
    """Everything the progress message shows: one job snapshot, rendered (`of`)."""

    job_id: int
    phase: Phase = Phase.QUEUED
    position: int | None = None
    eta_s: float | None = None
    waiting_for: str | None = None  # why it cannot start now, when no GPU can run it
    worker: str | None = None
    step: int = 0
    total: int = 0
    preview: bytes | None = None
    reason: str | None = None
    problem: str | None = None  # the store could not record the job yet; it is retried
    cancelling: bool = False  # a cancel was asked for; the job has not ended yet

    @classmethod
    def of(cls, job: JobSnapshot) -> ProgressState:
        """What the progress message shows of `job` as the pool published it (a snapshot
        replaces the last one: nothing is folded)."""
        problem = job.problem
        if problem is not None:
            retry = job.retry_in_s
            when = (
                f"Trying again in {format_duration(retry)}."
                if retry is not None
                else ("It is tried again when the bot starts again.")
            )
            problem = f"{problem} {when}"
        return cls(
            job.job_id,
            phase=_PHASES[job.state],
            position=job.position,
            eta_s=job.eta_s,
            waiting_for=job.waiting_for,
            worker=job.worker,
            step=job.total if job.state is JobState.DONE else job.step,
            total=job.total,
            preview=job.preview,
            reason=job.error,
            problem=problem,
            cancelling=job.cancelling,
        )


def starts_in(eta_s: float | None) -> str:
    """A waiting job's start: `starts in about 1 min 15 s`, or, with no estimate (the queue is
    paused), that it starts once the queue is resumed."""
    if eta_s is None:
        return "starts once an admin resumes the queue"
    return f"starts in about {format_duration(eta_s)}"


def format_duration(seconds: float | None) -> str:
    """`75` → `1 min 15 s`; unknown → `unknown`."""
    if seconds is None:
        return "unknown"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def progress_bar(step: int, total: int, width: int = BAR_WIDTH) -> str:
    """A text bar such as `▰▰▰▱▱▱ 3/6`."""
    if total <= 0:
        return "starting…"
    filled = round(width * min(step, total) / total)
    return f"{'▰' * filled}{'▱' * (width - filled)} {step}/{total}"


def status_line(state: ProgressState) -> str:
    """One line for the message's description (two while the store cannot record the job)."""
    if state.phase.is_final:
        return _phase_line(state)
    line, kept = _phase_line(state), " Your job is kept."
    if state.cancelling:  # asked for, not yet recorded: nothing is kept, nor cancelled yet
        line, kept = "🚫 Cancelling…", ""
    elif state.reason:  # it failed; the store has not recorded that yet
        line, kept = _phase_line(replace(state, phase=Phase.FAILED)), ""
    return f"{line}\n⚠️ {state.problem}{kept}" if state.problem else line


def _phase_line(state: ProgressState) -> str:
    match state.phase:
        case Phase.QUEUED:
            where = f"#{state.position} in the queue" if state.position else "in the queue"
            if state.waiting_for:
                return f"⏳ Queued — {where}, waiting: {state.waiting_for}"
            return f"⏳ Queued — {where}, {starts_in(state.eta_s)}."
        case Phase.LOADING:
            on = f" on `{state.worker}`" if state.worker else ""
            return f"📦 Loading the model{on} before the first step…"
        case Phase.RUNNING:
            on = f" on `{state.worker}`" if state.worker else ""
            return f"🎨 Generating{on}: {progress_bar(state.step, state.total)}"
        case Phase.FINISHED:
            return "✅ Done."
        case Phase.FAILED:
            return f"⚠️ Failed: {state.reason or 'unknown error'}"
    return "🚫 Cancelled."
