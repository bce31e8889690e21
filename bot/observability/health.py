"""A small HTTP endpoint on localhost: `/healthz` and Prometheus `/metrics`.

The server knows nothing of the bot: it is given named check callables (sync or async, returning
True when healthy), for example::

    checks = {
        "discord": lambda: bot.is_ready() and not bot.is_closed(),
        "database": sqlite_writable(settings.database_path),
        "workers": lambda: pool.alive_workers() > 0,
    }
    async with HealthServer(checks, metrics.registry, port=settings.observability.port):
        ...

`/healthz` runs every check at once (each with a time limit) and answers 200 when all pass,
503 otherwise, with a JSON body naming each check's state. A check answers True (ok), False
(failing), a sentence (failing, for that reason) or a `Degraded` sentence: it still passes, and
the status says "degraded" with the reason (say, one GPU of two is gone). `/metrics` serves the
given registry in the Prometheus text format.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from contextlib import closing
from pathlib import Path
from types import TracebackType

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from bot.observability.logs import RedactSecrets

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8377


class Degraded(str):
    """A check's answer: working, with a problem worth an operator's look (the text says which)."""

    __slots__ = ()


HealthCheck = Callable[[], bool | str | Awaitable[bool | str]]


def sqlite_writable(path: Path, *, timeout_s: float = 1.0) -> HealthCheck:
    """A check that the SQLite database at `path` exists and grants its write lock within
    `timeout_s` (taken and released at once: nothing is written)."""

    def probe() -> bool:
        uri = f"{Path(path).resolve().as_uri()}?mode=rw"  # never creates a missing database
        with closing(
            sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None)
        ) as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        return True

    async def check() -> bool:
        return await asyncio.to_thread(probe)

    return check


class HealthServer:
    """Serves `/healthz` and `/metrics` on `host:port` (port 0: any free port, see `.port`)."""

    def __init__(
        self,
        checks: Mapping[str, HealthCheck],
        registry: CollectorRegistry,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        check_timeout_s: float = 2.0,
    ) -> None:
        self._checks = dict(checks)
        self._registry = registry
        self._host = host
        self._requested_port = port
        self._timeout_s = check_timeout_s
        self._redact = RedactSecrets()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("The health server is not running.")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve; raises OSError when the port is taken."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._requested_port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        self._port = None

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def check(self) -> tuple[bool, dict[str, str]]:
        """Run every check concurrently: (all healthy, {name: "ok" or what went wrong})."""
        names = list(self._checks)
        states = await asyncio.gather(*(self._run_check(self._checks[n]) for n in names))
        results = dict(zip(names, states, strict=True))
        return all(state == "ok" or state.startswith("degraded") for state in states), results

    async def _run_check(self, check: HealthCheck) -> str:
        try:
            async with asyncio.timeout(self._timeout_s):
                result = check()
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError:
            return f"timed out after {self._timeout_s:g} s"
        except Exception as error:
            return self._redact.redact(f"error: {type(error).__name__}: {error}")
        if isinstance(result, Degraded):
            return self._redact.redact(f"degraded: {result}")
        if isinstance(result, str) and result:
            return self._redact.redact(f"failing: {result}")
        return "ok" if result else "failing"

    async def _healthz(self, request: web.Request) -> web.Response:
        healthy, checks = await self.check()
        degraded = any(state.startswith("degraded") for state in checks.values())
        status = ("degraded" if degraded else "ok") if healthy else "unhealthy"
        body = json.dumps({"status": status, "checks": checks})
        return web.Response(
            text=body, status=200 if healthy else 503, content_type="application/json"
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
