"""Where the API is and the key to it, from the environment only (never a file, never a log)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_URL = "https://api.bfl.ai"
KEY_VARIABLE = "BFL_API_KEY"
URL_VARIABLE = "BFL_API_URL"


class SettingsError(ValueError):
    """An unusable `BFL_API_URL`; the message says why."""


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """`key`: the `x-key` header's value (hidden from `repr`); `base_url`: scheme and host,
    no trailing slash."""

    key: str = field(repr=False)
    base_url: str = DEFAULT_URL

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ApiSettings | None:
        """The settings, or None when `BFL_API_KEY` is unset or empty (no API models then).
        Raises `SettingsError` for a `BFL_API_URL` that is not an http(s) URL."""
        environ = os.environ if environ is None else environ
        key = environ.get(KEY_VARIABLE, "").strip()
        if not key:
            return None
        url = environ.get(URL_VARIABLE, "").strip().rstrip("/") or DEFAULT_URL
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"{URL_VARIABLE} should look like {DEFAULT_URL} (got {url!r}).")
        return cls(key=key, base_url=url)

    def trusts(self, url: str) -> bool:
        """Whether the key may be sent to `url` (a returned `polling_url`): the base URL's own
        host, or a sibling under its parent domain (`api.eu2.bfl.ai` for `api.bfl.ai`), with
        https unless the base URL itself is plain http (a local stand-in)."""
        base, other = urlsplit(self.base_url), urlsplit(url)
        if not other.hostname or other.scheme not in ("https", base.scheme):
            return False
        if other.hostname == base.hostname:
            return True
        parent = (base.hostname or "").split(".", 1)[-1]
        return "." in parent and other.hostname.endswith("." + parent)
