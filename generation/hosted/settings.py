"""Where the API is and the key to it, from the environment only (never a file, never a log)."""

from __future__ import annotations

import ipaddress
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
        Raises `SettingsError` for a `BFL_API_URL` that is not an http(s) URL, or that ends in
        `/v1` (Atelier adds it: `/v1/v1/...` would answer 404) or has a query or fragment."""
        environ = os.environ if environ is None else environ
        key = environ.get(KEY_VARIABLE, "").strip()
        if not key:
            return None
        url = environ.get(URL_VARIABLE, "").strip().rstrip("/") or DEFAULT_URL
        shown = url[:100]
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  raises ValueError for a port that is not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"{URL_VARIABLE} should look like {DEFAULT_URL} (got {shown!r}).")
        if parts.path.lower().endswith("/v1") or parts.query or parts.fragment:
            base = url.split("?")[0].split("#")[0].rstrip("/")
            base = base[:-3] if base.lower().endswith("/v1") else base
            raise SettingsError(
                f"{URL_VARIABLE} should end before /v1, like {DEFAULT_URL}: Atelier adds the "
                f"paths (/v1/...) itself. Use {base[:100]!r}, not {shown!r}."
            )
        return cls(key=key, base_url=url)

    def trusts(self, url: str) -> bool:
        """Whether the key may be sent to `url` (a returned `polling_url`).

        The rule: the url's host must lie in the base URL's trusted domain, over https (or over
        plain http where the base URL itself is, a local stand-in). The trusted domain is
        `bfl.ai` for any base URL under it (BFL's regional polling hosts `api.eu2.bfl.ai`,
        `api.us1.bfl.ai`, `gateway.bfl.ai` answer for `api.eu.bfl.ai` too); an IP address or a
        single-label name (`localhost`) trusts itself only, on any port; any other base host
        trusts itself and its parent's subtree (`bfl.proxy.example.com` trusts
        `*.proxy.example.com`), or for a two-label host (`example.com`) its own subtree.
        """
        base, other = urlsplit(self.base_url), urlsplit(url)
        host = (other.hostname or "").rstrip(".")
        if not host or other.scheme not in ("https", base.scheme):
            return False
        domain = trusted_domain(base.hostname or "")
        if domain is None:
            return host == (base.hostname or "").rstrip(".")
        return host == domain or host.endswith("." + domain)


BFL_DOMAIN = "bfl.ai"


def trusted_domain(base_host: str) -> str | None:
    """The domain whose hosts `ApiSettings.trusts` (see there), or None where only
    `base_host` itself is trusted (an IP address or a single-label name)."""
    host = base_host.rstrip(".").lower()
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if host == BFL_DOMAIN or host.endswith("." + BFL_DOMAIN):
        return BFL_DOMAIN
    labels = host.split(".")
    if len(labels) < 2:
        return None
    return ".".join(labels[1:]) if len(labels) > 2 else host
