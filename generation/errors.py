"""Errors raised by the engine; front ends turn each into a friendly message."""

from __future__ import annotations


class EngineError(Exception):
    """Base class for engine failures. `str(error)` is a sentence fit for a user."""

    kind = "error"


class Cancelled(EngineError):
    """The job was cancelled; any half-done result has been discarded."""

    kind = "cancelled"


class OutOfMemory(EngineError):
    """The GPU ran out of memory for this request (try fewer images or a smaller size)."""

    kind = "out_of_memory"


class OverBudget(EngineError):
    """An API job that a credit budget cannot take (`storage.credits.BudgetExceeded`);
    `str(error)` says what the job would cost and what the budget has left."""

    kind = "budget"


class ModelUnavailable(EngineError):
    """The model's weights cannot be loaded: missing, not safetensors, or broken."""

    kind = "model_unavailable"
