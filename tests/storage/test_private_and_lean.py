"""Storage keeps what it writes private to the bot's user, and lists never load init images."""

from __future__ import annotations

import io
import os
import random
import stat
import tracemalloc
from pathlib import Path

from PIL import Image

from storage import Database
from tests.storage.conftest import finished_job, owner


def _modes(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root.parent)): stat.S_IMODE(path.stat().st_mode)
        for path in [root, *root.rglob("*")]
    }


def _noise_png(seed: int, size: tuple[int, int] = (1024, 768)) -> bytes:
    """A PNG of random pixels: it does not compress, so it weighs about 2.3 MB."""
    pixels = random.Random(seed).randbytes(size[0] * size[1] * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


async def test_the_database_images_backups_and_exports_are_private(
    tmp_path: Path, make_request
) -> None:
    os.umask(0o022)  # the usual default, which would make files world-readable
    data = tmp_path / "data"
    async with await Database.open(data / "atelier.sqlite3") as db:
        await finished_job(db, make_request(count=2), owner(), base=1)
        await db.backup(tmp_path / "backup.sqlite3")
        await db.export_user(1001, tmp_path / "export")

        modes = _modes(data)
        assert "data/atelier.sqlite3-wal" in modes
        assert "data/atelier.sqlite3-shm" in modes
        assert sum(name.endswith(".png") for name in modes) == 2
        for name, mode in modes.items():
            assert mode == (0o700 if (tmp_path / name).is_dir() else 0o600), (name, oct(mode))
        assert stat.S_IMODE((tmp_path / "backup.sqlite3").stat().st_mode) == 0o600
        for name, mode in _modes(tmp_path / "export").items():
            assert mode == (0o700 if (tmp_path / name).is_dir() else 0o600), (name, oct(mode))


async def test_an_existing_world_readable_database_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "atelier.sqlite3"
    async with await Database.open(path):
        pass
    path.chmod(0o644)
    path.parent.chmod(0o755)

    async with await Database.open(path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755  # the owner's folder: theirs


async def test_existing_folders_are_left_alone_and_created_ones_are_private(
    tmp_path: Path,
) -> None:
    os.umask(0o022)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # a shared folder such as /tmp: others' files in it must stay reachable
    path = shared / "atelier" / "data" / "atelier.sqlite3"

    async with await Database.open(path):
        pass

    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert stat.S_IMODE((shared / "atelier").stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((path.parent / "images").stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_a_history_page_does_not_load_init_images(db: Database, make_request) -> None:
    images = [_noise_png(seed) for seed in range(10)]
    for index, image in enumerate(images):
        await db.create_job(make_request(f"pear {index}", init_image=image), owner())
    total = sum(map(len, images))

    tracemalloc.start()
    try:
        page = await db.history(1001, limit=10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(page.jobs) == 10
    assert all(job.request.init_image is None for job in page.jobs)
    assert all(job.request.strength == 0.5 for job in page.jobs)  # they still show they have one
    assert peak < total / 10, f"a page of 10 jobs took {peak:,} bytes; their images {total:,}"
    one = await db.get_job(page.jobs[0].id)  # where the image is used, it is there
    assert one is not None
    assert one.record.request.init_image == images[-1]


async def test_other_lists_do_not_load_init_images_either(db: Database, make_request) -> None:
    image = _noise_png(1, (64, 64))
    parent = await finished_job(db, make_request(init_image=image), owner(), base=5)
    await db.create_job(make_request("child", init_image=image, parent_job=parent), owner())

    lineage = await db.lineage(parent)
    snapshot = await db.queue_snapshot()
    undelivered = await db.undelivered_jobs()

    listed = [*lineage.children, *snapshot.next_up, *undelivered]
    assert len(listed) == 3
    assert all(job.request.init_image is None for job in listed)


async def test_a_light_job_lookup_does_not_load_the_init_image(db: Database, make_request) -> None:
    image = _noise_png(3)
    job_id = await db.create_job(make_request("plum", init_image=image), owner())

    tracemalloc.start()
    try:
        light = await db.get_job(job_id, init_image=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert light is not None
    assert light.record.request.init_image is None
    assert light.record.request.strength == 0.5
    assert peak < len(image) / 10, f"{peak:,} bytes for a {len(image):,}-byte init image"
    full = await db.get_job(job_id)
    assert full is not None
    assert full.record.request.init_image == image
