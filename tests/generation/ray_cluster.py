"""A local Ray cluster for the tests: a head started with `ray start --head --block` in a
session of its own, which the test can kill (every process of it, as a lost head or `ray stop`
would) and start again on the same port.

Only this cluster's processes are touched (its process group), never another Ray on the machine.
Token authentication is on, with a token made for the test, as the README asks of real clusters.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from generation.workers.config import WorkerConfig
from generation.workers.ray_config import RayPlacement

RESOURCE = "atelier-test-node"  # the custom resource the head offers; actors are placed by it
_READY_TIMEOUT_S = 120.0
_PROJECT = str(Path(__file__).resolve().parents[2])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalRayCluster:
    """`token=False`: a cluster started without token authentication (which Atelier refuses)."""

    def __init__(self, temp_dir: Path, token: bool = True) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp_dir = temp_dir
        self.env = {
            "RAY_AUTH_MODE": "token" if token else "disabled",
            "RAY_AUTH_TOKEN": secrets.token_hex(16) if token else "",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self._head: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in (os.environ | self.env).items() if v}
        # the actors' worker processes import this checkout's code
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PROJECT, env.get("PYTHONPATH")]))
        ray = str(Path(sys.executable).with_name("ray"))
        log = self.temp_dir.parent / f"head-{self.port}.log"
        self._head = subprocess.Popen(
            [
                ray, "start", "--head", "--block", f"--port={self.port}",
                "--node-ip-address=127.0.0.1", "--num-cpus=4", "--num-gpus=0",
                f"--resources={{\"{RESOURCE}\": 100}}", "--include-dashboard=false",
                "--disable-usage-stats", f"--temp-dir={self.temp_dir}",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self._wait_started(self._head, log)

    def add_node(self, resource: str, project: Path | None = None) -> subprocess.Popen[bytes]:
        """Join a second node (a raylet of its own on this machine) offering `resource`, its
        actors importing the checkout at `project` (default this one); `kill_node` ends it as
        a lost machine would end."""
        env = {k: v for k, v in (os.environ | self.env).items() if v}
        code = str(project or _PROJECT)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [code, env.get("PYTHONPATH")]))
        ray = str(Path(sys.executable).with_name("ray"))
        log = self.temp_dir.parent / f"node-{resource}.log"
        node = subprocess.Popen(
            [
                ray, "start", "--block", f"--address={self.address}",
                "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0",
                f"--resources={{\"{resource}\": 100}}",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self._wait_started(node, log)
        return node

    @staticmethod
    def kill_node(node: subprocess.Popen[bytes]) -> None:
        if node.poll() is None:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()

    def _wait_started(self, process: subprocess.Popen[bytes], log: Path) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        # `ray start` says so once the node's processes all run (before, a driver may fail)
        while "Ray runtime started." not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"A test Ray node did not start; see {log}.")
            time.sleep(0.2)

    def kill(self) -> None:
        """Kill every process of this cluster at once (a lost head node)."""
        if self._head is not None and self._head.poll() is None:
            os.killpg(self._head.pid, signal.SIGKILL)
            self._head.wait()
        self._head = None

    def worker(
        self, worker_id: str, node: str = RESOURCE, start_timeout_s: float = 60.0, **options: object
    ) -> WorkerConfig:
        """A CPU worker whose actor runs on the node offering resource `node` (the head's)."""
        placement = RayPlacement(
            address=self.address, node=node, num_gpus=0, start_timeout_s=start_timeout_s
        )
        return WorkerConfig(worker_id, "cpu", ray=placement, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayCluster]:
    """One local Ray head per test module, its token in this process's environment."""
    head = LocalRayCluster(tmp_path_factory.mktemp("ray"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in head.env.items():
            patch.setenv(name, value)
        head.start()
        try:
            yield head
        finally:
            head.kill()


@pytest.fixture(scope="module")
def open_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayCluster]:
    """A local Ray head started WITHOUT token authentication, while this process has token
    authentication on and a token: the mistake Atelier must catch (a driver that has a token
    joins a cluster that requires none)."""
    head = LocalRayCluster(tmp_path_factory.mktemp("ray-open"), token=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "token")
        patch.setenv("RAY_AUTH_TOKEN", "a-token-this-cluster-never-asks-for")
        head.start()
        try:
            yield head
        finally:
            head.kill()


class DiesWhileBuilt:
    """An engine whose construction kills its process, as a CUDA fault or the OOM killer
    would (`engine_factory="tests.generation.ray_cluster:DiesWhileBuilt"`): the actor dies
    before its worker is ready."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        os._exit(3)


class FailsWhileBuilt:
    """An engine whose construction raises what no worker expects (a bug, a library's own
    error): the actor's engine thread ends with a traceback before its worker is ready."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise KeyError(FAILS_WITH)


FAILS_WITH = "no kernel image for this GPU (a test engine)"
