"""Scripted REST failures: rate limits and server errors, as Discord really returns them.

``fail_next("POST", r"/channels/\\d+/messages", status=429, times=2, retry_after=0.05)`` makes the
next two matching requests fail before they are processed (nothing is recorded for them). A 429
carries a JSON ``retry_after`` and a ``Via`` header, which is what makes discord.py treat it as a
rate limit and retry after sleeping; 500/502/504 make discord.py retry after 1 s, 3 s, ...
``status=DROPPED`` closes the connection without an answer, as when the network fails: discord.py
does not retry that and raises aiohttp's ``ServerDisconnectedError``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """JSON whose Content-Type is exactly ``application/json``, as discord.py requires."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(body=json.dumps(data).encode(), status=status, headers=all_headers)


def error_response(
    status: int, code: int, message: str, errors: dict[str, Any] | None = None
) -> web.Response:
    """Discord's error body: ``{"message", "code"}``, plus the nested ``errors`` of a 50035."""
    body: dict[str, Any] = {"message": message, "code": code}
    if errors:
        body["errors"] = errors
    return json_response(body, status)


class RestError(Exception):
    """Raised inside a handler to answer like Discord: ``status``, JSON ``code``, ``message``
    and, for 400 / 50035 (Invalid Form Body), the nested ``errors`` object."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.errors = errors
        self.response = error_response(status, code, message, errors)


DROPPED = 0  # a `Fault` status: no answer, the connection is closed


class Dropped(Exception):
    """Raised by `Fault.response` for a dropped connection (the server closes it)."""


@dataclass
class Fault:
    """One scripted failure: ``times`` more requests matching ``method`` and ``path`` get it."""

    method: str
    path: re.Pattern[str]
    status: int
    times: int
    retry_after: float
    served: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method in (method, "*") and bool(self.path.search(path))

    def response(self) -> web.Response:
        self.times -= 1
        self.served += 1
        if self.status == DROPPED:
            raise Dropped
        if self.status == 429:
            body = {"message": "You are being rate limited.", "retry_after": self.retry_after}
            body["global"] = False
            headers = {
                "Via": "1.1 google",
                "Retry-After": str(math.ceil(self.retry_after)),
                "X-RateLimit-Scope": "user",
            }
            return json_response(body, 429, headers)
        return error_response(self.status, 0, f"{self.status}: scripted failure")


class Faults:
    """The scripted failures, consulted for every REST request in arrival order."""

    def __init__(self) -> None:
        self.scripted: list[Fault] = []

    def add(
        self, method: str, path_regex: str, status: int, times: int, retry_after: float
    ) -> Fault:
        fault = Fault(method.upper(), re.compile(path_regex), status, times, retry_after)
        self.scripted.append(fault)
        return fault

    def take(self, method: str, path: str) -> web.Response | None:
        """The failure response for this request, if one is scripted."""
        for fault in self.scripted:
            if fault.matches(method, path):
                return fault.response()
        return None
