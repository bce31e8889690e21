"""Where the API is and the key to it, from the environment only (never a file, never a log)."""

from __future__ import annotations

import ipaddress
import os
import re
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
        Raises `SettingsError` (its message names `BFL_API_URL` and says why) for a
        `BFL_API_URL` that is not `scheme://host[:port]` (see `check_base_url`)."""
        environ = os.environ if environ is None else environ
        key = environ.get(KEY_VARIABLE, "").strip()
        if not key:
            return None
        url = environ.get(URL_VARIABLE, "").strip().rstrip("/") or DEFAULT_URL
        check_base_url(url)
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
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.IGNORECASE)  # RFC 1123 host name label


def check_base_url(url: str) -> None:
    """Raise `SettingsError` unless `url` is `scheme://host[:port]`, or for a proxy, that and a
    path prefix: https, or plain http for a host on this machine or the local network only (a
    loopback or private address, or a one-word name such as `localhost` or a container's: the
    local stand-in or a proxy), since the key travels in every request; a valid host name or
    IP address; no user or password; a port that is a number; no query or fragment; and no
    `/v1` in the path, nor any path on BFL's own hosts, which serve the API at the root
    (Atelier adds `/v1/...` itself: every call would answer 404)."""
    shown = url[:100]
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    host = (parts.hostname or "") if parts else ""
    if parts is None or parts.scheme not in ("http", "https") or not _valid_host(host):
        raise SettingsError(f"{URL_VARIABLE} should look like {DEFAULT_URL} (got {shown!r}).")
    if parts.username is not None or parts.password is not None:
        raise SettingsError(
            f"{URL_VARIABLE} must not hold a user name or password (it has an '@'): the API "
            f"checks the key in {KEY_VARIABLE}."
        )
    segments = parts.path.lower().split("/")
    on_bfl = trusted_domain(host) == BFL_DOMAIN
    if "v1" in segments or parts.query or parts.fragment or (on_bfl and parts.path):
        prefix = parts.path  # a proxy's, kept up to its /v1
        if on_bfl:
            prefix = ""
        elif "v1" in segments:
            prefix = "/".join(parts.path.split("/")[: segments.index("v1")])
        base = f"{parts.scheme}://{parts.netloc}{prefix}".rstrip("/")
        raise SettingsError(
            f"{URL_VARIABLE} should end before /v1, like {DEFAULT_URL}: Atelier adds the "
            f"paths (/v1/...) itself. Use {base[:100]!r}, not {shown!r}."
        )
    if parts.scheme == "http" and not _local(host):
        raise SettingsError(
            f"{URL_VARIABLE} must use https for {host[:60]!r}: the key would travel "
            f"unencrypted. Plain http is only for a host on this machine or network "
            f"(such as http://localhost:8080)."
        )


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    return all(_LABEL.fullmatch(label) for label in labels)


def _local(host: str) -> bool:
    """A loopback or private address, or a one-word name (`localhost`, a container's)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host.rstrip(".")
    return address.is_loopback or address.is_private or address.is_link_local


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
