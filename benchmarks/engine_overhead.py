"""Engine overhead: time per image through `Engine.generate` against a direct diffusers call.

Both sides run the same tiny model (built here, offline) with the same arguments and seed, and
both encode their image as PNG; the engine adds its progress callback (with previews), metadata
and per-image denoising. Runs alternate to share any drift of the machine. Prints ONE JSON line:
per model the median seconds per image of each side and their ratio, and the median of the
ratios (the goal is at most 1.10).

    python -m benchmarks.engine_overhead [--repeats 20] [--size 64] [--count 1]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import torch

from generation.engine import Engine
from generation.models import Catalogue
from generation.pipelines import family_pipelines
from generation.request import build_request
from generation.tiny import BUILTIN_NAMES, FAMILIES, build, catalogue_config

GOAL = 1.10
WARM_UP = 3


def direct_pipeline(catalogue: Catalogue, model: str) -> object:
    """The same model loaded with plain diffusers, as a script would."""
    spec = catalogue[model]
    family = family_pipelines(spec.family)
    pipe = family.text_to_image.from_pretrained(
        spec.source, use_safetensors=True, **family.load_options
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def measure(
    catalogue: Catalogue, model: str, size: int, count: int, repeats: int
) -> dict[str, float]:
    spec = catalogue[model]
    request = build_request(catalogue, model=model, prompt="a lighthouse", seed=7, width=size,
                            height=size, count=count)  # fmt: skip
    engine = Engine(catalogue, "cpu")
    engine.load(model)
    pipe = direct_pipeline(catalogue, model)
    arguments = {
        "prompt": request.prompt,
        "num_inference_steps": request.steps,
        "guidance_scale": request.guidance,
        "width": size,
        "height": size,
        "num_images_per_prompt": count,
    }
    if spec.max_sequence_length:
        arguments["max_sequence_length"] = spec.max_sequence_length

    def direct() -> None:
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in request.seeds]
        for image in pipe(**arguments, generator=generators).images:
            image.save(io.BytesIO(), format="PNG")

    def through_engine() -> None:
        engine.generate(request, on_progress=lambda step, total, preview: None)

    times: dict[str, list[float]] = {"engine": [], "direct": []}
    for round_ in range(WARM_UP + repeats):
        for name, run in (("engine", through_engine), ("direct", direct)):
            start = time.perf_counter()
            run()
            if round_ >= WARM_UP:
                times[name].append(time.perf_counter() - start)
    engine_s = statistics.median(times["engine"]) / count
    direct_s = statistics.median(times["direct"]) / count
    return {
        "engine_s": round(engine_s, 5),
        "direct_s": round(direct_s, 5),
        "ratio": round(engine_s / direct_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--count", type=int, default=1, help="images per call (1-4)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # steadier on a shared machine; both sides alike
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {family: build(Path(tmp) / family, family) for family in FAMILIES}
        catalogue = Catalogue.from_config(catalogue_config(dirs))
        results = {
            BUILTIN_NAMES[family]: measure(
                catalogue, BUILTIN_NAMES[family], args.size, args.count, args.repeats
            )
            for family in FAMILIES
        }
    median_ratio = statistics.median(result["ratio"] for result in results.values())
    print(
        json.dumps(
            {
                "benchmark": "engine_overhead",
                "device": "cpu",
                "threads": 1,
                "size": f"{args.size}x{args.size}",
                "count": args.count,
                "repeats": args.repeats,
                "models": results,
                "median_ratio": median_ratio,
                "goal": GOAL,
                "met": median_ratio <= GOAL,
            }
        )
    )


if __name__ == "__main__":
    main()
