"""Fair scheduling of waiting jobs onto GPUs: `FairScheduler` and its vocabulary."""

from generation.scheduler.core import FairScheduler
from generation.scheduler.types import (
    Assignment,
    NotAccepting,
    QueueFull,
    SchedulerSettings,
    WaitingJob,
    WorkerView,
    work_units,
)

__all__ = [
    "Assignment",
    "FairScheduler",
    "NotAccepting",
    "QueueFull",
    "SchedulerSettings",
    "WaitingJob",
    "WorkerView",
    "work_units",
]
