"""`ProcessWorker`: a worker in a child process of this machine, one per GPU.

The child is a fresh interpreter (`python -m generation.workers.child`), not a fork: it imports
torch itself and shares no CUDA state with anyone, and the pool's process never imports torch.
Messages travel over a socket pair; when the child dies (a segfault, the OOM killer, SIGKILL)
the socket closes and the event stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import generation
from generation.workers.protocol import (
    Command,
    Shutdown,
    WorkerEvent,
    WorkerGone,
    WorkerSpec,
    encode,
    read_message_async,
)

_PROJECT_ROOT = str(Path(generation.__file__).resolve().parent.parent)

# What a worker inherits from the pool's environment: the system's basics and the settings of
# CUDA, PyTorch, Hugging Face and the maths libraries. Nothing else: not DISCORD_TOKEN, and no
# variable whose name says it holds a secret (HF_TOKEN: workers load weights from local files).
_PASSED_NAMES = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
        "LD_LIBRARY_PATH", "VIRTUAL_ENV", "XDG_CACHE_HOME", "PYTHONPATH", "PYTHONHASHSEED",
        "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONFAULTHANDLER", "PYTHONWARNINGS",
    }
)  # fmt: skip
_PASSED_PREFIXES = (
    "LC_", "CUDA_", "NVIDIA_", "PYTORCH_", "TORCH_", "TORCHINDUCTOR_", "TRITON_", "HF_",
    "TRANSFORMERS_", "DIFFUSERS_", "OMP_", "MKL_", "KMP_", "OPENBLAS_",
)  # fmt: skip
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL")


def worker_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a worker process: what of `environ` it needs, with this checkout
    first on `PYTHONPATH`."""
    env = {
        name: value
        for name, value in environ.items()
        if (name in _PASSED_NAMES or name.startswith(_PASSED_PREFIXES))
        and not any(word in name for word in _SECRET_WORDS)
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PROJECT_ROOT, env.get("PYTHONPATH")]))
    return env


class ProcessWorker:
    """A `WorkerLink` to a child process running `entry` (`python -m ENTRY FD`)."""

    entry = "generation.workers.child"

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self) -> None:
        ours, theirs = socket.socketpair()
        env = self.environment(os.environ)
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self.entry,
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            theirs.close()
        self._reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        await self._write(encode(self.spec))

    def environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The child's environment (see `worker_environment`)."""
        return worker_environment(environ)

    async def events(self) -> AsyncIterator[WorkerEvent]:
        if self._reader is None:
            return
        while True:
            try:
                event = await read_message_async(self._reader)
            except EOFError:
                break
            yield event
        await self.kill()

    async def send(self, command: Command) -> None:
        await self._write(encode(command))

    async def stop(self, timeout_s: float) -> None:
        with contextlib.suppress(WorkerGone):
            await self.send(Shutdown())
        if self._process is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._process.wait(), timeout_s)
        await self.kill()

    async def kill(self) -> None:
        """End the child if it still runs, and close the connection (also once it is gone)."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()

    async def _write(self, data: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            raise WorkerGone("The worker is not running.")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as error:
            raise WorkerGone(f"The worker is gone ({error}).") from None
