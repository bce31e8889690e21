"""A relay to one remote GPU: `python -m generation.workers.ray_relay FD`.

The pool starts this process like a local worker process (`generation.workers.links`) and talks
to it over the same socket with the same messages. The relay is the Ray driver: it connects to
the cluster, places an `EngineActor` on the configured node, passes commands to it, and streams
its events back by long-polling it. Ray lives in this process only, so neither the bot nor a
local worker ever imports it, and when the cluster goes away (`ray stop`, a lost head) it is
this process that ends: the pool sees a worker that died, requeues its job and restarts it under
the supervision policy, while the local GPUs go on working.

Before it places the actor it checks the cluster (`generation.workers.ray_probe`): that it
requires token authentication (the owner's `allow_insecure` only warns, on stderr) and accepts
this token; once placed, that the actor runs the same code, Ray and Python as the bot.

It ends (and the actor with it: an actor shares its driver's fate) when the socket closes, when
the actor dies or ends, or when the actor is not placed within `start_timeout_s` (loading the
models is not counted: a local worker has no limit on it either); it reports `WorkerFailed`
first when it cannot start at all (no cluster there, no such node, an actor that died before it
was ready, with the last lines of Ray's error, which `/admin gpus` shows). An actor that dies
after it was ready is a worker that died; the relay writes Ray's error to its stderr.

`python -m generation.workers.ray_relay --nodes ADDRESS` prints the cluster's nodes as JSON
(`python -m bot check` uses it).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable
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
from generation.workers.ray_probe import (
    code_identity,
    mismatch,
    open_cluster_problem,
    token_problem,
)

_POLL_S = 0.5  # how long one poll waits for an event; the actor answers at once when one comes
_RAY_HEADER = re.compile(r"\w+: \S+")  # "pid: 4242", "ip: 10.0.0.7" atop Ray's actor errors
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

    placed = threading.Event()  # joined, and the actor answers on its node
    deadline = threading.Timer(
        placement.start_timeout_s,
        lambda: (
            placed.is_set()
            or give_up(
                f"not placed on its node within {placement.start_timeout_s:g} s "
                "(`[ray] start_timeout_s`; see the Ray logs)."
            )
        ),
    )
    deadline.daemon = True
    deadline.start()
    if problem := _unreachable(placement):
        give_up(problem)

    import ray

    from generation.workers.ray_actor import EngineActor

    if problem := token_problem(placement.address):
        give_up(f"cannot join the Ray cluster at {placement.address}: {problem}")
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
    try:
        identity = ray.get(actor.identity.remote())
    except ray.exceptions.RayError as error:
        give_up(f"its actor could not start on {placement.node}: {error_tail(error)}")
    if problem := mismatch(identity, code_identity()):
        give_up(problem)
    placed.set()  # from here on the worker takes as long as its models take to load, as here
    ready = False

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
                return  # the event loop below reports it

    threading.Thread(target=relay_commands, name="commands", daemon=True).start()
    while True:
        try:
            events, running, failure = ray.get(actor.poll.remote(_POLL_S))
        except ray.exceptions.RayError as error:
            _actor_ended(spec.config.id, error_tail(error), None if ready else give_up)
        for event in events:
            if isinstance(event, WorkerReady):
                ready = True
            emit(event)
        if not running:
            ray.kill(actor)
            if failure:
                _actor_ended(spec.config.id, error_tail(failure), None if ready else give_up)
            _exit()


def error_tail(error: BaseException | str, lines: int = 4) -> str:
    """The last `lines` lines of `error`'s text, in one line: what the actor said last (a
    traceback's end, Ray's "exit detail"), without Ray's `name: value` header lines."""
    text = [
        line.strip()
        for line in str(error).splitlines()
        if line.strip() and not _RAY_HEADER.fullmatch(line.strip())
    ]
    return " | ".join(text[-lines:]) or type(error).__name__


def _actor_ended(worker_id: str, why: str, give_up: Callable[[str], None] | None) -> None:
    """The actor died or its engine failed: before it was ready, that is why the worker cannot
    start (`give_up`, which `/admin gpus` shows); after, the pool sees a worker that died (and
    retries its job), and the bot's log says why."""
    if give_up is not None:
        give_up(f"its actor stopped before it was ready: {why}")
    print(f"Worker {worker_id}: its Ray actor stopped: {why}", file=sys.stderr, flush=True)
    _exit()


def _unreachable(placement: RayPlacement) -> str | None:
    """Why the cluster must not or cannot be joined: refused by policy, its port does not
    answer, or it lets in connections without a token (the owner's override only warns)."""
    if problem := connection_problem(placement.address, placement.allow_insecure):
        return problem
    if problem := _silent(placement.address):
        return problem
    problem, warning = open_cluster_problem(placement.address, placement.allow_insecure, os.environ)
    if warning:
        print(f"WARNING: {warning}", file=sys.stderr, flush=True)
    return problem


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
        address = sys.argv[2]
        answer: object
        try:
            problem = _silent(address) or token_problem(address)
            answer = {"error": problem} if problem else list_nodes(address)
        except Exception as error:  # Ray's errors on joining: one sentence for the operator
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer))
        _exit(0)
    main(sys.argv[1:])
    _exit(0)
