"""What is stored of an API job's tasks, and the storage protocol that keeps them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class HostedTask:
    """One image's task as stored with its job: `cost` in credits (None where the reply had
    none), `input_mp`/`output_mp` as the reply gave them, `submitted_at` in Unix seconds."""

    index: int
    task_id: str
    polling_url: str
    cost: float | None
    input_mp: float | None
    output_mp: float | None
    submitted_at: float


class TaskStore(Protocol):
    """What the backend needs from storage (`storage.Database` implements it)."""

    async def save_hosted_task(self, job_id: int, task: HostedTask) -> None: ...

    async def hosted_tasks(self, job_id: int) -> list[HostedTask]: ...
