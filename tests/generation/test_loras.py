"""LoRAs through the real parts: the CLI in a child process against a direct diffusers call
(`load_lora_weights` + `set_adapters`), weights that matter, and a worker whose next job without
LoRA makes a fresh worker's pixels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from generation.loras import LoraCatalogue
from generation.models import Catalogue
from generation.tiny import recommended_settings
from tests.conftest import child_environment, lora_tables
from tests.generation.helpers import pixels

PROMPT = "a lighthouse on a cliff at dusk"
_RUN_EACH = (
    "import json, sys; from generation.__main__ import main\n"
    "for argv in json.loads(sys.argv[1]): print(json.dumps({'exit': main(argv)}), flush=True)"
)
# (tiny model, how --lora names the LoRA, weight): by configuration name and by file path.
RUNS = {
    "playground 0.8": ("playground", "pg", 0.8),
    "playground 0.3": ("playground", "file", 0.3),
    "flux-dev 0.8": ("flux-dev", "file", 0.8),
    "flux-dev 0.3": ("flux-dev", "fx", 0.3),
}


@pytest.fixture(scope="module")
def cli_runs(
    tiny_model_dirs: dict[str, Path],
    tiny_loras: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[int, list[dict[str, Any]]]]:
    root = tmp_path_factory.mktemp("cli-loras")
    config = root / "atelier.toml"
    config.write_text(
        "".join(
            f"[loras.{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
            for name, table in lora_tables(tiny_loras).items()
        )
    )
    argvs = []
    for name, (model, lora, weight) in RUNS.items():
        named = str(tiny_loras[model]) if lora == "file" else lora
        argvs.append(
            [
                *("--model", str(tiny_model_dirs[model]), "--prompt", PROMPT, "--seed", "77"),
                *("--device", "cpu", "--config", str(config), "--lora", f"{named}:{weight}"),
                *("--out", str(root / name.replace(" ", "-"))),
            ]
        )
    done = subprocess.run(
        [sys.executable, "-c", _RUN_EACH, json.dumps(argvs)],
        capture_output=True,
        text=True,
        env=child_environment(),
        check=True,
        timeout=300,
    )
    runs, lines = {}, []
    names = iter(RUNS)
    for record in map(json.loads, done.stdout.splitlines()):
        if "exit" in record:
            runs[next(names)] = (record["exit"], lines)
            lines = []
        else:
            lines.append(record)
    return runs


def _direct(model_dir: Path, lora: Path, weight: float, request: dict[str, Any]) -> np.ndarray:
    """The image diffusers itself makes: the pipeline from its folder, the LoRA loaded with
    `load_lora_weights` and weighted with `set_adapters`."""
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(lora.parent, weight_name=lora.name, adapter_name="test")
    pipe.set_adapters(["test"], adapter_weights=[weight])
    arguments: dict[str, Any] = {}
    if "flux" in model_dir.name:
        arguments["max_sequence_length"] = recommended_settings("flux-dev")["max_sequence_length"]
    else:
        pipe.watermark = None  # Atelier loads Playground without the invisible watermark
        arguments["negative_prompt"] = None
    image = pipe(
        prompt=request["prompt"],
        num_inference_steps=request["steps"],
        guidance_scale=request["guidance"],
        width=request["width"],
        height=request["height"],
        generator=[torch.Generator("cpu").manual_seed(request["seeds"][0])],
        **arguments,
    ).images[0]
    return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("run", RUNS)
def test_the_cli_with_a_lora_makes_what_diffusers_makes(
    cli_runs: dict, tiny_model_dirs: dict[str, Path], tiny_loras: dict[str, Path], run: str
) -> None:
    model, _, weight = RUNS[run]
    exit_code, lines = cli_runs[run]
    assert exit_code == 0
    (line,) = lines
    assert line["request"]["loras"] == [
        {"name": line["request"]["loras"][0]["name"], "weight": weight}
    ]
    with Image.open(line["path"]) as png:
        made = np.asarray(png.convert("RGB"))
        parameters = png.text["parameters"]
    name = line["request"]["loras"][0]["name"]
    assert f"<lora:{name}:{weight:g}>" in parameters
    assert "Lora hashes: " in parameters
    expected = _direct(tiny_model_dirs[model], tiny_loras[model], weight, line["request"])
    assert np.array_equal(made, expected)


@pytest.mark.parametrize("model", ["playground", "flux-dev"])
def test_the_weight_and_the_lora_change_the_image(cli_runs: dict, model: str) -> None:
    (strong,) = cli_runs[f"{model} 0.8"][1]
    (weak,) = cli_runs[f"{model} 0.3"][1]
    assert strong["seed"] == weak["seed"]
    with Image.open(strong["path"]) as a, Image.open(weak["path"]) as b:
        assert not np.array_equal(np.asarray(a), np.asarray(b))
    # The record says which file was applied, by the SHA-256 of its bytes, and that it was not
    # fused into the weights.
    assert strong["made_with"]["loras"].endswith(" unfused")
    assert " sha256:" in strong["made_with"]["loras"]


async def test_a_job_without_lora_after_lora_jobs_makes_a_fresh_workers_pixels(
    tiny_catalogue: Catalogue, tiny_loras: dict[str, Path], tmp_path: Path
) -> None:
    from generation.engine import Engine
    from generation.jobs import JobFinished, JobOwner
    from generation.pool import WorkerPool
    from generation.request import build_request
    from generation.workers.config import WorkerConfig
    from storage import Database
    from tests.generation.helpers import Recorder

    tables = lora_tables(tiny_loras)
    loras = LoraCatalogue.from_config(tables)

    def request(model: str, *asked: tuple[str, float]) -> Any:
        return build_request(
            tiny_catalogue, prompt=PROMPT, model=model, seed=9, loras=asked, lora_catalogue=loras
        )

    # One worker, in this order: LoRA, none, another LoRA (a switch), two at once, none again.
    jobs = [
        request("playground-v2.5", ("pg", 0.8)),
        request("playground-v2.5"),
        request("playground-v2.5", ("pg2", 1.0)),
        request("playground-v2.5", ("pg", 0.5), ("pg2", 0.5)),
        request("playground-v2.5"),
        request("flux-dev", ("fx", 1.0)),
        request("flux-dev"),
    ]
    owner = JobOwner(1, max_queued=100, max_running=100)
    async with await Database.open(tmp_path / "atelier.sqlite3") as db:
        pool = WorkerPool(
            tiny_catalogue, db, [WorkerConfig("cpu:0", "cpu")], engine_options={"loras": tables}
        )
        recorder = Recorder(pool)
        await pool.start()
        ids = [(await pool.submit(job, owner)).job_id for job in jobs]
        results = await recorder.finished(*ids, timeout_s=600)
        await pool.shutdown()
        made = []
        for job_id, result in zip(ids, results, strict=True):
            assert isinstance(result, JobFinished), result
            png = await db.read_image(job_id, 0)
            assert png is not None
            made.append(pixels(png))
    # Each job as a fresh engine (no LoRA ever loaded before it) makes it.
    for job, image in zip(jobs, made, strict=True):
        fresh = Engine(tiny_catalogue, loras=loras)
        assert np.array_equal(pixels(fresh.generate(job)[0].png), image), job.loras
    assert not np.array_equal(made[0], made[1])
    assert not np.array_equal(made[0], made[2])
    assert np.array_equal(made[1], made[4])
