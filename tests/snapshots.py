"""Job snapshots for tests that feed events by hand (the pool sets them in production)."""

from __future__ import annotations

from generation.jobs import JobOwner, JobSnapshot, JobState, Priority


def snapshot(
    job_id: int,
    state: JobState = JobState.WAITING,
    *,
    model: str = "flux-dev",
    priority: Priority = Priority.NORMAL,
    **fields: object,
) -> JobSnapshot:
    """Job `job_id` of user 1 in `state`, with any other `JobSnapshot` field given."""
    owner = JobOwner(user_id=1, priority=priority)
    return JobSnapshot(job_id, owner, model, state, **fields)  # type: ignore[arg-type]
