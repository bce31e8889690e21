"""LoRA switching cost on one worker's engine: seconds per job with no LoRA, with a LoRA loaded
for the first time, with the same LoRA again (adapter kept), after switching to another kept
adapter, and with no LoRA after LoRA jobs (adapters off). Prints ONE JSON line.

    python -m benchmarks.lora_switch            # tiny Playground model on the CPU

The tiny model shows the overhead of loading and switching adapters next to a small denoising
cost; on a GPU with the real model the denoising dominates and loading a LoRA file is the cost
that `generation.pipelines.adapters` pays once per file.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

REPEATS = 5


def main() -> None:
    from generation.engine import Engine
    from generation.loras import LoraCatalogue
    from generation.models import Catalogue
    from generation.request import build_request
    from generation.tiny import build, build_lora, catalogue_config

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        model = build(root / "playground", "playground")
        tables = {
            f"l{n}": {
                "source": str(build_lora(model, root / f"l{n}.safetensors", n)),
                "family": "playground",
            }
            for n in range(REPEATS + 2)
        }
        catalogue = Catalogue.from_config(catalogue_config({"playground": model}))
        loras = LoraCatalogue.from_config(tables)
        engine = Engine(catalogue, preview_every=0, loras=loras)

        def seconds(*asked: tuple[str, float]) -> float:
            request = build_request(
                catalogue, prompt="a fox", seed=1, loras=asked, lora_catalogue=loras
            )
            started = time.perf_counter()
            engine.generate(request)
            return time.perf_counter() - started

        seconds()  # warm-up
        timings: dict[str, list[float]] = {k: [] for k in ("none", "new", "same", "switch")}
        timings["none_after_lora"] = []
        for n in range(REPEATS):
            timings["none"].append(seconds())
            timings["new"].append(seconds((f"l{n + 2}", 1.0)))
            timings["same"].append(seconds((f"l{n + 2}", 0.5)))
            timings["switch"].append(seconds((f"l{n + 1}", 1.0)) if n else seconds(("l1", 1.0)))
            timings["none_after_lora"].append(seconds())
    print(
        json.dumps(
            {
                "benchmark": "lora_switch",
                "model": "tiny playground (CPU)",
                "median_s": {k: round(statistics.median(v), 4) for k, v in timings.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
