"""`python -m bot check` joins the `[ray]` cluster (a real local one, token auth on) and lists
the nodes and GPUs it sees, saying for each remote `[[gpus]]` table whether its node is there;
a cluster elsewhere without a token is refused before anything connects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, settings_from_mapping
from tests.conftest import child_environment
from tests.generation.ray_cluster import RESOURCE, LocalRayCluster, cluster, free_port

__all__ = ["cluster"]  # the fixture, imported


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


def test_bot_check_says_when_the_cluster_does_not_answer(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    done = check(
        tmp_path,
        f'[ray]\naddress = "{address}"\n\n'
        '[[gpus]]\nbackend = "ray"\nnode = "10.0.0.7"\ndevice = "cuda"\n',
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
        '`gpus[2]`: its worker id "cuda:0" is also `gpus[0]`\'s; give each Ray GPU its own `id`.',
        '`[[gpus]]` with `backend = "ray"` need the cluster: set `[ray] address` '
        '("HOST:6379", or "auto" on the head node).',
    ]
