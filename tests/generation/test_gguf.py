"""GGUF profiles end to end on the tiny models (CPU, real diffusers GGUF loading): a model whose
transformer comes from a `.gguf` file runs, records its profile and the file's SHA-256, reruns
bit-exactly; its weight memory comes from the file's header; other files are refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import gguf
import pytest

from generation.engine import Engine
from generation.errors import ModelUnavailable
from generation.gguf_file import weight_bytes
from generation.metadata import read_record
from generation.models import Catalogue, CatalogueError
from generation.pipelines.provenance import file_sha256
from generation.profiles import GGUF_PROFILES, component_bytes, needed_gib, profile_for
from generation.request import build_request
from generation.tiny import catalogue_config, recommended_settings
from generation.workers.config import GpuInfo, discover_workers
from tests.generation.gguf_files import write_gguf
from tests.generation.helpers import pixels

PROMPT = "a lighthouse in fog"


@pytest.fixture(scope="module")
def gguf_path(tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tiny_model_dirs["flux-dev"], tmp_path_factory.mktemp("gguf") / "t.gguf")


def _catalogue(tiny_model_dirs: dict[str, Path], gguf_file: Path | str) -> Catalogue:
    tables = catalogue_config(tiny_model_dirs)
    tables["flux-q8"] = {
        **recommended_settings("flux-dev"),
        "family": "flux",
        "source": str(tiny_model_dirs["flux-dev"]),
        "gguf": str(gguf_file),
    }
    return Catalogue.from_config(tables)


def _pixels(images) -> list[bytes]:
    return [pixels(image.png).tobytes() for image in images]


def test_a_gguf_model_runs_records_its_profile_and_file_and_reruns_exactly(
    tiny_model_dirs: dict[str, Path], gguf_path: Path
) -> None:
    catalogue = _catalogue(tiny_model_dirs, gguf_path)
    request = build_request(catalogue, model="flux-q8", prompt=PROMPT, seeds=[3, 4])
    first = Engine(catalogue, "cpu").generate(request)
    assert {image.facts.profile for image in first} == {"gguf"}
    made_with = f"t.gguf sha256:{file_sha256(gguf_path)}"
    assert {image.facts.gguf for image in first} == {made_with}
    record = read_record(first[0].png)  # what anyone holding the PNG reads
    assert record is not None
    assert (record["made_with"]["profile"], record["made_with"]["gguf"]) == ("gguf", made_with)
    again = Engine(catalogue, "cpu").generate(replace(request, profile="gguf"))
    assert _pixels(again) == _pixels(first)
    # The quantized transformer is the one that ran: the same request on the folder's own
    # full-precision transformer makes other pixels.
    full = Engine(catalogue, "cpu").generate(replace(request, model="flux-dev"))
    assert _pixels(full) != _pixels(first)


@pytest.mark.parametrize(
    ("tiny", "family"), [("flux2-klein", "flux2-klein"), ("flux-kontext", "flux-kontext")]
)
def test_klein_and_kontext_take_a_gguf_transformer_too(
    tiny_model_dirs: dict[str, Path], tmp_path: Path, tiny: str, family: str
) -> None:
    path = write_gguf(tiny_model_dirs[tiny], tmp_path / f"{tiny}.gguf")
    tables = {
        "mine": {
            **recommended_settings(tiny),
            "family": family,
            "source": str(tiny_model_dirs[tiny]),
            "gguf": str(path),
        }
    }
    catalogue = Catalogue.from_config(tables)
    request = build_request(catalogue, model="mine", prompt=PROMPT, seeds=[2])
    first = Engine(catalogue, "cpu").generate(request)
    assert (first[0].facts.profile, first[0].facts.gguf) == (
        "gguf",
        f"{tiny}.gguf sha256:{file_sha256(path)}",
    )
    again = Engine(catalogue, "cpu").generate(replace(request, profile="gguf"))
    assert _pixels(again) == _pixels(first)


def test_each_gguf_profile_the_cpu_runs_is_exact_and_the_offload_ones_say_why_not(
    tiny_model_dirs: dict[str, Path], gguf_path: Path
) -> None:
    catalogue = _catalogue(tiny_model_dirs, gguf_path)
    request = build_request(catalogue, model="flux-q8", prompt=PROMPT, seeds=[7])
    made = {}
    for memory in GGUF_PROFILES[catalogue["flux-q8"].family]:
        engine = Engine(catalogue, "cpu", profiles={"flux-q8": memory.name})
        if memory.unavailable_on("cpu") is not None:
            with pytest.raises(ModelUnavailable, match="needs a CUDA GPU"):
                engine.load("flux-q8")
            continue
        made[memory.name] = _pixels(engine.generate(request))
        again = Engine(catalogue, "cpu", profiles={"flux-q8": memory.name}).generate(request)
        assert _pixels(again) == made[memory.name]
        assert again[0].facts.profile == memory.name
    assert set(made) == {"gguf", "gguf-fp8"}
    assert made["gguf"] != made["gguf-fp8"], "fp8 T5 changes the prompt embeddings"


def test_weight_memory_comes_from_the_gguf_header(
    tiny_model_dirs: dict[str, Path], gguf_path: Path
) -> None:
    reader = gguf.GGUFReader(str(gguf_path))
    plain = {gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16}
    q8 = [t for t in reader.tensors if t.tensor_type == gguf.GGMLQuantizationType.Q8_0]
    assert q8, "the test file must hold quantized tensors"
    # Q8_0: blocks of 32 weights, each 32 int8 plus one fp16 scale (ggml's block_q8_0).
    expected = sum(int(t.n_elements) // 32 * 34 for t in q8) + sum(
        int(t.n_elements) * 2 for t in reader.tensors if t.tensor_type in plain
    )
    assert weight_bytes(str(gguf_path), fallback=-1) == expected
    spec = _catalogue(tiny_model_dirs, gguf_path)["flux-q8"]
    sizes = component_bytes(spec, profile_for(spec, "gguf"))
    assert sizes["transformer"] == expected
    # The other components are FLUX.1 [dev]'s stored figures: T5 in fp8 only under gguf-fp8.
    fp8 = component_bytes(spec, profile_for(spec, "gguf-fp8"))
    assert fp8["text_encoder_2"] < sizes["text_encoder_2"]
    assert fp8["text_encoder"] == sizes["text_encoder"]
    offload = profile_for(spec, "gguf-offload")
    assert needed_gib(spec, offload) < needed_gib(spec, profile_for(spec, "gguf"))


def test_an_unreadable_gguf_file_counts_as_the_unquantized_transformer(tmp_path: Path) -> None:
    assert weight_bytes(str(tmp_path / "missing.gguf"), fallback=123) == 123
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file")
    assert weight_bytes(str(tmp_path / "bad.gguf"), fallback=456) == 456


@pytest.mark.parametrize(
    ("family", "file", "says"),
    [
        ("flux", "/models/flux.ckpt", "is not a .gguf file"),
        ("flux", "/models/flux.safetensors", "is not a .gguf file"),
        ("flux", "/models/flux.pt", "only .gguf and safetensors"),
        ("playground", "/models/unet.gguf", "playground models cannot load a GGUF file"),
    ],
)
def test_the_configuration_refuses_what_is_no_gguf_file_of_a_gguf_family(
    family: str, file: str, says: str
) -> None:
    with pytest.raises(CatalogueError) as refused:
        Catalogue.from_config({"mine": {"family": family, "source": "/models/x", "gguf": file}})
    assert says in str(refused.value)
    assert "`models.mine.gguf`" in str(refused.value)


def test_a_file_that_is_not_gguf_inside_is_refused_when_loading(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    fake = tmp_path / "renamed.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip, say a pickle checkpoint renamed")
    catalogue = _catalogue(tiny_model_dirs, fake)
    with pytest.raises(ModelUnavailable, match="does not start like a GGUF file"):
        Engine(catalogue, "cpu").load("flux-q8")
    with pytest.raises(ModelUnavailable, match="cannot read"):
        Engine(_catalogue(tiny_model_dirs, tmp_path / "gone.gguf"), "cpu").load("flux-q8")


# card GiB → the profile the automatic setup gives a FLUX model whose transformer is the (tiny)
# GGUF file: the other components' stored figures decide (T5 ~8.9 GiB in bf16); absent: none.
AUTOMATIC = {8: None, 12: "gguf-offload", 16: "gguf", 24: "gguf"}


def test_the_automatic_setup_gives_a_gguf_model_its_best_gguf_profile_that_fits(
    tiny_model_dirs: dict[str, Path], gguf_path: Path
) -> None:
    catalogue = _catalogue(tiny_model_dirs, gguf_path)
    gpus = [GpuInfo(i, "card", float(gib)) for i, gib in enumerate(AUTOMATIC)]
    workers = discover_workers(catalogue, gpus, frozenset({"gguf"}))
    assert [dict(w.profiles).get("flux-q8") for w in workers] == list(AUTOMATIC.values())
    # Without the gguf library, the model is not offered at all.
    without = discover_workers(catalogue, gpus, frozenset())
    assert not any(w.may_run("flux-q8") for w in without)
