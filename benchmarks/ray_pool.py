"""Ray workers against local worker processes: the per-job overhead of a GPU reached as a Ray
actor (through its relay) and the time to deliver a 4 MB PNG from it.

A local Ray cluster (CPU actors, token auth on) and two pools over one SQLite file's worth of
jobs: one with a local worker process, one with a Ray worker, both running the real engine on the
same tiny Playground model (built here, offline) with the same engine setup (one CPU thread each:
`OMP_NUM_THREADS=1` and `MKL_NUM_THREADS=1` reach both the worker process and the actor). The
steps are chosen from both sides' measured time per step so that a job takes at least `--job-s`
seconds on EITHER side (`min_job_s` says what it took on the faster one). Jobs alternate between
the two, one at a time; each is timed from `submit` to its `JobFinished` (images stored), and the
engine's own run time (the job's GPU-seconds) is subtracted to get what each kind of worker adds
(`*_overhead_s`). Both ratios are printed: `wall_ratio`, the plain ratio of the median job
times, and `overhead_ratio`, a local job's time against the same job with the Ray worker's
overhead instead, (run + ray overhead) / (run + process overhead); the goal is on the latter.
Caveat: on a shared CPU the two sides' engine run times differ by the processes' surroundings
(the actor's runs have been the faster, by up to a quarter), and that difference, not the
relay, moves `wall_ratio` either way; compare `process_run_s` with `ray_run_s` before reading it.
Then each pool runs the stand-in engine making 4 MB PNGs, and the delivery time is from the
end of the run in the worker (monotonic clock, shared by the processes of one machine) to
`JobFinished`. Prints ONE JSON line; the goal is an overhead ratio of at most 1.05 for jobs of
at least a second.

    python -m benchmarks.ray_pool [--jobs 15] [--job-s 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"  # both sides alike (the actor's too), steadier when shared
os.environ["MKL_NUM_THREADS"] = "1"

from generation.jobs import JobFinished, JobOwner
from generation.models import Catalogue
from generation.pool import WorkerPool
from generation.request import build_request
from generation.tiny import BUILTIN_NAMES, build, catalogue_config
from generation.workers.config import WorkerConfig
from generation.workers.standin import run_record
from storage import Database
from tests.generation.helpers import STANDIN, Recorder
from tests.generation.ray_cluster import LocalRayCluster

GOAL = 1.05
CALIBRATION_RUNS = 3  # 10-step jobs per side that measure a step
MARGIN = 1.3  # steps for this much more than `--job-s` at the fastest step measured
PNG_BYTES = 4 * 2**20
MODEL = BUILTIN_NAMES["playground"]


async def timed_job(pool: WorkerPool, recorder: Recorder, request: object) -> JobFinished:
    queued = await pool.submit(request, JobOwner(1))  # type: ignore[arg-type]
    (done,) = await recorder.finished(queued.job_id, timeout_s=300)
    assert isinstance(done, JobFinished), done
    return done


async def pools(
    catalogue: Catalogue, db: Database, cluster: LocalRayCluster, engine: str, options: dict
) -> dict[str, tuple[WorkerPool, Recorder]]:
    made = {}
    for kind, worker in (("process", WorkerConfig("local", "cpu")), ("ray", cluster.worker("r"))):
        pool = WorkerPool(catalogue, db, [worker], engine_factory=engine, engine_options=options)
        made[kind] = (pool, Recorder(pool))
        await pool.start()
    await asyncio.gather(*(pool.wait_until_ready() for pool, _ in made.values()))
    return made


async def overhead(
    catalogue: Catalogue, db: Database, cluster: LocalRayCluster, jobs: int, job_s: float
) -> dict[str, object]:
    made = await pools(catalogue, db, cluster, "generation.engine:Engine", {})
    spec = catalogue[MODEL]

    def request(steps: int) -> object:
        return build_request(catalogue, model=MODEL, prompt="a lighthouse", steps=steps, seed=7,
                             width=256, height=256)  # fmt: skip

    per_step = []  # the engine's time per step, once warm, on either side
    for kind in ("process", "ray"):
        await timed_job(*made[kind], request(2))  # warm up: load the model
        for _ in range(CALIBRATION_RUNS):
            per_step.append((await timed_job(*made[kind], request(10))).gpu_seconds / 10)
    # the fastest step seen sets the steps, with a margin: a job is long enough on either side
    steps = max(1, min(spec.limits.max_steps, math.ceil(MARGIN * job_s / min(per_step))))
    times: dict[str, list[float]] = {"process": [], "ray": []}
    runs: dict[str, list[float]] = {"process": [], "ray": []}  # the engine's own time
    for _ in range(jobs):
        for kind, (pool, recorder) in made.items():
            started = time.perf_counter()
            done = await timed_job(pool, recorder, request(steps))
            times[kind].append(time.perf_counter() - started)
            runs[kind].append(done.gpu_seconds)
    for pool, _ in made.values():
        await pool.shutdown()
    wall = {kind: statistics.median(times[kind]) for kind in times}
    run = {kind: statistics.median(runs[kind]) for kind in runs}
    extra = {  # what the worker kind adds to a job beyond the engine's own run
        kind: statistics.median(w - r for w, r in zip(times[kind], runs[kind], strict=True))
        for kind in times
    }
    return {
        "steps": steps,
        "min_job_s": round(min(wall.values()), 4),  # at least `job_s`, unless max_steps capped it
        "process_job_s": round(wall["process"], 4),
        "ray_job_s": round(wall["ray"], 4),
        "process_run_s": round(run["process"], 4),
        "ray_run_s": round(run["ray"], 4),
        "process_overhead_s": round(extra["process"], 4),
        "ray_overhead_s": round(extra["ray"], 4),
        "wall_ratio": round(wall["ray"] / wall["process"], 4),
        "overhead_ratio": round(
            (run["process"] + extra["ray"]) / (run["process"] + extra["process"]), 4
        ),
    }


async def delivery(
    catalogue: Catalogue, db: Database, cluster: LocalRayCluster, jobs: int
) -> dict[str, float]:
    made = await pools(catalogue, db, cluster, STANDIN, {"step_seconds": 0.0,
                                                          "image_bytes": PNG_BYTES})  # fmt: skip
    request = build_request(catalogue, model=MODEL, prompt="a big one", steps=1, seed=1)
    found: dict[str, list[float]] = {"process": [], "ray": []}
    for _ in range(jobs):
        for kind, (pool, recorder) in made.items():
            done = await timed_job(pool, recorder, request)
            arrived = time.monotonic()
            png = await db.read_image(done.job_id, 0)
            assert png is not None
            assert len(png) > PNG_BYTES
            found[kind].append(arrived - run_record(png)["end"])
    for pool, _ in made.values():
        await pool.shutdown()
    return {f"{kind}_4mb_png_s": round(statistics.median(v), 4) for kind, v in found.items()}


async def main_async(jobs: int, job_s: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        catalogue = Catalogue.from_config(
            catalogue_config({"playground": build(root / "tiny", "playground")})
        )
        cluster = LocalRayCluster(root / "ray")
        os.environ.update(cluster.env)
        cluster.start()
        try:
            async with await Database.open(root / "atelier.sqlite3") as db:
                result = await overhead(catalogue, db, cluster, jobs, job_s)
                result |= await delivery(catalogue, db, cluster, jobs)
        finally:
            cluster.kill()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=15, help="timed jobs per side")
    parser.add_argument("--job-s", type=float, default=1.0, help="seconds a job should take")
    args = parser.parse_args()
    result = asyncio.run(main_async(args.jobs, args.job_s))
    ratio = result["overhead_ratio"]
    long_enough = float(result["min_job_s"]) >= args.job_s  # type: ignore[arg-type]
    print(json.dumps({"benchmark": "ray_pool", "device": "cpu", "model": MODEL, "jobs": args.jobs,
                      "job_s": args.job_s, **result, "goal": GOAL,
                      "met": ratio <= GOAL and long_enough}))  # fmt: skip


if __name__ == "__main__":
    main()
