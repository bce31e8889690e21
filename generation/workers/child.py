"""A worker child process: `python -m generation.workers.child FD`.

FD is this end of a socket pair made by `generation.workers.process`. The first message is the
`WorkerSpec`; then commands arrive and events go back (see `generation.workers.protocol`). A
reader thread takes commands off the socket so that a cancel reaches a running job within a step;
when the socket closes (the pool's process died or let go) the worker exits at once, so no
orphan keeps a GPU busy.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import sys
import threading

from generation.workers.protocol import (
    CancelJob,
    Command,
    WorkerEvent,
    WorkerSpec,
    encode,
    read_message,
)
from generation.workers.runtime import WorkerRuntime


def main(argv: list[str]) -> int:
    # Ctrl+C in a terminal reaches the whole process group; the pool decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    connection = socket.socket(fileno=int(argv[0]))
    stream = connection.makefile("rb")
    spec: WorkerSpec = read_message(stream)
    # One line per record on the stderr this process shares with the bot (model loads, speed).
    worker = spec.config.id.replace("%", "%%")
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s worker={worker} %(name)s %(message)s"
    )
    send_lock = threading.Lock()

    def emit(event: WorkerEvent) -> None:
        data = encode(event)
        with send_lock:
            connection.sendall(data)

    runtime = WorkerRuntime(spec, emit)
    commands: queue.SimpleQueue[Command] = queue.SimpleQueue()

    def read_commands() -> None:
        while True:
            try:
                command = read_message(stream)
            except (EOFError, OSError):
                os._exit(0)  # the pool is gone: stop now, even mid-job
            if isinstance(command, CancelJob):
                runtime.cancel(command.job_id)
            else:
                commands.put(command)

    threading.Thread(target=read_commands, name="commands", daemon=True).start()
    if not runtime.start():
        return 0  # WorkerFailed told the pool why; a traceback would add nothing
    while runtime.handle(commands.get()):
        pass
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip the interpreter's teardown of torch and CUDA: seconds, and not needed
