"""A relay to one remote GPU: `python -m generation.workers.ray_relay FD`.

The pool starts this process like a local worker process (`generation.workers.links`) and talks
to it over the same socket with the same messages. The relay is the Ray driver: it connects to
the cluster, places an `EngineActor` on the configured node, passes commands to it, and streams
its events back by long-polling it. Ray lives in this process only, so neither the bot nor a
local worker ever imports it, and when the cluster goes away (`ray stop`, a lost head) it is
this process that ends: the pool sees a worker that died, requeues its job and restarts it under
the supervision policy, while the local GPUs go on working.

It ends (and the actor with it: an actor shares its driver's fate) when the socket closes, when
the actor dies or ends, or when the worker is not ready within `start_timeout_s`; it reports
`WorkerFailed` first when it cannot start at all (no cluster there, no such node).

`python -m generation.workers.ray_relay --nodes ADDRESS` prints the cluster's nodes as JSON
(`python -m bot check` uses it).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

from generation.workers.protocol import (
    CancelJob,
    Command,
    WorkerEvent,
    WorkerFailed,
    WorkerReady,
    WorkerSpec,
    encode,
    read_message,
)
from generation.workers.ray_config import RayPlacement, connection_problem

_POLL_S = 0.5  # how long one poll waits for an event; the actor answers at once when one comes
_REACH_TIMEOUT_S = 5.0  # a TCP connection to the head; `ray.init` itself waits minutes


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pool decides when workers stop
    connection = socket.socket(fileno=int(argv[0]))
    stream = connection.makefile("rb")
    spec: WorkerSpec = read_message(stream)
    placement = spec.config.ray
    assert placement is not None, "a relay serves a worker with a `ray` placement"
    send_lock = threading.Lock()

    def emit(event: WorkerEvent) -> None:
        data = encode(event)
        with send_lock:
            connection.sendall(data)

    def give_up(reason: str) -> None:
        emit(WorkerFailed(f"{spec.config.id}: {reason}"))
        _exit()

    ready = threading.Event()
    deadline = threading.Timer(
        placement.start_timeout_s,
        lambda: (
            ready.is_set()
            or give_up(f"not ready within {placement.start_timeout_s:g} s (see the Ray logs).")
        ),
    )
    deadline.daemon = True
    deadline.start()
    if problem := _unreachable(placement):
        give_up(problem)

    import ray

    from generation.workers.ray_actor import EngineActor

    try:
        ray.init(
            address=placement.address,
            namespace="atelier",
            log_to_driver=False,
            logging_level=logging.WARNING,
            configure_logging=False,
        )
    except Exception as error:  # Ray raises ConnectionError, RuntimeError, AuthenticationError
        give_up(f"cannot join the Ray cluster at {placement.address} ({error}).")
    options = _placement_options(placement, ray.nodes())
    if isinstance(options, str):
        give_up(options)
    actor = EngineActor.options(**options).remote(spec)

    def relay_commands() -> None:
        while True:
            try:
                command: Command = read_message(stream)
            except (EOFError, OSError):
                _exit()  # the pool is gone or let go: the actor goes with this driver
            try:
                if isinstance(command, CancelJob):
                    ray.get(actor.cancel.remote(command.job_id))
                else:
                    ray.get(actor.command.remote(command))  # in order: one at a time
            except ray.exceptions.RayError:
                _exit()

    threading.Thread(target=relay_commands, name="commands", daemon=True).start()
    while True:
        try:
            events, running = ray.get(actor.poll.remote(_POLL_S))
        except ray.exceptions.RayError:
            _exit()
        for event in events:
            if isinstance(event, WorkerReady):
                ready.set()
            emit(event)
        if not running:
            ray.kill(actor)
            _exit()


def _unreachable(placement: RayPlacement) -> str | None:
    """Why the cluster cannot be joined (refused by policy, or its port does not answer)."""
    if problem := connection_problem(placement.address, placement.allow_insecure):
        return problem
    return _silent(placement.address)


def _silent(address: str) -> str | None:
    """Why nothing answers at `address` (`HOST:PORT`), or None when its port does."""
    where = RayPlacement(address, node="").host_port()
    if where is None:
        return None
    try:
        socket.create_connection(where, timeout=_REACH_TIMEOUT_S).close()
    except OSError as error:
        why = error.strerror or error
        return f"the Ray cluster at {address} does not answer ({why})."
    return None


def _placement_options(
    placement: RayPlacement, nodes: list[dict[str, Any]]
) -> dict[str, Any] | str:
    """The actor's options to run on `placement.node`, or why no live node is that node."""
    found = any(
        node.get("Alive")
        and placement.is_on(node["NodeID"], node["NodeManagerAddress"], node["Resources"])
        for node in nodes
    )
    if not found:
        return (
            f"no live node of the Ray cluster is {placement.node} ({placement.node_kind}); "
            "is it connected?"
        )
    options: dict[str, Any] = {"num_gpus": placement.num_gpus, "num_cpus": 0}
    if placement.node_kind == "id":
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(placement.node, soft=False)
    else:
        options["resources"] = {placement.resource: 0.001}
    return options


def list_nodes(address: str) -> list[dict[str, Any]]:
    """The live nodes of the cluster at `address`: id, IP, GPUs, resources (`node:IP` and
    custom ones)."""
    import ray

    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    try:
        return [
            {
                "id": node["NodeID"],
                "ip": node["NodeManagerAddress"],
                "gpus": node["Resources"].get("GPU", 0.0),
                "resources": sorted(
                    name
                    for name in node["Resources"]
                    if name not in ("CPU", "GPU", "memory", "object_store_memory")
                ),
            }
            for node in ray.nodes()
            if node.get("Alive")
        ]
    finally:
        ray.shutdown()


def _exit(code: int = 0) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # also from a thread: the actor ends with this driver


if __name__ == "__main__":
    if sys.argv[1:2] == ["--nodes"]:
        try:
            if silent := _silent(sys.argv[2]):
                raise ConnectionError(silent)
            print(json.dumps(list_nodes(sys.argv[2])))
        except Exception as error:  # Ray's errors on joining: one sentence for the operator
            print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        _exit(0)
    main(sys.argv[1:])
    _exit(0)
