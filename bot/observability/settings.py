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
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from bot.observability.health import DEFAULT_HOST, DEFAULT_PORT
from bot.observability.logs import LogStyle
from generation.config_schema import TABLE, Bool, Int, Name, SettingsProblems, validate_table

ObservabilityConfigError = SettingsProblems  # the `[observability]` table has faults


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    __pydantic_config__ = TABLE

    host: Name = DEFAULT_HOST
    port: Annotated[Int, Field(ge=1, le=65535)] = DEFAULT_PORT
    enabled: Bool = True
    log_format: LogStyle = "kv"
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)] = (
        "INFO"
    )

    @classmethod
    def from_config(cls, table: Mapping[str, Any]) -> ObservabilitySettings:
        """Validate an `[observability]` table; raises `ObservabilityConfigError`."""
        return validate_table(cls, table, "observability")
