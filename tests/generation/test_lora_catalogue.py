"""The LoRA catalogue, what a job may ask of it, and the fit check read from safetensors headers
(real files: LoRAs made with peft for the tiny models, and hand-written headers)."""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from generation.config_schema import SettingsProblems
from generation.lora_headers import check_fits, read_header
from generation.loras import (
    MAX_LORAS_PER_JOB,
    LoraCatalogue,
    LoraError,
    LoraUse,
    choose_loras,
    format_weight,
    parse_lora,
)
from generation.models import Catalogue
from generation.request import GenerationRequest, RequestError, build_request
from tests.conftest import lora_tables


def _safetensors(path: Path, shapes: dict[str, list[int]]) -> Path:
    """A safetensors file with zero-filled float32 tensors of `shapes`."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4
        for side in shape:
            size *= side
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(offset))
    return path


def test_a_lora_made_for_the_model_fits_and_one_for_another_family_does_not(
    tiny_catalogue: Catalogue, tiny_model_dirs: dict[str, Path], tiny_loras: dict[str, Path]
) -> None:
    playground, flux = tiny_catalogue["playground-v2.5"], tiny_catalogue["flux-dev"]
    assert check_fits(tiny_loras["playground"], tiny_model_dirs["playground"], playground) is None
    assert check_fits(tiny_loras["flux-dev"], tiny_model_dirs["flux-dev"], flux) is None
    refused = check_fits(tiny_loras["flux-dev"], tiny_model_dirs["playground"], playground)
    assert refused is not None
    assert "transformer" in refused
    refused = check_fits(tiny_loras["playground"], tiny_model_dirs["flux-dev"], flux)
    assert refused is not None
    assert "unet" in refused


def test_a_lora_for_another_model_size_is_refused_by_its_shapes(
    tiny_catalogue: Catalogue, tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    spec = tiny_catalogue["playground-v2.5"]
    real = read_header(
        tiny_model_dirs["playground"] / "unet" / "diffusion_pytorch_model.safetensors"
    )
    layer = next(name for name in real if name.endswith("attn1.to_q.weight"))
    out_features, in_features = real[layer]
    stem = "unet." + layer.removesuffix(".weight")
    fits = _safetensors(
        tmp_path / "fits.safetensors",
        {f"{stem}.lora.down.weight": [4, in_features], f"{stem}.lora.up.weight": [out_features, 4]},
    )
    assert check_fits(fits, tiny_model_dirs["playground"], spec) is None
    wider = _safetensors(
        tmp_path / "wider.safetensors",
        {f"{stem}.lora_A.weight": [4, in_features * 2], f"{stem}.lora_B.weight": [out_features, 4]},
    )
    problem = check_fits(wider, tiny_model_dirs["playground"], spec)
    assert problem is not None
    assert "another model size" in problem
    missing = _safetensors(
        tmp_path / "missing.safetensors", {"unet.no_such_block.to_q.lora.down.weight": [4, 8]}
    )
    assert "does not have" in (check_fits(missing, tiny_model_dirs["playground"], spec) or "")
    kohya_flux = _safetensors(
        tmp_path / "kohya.safetensors",
        {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": [4, 8]},
    )
    assert "flux" in (check_fits(kohya_flux, tiny_model_dirs["playground"], spec) or "")


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00" * 4, struct.pack("<Q", 2**40) + b"{}", struct.pack("<Q", 5) + b"nope!"],
)
def test_a_file_that_is_not_safetensors_is_refused_with_a_sentence(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(LoraError, match="safetensors"):
        read_header(path)


@pytest.mark.parametrize(
    ("tables", "fault"),
    [
        ({"x": {"source": "/l/x.ckpt", "family": "playground"}}, "pickle"),
        ({"x": {"source": "me/repo", "file": "x.bin", "family": "playground"}}, "safetensors"),
        ({"x": {"source": "/l/x.safetensors", "family": "sd15"}}, "loras.x.family"),
        ({"x": {"source": "/l/x.safetensors", "family": "flux", "weight": 3.0}}, "loras.x.weight"),
        ({"Bad Name": {"source": "/l/x.safetensors", "family": "flux"}}, "name"),
        ({"x": {"source": "/l/x.safetensors", "family": "flux", "colour": 1}}, "colour"),
    ],
)
def test_faulty_lora_tables_are_refused_naming_the_key(tables: dict, fault: str) -> None:
    with pytest.raises(SettingsProblems, match=fault):
        LoraCatalogue.from_config(tables)


def test_the_bot_configuration_refuses_a_faulty_lora_table() -> None:
    from bot.config import ConfigError, settings_from_mapping

    table = {"owner_ids": [1], "loras": {"x": {"source": "/l/x.pt", "family": "flux"}}}
    with pytest.raises(ConfigError, match="pickle"):
        settings_from_mapping(table, {})


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("pg", ("pg", None)),
        ("pg:0.8", ("pg", 0.8)),
        ("pg:", ("pg", None)),
        ("pg:-1", ("pg", -1.0)),
        ("/a/b:c.safetensors", ("/a/b:c.safetensors", None)),
        ("/a/b:c.safetensors:0.5", ("/a/b:c.safetensors", 0.5)),
        ("pg:-0", ("pg", 0.0)),
        ("pg:+1.25", ("pg", 1.25)),
        # only ASCII `[-+]?[0-9]+(.[0-9]+)?` is a weight; the rest stays part of the name
        ("pg:0_5", ("pg:0_5", None)),
        ("pg:１", ("pg:１", None)),
        ("pg:٠.٨", ("pg:٠.٨", None)),
        ("pg:inf", ("pg:inf", None)),
        ("pg:1e309", ("pg:1e309", None)),
        ("pg:.5", ("pg:.5", None)),
    ],
)
def test_lora_arguments_parse(text: str, parsed: tuple) -> None:
    assert parse_lora(text) == parsed


def test_a_job_asks_only_for_enabled_loras_of_its_family_within_limits(
    tiny_catalogue: Catalogue, tiny_loras: dict[str, Path]
) -> None:
    loras = LoraCatalogue.from_config(lora_tables(tiny_loras))
    playground = tiny_catalogue["playground-v2.5"]
    assert choose_loras(loras, playground, [("pg", None), ("pg2", 0.5)]) == (
        LoraUse("pg", 0.8),  # its configured default weight
        LoraUse("pg2", 0.5),
    )
    faults = {
        "fx": ([("fx", None)], "for flux models"),
        "unknown": ([("nope", None)], "no LoRA called 'nope'; for playground-v2.5 you can use"),
        "twice": ([("pg", 1.0), ("pg", 0.5)], "twice"),
        "weight": ([("pg", 2.5)], "between -2 and 2"),
        "many": ([("pg", None)] * (MAX_LORAS_PER_JOB + 1), f"at most {MAX_LORAS_PER_JOB}"),
    }
    for asked, message in faults.values():
        with pytest.raises(LoraError, match=message):
            choose_loras(loras, playground, asked)
    with pytest.raises(LoraError, match="no LoRA called 'pg'"):
        choose_loras(loras, playground, [("pg", None)], disabled=frozenset({"pg"}))
    with pytest.raises(RequestError, match="for flux models") as caught:
        build_request(
            tiny_catalogue,
            prompt="a",
            model="playground-v2.5",
            loras=[("fx", 1.0)],
            lora_catalogue=loras,
        )
    assert caught.value.field == "lora"
    assert [s.name for s in loras.offered(playground.family)] == ["pg", "pg2"]


def test_the_request_keeps_its_loras_and_encoder_and_old_records_read_as_made(
    tiny_catalogue: Catalogue, tiny_loras: dict[str, Path]
) -> None:
    loras = LoraCatalogue.from_config(lora_tables(tiny_loras))
    request = build_request(
        tiny_catalogue,
        prompt="a",
        model="playground-v2.5",
        seed=1,
        loras=[("pg", 0.3)],
        lora_catalogue=loras,
    )
    assert request.prompt_encoder == "compel"
    assert GenerationRequest.from_json(request.to_json()) == request
    old = json.loads(request.to_json())
    del old["loras"], old["prompt_encoder"]  # a job stored before LoRAs and compel
    before = GenerationRequest.from_dict(old)
    assert before.loras == ()
    assert before.prompt_encoder == "plain"
    flux = build_request(tiny_catalogue, prompt="a", model="flux-dev")
    assert flux.prompt_encoder == "plain"
    with pytest.raises(RequestError, match="no 'compel' prompt encoder"):
        build_request(tiny_catalogue, prompt="a", model="flux-dev", prompt_encoder="compel")


def test_bot_check_refuses_a_lora_that_does_not_fit_and_passes_one_that_does(
    tmp_path: Path, tiny_model_dirs: dict[str, Path], tiny_loras: dict[str, Path]
) -> None:
    from generation.tiny import catalogue_config
    from tests.bot.test_process import run_bot_command, to_toml

    models = catalogue_config(tiny_model_dirs)
    good_loras = lora_tables(tiny_loras)
    bad_loras = {"wrong": {"source": str(tiny_loras["flux-dev"]), "family": "playground"}}
    token = {"DISCORD_TOKEN": "x"}
    checks = {}
    for name, loras in (("good", good_loras), ("bad", bad_loras)):
        config = tmp_path / f"{name}.toml"
        config.write_text(to_toml({"models": models, "gpus": [{"device": "cpu"}], "loras": loras}))
        checks[name] = run_bot_command(
            "check", cwd=tmp_path, env={"ATELIER_CONFIG": str(config), **token}
        )

    assert checks["good"].returncode == 0, checks["good"].stdout
    assert "[ok ] LoRA pg: playground.safetensors fits playground-v2.5." in checks["good"].stdout
    assert (
        "[ok ] LoRA fx: flux-dev.safetensors fits flux-dev, flux-schnell." in checks["good"].stdout
    )
    assert checks["bad"].returncode == 1
    assert (
        "[ERR] LoRA wrong: flux-dev.safetensors adapts a transformer, which playground-v2.5 "
        "does not have." in checks["bad"].stdout
    )


@pytest.mark.parametrize(
    ("speed", "said"),
    [({"fp8": True}, "fp8;"), ({"fp8": True, "compile": True}, "fp8 and compile")],
)
def test_a_lora_job_on_a_quantized_or_compiled_gpu_model_is_refused_before_loading(
    tiny_catalogue: Catalogue, tiny_loras: dict[str, Path], speed: dict, said: str
) -> None:
    from generation.engine import Engine
    from generation.errors import ModelUnavailable

    loras = LoraCatalogue.from_config(lora_tables(tiny_loras))
    engine = Engine(tiny_catalogue, "cpu", speed=speed, loras=loras)
    engine.device = "cuda"  # the rule is about CUDA workers; this machine has none
    request = build_request(
        tiny_catalogue, prompt="a", model="flux-dev", loras=[("fx", 1.0)], lora_catalogue=loras
    )
    with pytest.raises(ModelUnavailable, match=f"with \\[speed\\] {said}"):
        engine.generate(request)
    assert engine.loaded == ()  # refused before any model was loaded


def _header_file(path: Path, header: object) -> Path:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(64))
    return path


@pytest.mark.parametrize(
    "header",
    [
        {"a": {"dtype": "F32", "shape": 5, "data_offsets": [0, 4]}},
        {"a": {"dtype": "F32", "shape": None, "data_offsets": [0, 4]}},
        {"a": {"dtype": "F32", "shape": "ab", "data_offsets": [0, 4]}},
        {"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}},
        {"a": {"dtype": "XYZ", "shape": [1], "data_offsets": [0, 4]}},
        {"a": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 4]}},  # offsets lie
        {"a": {"dtype": "F32", "shape": [100], "data_offsets": [0, 400]}},  # past the file's end
        {"a": [1, 2]},
        [1, 2],
        b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}",
    ],
)
def test_every_malformed_header_is_one_sentence(
    tiny_catalogue: Catalogue, tiny_model_dirs: dict[str, Path], tmp_path: Path, header: object
) -> None:
    path = _header_file(tmp_path / "bad.safetensors", header)
    with pytest.raises(LoraError, match="is not a usable safetensors file"):
        check_fits(path, tiny_model_dirs["playground"], tiny_catalogue["playground-v2.5"])


def _typed(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> Path:
    """A safetensors file with zero-filled tensors of the given dtype and shape."""
    sizes = {"F32": 4, "F16": 2, "I8": 1, "I64": 8}
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        size = sizes[dtype]
        for side in shape:
            size *= side
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(offset))
    return path


def test_files_that_would_fail_to_load_or_make_black_images_are_refused(
    tiny_catalogue: Catalogue, tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    spec, folder = tiny_catalogue["playground-v2.5"], tiny_model_dirs["playground"]
    real = read_header(folder / "unet" / "diffusion_pytorch_model.safetensors")
    layer = next(name for name in real if name.endswith("attn1.to_q.weight"))
    out_f, in_f = real[layer]
    stem = "unet." + layer.removesuffix(".weight")
    down, up = f"{stem}.lora_A.weight", f"{stem}.lora_B.weight"
    cases = {
        "rank 0": ({down: ("F32", [0, in_f]), up: ("F32", [out_f, 0])}, "at least 1"),
        "ranks differ": ({down: ("F32", [4, in_f]), up: ("F32", [out_f, 3])}, "same rank"),
        "down only": ({down: ("F32", [4, in_f])}, "only one of the two"),
        "1-D": ({down: ("F32", [in_f]), up: ("F32", [out_f])}, "shaped"),
        "integers": ({down: ("I8", [4, in_f]), up: ("I8", [out_f, 4])}, "I8 tensors"),
        "only alpha": ({f"{stem}.alpha": ("F32", [])}, "no LoRA matrices"),
        "kohya plus junk": (
            {
                "lora_te1_x.lora_down.weight": ("F16", [4, 8]),
                "lora_te1_x.lora_up.weight": ("F16", [8, 4]),
                "evil.garbage": ("F16", [1]),
            },
            "cannot place",
        ),
        "kohya SD 1.5": (
            {
                "lora_unet_down_blocks_0_attentions_0_attn2_to_k.lora_down.weight": (
                    "F16",
                    [4, 768],
                ),
                "lora_unet_down_blocks_0_attentions_0_attn2_to_k.lora_up.weight": (
                    "F16",
                    [320, 4],
                ),
            },
            "cross-attention reads 768",
        ),
        "kohya SD 1.5 text encoder": (
            {"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": ("F16", [4, 768])},
            "one text encoder",
        ),
    }
    for case, (tensors, said) in cases.items():
        problem = check_fits(_typed(tmp_path / "x.safetensors", tensors), folder, spec)
        assert problem is not None, case
        assert said in problem, (case, problem)
    fits = _typed(tmp_path / "ok.safetensors", {down: ("F16", [4, in_f]), up: ("F16", [out_f, 4])})
    assert check_fits(fits, folder, spec) is None


@pytest.mark.parametrize(
    ("weight", "written"),
    [(0.1234567, "0.1234567"), (1.0, "1"), (-0.0, "0"), (0.8, "0.8"), (-1.5, "-1.5")],
)
def test_weights_are_written_so_they_read_back_exactly(weight: float, written: str) -> None:
    assert format_weight(weight) == written
    assert str(LoraUse("pg", weight)) == f"pg:{written}"
    assert parse_lora(str(LoraUse("pg", weight))) == ("pg", weight)


def test_the_png_parameters_keep_the_exact_weight(tiny_catalogue: Catalogue) -> None:
    from generation.metadata import parameters_text

    request = build_request(tiny_catalogue, prompt="a fox", model="playground-v2.5", seed=1)
    request = replace(request, loras=(LoraUse("pg", 0.1234567),))
    assert "<lora:pg:0.1234567>" in parameters_text(request, 0)


@pytest.mark.parametrize(
    "header",
    [
        {"a": {"dtype": "F32", "shape": 5, "data_offsets": [0, 4]}},
        {"a": {"dtype": "F32", "shape": None, "data_offsets": [0, 4]}},
        b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}",
    ],
)
def test_bot_check_gives_one_line_for_a_malformed_lora(
    tiny_catalogue: Catalogue, tmp_path: Path, header: object
) -> None:
    from bot.check import _lora

    path = _header_file(tmp_path / "bad.safetensors", header)
    (lora,) = LoraCatalogue.from_config(
        {"bad": {"source": str(path), "family": "playground"}}
    ).values()
    finding = _lora(lora, tiny_catalogue, "")
    assert not finding.ok
    assert finding.line() == (
        "[ERR] LoRA bad: bad.safetensors is not a usable safetensors file. "
        "Remove it or set its `family` right."
    )
