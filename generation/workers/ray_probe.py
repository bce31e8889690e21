"""What the bot checks about a Ray cluster before it trusts it with a GPU worker.

- `open_cluster_problem(address, allow_insecure, environ)`: whether the cluster lets in a
  driver that has no token. Ray 2.60 publishes no "auth mode" of a cluster, and a driver that
  has a token joins a cluster without token authentication all the same, so the only way to
  know is to try: `python -m generation.workers.ray_probe ADDRESS` asks the cluster's GCS
  (its head service) for its nodes with token authentication off in its own environment.
  A cluster that enforces tokens answers `ray.exceptions.AuthenticationError` ("InvalidAuthToken")
  at once (https://docs.ray.io/en/latest/ray-security/token-auth.html).
- `token_problem(address)` (in a process that imports Ray): whether the cluster refuses this
  process's token, as one sentence instead of Ray's "Failed to connect".
- `code_identity()`: the code and versions an actor runs, compared with the bot's (`mismatch`):
  both machines must run the same Atelier code with the same Ray and Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from functools import cache
from importlib import metadata
from pathlib import Path

PROBE_TIMEOUT_S = 20.0  # a Python that imports Ray (about 1 s here) plus one GCS call (5 s)
_GCS_TIMEOUT_S = 5
_GENERATION = Path(__file__).resolve().parents[1]  # the `generation` package: the engine code
_WITHOUT_TOKEN = {"RAY_AUTH_MODE": "disabled"}

REFUSED_TOKEN = (
    "the cluster refused the token: RAY_AUTH_TOKEN (or the token file) is not the token the "
    "cluster was started with; give the bot the same token as every Ray node."
)


def open_cluster_problem(
    address: str, allow_insecure: bool, environ: Mapping[str, str]
) -> tuple[str | None, str | None]:
    """(problem, warning) about the cluster at `address` letting in drivers without a token:
    a problem, or with the owner's `allow_insecure` a warning (which that override always
    gets). (None, None) when it enforces token authentication, or cannot be asked (the
    caller's join reports that)."""
    env = {
        name: value
        for name, value in environ.items()
        if not name.startswith("RAY_AUTH")  # no token, and token authentication off
    } | _WITHOUT_TOKEN
    try:
        done = subprocess.run(
            [sys.executable, "-m", "generation.workers.ray_probe", address],
            env=env,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
        is_open = json.loads(done.stdout.strip().splitlines()[-1]).get("open") is True
    except (subprocess.TimeoutExpired, IndexError, json.JSONDecodeError, AttributeError):
        is_open = False
    if allow_insecure:
        return None, (
            f"The Ray cluster at {address} lets in connections without a token, and "
            "`[ray] allow_insecure = true` lets the bot join it: anyone who reaches it can run "
            "code on your machines. Start every Ray node with RAY_AUTH_MODE=token."
            if is_open
            else "`[ray] allow_insecure = true` is set: the bot would join a Ray cluster "
            "without token authentication. Remove it once every node uses RAY_AUTH_MODE=token."
        )
    if not is_open:
        return None, None
    return (
        f"The Ray cluster at {address} does not require token authentication: a connection "
        "without a token got in, so anyone who reaches it could run code on your machines. "
        "Start every Ray node (`ray start`) with RAY_AUTH_MODE=token and the token in "
        "RAY_AUTH_TOKEN; `[ray] allow_insecure = true` overrides this."
    ), None


def token_problem(address: str) -> str | None:
    """Why the cluster at `address` refuses this process's token, or None (it accepts it, or
    fails otherwise: the caller's join reports that). Imports Ray."""
    return REFUSED_TOKEN if _ask_gcs(address) == "refused" else None


@cache
def code_identity() -> dict[str, str]:
    """The engine code (a SHA-256 of every file of the `generation` package, 12 hex digits),
    Ray's version and Python's (major.minor) of this process."""
    digest = hashlib.sha256()
    for path in sorted(_GENERATION.rglob("*.py")):
        digest.update(path.relative_to(_GENERATION).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return {
        "code": digest.hexdigest()[:12],
        "ray": metadata.version("ray"),
        "python": ".".join(platform.python_version_tuple()[:2]),
    }


def mismatch(actor: Mapping[str, str], here: Mapping[str, str]) -> str | None:
    """Why an actor with identity `actor` must not serve a bot with identity `here`, or None."""
    if dict(actor) == dict(here):
        return None

    def describe(identity: Mapping[str, str]) -> str:
        return (
            f"Atelier code {identity.get('code')}, Ray {identity.get('ray')}, "
            f"Python {identity.get('python')}"
        )

    return (
        f"the GPU machine runs {describe(actor)}, but the bot runs {describe(here)}: install "
        "the same checkout, Ray version and Python on both machines (`pip install '.[ray]'`)."
    )


def _ask_gcs(address: str) -> str:
    """Ask the GCS at `address` for its nodes with this process's token settings: "answered",
    "refused" (`AuthenticationError`: no token, or not its token), or why it did not answer."""
    from ray._private.services import canonicalize_bootstrap_address
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    try:
        found = canonicalize_bootstrap_address(address) or address
        GcsClient(address=found).get_all_node_info(timeout=_GCS_TIMEOUT_S)
    except AuthenticationError:
        return "refused"
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "answered"


if __name__ == "__main__":
    answer = _ask_gcs(sys.argv[1])  # run token-less by `open_cluster_problem`
    print(json.dumps({"open": answer == "answered", "answer": answer}), flush=True)
    os._exit(0)  # Ray's threads would keep a normal exit waiting
