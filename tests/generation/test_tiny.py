"""Tiny models: deterministic per family, a few MB of safetensors in the real layout, with the
catalogue settings that suit them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generation.tiny import FAMILIES, catalogue_config, main


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_build_is_deterministic_and_in_the_real_layout(
    family: str, tiny_model_dirs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main([str(tmp_path / family), "--family", family]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "family": family,
        "path": str(tmp_path / family),
    }
    built_here, built_by_the_fixture = files(tmp_path / family), files(tiny_model_dirs[family])
    assert built_here == built_by_the_fixture  # another process, the same bytes
    names = set(built_here)
    assert {"model_index.json", "atelier.json", "vae/diffusion_pytorch_model.safetensors"} <= names
    assert not [name for name in names if name.endswith((".bin", ".pt", ".pth", ".ckpt"))]
    assert sum(map(len, built_here.values())) < 8 * 2**20
    denoiser = "unet" if family == "playground" else "transformer"
    assert f"{denoiser}/diffusion_pytorch_model.safetensors" in names


def test_catalogue_config_points_the_builtin_names_at_tiny_models() -> None:
    dirs = {family: Path("/tiny") / family for family in FAMILIES}
    config = catalogue_config(dirs)
    assert set(config) == {
        "playground-v2.5",
        "flux-dev",
        "flux-schnell",
        "flux2-klein-4b",
        "flux2-klein-9b",
        "flux-kontext-dev",
    }
    for name, family in zip(config, [*FAMILIES[:4], "flux2-klein", "flux-kontext"], strict=True):
        table = config[name]
        assert table["source"] == f"/tiny/{family}"
        assert (table["native_side"], table["min_side"], table["max_side"]) == (64, 32, 256)
        assert table["multiple_of"] == 16
    assert [config[name]["steps"] for name in config] == [4, 4, 2, 2, 2, 2]
    assert catalogue_config({"flux-dev": Path("/x")}).keys() == {"flux-dev"}


def test_unknown_family_is_refused() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["/tmp/never", "--family", "sd3"])
    assert caught.value.code == 2
