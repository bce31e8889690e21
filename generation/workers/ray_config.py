"""Remote GPUs on a Ray cluster: where each actor goes, and whether it is safe to connect.

Nothing here imports Ray (an optional extra, `pip install '.[ray]'`): the bot's process reads
this configuration, and only the relay processes (`generation.workers.ray_relay`) import Ray.

Security (Ray's own advice, https://docs.ray.io/en/latest/ray-security/index.html): anyone who
can reach a Ray cluster's ports can run code on it unless token authentication is on
(`RAY_AUTH_MODE=token`, Ray 2.52 and later, https://docs.ray.io/en/latest/ray-security/token-auth.html).
`connection_problem` refuses a cluster that is not on this machine without a token, unless the
owner sets `[ray] allow_insecure = true`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field

from generation.config_schema import TABLE, Bool, Float, Text

# A Ray node id: 28 bytes written in hex (`ray list nodes`, `ray.nodes()[i]["NodeID"]`).
_NODE_ID = re.compile(r"[0-9a-f]{56}")
_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


@dataclass(frozen=True, slots=True)
class RaySettings:
    """The `[ray]` table: the cluster the bot joins as a driver."""

    __pydantic_config__ = TABLE

    address: Text = ""  # "HOST:PORT" of the head (port 6379 by default), "auto" on it; "": none
    allow_insecure: Bool = False  # connect to a cluster elsewhere without a token: never advised
    start_timeout_s: Annotated[Float, Field(gt=0)] = 120.0  # connect + place + build the engine


@dataclass(frozen=True, slots=True)
class RayPlacement:
    """Where one remote worker's actor runs: `node` is a node id (56 hex digits), an IP address
    (Ray's `node:IP` resource) or the name of a custom resource the node was started with
    (`ray start --resources='{"NAME": 1}'`); `num_gpus` is what the actor reserves there."""

    address: str
    node: str
    num_gpus: float = 1.0
    allow_insecure: bool = False
    start_timeout_s: float = 120.0

    @property
    def node_kind(self) -> str:
        """ "id", "ip" or "resource": how `node` names the node."""
        if _NODE_ID.fullmatch(self.node):
            return "id"
        try:
            ipaddress.ip_address(self.node)
        except ValueError:
            return "resource"
        return "ip"

    def is_on(self, node_id: str, ip: str, resources: Iterable[str]) -> bool:
        """Whether the node with this id, IP address and resources is `node`."""
        kind = self.node_kind
        if kind == "id":
            return node_id == self.node
        return self.resource in resources

    @property
    def resource(self) -> str:
        """The Ray resource that only `node` has (for a node named by IP or resource)."""
        return f"node:{self.node}" if self.node_kind == "ip" else self.node

    def host_port(self) -> tuple[str, int] | None:
        """The address's host and port, or None for "auto" (or no port)."""
        host, _, port = self.address.rpartition(":")
        if self.address == "auto" or not port.isdigit():
            return None
        return host.strip("[]"), int(port)


def is_loopback(address: str) -> bool:
    """True when `HOST:PORT` names this machine over the loopback interface."""
    host = address.rpartition(":")[0].strip("[]") if ":" in address else address
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def has_token(environ: Mapping[str, str]) -> bool:
    """Token authentication is on for connections made with `environ`: `RAY_AUTH_MODE=token`
    and a token in `RAY_AUTH_TOKEN`, the file `RAY_AUTH_TOKEN_PATH` or `~/.ray/auth_token`
    (where Ray looks, in that order)."""
    if environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return False
    if environ.get("RAY_AUTH_TOKEN", "").strip():
        return True
    path = environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return Path(path).is_file()


def connection_problem(
    address: str, allow_insecure: bool, environ: Mapping[str, str] = os.environ
) -> str | None:
    """Why the bot must not connect to the cluster at `address`, or None when it may."""
    if is_loopback(address) or allow_insecure or has_token(environ):
        return None
    return (
        f"Refusing to connect to the Ray cluster at {address} without token authentication: "
        "anyone who can reach it could run code on your machines. Start the cluster with "
        "RAY_AUTH_MODE=token, give the bot RAY_AUTH_MODE=token and the token (RAY_AUTH_TOKEN), "
        "and keep it on a private network; `[ray] allow_insecure = true` overrides this."
    )


def ray_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Ray's own settings (`RAY_*`, the token among them) from `environ`, for the relays."""
    return {name: value for name, value in environ.items() if name.startswith("RAY_")}
