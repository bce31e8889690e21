"""Observability for the bot process: Prometheus metrics, the /healthz + /metrics endpoint, and
structured, redacted logs. Nothing here imports discord, torch or diffusers."""

from bot.observability.health import HealthCheck, HealthServer, sqlite_writable
from bot.observability.logs import bind, configure_logging, log_context, log_job_event
from bot.observability.metrics import Metrics
from bot.observability.plugin import Observability
from bot.observability.settings import ObservabilityConfigError, ObservabilitySettings

__all__ = [
    "HealthCheck",
    "HealthServer",
    "Metrics",
    "Observability",
    "ObservabilityConfigError",
    "ObservabilitySettings",
    "bind",
    "configure_logging",
    "log_context",
    "log_job_event",
    "sqlite_writable",
]
