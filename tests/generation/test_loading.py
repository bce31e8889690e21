"""Where weights come from: local directories and the Hugging Face cache only, safetensors only,
and a message that says how to fix a missing model."""

from __future__ import annotations

import pickle
import shutil
import socket
from pathlib import Path

import pytest
from huggingface_hub import constants

from generation.engine import Engine
from generation.errors import ModelUnavailable
from generation.models import Catalogue, Family, ModelSpec
from generation.pipelines.loading import weights_variant
from generation.request import build_request
from generation.tiny import catalogue_config

MODELS = ("playground-v2.5", "flux-dev", "flux-schnell")


class CreatesMarker:
    """Unpickling this object creates a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def test_pickle_only_directory_is_refused_unread(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    model = shutil.copytree(tiny_model_dirs["playground"], tmp_path / "pickled")
    (model / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    (model / "unet" / "diffusion_pytorch_model.bin").write_bytes(
        pickle.dumps(CreatesMarker(marker))
    )
    pickle.loads(pickle.dumps(CreatesMarker(tmp_path / "probe")))
    assert (tmp_path / "probe").exists(), "the payload must work for the test to mean anything"

    catalogue = Catalogue.from_config({"playground-v2.5": {"source": str(model)}})
    with pytest.raises(ModelUnavailable) as caught:
        Engine(catalogue).load("playground-v2.5")
    assert "holds only pickle weights (diffusion_pytorch_model.bin)" in str(caught.value)
    assert "safetensors" in str(caught.value)
    assert str(model / "unet") in str(caught.value)
    assert not marker.exists()


def test_missing_hub_model_says_what_was_looked_for_and_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelUnavailable) as caught:
        Engine(Catalogue.builtin()).load("flux-dev")
    assert str(caught.value) == (
        "Model 'flux-dev' is not available: looked for black-forest-labs/FLUX.1-dev in the "
        f"Hugging Face cache ({tmp_path / 'hub'}) and found nothing. Download it with "
        "`python -m generation.download flux-dev`, or set `source` for flux-dev to a local "
        "diffusers directory."
    )


def test_missing_directory_and_non_diffusers_directory(tmp_path: Path) -> None:
    catalogue = Catalogue.from_config(
        {
            "gone": {"family": "flux", "source": str(tmp_path / "gone")},
            "empty": {"family": "flux", "source": str(tmp_path)},
        }
    )
    with pytest.raises(ModelUnavailable, match=r"the directory .*gone does not exist\. Point"):
        Engine(catalogue).load("gone")
    with pytest.raises(ModelUnavailable, match="is not a diffusers directory"):
        Engine(catalogue).load("empty")


def test_hub_id_loads_from_the_standard_cache(
    tiny_model_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model downloaded with `hf download` (cache layout: refs/main → snapshots/<commit>)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--atelier--tiny-schnell"
    shutil.copytree(tiny_model_dirs["flux-schnell"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    config = catalogue_config({"flux-schnell": tiny_model_dirs["flux-schnell"]})
    config["flux-schnell"]["source"] = "atelier/tiny-schnell"
    catalogue = Catalogue.from_config(config)
    assert not catalogue["flux-schnell"].is_local
    images = Engine(catalogue).generate(build_request(catalogue, model="flux-schnell", prompt="x"))
    assert len(images) == 1


def test_nothing_touches_the_network(
    tiny_catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    engine = Engine(tiny_catalogue)
    for model in MODELS:
        (image,) = engine.generate(build_request(tiny_catalogue, model=model, prompt="a fox"))
        request = build_request(
            tiny_catalogue, model=model, prompt="a fox", init_image=image.png, strength=0.5
        )
        assert len(engine.generate(request)) == 1


@pytest.mark.parametrize(
    ("files", "device", "variant"),
    [
        (["unet/m.safetensors", "unet/m.fp16.safetensors"], "cuda", "fp16"),
        (["unet/m.safetensors", "unet/m.fp16.safetensors"], "cpu", None),
        (["unet/m.fp16.safetensors"], "cpu", "fp16"),
        (["unet/m.safetensors"], "cuda", None),
    ],
)
def test_fp16_variant_where_present_and_suited(
    tmp_path: Path, files: list[str], device: str, variant: str | None
) -> None:
    for name in files:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).touch()
    spec = ModelSpec(
        name="m", family=Family.PLAYGROUND, source=str(tmp_path), title="m", steps=1, guidance=1.0,
        schedulers=("edm-euler",), variant="fp16",
    )  # fmt: skip
    assert weights_variant(spec, tmp_path, device) == variant
