"""Reference images are kept once each by content, in order, outside the request JSON, and the
records of API jobs made before that (references as base64 in the JSON) still read back."""

from __future__ import annotations

import base64
import json

from generation.request import build_request
from storage import Database
from tests.storage.conftest import finished_job, owner, png


def _klein(catalogue, *references: bytes, seed: int = 7):
    return build_request(
        catalogue,
        prompt="the same fox, in snow",
        model="flux2-klein-4b",
        seed=seed,
        input_images=references,
    )


async def test_references_round_trip_in_order_and_are_stored_once(db: Database, catalogue) -> None:
    first, second = png(3, size=64), png(4, size=64)
    job_a = await db.create_job(_klein(catalogue, first, second), owner())
    job_b = await db.create_job(_klein(catalogue, second, first, seed=8), owner())

    for job_id, expected in ((job_a, (first, second)), (job_b, (second, first))):
        stored = await db.get_job(job_id)
        assert stored.record.request.input_images == expected
        light = await db.get_job(job_id, init_image=False)
        assert light.record.request.input_images == ()  # lists never drag the bytes along
    assert len(await db._fetchall("SELECT * FROM init_images")) == 2  # one copy each
    (row,) = await db._fetchall("SELECT request FROM jobs WHERE id = ?", (job_a,))
    assert "input_images" not in json.loads(row["request"])  # no base64 in the record
    assert (await db.unfinished_jobs())[0].request.input_images == (first, second)


async def test_an_api_record_with_base64_references_still_reads(db: Database, catalogue) -> None:
    request = _klein(catalogue, png(5, size=64))
    job_id = await db.create_job(request, owner())
    old = request.to_dict() | {"input_images": [base64.b64encode(png(5, size=64)).decode()]}
    await db._write_one("UPDATE jobs SET request = ? WHERE id = ?", (json.dumps(old), job_id))
    await db._write_one("DELETE FROM job_references WHERE job_id = ?", (job_id,))
    stored = await db.get_job(job_id)
    assert stored.record.request == request


async def test_deleting_the_jobs_frees_references_no_one_else_uses(db: Database, catalogue) -> None:
    shared, own = png(6, size=64), png(7, size=64)
    mine = await finished_job(db, _klein(catalogue, shared, own), owner(user_id=3), base=1)
    await db.create_job(_klein(catalogue, shared), owner(user_id=4))
    assert await db.delete_user(3) == 1
    assert await db.get_job(mine) is None
    kept = await db._fetchall("SELECT data FROM init_images")
    assert [bytes(row["data"]) for row in kept] == [shared]
