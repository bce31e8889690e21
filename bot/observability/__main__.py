"""`python -m bot.observability [--url URL]`: ask the running bot's `/healthz` (Docker's
HEALTHCHECK runs this). Exit status 0 when healthy, 1 otherwise; the answer is printed.

Without `--url` the address comes from the configuration file's `[observability]` table
(`$ATELIER_CONFIG` or `./atelier.toml`), so the probe follows a changed port.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
import urllib.error
import urllib.request

from bot.observability.settings import ObservabilityConfigError, ObservabilitySettings
from generation.config_file import config_path_from_env


def configured_url() -> str:
    """The `/healthz` URL of the configured endpoint (defaults when the file says nothing)."""
    try:
        table = tomllib.loads(config_path_from_env().read_text(encoding="utf-8"))
        settings = ObservabilitySettings.from_config(table.get("observability", {}))
    except (OSError, tomllib.TOMLDecodeError, ObservabilityConfigError, AttributeError):
        settings = ObservabilitySettings()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return f"http://{host}:{settings.port}/healthz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.observability", description=__doc__)
    parser.add_argument("--url", help="the /healthz URL (default: from the configuration)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    args = parser.parse_args(argv)
    url = args.url or configured_url()
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            print(response.read().decode("utf-8", "replace"))
            return 0
    except urllib.error.HTTPError as error:
        print(error.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        print(f"The health endpoint at {url} does not answer: {reason}.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
