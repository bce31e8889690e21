"""Structured logs: one line per event, job ids on every line about a job, secrets redacted.

`configure_logging` installs one handler on the root logger that writes each record as a single
line, either `key=value` pairs or JSON. Fields come from three places, merged in this order:
`log_context(...)` (a context variable, so every line logged while a job is handled carries its
`job_id`, even from code that knows nothing about jobs), `bind(logger, job_id=...)` (a logger
adapter), and `extra=` on the call itself. The handler's `RedactSecrets` filter replaces the
Discord token (and anything shaped like one) in messages, fields and tracebacks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal, TextIO

from generation.jobs import JobEvent, JobFailed, JobProgress, JobStalled

LogStyle = Literal["kv", "json"]
REDACTED = "[redacted]"

# A Discord bot token: base64 user id, timestamp, HMAC, separated by dots.
DISCORD_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}")

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_context: ContextVar[Mapping[str, Any] | None] = ContextVar("atelier_log_context", default=None)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add `fields` (say `job_id=17`) to every line logged inside the block, awaits included."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class _BoundLogger(logging.LoggerAdapter):
    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


def bind(logger: logging.Logger, **fields: Any) -> logging.LoggerAdapter:
    """A logger whose every line carries `fields`, e.g. `bind(log, job_id=job.id)`."""
    return _BoundLogger(logger, fields)


def log_job_event(logger: logging.Logger | logging.LoggerAdapter, event: JobEvent) -> None:
    """Log one engine event as one line: `job.queued job_id=17 position=2 eta_s=12.5`.

    Previews are never logged; progress goes at DEBUG level.
    """
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        if value is not False and isinstance(value, str | int | float):
            fields[field.name] = value  # not previews, snapshots, nor a submitter's handle
    name = "job." + type(event).__name__.removeprefix("Job").lower()
    level = {
        JobFailed: logging.WARNING,
        JobStalled: logging.WARNING,
        JobProgress: logging.DEBUG,
    }.get(type(event), logging.INFO)
    logger.log(level, name, extra=fields)


class RedactSecrets(logging.Filter):
    """Replace secrets, and anything shaped like a Discord token, before a record is written.

    Attach it to a handler (handler filters see records from every logger). It rewrites the
    record in place — message, string fields, traceback — so every later handler gets the
    redacted text too.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return DISCORD_TOKEN_PATTERN.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format: keep both
            message = f"{record.msg} {record.args}"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


class _ContextFields(logging.Filter):
    """Copy the `log_context` fields onto the record (fields given on the call win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class StructuredFormatter(logging.Formatter):
    """One line per record: `ts level logger msg` then the record's own fields."""

    def __init__(self, style: LogStyle = "kv") -> None:
        super().__init__()
        if style not in ("kv", "json"):
            raise ValueError(f"Log style must be 'kv' or 'json', not {style!r}.")
        self.style = style

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields: dict[str, Any] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                fields[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exc"] = record.exc_text
        if record.stack_info:
            fields["stack"] = record.stack_info
        return fields

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        if self.style == "json":
            return json.dumps(fields, default=str, ensure_ascii=False)
        return " ".join(f"{key}={_kv_value(value)}" for key, value in fields.items())


def _kv_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not re.search(r'[\s"=\\]', text):
        return text
    return json.dumps(text, ensure_ascii=False)  # quoted, newlines escaped: still one line


def configure_logging(
    *,
    level: str | int = "INFO",
    style: LogStyle = "kv",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every log record to `stream` (stderr) as one structured, redacted line.

    Replaces the handler a previous call installed, so calling it twice is harmless. Pass the
    Discord token in `secrets` (`settings.token.reveal()`); it is never written.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name("atelier")
    handler.setFormatter(StructuredFormatter(style))
    handler.addFilter(_ContextFields())
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "atelier"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
