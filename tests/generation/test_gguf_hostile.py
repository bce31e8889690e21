"""GGUF files that are cut, hostile or someone else's: each gets one sentence from the header
check (bot process, `bot check`) and from the worker's load, never a raw Python error; the weight
memory of an unreadable file is the unquantized transformer's (an upper bound)."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file

from generation.engine import Engine
from generation.errors import ModelUnavailable
from generation.gguf_file import MAX_TENSORS, read_header, transformer_problem, weight_bytes
from generation.models import Catalogue
from generation.request import build_request
from generation.tiny import catalogue_config, recommended_settings
from generation.workers.config import GpuInfo, WorkerConfig, discover_workers
from generation.workers.protocol import (
    JobError,
    LoadModel,
    ModelLoadFailed,
    RunJob,
    WorkerReady,
    WorkerSpec,
)
from generation.workers.runtime import WorkerRuntime
from tests.generation.gguf_files import write_gguf


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _u64(value: int) -> bytes:
    return struct.pack("<Q", value)


def _string(text: str) -> bytes:
    return _u64(len(text)) + text.encode()


def _tensor_info(name: str, dims: list[int], ggml_type: int, offset: int = 0) -> bytes:
    """One tensor's header entry (gguf.md, "gguf_tensor_info_t")."""
    sides = b"".join(_u64(side) for side in dims)
    return _string(name) + _u32(len(dims)) + sides + _u32(ggml_type) + _u64(offset)


def _start(tensors: int, metadata: int) -> bytes:
    return b"GGUF" + _u32(3) + _u64(tensors) + _u64(metadata)


PAD = b"\0" * 64
HOSTILE = {
    "magic only": b"GGUF",
    "counts cut": b"GGUF" + _u32(3) + _u64(5),
    "huge tensor count": _start(2**62, 0) + PAD,
    "huge metadata count": _start(0, 2**62) + PAD,
    "version 1": _start(0, 0)[:4] + _u32(1) + _u64(0) + _u64(0),
    "version 99": b"GGUF" + _u32(99) + _u64(0) + _u64(0),
    "big-endian": b"GGUF" + struct.pack(">IQQ", 3, 0, 0),
    "huge name length": _start(1, 0) + _u64(2**60) + b"x" * 16,
    "unknown type": _start(1, 0) + _tensor_info("w", [32], 999) + PAD,
    "huge dims": _start(1, 0) + _tensor_info("w", [2**40, 2**20], 0) + PAD,
    "huge n_dims": _start(1, 0) + _string("w") + _u32(2**31) + PAD,
    "dim of -1": _start(1, 0) + _tensor_info("w", [2**64 - 1], 0) + PAD,
    "metadata of unknown type": _start(0, 1) + _string("k") + _u32(77) + PAD,
    "nested huge array": _start(0, 1) + _string("k") + _u32(9) + _u32(9) + _u64(2**40) + PAD,
    "a name twice": _start(2, 0) + _tensor_info("w", [32], 0) * 2 + b"\0" * 320,
    "no tensors": _start(0, 0),
    "overlapping tensors": _start(2, 0)
    + _tensor_info("a", [32], 0)
    + _tensor_info("b", [32], 0)
    + b"\0" * 320,
}


