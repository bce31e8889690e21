"""HTTP to Black Forest Labs' API (aiohttp): submit, poll, download, credits.

Every call returns data or raises `ApiError` (an HTTP status with a short detail; status 0 for
no reply, with `sent` False only where the request never left: no connection could be made) or
`SampleGone`. The key goes in the `x-key` header to the API's own hosts only
(`ApiSettings.trusts`), never to the sample's delivery host, and never into a message or log.
A keyed request never follows a redirect (aiohttp would carry `x-key` to any host): a 3xx reply
is an `ApiError` with its status. Every body is read in full up to a cap (`MAX_REPLY_BYTES` for
JSON, `MAX_SAMPLE_BYTES` for a sample), however it arrives (chunked or not).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import aiohttp

from generation.hosted.settings import ApiSettings

MAX_DETAIL_CHARS = 500
MAX_SAMPLE_BYTES = 64 * 2**20  # a 4 MP PNG of noise is about 12 MiB
MAX_REPLY_BYTES = 2**20  # BFL's JSON replies are a few hundred bytes (prompt included)
_CHUNK = 2**16


class ApiError(Exception):
    """An HTTP error reply (`status`), or no reply at all (`status` 0); `detail` for the log.
    `sent`: whether the request may have reached the API (False only when no connection to it
    could be made, so a submit may be sent again without paying twice)."""

    def __init__(self, status: int, detail: str, *, sent: bool = True) -> None:
        self.status = status
        self.detail = detail[:MAX_DETAIL_CHARS]
        self.sent = sent
        super().__init__(f"HTTP {status}: {self.detail}")


class SampleGone(Exception):
    """The signed sample URL no longer serves the image (it expires 10 minutes after Ready)."""


@dataclass(frozen=True, slots=True)
class Submitted:
    """The submit reply: the task's `id`, the `polling_url` to ask (as returned, never
    rebuilt), and `cost` in credits with `input_mp`/`output_mp` where the reply has them."""

    id: str
    polling_url: str
    cost: float | None = None
    input_mp: float | None = None
    output_mp: float | None = None


@dataclass(frozen=True, slots=True)
class Polled:
    """A get_result reply: `status`, `progress` (0-1, while Pending, where given) and
    `sample` (the signed URL, when Ready)."""

    status: str
    progress: float | None = None
    sample: str | None = None


class BflClient:
    def __init__(self, settings: ApiSettings, session: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._session = session

    async def submit(self, model: str, body: dict[str, Any]) -> Submitted:
        reply = await self._json("POST", f"{self._settings.base_url}/v1/{model}", body)
        try:
            return Submitted(
                id=str(reply["id"]),
                polling_url=str(reply["polling_url"]),
                cost=_number(reply.get("cost")),
                input_mp=_number(reply.get("input_mp")),
                output_mp=_number(reply.get("output_mp")),
            )
        except (KeyError, TypeError) as error:
            raise ApiError(200, f"submit reply without {error}") from None

    async def poll(self, polling_url: str) -> Polled:
        if not self._settings.trusts(polling_url):
            raise ApiError(200, f"polling_url on an unexpected host: {polling_url[:100]}")
        reply = await self._json("GET", polling_url)
        status = reply.get("status")
        if not isinstance(status, str):
            raise ApiError(200, "get_result reply without a status")
        result = reply.get("result")
        sample = result.get("sample") if isinstance(result, dict) else None
        progress = _number(reply.get("progress"))
        return Polled(
            status=status,
            progress=None if progress is None else min(1.0, max(0.0, progress)),
            sample=sample if isinstance(sample, str) else None,
        )

    async def download(self, url: str) -> bytes:
        """The sample's bytes; no key is sent (the URL is signed). Raises `SampleGone`."""
        try:
            async with self._session.get(url) as response:
                if response.status in (401, 403, 404, 410):  # the signed link is refused
                    raise SampleGone(url)
                if response.status == 429 or response.status >= 500:
                    raise ApiError(response.status, "sample download failed")
                if response.status != 200:
                    # Not an API reply: its status says nothing of the key or the credits.
                    raise ApiError(200, f"the sample host answered HTTP {response.status}")
                return await _body(response, MAX_SAMPLE_BYTES, "sample")
        except (aiohttp.ClientError, TimeoutError) as error:
            raise ApiError(0, f"sample download: {type(error).__name__}") from None

    async def credits(self) -> float:
        """The account's credits left (`GET /v1/credits`)."""
        reply = await self._json("GET", f"{self._settings.base_url}/v1/credits")
        credits = _number(reply.get("credits"))
        if credits is None:
            raise ApiError(200, "credits reply without credits")
        return credits

    async def _json(self, method: str, url: str, body: dict[str, Any] | None = None) -> dict:
        headers = {"x-key": self._settings.key, "accept": "application/json"}
        try:
            async with self._session.request(
                method, url, json=body, headers=headers, allow_redirects=False
            ) as response:
                if 300 <= response.status < 400:
                    where = response.headers.get("Location", "")[:100]
                    raise ApiError(response.status, f"a redirect to {where!r}, not followed")
                data = await _body(response, MAX_REPLY_BYTES, "reply")
                text = data.decode("utf-8", errors="replace")  # JSON is UTF-8 (RFC 8259)
                if response.status != 200:
                    raise ApiError(response.status, _detail(text))
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
            raise ApiError(0, f"no connection: {type(error).__name__}", sent=False) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise ApiError(0, f"no reply: {type(error).__name__}") from None
        try:
            reply = json.loads(text)
        except ValueError:
            raise ApiError(200, "a reply that is not JSON") from None
        if not isinstance(reply, dict):
            raise ApiError(200, "a reply that is not a JSON object")
        return reply


async def _body(response: aiohttp.ClientResponse, cap: int, what: str) -> bytes:
    """The whole body, read chunk by chunk; `ApiError` once it passes `cap` bytes."""
    if (response.content_length or 0) > cap:
        raise ApiError(200, f"a {what} larger than {cap // 2**20} MiB")
    data = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        data += chunk
        if len(data) > cap:
            raise ApiError(200, f"a {what} larger than {cap // 2**20} MiB")
    return bytes(data)


def _detail(text: str) -> str:
    """An error reply's `detail` (FastAPI's 422 list compacted), else its text."""
    try:
        detail = json.loads(text).get("detail", text)
    except (ValueError, AttributeError):
        return text
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(map(str, item.get('loc', [])))}: {item.get('msg', '')}"
            if isinstance(item, dict)
            else str(item)
            for item in detail
        )
    return str(detail)


def _number(value: Any) -> float | None:
    """A finite JSON number as a float, else None (Python's json reads NaN and Infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
