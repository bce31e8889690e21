"""Uploaded-image benchmark: peak memory and time of `canonical_png` at the 40-megapixel cap.

Run: `python -m benchmarks.input_images` (about half a minute). Prints ONE JSON line.
Goal: every kind within 0.5 GB above the interpreter (the bot decodes at most 2 at once, see
`bot.studio.MAX_CONCURRENT_DECODES`), and a JPEG of the most scans taken in under 3 s.
Each upload is made in one process and measured in another, so no peak (ru_maxrss) hides the
one measured.
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (8000, 5000)  # 40 MP, the cap
KINDS = ("png 16-bit grey", "png RGB", "png RGBA", "jpeg RGB", "jpeg of the most scans")
GOAL_MB = 500
GOAL_SCANS_S = 3.0


def upload(kind: str) -> bytes:
    from generation.jpeg_scans import MAX_JPEG_SCANS
    from tests.generation.hostile_images import many_scans_jpeg

    width, height = SIZE
    if kind == "jpeg of the most scans":
        return many_scans_jpeg(MAX_JPEG_SCANS, SIZE)
    image = {
        "png 16-bit grey": lambda: Image.fromarray(np.zeros((height, width), np.uint16)),
        "png RGB": lambda: Image.new("RGB", SIZE, (1, 2, 3)),
        "png RGBA": lambda: Image.new("RGBA", SIZE, (1, 2, 3, 4)),
        "jpeg RGB": lambda: Image.new("RGB", SIZE, (1, 2, 3)),
    }[kind]()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG" if kind.startswith("jpeg") else "PNG")
    return buffer.getvalue()


def measure(path: Path) -> dict[str, float]:
    """In this (fresh) process: MB above the baseline at the peak, and seconds."""
    data = path.read_bytes()
    from generation.input_images import canonical_png

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    canonical_png(data)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_mb": round((peak - before) / 1024), "s": round(seconds, 2)}


def _child(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.input_images", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def main() -> None:
    if len(sys.argv) > 1:
        action, path = sys.argv[1], Path(sys.argv[2])
        if action == "measure":
            print(json.dumps(measure(path)))
        else:
            path.write_bytes(upload(sys.argv[3]))
        return
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for index, kind in enumerate(KINDS):
            path = Path(folder) / f"{index}.bin"
            _child("make", str(path), kind)
            results[kind] = json.loads(_child("measure", str(path)))
    worst = max(r["peak_mb"] for r in results.values())
    scans_s = results["jpeg of the most scans"]["s"]
    print(
        json.dumps(
            {
                "benchmark": "input_images",
                "megapixels": SIZE[0] * SIZE[1] / 1e6,
                "kinds": results,
                "worst_peak_mb": worst,
                "goal_peak_mb": GOAL_MB,
                "goal_scans_s": GOAL_SCANS_S,
                "ok": worst <= GOAL_MB and scans_s <= GOAL_SCANS_S,
            }
        )
    )


if __name__ == "__main__":
    main()
