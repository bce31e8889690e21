"""The reproduction matrix (README, "Exact reruns"): for every model family, every job kind
(text-to-image, img2img, vary, upscale, rerun; with LoRAs and with long weighted prompts), several
image counts and every image index, image i of a job equals a rerun of image i alone, and a rerun
of the whole job equals the job — bit-exact, through the real worker process, engine and diffusers
pipelines on the tiny models (CPU).

Kinds added later join `_derived_jobs`; the assertions cover whatever job they make.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from bot import derived
from generation.jobs import GeneratedImage, JobFinished, JobOwner
from generation.loras import LoraCatalogue, LoraUse
from generation.models import Catalogue
from generation.pool import WorkerPool
from generation.request import GenerationRequest, JobKind, build_request
from generation.workers.config import WorkerConfig
from storage import Database
from tests.conftest import lora_tables
from tests.generation.helpers import Recorder, pixels

MODELS = ("playground-v2.5", "flux-dev", "flux-schnell")
OWNER = JobOwner(1, max_queued=10_000, max_running=10_000)


def _init_png() -> bytes:
    """A 16:9 init image with structure (a gradient and a block), so the VAE sees detail."""
    array = np.zeros((45, 80, 3), dtype=np.uint8)
    array[..., 0] = np.linspace(0, 255, 80, dtype=np.uint8)
    array[10:30, 20:50, 1] = 200
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


class _Runner:
    def __init__(self, pool: WorkerPool, recorder: Recorder, db: Database) -> None:
        self.pool = pool
        self.recorder = recorder
        self.db = db

    async def run(self, requests: list[GenerationRequest]) -> list[tuple[int, list[bytes]]]:
        """Each request's job id and PNGs, all queued at once."""
        ids = [(await self.pool.submit(r, OWNER)).job_id for r in requests]
        results = await self.recorder.finished(*ids, timeout_s=600)
        out = []
        for job_id, result in zip(ids, results, strict=True):
            assert isinstance(result, JobFinished), result
            pngs = [await self.db.read_image(job_id, i) for i in range(result.image_count)]
            out.append((job_id, [png for png in pngs if png is not None]))
        return out


def _sorted(images: tuple[GeneratedImage, ...]) -> list[GeneratedImage]:
    return sorted(images, key=lambda image: image.index)


def _lora_and_weighted_jobs(
    catalogue: Catalogue, loras: LoraCatalogue
) -> list[tuple[str, GenerationRequest]]:
    """LoRA jobs (one LoRA, two at once) and a long weighted prompt (compel)."""
    long_prompt = "a (harbour)1.3 in the rain, " * 20 + "boats--, (gulls)0.8"

    def job(model: str, seed: int, **options: object) -> GenerationRequest:
        return build_request(
            catalogue,
            prompt=options.pop("prompt", "a red boat"),  # type: ignore[arg-type]
            model=model,
            seed=seed,
            count=2,
            lora_catalogue=loras,
            **options,  # type: ignore[arg-type]
        )

    return [
        ("playground-v2.5 lora x2", job("playground-v2.5", 70, loras=[("pg", 0.7)])),
        (
            "playground-v2.5 two loras x2",
            job("playground-v2.5", 71, loras=[("pg", 0.5), ("pg2", 1.0)]),
        ),
        ("flux-dev lora x2", job("flux-dev", 72, loras=[("fx", 0.9)])),
        ("playground-v2.5 weighted x2", job("playground-v2.5", 73, prompt=long_prompt)),
    ]


def _first_jobs(catalogue: Catalogue) -> list[tuple[str, GenerationRequest]]:
    jobs = []
    for number, model in enumerate(MODELS):
        for count in (1, 2, 4):
            jobs.append(
                (
                    f"{model} text-to-image x{count}",
                    build_request(
                        catalogue, prompt="a red boat", model=model, seed=5 + number, count=count
                    ),
                )
            )
        for count in (2, 3):
            jobs.append(
                (
                    f"{model} img2img x{count}",
                    build_request(
                        catalogue,
                        prompt="a harbour in the rain",
                        model=model,
                        seed=50 + number,
                        count=count,
                        width=64,
                        height=48,
                        init_image=_init_png(),
                        strength=0.75,
                    ),
                )
            )
    return jobs


