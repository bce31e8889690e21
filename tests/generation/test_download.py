"""`python -m generation.download`: what is fetched, what counts as present, and the messages for
gated models and for no network, all without leaving this machine (a local HTTP server plays the
Hub where one is needed)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from pathlib import Path

import pytest
from aiohttp import web
from huggingface_hub import constants
from huggingface_hub.utils import filter_repo_objects

from generation.download import allow_patterns, main, missing_weights
from generation.models import Catalogue
from generation.tiny import catalogue_config

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CATALOGUE = Catalogue.builtin()

# File names from the real repositories (abridged where they repeat).
FLUX_DEV_FILES = [
    "ae.safetensors",
    "flux1-dev.safetensors",
    "model_index.json",
    "README.md",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "text_encoder_2/config.json",
    "text_encoder_2/model-00001-of-00002.safetensors",
    "text_encoder_2/model-00002-of-00002.safetensors",
    "text_encoder_2/model.safetensors.index.json",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "tokenizer_2/special_tokens_map.json",
    "tokenizer_2/spiece.model",
    "tokenizer_2/tokenizer.json",
    "tokenizer_2/tokenizer_config.json",
    "transformer/config.json",
    "transformer/diffusion_pytorch_model-00001-of-00003.safetensors",
    "transformer/diffusion_pytorch_model-00002-of-00003.safetensors",
    "transformer/diffusion_pytorch_model-00003-of-00003.safetensors",
    "transformer/diffusion_pytorch_model.safetensors.index.json",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
]
PLAYGROUND_FILES = [
    "model_index.json",
    "playground-v2.5-1024px-aesthetic.fp16.safetensors",
    "playground-v2.5-1024px-aesthetic.safetensors",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.fp16.safetensors",
    "text_encoder/model.safetensors",
    "text_encoder/pytorch_model.bin",
    "tokenizer/merges.txt",
    "tokenizer/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.bin",
    "vae/config.json",
    "vae/diffusion_pytorch_model.fp16.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
]


def fetched(model: str, files: list[str]) -> list[str]:
    """What snapshot_download would fetch of `files` for `model` (huggingface_hub's own filter)."""
    return list(filter_repo_objects(files, allow_patterns=allow_patterns(CATALOGUE[model])))


def test_only_what_diffusers_needs_is_fetched() -> None:
    # No single-file checkpoints (flux1-dev.safetensors, ae.safetensors), no README.
    assert fetched("flux-dev", FLUX_DEV_FILES) == [
        name for name in FLUX_DEV_FILES if "/" in name or name == "model_index.json"
    ]
    assert fetched("playground-v2.5", PLAYGROUND_FILES) == [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.fp16.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.fp16.safetensors",
    ]


def test_a_component_without_all_its_shards_is_missing(tiny_model_dirs, tmp_path: Path) -> None:
    model = shutil.copytree(tiny_model_dirs["flux-schnell"], tmp_path / "model")
    spec = CATALOGUE["flux-schnell"]
    assert missing_weights(model, spec) == []
    transformer = model / "transformer"
    (transformer / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "diffusion_pytorch_model-00002-of-00002.safetensors"}})
    )
    (model / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    assert missing_weights(model, spec) == ["transformer", "vae"]
    assert missing_weights(tmp_path, spec) == ["model_index.json"]


# ---- the command, against a Hugging Face cache in a temporary folder --------------------------


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Name lookups fail, as on a machine without a network."""

    def unreachable(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", unreachable)


def write_config(tmp_path: Path, models: dict[str, dict[str, str]]) -> Path:
    lines = []
    for name, table in models.items():
        lines.append(f'[models."{name}"]')
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    config = tmp_path / "atelier.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def test_a_model_in_the_cache_is_reported_present_and_nothing_is_fetched(
    tiny_model_dirs, hub_cache: Path, tmp_path: Path, monkeypatch, capsys, no_network
) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # a fetch would be attempted
    repo = hub_cache / "models--atelier--tiny-schnell"
    snapshot = shutil.copytree(tiny_model_dirs["flux-schnell"], repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    local = tiny_model_dirs["flux-dev"]
    config = write_config(
        tmp_path,
        {"flux-schnell": {"source": "atelier/tiny-schnell"}, "flux-dev": {"source": str(local)}},
    )

    assert main(["--config", str(config), "flux-schnell", "flux-dev"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        f"flux-schnell: already downloaded ({snapshot}).",
        f"flux-dev: uses the local folder {local}.",
    ]


def test_a_missing_model_with_the_hub_off_says_so_without_network_access(
    hub_cache: Path, monkeypatch, capsys, no_network
) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("ATELIER_CONFIG", str(hub_cache / "absent.toml"))  # the built-in models
    assert main(["flux-dev"]) == 1
    err = capsys.readouterr().err
    assert (
        f"flux-dev: black-forest-labs/FLUX.1-dev is not in the Hugging Face cache ({hub_cache}) "
        "and HF_HUB_OFFLINE is set, so nothing may be downloaded. To get it, unset "
        "HF_HUB_OFFLINE and run this again, or set `source` for flux-dev to a local diffusers "
        "folder."
    ) in err
    assert err.endswith("Not ready: flux-dev.\n")
    assert not hub_cache.exists() or not any(hub_cache.rglob("*.safetensors"))


def test_no_network_gets_its_own_message(hub_cache: Path, monkeypatch, capsys, no_network) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("ATELIER_CONFIG", str(hub_cache / "absent.toml"))
    assert main(["flux-schnell"]) == 1
    assert "could not be reached (no network?). To get it, check the network" in (
        capsys.readouterr().err
    )


async def test_a_gated_model_says_how_to_get_access(hub_cache: Path, monkeypatch, capsys) -> None:
    """A local server answers like the Hub does for a gated repository without access."""
    asked: list[str] = []

    async def gated(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response(
            {"error": "Access to model black-forest-labs/FLUX.1-dev is restricted."},
            status=401,
            headers={"X-Error-Code": "GatedRepo", "X-Error-Message": "Access is restricted."},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", gated)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{runner.addresses[0][1]}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("ATELIER_CONFIG", str(hub_cache / "absent.toml"))
    try:
        code = await asyncio.to_thread(main, ["flux-dev"])
    finally:
        await runner.cleanup()
    assert code == 1
    assert asked == ["/api/models/black-forest-labs/FLUX.1-dev/revision/main"]
    assert (
        "flux-dev: black-forest-labs/FLUX.1-dev is gated: accept its licence at "
        "https://huggingface.co/black-forest-labs/FLUX.1-dev, create a read token at "
        "https://huggingface.co/settings/tokens, set it as HF_TOKEN"
    ) in capsys.readouterr().err


def test_unknown_models_and_bad_configuration_change_nothing(tmp_path: Path, capsys) -> None:
    assert main(["--config", str(tmp_path / "absent.toml")]) == 2
    assert f"cannot be used: Cannot read {tmp_path / 'absent.toml'}" in capsys.readouterr().err
    config = write_config(tmp_path, {"mine": {"family": "sd15", "source": "x/y"}})
    assert main(["--config", str(config)]) == 2
    assert (
        '`models.mine.family` should be one of "playground", "flux", "flux2-klein" or '
        '"flux-kontext", not "sd15".'
    ) in capsys.readouterr().err
    assert main(["--config", str(write_config(tmp_path, {})), "sdxl-turbo"]) == 2
    assert (
        "Unknown model(s) sdxl-turbo; available: playground-v2.5, flux-dev, flux-schnell, "
        "flux2-klein-4b, flux2-klein-9b, flux-kontext-dev."
    ) in capsys.readouterr().err


def test_loras_are_fetched_with_the_models_and_a_missing_one_says_why(
    tiny_model_dirs, tiny_loras, hub_cache: Path, tmp_path: Path, monkeypatch, capsys, no_network
) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    repo = hub_cache / "models--atelier--tiny-lora"
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    cached = shutil.copy(
        tiny_loras["playground"], repo / "snapshots" / COMMIT / "style.safetensors"
    )
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    config = write_config(tmp_path, catalogue_config(tiny_model_dirs))
    tables = {
        "here": {"source": str(tiny_loras["playground"]), "family": "playground"},
        "cached": {
            "source": "atelier/tiny-lora",
            "file": "style.safetensors",
            "family": "playground",
        },
        "absent": {"source": "atelier/absent", "file": "a.safetensors", "family": "playground"},
    }
    with config.open("a") as file:
        for name, table in tables.items():
            file.write(
                f"[loras.{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
            )

    assert main(["--config", str(config)]) == 1
    said = capsys.readouterr()
    assert [line for line in said.out.splitlines() if line.startswith("LoRA")] == [
        f"LoRA here: uses the local file {tiny_loras['playground']}.",
        f"LoRA cached: already downloaded ({cached}).",
    ]
    assert "LoRA absent: atelier/absent is not in the Hugging Face cache" in said.err
    assert "HF_HUB_OFFLINE is set" in said.err
    assert said.err.endswith("Not ready: absent.\n")
