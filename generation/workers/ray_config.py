"""Remote GPUs on a Ray cluster: where each actor goes, and whether it is safe to connect.

Nothing here imports Ray (an optional extra, `pip install '.[ray]'`): the bot's process reads
this configuration, and only the relay processes (`generation.workers.ray_relay`) import Ray.

Security (Ray's own advice, https://docs.ray.io/en/latest/ray-security/index.html): anyone who
can reach a Ray cluster's ports can run code on it unless token authentication is on
(`RAY_AUTH_MODE=token`, Ray 2.52 and later, https://docs.ray.io/en/latest/ray-security/token-auth.html).
`connection_problem` refuses to join any cluster without a token, whatever its address (a
cluster with a GPU on another machine listens on the network even when the bot reaches it over
loopback), unless the owner sets `[ray] allow_insecure = true`; `generation.workers.ray_probe`
then checks that the cluster itself requires the token.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from generation.config_schema import TABLE, Bool, Float, Text, toml_value

# A Ray node id: 28 bytes written in hex (`ray list nodes`, `ray.nodes()[i]["NodeID"]`).
_NODE_ID = re.compile(r"[0-9a-f]{56}")
# What a person means as a node id: a long run of hex digits, perhaps cut short with "…"
_ID_LIKE = re.compile(r"[0-9a-fA-F]{12,}(…|\.\.\.)?")
_HOST_PORT = re.compile(r"(?P<host>\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):(?P<port>[0-9]{1,5})")


def _address(value: str) -> str:
    """`[ray] address`: "", "auto" or HOST:PORT (the GCS port of the head, 6379 by default)."""
    if value in ("", "auto"):
        return value
    if value.startswith("ray://"):
        raise ValueError(
            f"{toml_value(value)} is a Ray Client address, which Atelier does not use: give "
            'the head\'s own address, "HOST:6379" (the port of `ray start --head --port`).'
        )
    found = _HOST_PORT.fullmatch(value)
    if found is None or not 0 < int(found["port"]) < 65536:
        raise ValueError(
            f'{toml_value(value)} is not "HOST:PORT": give the head\'s address with its port, '
            'such as "10.8.0.1:6379", or "auto" on the head node.'
        )
    return value


@dataclass(frozen=True, slots=True)
class RaySettings:
    """The `[ray]` table: the cluster the bot joins as a driver."""

    __pydantic_config__ = TABLE

    # "HOST:PORT" of the head (port 6379 by default), "auto" on it; "": none
    address: Annotated[Text, AfterValidator(_address)] = ""
    allow_insecure: Bool = False  # join a cluster without token authentication: never advised
    # joining the cluster and placing the actor on its node; loading models is not counted
    start_timeout_s: Annotated[Float, Field(gt=0)] = 120.0


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


def node_problem(node: str) -> str | None:
    """Why `node` (a `[[gpus]]` table's) cannot name a Ray node, or None."""
    if node != node.strip():
        return f"`node` {toml_value(node)} has spaces around it."
    if _ID_LIKE.fullmatch(node) and not _NODE_ID.fullmatch(node):
        return (
            f"`node` {toml_value(node)} looks like a node id, but a node id is 56 lowercase "
            "hex digits: copy it whole from `python -m bot check` or `ray list nodes`."
        )
    return None


def gpu_share_problem(num_gpus: float, device: str) -> str | None:
    """Why an actor with `device` may not reserve `num_gpus` GPUs, or None. A worker uses one
    GPU: Ray shows the actor only the GPUs it reserved (`CUDA_VISIBLE_DEVICES`), so a CUDA
    worker needs more than 0 and at most 1 (a fraction shares the GPU with other actors)."""
    if not math.isfinite(num_gpus) or num_gpus > 1:
        return f"`num_gpus` should be at most 1 (a worker uses one GPU), not {num_gpus:g}."
    if device.startswith("cuda") and num_gpus <= 0:
        return (
            "`num_gpus = 0` reserves no GPU, so Ray would show the actor none: "
            'reserve one (`num_gpus = 1`, or a fraction to share it), or use `device = "cpu"`.'
        )
    return None


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
    """Why the bot must not connect to the cluster at `address`, or None when it may: the bot
    needs token authentication whatever the address (loopback too: the cluster's other nodes
    reach it over the network), unless the owner allows otherwise."""
    if allow_insecure or has_token(environ):
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
