"""`python -m bot check` joins the `[ray]` cluster (a real local one, token auth on) and lists
the nodes and GPUs it sees, saying for each remote `[[gpus]]` table whether its node is there;
joining without a token is refused before anything connects, whatever the address; a cluster
that does not require a token is refused by `bot check` and by the GPU's worker at start (the
owner's `allow_insecure` override only warns); a wrong token is said in one sentence; and values
that cannot work are refused with a sentence each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, settings_from_mapping
from generation.models import Catalogue
from generation.pool import WorkerPool, WorkerState
from storage import Database
from tests.conftest import child_environment
from tests.generation.helpers import STANDIN, Recorder
from tests.generation.ray_cluster import (
    RESOURCE,
    LocalRayCluster,
    cluster,
    free_port,
    open_cluster,
)

__all__ = ["cluster", "open_cluster"]  # the fixtures, imported
NODE_ID = "85c09c5e5e9e9ebf8dd77e90b83a5ef31c44dd30544efa225f53824a"


def check(tmp_path: Path, config: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "atelier.toml"
    path.write_text(config)
    return subprocess.run(
        [sys.executable, "-m", "bot", "check"],
        cwd=tmp_path,
        env={**child_environment(), "ATELIER_CONFIG": str(path), "DISCORD_TOKEN": "x", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bot_check_lists_the_remote_gpus_and_finds_each_ray_gpus_node(
    tmp_path: Path, cluster: LocalRayCluster
) -> None:
    done = check(
        tmp_path,
        f'[ray]\naddress = "{cluster.address}"\n\n'
        f'[[gpus]]\nbackend = "ray"\nid = "box"\nnode = "{RESOURCE}"\ndevice = "cpu"\n'
        "num_gpus = 0\n\n"
        '[[gpus]]\nbackend = "ray"\nid = "gone"\nnode = "no-such-box"\ndevice = "cpu"\n'
        "num_gpus = 0\n",
    )
    lines = done.stdout.splitlines()
    listed = next(line for line in lines if f"Ray cluster at {cluster.address}" in line)
    assert listed.startswith("[ok ]")
    assert "1 node(s)" in listed
    assert RESOURCE in listed
    assert "[ok ] Worker box has its node atelier-test-node (0 GPU(s))." in lines
    assert any(line.startswith("[ERR] Worker gone needs node no-such-box") for line in lines)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert not any("allow_insecure" in line for line in lines)


def test_bot_check_says_the_cluster_refused_the_token_and_warns_of_allow_insecure(
    tmp_path: Path, cluster: LocalRayCluster
) -> None:
    remote = f'[[gpus]]\nbackend = "ray"\nnode = "{RESOURCE}"\ndevice = "cpu"\nnum_gpus = 0\n'
    wrong = check(
        tmp_path, f'[ray]\naddress = "{cluster.address}"\n\n{remote}', RAY_AUTH_TOKEN="wrong"
    )
    assert (
        f"[ERR] Ray cluster at {cluster.address}: cannot join it (the cluster refused the token"
        in wrong.stdout
    )
    assert wrong.returncode == 1
    override = check(
        tmp_path, f'[ray]\naddress = "{cluster.address}"\nallow_insecure = true\n\n{remote}'
    )
    assert "[note] `[ray] allow_insecure = true` is set" in override.stdout
    assert f"[ok ] Worker {RESOURCE}:cpu has its node" in override.stdout


async def test_a_cluster_that_does_not_require_a_token_is_refused_by_check_and_at_start(
    tmp_path: Path, open_cluster: LocalRayCluster
) -> None:
    remote = f'[[gpus]]\nbackend = "ray"\nnode = "{RESOURCE}"\ndevice = "cpu"\nnum_gpus = 0\n'
    refused = check(tmp_path, f'[ray]\naddress = "{open_cluster.address}"\n\n{remote}')
    said = f"[ERR] The Ray cluster at {open_cluster.address} does not require token authentication"
    assert said in refused.stdout
    assert refused.returncode == 1
    warned = check(
        tmp_path, f'[ray]\naddress = "{open_cluster.address}"\nallow_insecure = true\n\n{remote}'
    )
    assert (
        f"[note] The Ray cluster at {open_cluster.address} lets in connections without a token"
        in (warned.stdout)
    )
    assert warned.returncode == 0
    catalogue = Catalogue.builtin()
    database = await Database.open(tmp_path / "atelier.sqlite3")
    pool = WorkerPool(catalogue, database, [open_cluster.worker("remote")], engine_factory=STANDIN)
    recorder = Recorder(pool)
    await pool.start()
    await recorder.until(lambda: pool.snapshot().workers[0].state is WorkerState.FAILED)
    problem = pool.worker_problems()["remote"]  # what /admin gpus and /healthz show
    assert "does not require token authentication" in problem
    await pool.shutdown()
    await database.close()


def test_bot_check_says_when_the_cluster_does_not_answer(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    done = check(
        tmp_path,
        f'[ray]\naddress = "{address}"\n\n'
        '[[gpus]]\nbackend = "ray"\nnode = "10.0.0.7"\ndevice = "cuda"\n',
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN="t0ken",
    )
    assert f"[ERR] Ray cluster at {address}: cannot join it" in done.stdout
    assert "does not answer" in done.stdout
    assert done.returncode == 1


def test_a_cluster_elsewhere_without_a_token_is_refused_unless_the_owner_overrides(
    tmp_path: Path,
) -> None:
    remote = '[[gpus]]\nbackend = "ray"\nnode = "10.0.0.7"\ndevice = "cuda"\n'
    refused = check(
        tmp_path, f'[ray]\naddress = "10.0.0.1:6379"\n\n{remote}', RAY_AUTH_MODE="disabled"
    )
    assert refused.returncode == 1
    assert "Refusing to connect to the Ray cluster at 10.0.0.1:6379" in refused.stdout
    assert "RAY_AUTH_MODE=token" in refused.stdout
    table = {
        "ray": {"address": "10.0.0.1:6379", "allow_insecure": True},
        "gpus": [{"backend": "ray", "node": "10.0.0.7", "device": "cuda"}],
    }
    (worker,) = settings_from_mapping(table, {"RAY_AUTH_MODE": "disabled"}).gpus
    assert worker.ray is not None
    assert (worker.id, worker.ray.address, worker.ray.allow_insecure) == (
        "10.0.0.7:cuda",
        "10.0.0.1:6379",
        True,
    )


def test_ray_gpu_tables_are_checked_with_their_paths() -> None:
    table = {
        "gpus": [
            {"device": "cuda:0", "node": "box"},
            {"device": "cuda", "backend": "ray"},
            {"device": "cuda", "backend": "ray", "node": "box", "id": "cuda:0"},
            {"device": "cuda", "backend": "ray", "node": "box", "num_gpus": -1},
        ]
    }
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(table, {})
    assert caught.value.problems == [
        "`gpus[3].num_gpus` should be at least 0, not -1.",
        '`gpus[0]`: `node` is only for `backend = "ray"`.',
        "`gpus[1]`: a Ray GPU needs `node`: its node's id, IP address or custom resource.",
        '`gpus[2]`: `id` "cuda:0" looks like a device of this machine: give the Ray GPU a name '
        'of its own, such as "box-gpu0".',
        '`gpus[2]`: its worker id "cuda:0" is also `gpus[0]`\'s; give each Ray GPU its own `id`.',
        '`[[gpus]]` with `backend = "ray"` need the cluster: set `[ray] address` '
        '("HOST:6379", or "auto" on the head node).',
    ]


TOKEN = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "t0ken"}


@pytest.mark.parametrize("address", ["127.0.0.1:6379", "localhost:6379", "[::1]:6379", "auto"])
def test_joining_without_a_token_is_refused_whatever_the_address(address: str) -> None:
    """A cluster with a GPU on another machine listens on the network even when the bot
    reaches it over loopback: no address skips the token."""
    table = {
        "ray": {"address": address},
        "gpus": [{"backend": "ray", "node": "box", "device": "cuda"}],
    }
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(table, {})
    (problem,) = caught.value.problems
    assert problem.startswith(f"`ray.address`: Refusing to connect to the Ray cluster at {address}")
    assert settings_from_mapping(table, TOKEN).gpus[0].ray is not None
    table["ray"]["allow_insecure"] = True
    assert settings_from_mapping(table, {}).gpus[0].ray is not None


def ray_gpu(**table: object) -> dict[str, object]:
    return {"backend": "ray", "device": "cuda", "node": "10.8.0.2", **table}


@pytest.mark.parametrize(
    ("gpus", "ray", "said"),
    [
        (
            [ray_gpu(node=NODE_ID.upper())],
            {},
            "looks like a node id, but a node id is 56 lowercase",
        ),
        ([ray_gpu(node=NODE_ID[:12] + "…")], {}, "looks like a node id, but a node id is 56"),
        ([ray_gpu(node=NODE_ID[:-1])], {}, "looks like a node id, but a node id is 56"),
        ([ray_gpu(node=" 10.8.0.2 ")], {}, 'node` " 10.8.0.2 " has spaces around it'),
        ([ray_gpu(num_gpus=0)], {}, "`num_gpus = 0` reserves no GPU"),
        ([ray_gpu(num_gpus=float("inf"))], {}, "num_gpus` should be a finite number, not inf"),
        ([ray_gpu(num_gpus=1e9)], {}, "`num_gpus` should be at most 1"),
        ([ray_gpu(device="cuda:1")], {}, 'device "cuda:1": inside its actor a Ray GPU is always'),
        ([ray_gpu()], {"address": "10.8.0.1"}, '"10.8.0.1" is not "HOST:PORT"'),
        ([ray_gpu()], {"address": "ray://10.8.0.1:10001"}, "is a Ray Client address"),
        ([ray_gpu()], {"address": "10.8.0.1:99999"}, 'is not "HOST:PORT"'),
        ([{"device": "cuda:0", "num_gpus": 1}], {}, '`num_gpus` is only for `backend = "ray"`'),
        ([{"device": "cuda:0"}, ray_gpu(id="cuda")], {}, '`id` "cuda" looks like a device'),
        ([{"device": "cuda:0"}, ray_gpu(id="cuda:00")], {}, '`id` "cuda:00" looks like a device'),
        ([ray_gpu(id="Box"), ray_gpu(id="box", node="b")], {}, 'worker id "box" is also'),
    ],
)
def test_ray_values_that_cannot_work_are_refused_with_a_sentence(
    gpus: list[dict[str, object]], ray: dict[str, object], said: str
) -> None:
    table = {"ray": {"address": "10.8.0.1:6379", **ray}, "gpus": gpus}
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(table, TOKEN)
    assert any(said in problem for problem in caught.value.problems), caught.value.problems


def test_a_node_id_copied_whole_and_fractional_gpus_are_accepted() -> None:
    table = {
        "ray": {"address": "10.8.0.1:6379"},
        "gpus": [ray_gpu(node=NODE_ID, id="a", num_gpus=0.5), ray_gpu(id="b", num_gpus=0.5)],
    }
    first, second = settings_from_mapping(table, TOKEN).gpus
    assert first.ray is not None
    assert second.ray is not None
    assert (first.ray.node_kind, first.ray.num_gpus, second.ray.num_gpus) == ("id", 0.5, 0.5)
