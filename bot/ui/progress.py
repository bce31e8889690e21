"""A job's progress as one value, rendered into the one message that follows the job."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from generation.jobs import (
    JobCancelled,
    JobEvent,
    JobFailed,
    JobFinished,
    JobProgress,
    JobQueued,
    JobSnapshot,
    JobStalled,
    JobStarted,
    JobState,
)

BAR_WIDTH = 20


class Phase(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (Phase.FINISHED, Phase.FAILED, Phase.CANCELLED)


@dataclass(frozen=True, slots=True)
class ProgressState:
    """Everything the progress message shows; `advance` folds one engine event in."""

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

    def advance(self, event: JobEvent) -> ProgressState:
        if isinstance(event, JobStalled):
            retry = format_duration(event.retry_in_s)
            return replace(self, problem=f"{event.problem} Trying again in {retry}.")
        return replace(self, problem=None)._advance(event)

    def _advance(self, event: JobEvent) -> ProgressState:
        match event:
            case JobQueued(position=position, eta_s=eta, waiting_for=waiting_for):
                if self.phase is not Phase.QUEUED:
                    return self  # a late queue update must not undo "running"
                return replace(self, position=position, eta_s=eta, waiting_for=waiting_for)
            case JobStarted(worker=worker):
                return replace(self, phase=Phase.RUNNING, worker=worker)
            case JobProgress(step=step, total=total, preview=preview):
                return replace(
                    self,
                    phase=Phase.RUNNING,
                    step=step,
                    total=total,
                    preview=preview if preview is not None else self.preview,
                )
            case JobFinished():
                return replace(self, phase=Phase.FINISHED, step=self.total)
            case JobFailed(reason=reason):
                return replace(self, phase=Phase.FAILED, reason=reason)
            case JobCancelled():
                return replace(self, phase=Phase.CANCELLED)
        return self


def live_progress(live: JobSnapshot) -> ProgressState:
    """What the progress message would show of a live job (for `/queue` and `/show`)."""
    if live.state is JobState.WAITING:
        return ProgressState(live.job_id, position=live.position, eta_s=live.eta_s)
    return ProgressState(
        live.job_id,
        phase=Phase.RUNNING,
        worker=live.worker,
        step=live.step,
        total=live.total,
        problem=live.problem,
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
    line = _phase_line(state)
    if state.problem and not state.phase.is_final:
        return f"{line}\n⚠️ {state.problem} Your job is kept."
    return line


def _phase_line(state: ProgressState) -> str:
    match state.phase:
        case Phase.QUEUED:
            where = f"#{state.position} in the queue" if state.position else "in the queue"
            if state.waiting_for:
                return f"⏳ Queued — {where}, waiting: {state.waiting_for}"
            return f"⏳ Queued — {where}, {starts_in(state.eta_s)}."
        case Phase.RUNNING:
            on = f" on `{state.worker}`" if state.worker else ""
            return f"🎨 Generating{on}: {progress_bar(state.step, state.total)}"
        case Phase.FINISHED:
            return "✅ Done."
        case Phase.FAILED:
            return f"⚠️ Failed: {state.reason or 'unknown error'}"
    return "🚫 Cancelled."
