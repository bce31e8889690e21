"""The `[observability]` configuration table: the health endpoint's address and the log format.

```toml
[observability]
host = "127.0.0.1"   # "0.0.0.0" lets a Prometheus in another container scrape /metrics
port = 8377
enabled = true       # false: no HTTP endpoint at all
log_format = "kv"    # or "json"
log_level = "INFO"
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.observability.health import DEFAULT_HOST, DEFAULT_PORT
from bot.observability.logs import LogStyle

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ObservabilityConfigError(ValueError):
    """The `[observability]` table has faults; `problems` holds one sentence each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(" ".join(problems))


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    enabled: bool = True
    log_format: LogStyle = "kv"
    log_level: str = "INFO"

    @classmethod
    def from_config(cls, table: Mapping[str, Any]) -> ObservabilitySettings:
        """Validate an `[observability]` table; raises `ObservabilityConfigError`."""
        problems = [f"Unknown setting `observability.{key}`." for key in sorted(set(table) - _KEYS)]
        host = table.get("host", DEFAULT_HOST)
        if not isinstance(host, str) or not host:
            problems.append('`observability.host` should be an address such as "127.0.0.1".')
        port = table.get("port", DEFAULT_PORT)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            problems.append("`observability.port` should be a port number from 1 to 65535.")
        enabled = table.get("enabled", True)
        if not isinstance(enabled, bool):
            problems.append("`observability.enabled` should be true or false.")
        log_format = table.get("log_format", "kv")
        if log_format not in ("kv", "json"):
            problems.append('`observability.log_format` should be "kv" or "json".')
        level = table.get("log_level", "INFO")
        if not isinstance(level, str) or level.upper() not in _LEVELS:
            problems.append(f"`observability.log_level` should be one of {', '.join(_LEVELS)}.")
        if problems:
            raise ObservabilityConfigError(problems)
        return cls(host, port, enabled, log_format, level.upper())


_KEYS = {field for field in ObservabilitySettings.__dataclass_fields__}
