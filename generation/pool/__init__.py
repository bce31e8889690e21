"""The worker pool: fair scheduling of jobs onto supervised GPU workers (see `core`)."""

from generation.pool.core import WorkerPool
from generation.pool.durable import STORE_RETRY_DELAYS_S
from generation.pool.stream import EventStream
from generation.pool.types import (
    PoolError,
    PoolObserver,
    PoolSnapshot,
    WorkerMemory,
    WorkerState,
    WorkerStatus,
)
from generation.scheduler import NotAccepting, QueueFull, SchedulerSettings

__all__ = [
    "STORE_RETRY_DELAYS_S",
    "EventStream",
    "NotAccepting",
    "PoolError",
    "PoolObserver",
    "PoolSnapshot",
    "QueueFull",
    "SchedulerSettings",
    "WorkerMemory",
    "WorkerPool",
    "WorkerState",
    "WorkerStatus",
]
