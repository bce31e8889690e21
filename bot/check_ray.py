"""`python -m bot check`, Ray part: join the `[ray]` cluster, list the nodes and GPUs it sees,
and say for each `[[gpus]]` table with `backend = "ray"` whether its node is there. A cluster
that lets in a connection without a token is refused (`generation.workers.ray_probe`), and
`[ray] allow_insecure = true` is always warned about.

Ray runs in a child process (`python -m generation.workers.ray_relay --nodes`), as for the
workers, with a time limit: joining a cluster that does not answer can take Ray minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

from bot.check import Finding
from bot.config import Settings
from generation.workers.process import worker_environment
from generation.workers.ray_config import RayPlacement, connection_problem, ray_environment
from generation.workers.ray_probe import open_cluster_problem

_LIST_TIMEOUT_S = 60.0


def ray_findings(settings: Settings) -> Iterator[Finding]:
    remote = [(w.id, w.ray) for w in settings.gpus if w.ray is not None]
    address = settings.ray.address
    if not address:
        return
    where = f"Ray cluster at {address}"
    if problem := connection_problem(address, settings.ray.allow_insecure):
        yield Finding(False, problem)
        return
    nodes = _nodes(settings, address)
    if isinstance(nodes, str):
        yield Finding(False, f"{where}: {nodes}", problem=bool(remote))
        return
    problem, warning = open_cluster_problem(address, settings.ray.allow_insecure, os.environ)
    if problem or warning:
        yield Finding(False, problem or warning or "", problem=problem is not None)
    if problem:
        return
    seen = "; ".join(_describe(node) for node in nodes)
    yield Finding(True, f"{where}: {len(nodes)} node(s): {seen}.")
    for worker_id, placement in remote:
        yield _placed(worker_id, placement, nodes)


def _describe(node: dict) -> str:
    """`<56 hex digits> 10.0.0.7 (1 GPU, gpu-box)`: its whole id (to copy into `node`), IP,
    GPUs and custom resources."""
    gpus = f"{node['gpus']:g} GPU"
    custom = [name for name in node["resources"] if ":" not in name]
    return f"{node['id']} {node['ip']} ({', '.join([gpus, *custom])})"


def _placed(worker_id: str, placement: RayPlacement, nodes: list[dict]) -> Finding:
    found = [n for n in nodes if placement.is_on(n["id"], n["ip"], n["resources"])]
    if not found:
        return Finding(
            False,
            f"Worker {worker_id} needs node {placement.node}, which the cluster does not show "
            "(is the node started and joined with `ray start --address`?).",
        )
    gpus = sum(node["gpus"] for node in found)
    if gpus < placement.num_gpus:
        return Finding(
            False,
            f"Worker {worker_id} reserves {placement.num_gpus:g} GPU(s) on {placement.node}, "
            f"which offers {gpus:g} (start it with `ray start --num-gpus=N`).",
        )
    return Finding(True, f"Worker {worker_id} has its node {placement.node} ({gpus:g} GPU(s)).")


def _nodes(settings: Settings, address: str) -> list[dict] | str:
    """The cluster's live nodes, or why they could not be listed."""
    env = worker_environment(os.environ) | ray_environment(os.environ)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "generation.workers.ray_relay", "--nodes", address],
            env=env,
            capture_output=True,
            text=True,
            timeout=min(_LIST_TIMEOUT_S, settings.ray.start_timeout_s),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "it did not answer in time (is the head running, and its port open to you?)."
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        answer = None
    if isinstance(answer, dict):
        return f"cannot join it ({answer['error']})."
    if not isinstance(answer, list):
        return f"cannot join it (the lister exited with status {done.returncode})."
    return answer