@pytest.mark.parametrize("data", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_header_counts_as_the_upper_bound_and_is_refused_in_a_sentence(
    data: bytes, tmp_path: Path, tiny_model_dirs: dict[str, Path]
) -> None:
    path = tmp_path / "hostile.gguf"
    path.write_bytes(data)
    assert weight_bytes(str(path), fallback=777) == 777
    problem = transformer_problem(path, "flux-q", tiny_model_dirs["flux-dev"])
    assert problem is not None
    assert problem.startswith(("hostile.gguf ", str(path)))
    assert len(problem) < 400
    assert "Traceback" not in problem


def test_every_cut_of_a_real_file_is_refused_in_a_sentence(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    full = write_gguf(tiny_model_dirs["flux-dev"], tmp_path / "full.gguf").read_bytes()
    header_end = gguf.GGUFReader(tmp_path / "full.gguf").data_offset
    cut = tmp_path / "cut.gguf"
    for length in [*range(4, header_end + 64, 7), len(full) - 1]:  # every 7th: 2 CPUs
        cut.write_bytes(full[:length])
        assert weight_bytes(str(cut), fallback=-1) == -1, length
        assert transformer_problem(cut, "flux-q", None) is not None, length


def test_a_header_listing_more_tensors_than_a_transformer_has_is_refused_before_reading_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "many.gguf"
    entries = b"".join(_tensor_info(f"t{i}", [1], 0, 32 * i) for i in range(MAX_TENSORS + 1))
    path.write_bytes(_start(MAX_TENSORS + 1, 0) + entries + b"\0" * (32 * (MAX_TENSORS + 2)))
    problem = transformer_problem(path, "flux-q", None)
    assert problem == f"many.gguf lists {MAX_TENSORS + 1} tensors; a transformer has at most 4096."


def test_a_fifo_named_gguf_is_refused_without_opening_it(tmp_path: Path) -> None:
    fifo = tmp_path / "x.gguf"
    os.mkfifo(fifo)  # opening it to read would wait for a writer forever
    assert transformer_problem(fifo, "flux-q", None) == f"{fifo} is not a regular file."
    assert weight_bytes(str(fifo), fallback=5) == 5


def _transformer(model_dir: Path) -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    for file in sorted((model_dir / "transformer").glob("*.safetensors")):
        tensors |= {name: t.astype(np.float32) for name, t in load_file(file).items()}
    return tensors


def _write(out: Path, tensors: dict[str, np.ndarray], arch: str = "flux", raw=None) -> Path:
    writer = gguf.GGUFWriter(str(out), arch=arch)
    for name, tensor in tensors.items():
        writer.add_tensor(name, tensor, raw_dtype=raw(tensor) if raw else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _not_it(folder: Path, tiny_model_dirs: dict[str, Path]) -> dict[str, tuple[Path, str]]:
    """Files that are GGUF but not the tiny FLUX.1 transformer → what the refusal says."""
    flux = _transformer(tiny_model_dirs["flux-dev"])
    _first, *rest = sorted(flux)
    wide = next(name for name in sorted(flux) if flux[name].ndim == 2)
    wrong_shape = {
        **flux,
        wide: np.zeros((flux[wide].shape[0] * 2, flux[wide].shape[1]), np.float32),
    }
    llm = {"token_embd.weight": np.ones((8, 4), np.float32), "blk.0.attn_q.weight": flux[wide]}
    f64 = {name: tensor.astype(np.float64) for name, tensor in flux.items()}
    return {
        "one missing": (_write(folder / "m.gguf", {n: flux[n] for n in rest}), "lacks 1 of"),
        "one extra": (
            _write(folder / "e.gguf", {**flux, "evil.weight": np.ones(4, np.float32)}),
            "holds tensors it does not have",
        ),
        "wrong shape": (_write(folder / "s.gguf", wrong_shape), f"its tensor {wide!r} is"),
        "klein's": (write_gguf(tiny_model_dirs["flux2-klein"], folder / "k.gguf"), "lacks"),
        "an LLM's": (_write(folder / "l.gguf", llm, arch="llama"), "a 'llama' model's tensors"),
        "float64": (_write(folder / "f.gguf", f64), "F64 tensors"),
        "no tensors": (_write(folder / "z.gguf", {}), "holds no tensors"),
    }


def test_a_gguf_file_that_is_not_the_models_transformer_is_refused_by_the_header_and_the_worker(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    for case, (path, says) in _not_it(tmp_path, tiny_model_dirs).items():
        problem = transformer_problem(path, "flux-q", tiny_model_dirs["flux-dev"])
        assert says in (problem or ""), case
        tables = catalogue_config(tiny_model_dirs)
        tables["flux-q"] = {
            **recommended_settings("flux-dev"),
            "family": "flux",
            "source": str(tiny_model_dirs["flux-dev"]),
            "gguf": str(path),
        }
        with pytest.raises(ModelUnavailable) as refused:
            Engine(Catalogue.from_config(tables), "cpu").load("flux-q")
        assert says in str(refused.value), case


def test_a_file_in_bfl_names_is_checked_by_its_block_counts_and_fails_to_load_in_a_sentence(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    import json

    config = json.loads((tiny_model_dirs["flux-dev"] / "transformer/config.json").read_text())
    one = np.ones((32, 32), np.float32)
    names = [f"double_blocks.{i}.img_attn.qkv.weight" for i in range(config["num_layers"])]
    names += [f"single_blocks.{i}.linear1.weight" for i in range(config["num_single_layers"])]
    bfl = _write(tmp_path / "bfl.gguf", {f"model.diffusion_model.{n}": one for n in names})
    assert transformer_problem(bfl, "flux-q", tiny_model_dirs["flux-dev"]) is None
    tables = catalogue_config(tiny_model_dirs)
    tables["flux-q"] = {
        **recommended_settings("flux-dev"),
        "family": "flux",
        "source": str(tiny_model_dirs["flux-dev"]),
        "gguf": str(bfl),
    }
    with pytest.raises(ModelUnavailable, match="could not be loaded as its transformer"):
        Engine(Catalogue.from_config(tables), "cpu").load("flux-q")  # the converter's KeyError
    short = _write(tmp_path / "short.gguf", {n: one for n in names[1:]})
    problem = transformer_problem(short, "flux-q", tiny_model_dirs["flux-dev"])
    assert problem == (
        f"short.gguf is not flux-q's transformer: it has {config['num_layers'] - 1} "
        f"double_blocks, flux-q has {config['num_layers']}."
    )


def test_the_header_read_is_cached_per_version_of_the_file_not_per_path_and_mtime(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    path = write_gguf(tiny_model_dirs["flux-dev"], tmp_path / "t.gguf")
    before = read_header(path)
    stat = path.stat()
    flux = _transformer(tiny_model_dirs["flux-dev"])
    other = _write(tmp_path / "other.gguf", {n: t[..., :1] for n, t in flux.items()})
    os.replace(other, path)  # as `rsync -a` puts a new version in place
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert read_header(path) != before


def test_a_worker_with_an_unusable_gguf_file_answers_each_job_and_load_and_still_starts(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    flux = _transformer(tiny_model_dirs["flux-dev"])
    path = _write(tmp_path / "m.gguf", dict(sorted(flux.items())[1:]))  # one tensor missing
    tables = catalogue_config(tiny_model_dirs)
    tables["flux-q"] = {
        **recommended_settings("flux-dev"),
        "family": "flux",
        "source": str(tiny_model_dirs["flux-dev"]),
        "gguf": str(path),
    }
    catalogue = Catalogue.from_config(tables)
    events: list[object] = []
    config = WorkerConfig("cpu", "cpu", pinned=("flux-q",))
    worker = WorkerRuntime(WorkerSpec(config, tuple(catalogue.values())), events.append)

    assert worker.start()  # the pinned model that cannot load does not stop the worker
    [failed] = [event for event in events if isinstance(event, ModelLoadFailed)]
    assert "m.gguf is not flux-q's transformer: it lacks 1 of" in failed.reason
    assert isinstance(events[-1], WorkerReady)
    worker.handle(RunJob(1, build_request(catalogue, model="flux-q", prompt="a fox", seeds=[1])))
    [error] = [event for event in events if isinstance(event, JobError)]
    assert (error.kind, error.reason) == ("model_unavailable", failed.reason)
    assert worker.handle(LoadModel("flux-q", True))
    assert isinstance(events[-1], ModelLoadFailed)


def _flipped(path: Path, out: Path) -> Path:
    """A copy of `path` of the same size whose tensor data differs (the header kept)."""
    data = bytearray(path.read_bytes())
    for index in range(gguf.GGUFReader(path).data_offset + 100, len(data), 997):
        data[index] ^= 0x11
    out.write_bytes(bytes(data))
    return out


def test_the_recorded_sha256_names_the_bytes_that_ran_when_the_file_is_swapped_keeping_mtime(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    original = write_gguf(tiny_model_dirs["flux-dev"], tmp_path / "a.gguf")
    other = _flipped(original, tmp_path / "b.gguf")
    live = tmp_path / "live.gguf"
    live.write_bytes(original.read_bytes())
    tables = catalogue_config(tiny_model_dirs)
    tables["q"] = {
        **recommended_settings("flux-dev"),
        "family": "flux",
        "source": str(tiny_model_dirs["flux-dev"]),
        "gguf": str(live),
    }
    catalogue = Catalogue.from_config(tables)
    request = build_request(catalogue, model="q", prompt="a fox", seeds=[1])
    engine = Engine(catalogue, "cpu")
    first = engine.generate(request)[0]
    kept = live.stat()
    engine.unload("q")
    live.write_bytes(other.read_bytes())  # as `cp -p` or `rsync -a` of a re-quantized file
    os.utime(live, ns=(kept.st_atime_ns, kept.st_mtime_ns))
    second = engine.generate(request)[0]
    digest = hashlib.sha256(other.read_bytes()).hexdigest()
    assert first.facts.gguf != second.facts.gguf == f"live.gguf sha256:{digest}"


def test_a_gguf_file_that_changes_while_it_loads_is_refused_not_recorded(
    tiny_model_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import generation.pipelines.base as base

    live = write_gguf(tiny_model_dirs["flux-dev"], tmp_path / "live.gguf")
    other = _flipped(live, tmp_path / "b.gguf")
    read = base.gguf_components

    def read_then_changed(*args, **kwargs):  # the file changes just after diffusers read it
        components = read(*args, **kwargs)
        live.write_bytes(other.read_bytes())
        return components

    monkeypatch.setattr(base, "gguf_components", read_then_changed)
    tables = catalogue_config(tiny_model_dirs)
    tables["q"] = {
        **recommended_settings("flux-dev"),
        "family": "flux",
        "source": str(tiny_model_dirs["flux-dev"]),
        "gguf": str(live),
    }
    engine = Engine(Catalogue.from_config(tables), "cpu")
    with pytest.raises(ModelUnavailable, match="its files changed while it loaded; try again"):
        engine.load("q")
    monkeypatch.setattr(base, "gguf_components", read)
    engine.load("q")  # the next load reads, and records, the file as it is now


def test_a_fifo_among_the_models_own_weights_does_not_hang_the_check(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "flux"
    shutil.copytree(tiny_model_dirs["flux-dev"], folder)
    os.mkfifo(folder / "transformer" / "extra.safetensors")
    path = write_gguf(tiny_model_dirs["flux-dev"], tmp_path / "t.gguf")
    assert transformer_problem(path, "flux-q", folder) is None  # the folder's fault, told apart


def test_the_automatic_setup_counts_a_file_that_cannot_run_as_the_unquantized_transformer(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    good = write_gguf(tiny_model_dirs["flux-dev"], tmp_path / "good.gguf")
    files = {
        "good": good,
        "klein's": write_gguf(tiny_model_dirs["flux2-klein"], tmp_path / "k.gguf"),
        "no tensors": _write(tmp_path / "z.gguf", {}),
        "cut": tmp_path / "cut.gguf",
    }
    files["cut"].write_bytes(good.read_bytes()[:4])
    gpus = [GpuInfo(index, "card", float(gib)) for index, gib in enumerate((8, 12, 16, 24))]
    offered = {}
    for case, path in files.items():
        tables = {
            "q": {
                **recommended_settings("flux-dev"),
                "family": "flux",
                "source": str(tiny_model_dirs["flux-dev"]),
                "gguf": str(path),
            }
        }
        workers = discover_workers(Catalogue.from_config(tables), gpus, frozenset({"gguf"}))
        offered[case] = [dict(worker.profiles).get("q") for worker in workers]
    assert offered == {
        "good": [None, "gguf-offload", "gguf", "gguf"],
        "klein's": [None] * 4,  # as large as FLUX.1 in bf16: on no consumer card
        "no tensors": [None] * 4,
        "cut": [None] * 4,
    }