def _derived_jobs(
    catalogue: Catalogue, done: dict[str, tuple[int, GenerationRequest, list[bytes]]]
) -> list[tuple[str, GenerationRequest]]:
    """V (subtle and strong) and U, made as the buttons make them, from the 4-image results."""
    jobs = []
    for model in MODELS:
        job_id, request, images = done[f"{model} text-to-image x4"]
        image = images[3]
        jobs.append(
            (f"{model} vary x4", derived.vary(catalogue, request, job_id, image, strong=True))
        )
        jobs.append((f"{model} vary-subtle x4", derived.vary(catalogue, request, job_id, image)))
    for name in ("playground-v2.5 lora x2", "flux-dev lora x2", "playground-v2.5 weighted x2"):
        job_id, request, images = done[name]
        jobs.append((f"{name} vary", derived.vary(catalogue, request, job_id, images[1])))
        jobs.append(
            (
                f"{model} upscale",
                derived.upscale(catalogue, request, job_id, images[1], request.seeds[1]),
            )
        )
    return jobs


async def test_every_image_of_every_job_kind_reruns_bit_exact(
    tiny_catalogue: Catalogue, tiny_loras: dict[str, Path], tmp_path: Path
) -> None:
    tables = lora_tables(tiny_loras)
    loras = LoraCatalogue.from_config(tables)
    async with await Database.open(tmp_path / "atelier.sqlite3") as db:
        pool = WorkerPool(
            tiny_catalogue, db, [WorkerConfig("cpu:0", "cpu")], engine_options={"loras": tables}
        )
        recorder = Recorder(pool)
        await pool.start()
        runner = _Runner(pool, recorder, db)
        done: dict[str, tuple[int, GenerationRequest, list[bytes]]] = {}
        for wave in (
            lambda c: _first_jobs(c) + _lora_and_weighted_jobs(c, loras),
            lambda c: _derived_jobs(c, done),
        ):
            jobs = wave(tiny_catalogue)
            for (name, request), (job_id, pngs) in zip(
                jobs, await runner.run([r for _, r in jobs]), strict=True
            ):
                done[name] = (job_id, request, pngs)

        assert done["playground-v2.5 lora x2 vary"][1].loras == (LoraUse("pg", 0.7),)
        kinds = {request.kind for _, request, _ in done.values()}
        assert kinds == {JobKind.NEW, JobKind.VARY, JobKind.UPSCALE}
        assert any(r.init_image for _, r, _ in done.values() if r.kind is JobKind.NEW)
        # Reruns: of each whole job (the rerun kind), and of each image alone.
        reruns: list[tuple[str, int | None, GenerationRequest]] = []
        for name, (job_id, request, _) in done.items():
            reruns.append((name, None, derived.rerun(tiny_catalogue, request, job_id)))
            reruns += [
                (name, i, derived.rerun(tiny_catalogue, request, job_id, i))
                for i in range(request.count)
            ]
        results = await runner.run([request for _, _, request in reruns])
        # A rerun of a rerun (the rerun kind's own reruns) reproduces it too.
        first_rerun = next(
            (job_id, r)
            for (_, i, r), (job_id, _) in zip(reruns, results, strict=False)
            if i is None
        )
        ((_, again),) = await runner.run(
            [derived.rerun(tiny_catalogue, first_rerun[1], first_rerun[0], 0)]
        )
        await pool.shutdown()

    checked = 0
    for (name, index, request), (_, pngs) in zip(reruns, results, strict=True):
        originals = done[name][2]
        expected = originals if index is None else [originals[index]]
        assert request.kind is JobKind.RERUN
        assert len(pngs) == len(expected)
        for made, original in zip(pngs, expected, strict=True):
            assert np.array_equal(pixels(made), pixels(original)), (name, index)
            checked += 1
    assert np.array_equal(pixels(again[0]), pixels(done[reruns[0][0]][2][0]))
    assert checked == 2 * sum(len(pngs) for _, _, pngs in done.values())
    # Within a job the images differ: each image's seed matters.
    for _, _, pngs in done.values():
        assert len({pixels(png).tobytes() for png in pngs}) == len(pngs)
