"""Where a remote worker's actor goes and whether the bot may join a cluster: a node named by id,
IP address or custom resource; any address needs Ray's token authentication or the owner's
explicit override; an actor must run the bot's code, Ray and Python."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.workers.ray_config import RayPlacement, connection_problem, has_token
from generation.workers.ray_probe import code_identity, mismatch

NODE_ID = "85c09c5e5e9e9ebf8dd77e90b83a5ef31c44dd30544efa225f53824a"


@pytest.mark.parametrize(
    ("node", "kind", "on"),
    [
        (NODE_ID, "id", (NODE_ID, "10.0.0.9", [])),
        ("10.0.0.7", "ip", ("x", "10.0.0.7", ["node:10.0.0.7"])),
        ("gpu-box", "resource", ("x", "10.0.0.8", ["gpu-box", "node:10.0.0.8"])),
    ],
)
def test_a_node_is_named_by_id_ip_or_custom_resource(
    node: str, kind: str, on: tuple[str, str, list[str]]
) -> None:
    placement = RayPlacement("127.0.0.1:6379", node)
    assert placement.node_kind == kind
    assert placement.is_on(*on)
    assert not placement.is_on("y" * 56, "10.0.0.99", ["node:10.0.0.99", "other-box"])


@pytest.mark.parametrize(
    "address", ["10.0.0.1:6379", "auto", "head.example:6379", "127.0.0.1:6379", "[::1]:6379"]
)
def test_any_cluster_needs_token_auth_or_the_owners_override(address: str, tmp_path: Path) -> None:
    token_file = tmp_path / "auth_token"
    token_file.write_text("t0ken")
    problem = connection_problem(address, allow_insecure=False, environ={})
    assert problem is not None
    assert problem.startswith(f"Refusing to connect to the Ray cluster at {address}")
    assert connection_problem(address, allow_insecure=True, environ={}) is None
    with_token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "t0ken"}
    assert connection_problem(address, allow_insecure=False, environ=with_token) is None
    in_a_file = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}
    assert has_token(in_a_file)
    # a token that Ray would not use (auth mode off), or token mode with no token, is not enough
    assert not has_token({"RAY_AUTH_TOKEN": "t0ken"})
    missing = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(tmp_path / "none")}
    assert not has_token(missing)


def test_an_actor_on_other_code_ray_or_python_is_refused_with_both_sides_named() -> None:
    here = code_identity()
    assert set(here) == {"code", "ray", "python"}
    assert len(here["code"]) == 12
    assert mismatch(dict(here), here) is None
    for key, other in [("code", "0123456789ab"), ("ray", "2.59.0"), ("python", "3.12")]:
        problem = mismatch(here | {key: other}, here)
        assert problem is not None
        assert problem.startswith("the GPU machine runs ")
        assert other in problem
        assert here[key] in problem
        assert "install the same checkout, Ray version and Python on both machines" in problem
