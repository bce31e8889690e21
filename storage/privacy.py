"""A user's right to see and to erase what Atelier holds about them."""

from __future__ import annotations

import asyncio
import json
import shutil
from enum import Enum
from pathlib import Path
from typing import Any

from storage.errors import InvalidValue
from storage.library import detach_init_images
from storage.people import People
from storage.private import new_private_file, private_folder
from storage.records import ExportReport
from storage.store import JOB_SELECT_WITH_INIT_IMAGE, job_from_row

_BATCH = 200


class Privacy(People):
    async def export_user(self, user_id: int, out_dir: Path) -> ExportReport:
        """Write everything held about a user into `out_dir` (new or empty): `user-<id>.json`
        (settings, every job with its full request, images, messages, audit entries about
        them) and `images/<job>-<index>.png` for each image still on disk."""
        out_dir = Path(out_dir)
        if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
            raise InvalidValue(f"{out_dir} is not an empty folder; choose a new one.")
        private_folder(out_dir)
        private_folder(out_dir / "images")
        settings = await self.get_user(user_id)
        jobs: list[dict[str, Any]] = []
        copied = 0
        last_id = 0
        while batch := await self._fetchall(
            f"{JOB_SELECT_WITH_INIT_IMAGE} WHERE j.user_id = ? AND j.id > ? ORDER BY j.id LIMIT ?",
            (user_id, last_id, _BATCH),
        ):
            for row in batch:
                jobs.append(await self._export_job(row, out_dir))
                copied += sum(1 for image in jobs[-1]["images"] if image["file"])
            last_id = batch[-1]["id"]
        audit = await self.recent_audit(limit=1_000_000, target=f"user:{user_id}")
        document = {
            "user": _plain(settings),
            "jobs": jobs,
            "audit": [_plain(entry) for entry in audit],
        }
        json_path = out_dir / f"user-{user_id}.json"
        new_private_file(json_path)
        json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
        return ExportReport(json_path, len(jobs), copied)

    async def _export_job(self, row: Any, out_dir: Path) -> dict[str, Any]:
        record = job_from_row(row)
        images = []
        for image in await self.images_of(record.id):
            file = None
            if not image.pruned and image.path.exists():
                file = f"images/{record.id}-{image.index}.png"
                new_private_file(out_dir / file)
                await asyncio.to_thread(shutil.copyfile, image.path, out_dir / file)
            entry = _plain(image)
            entry["path"] = None
            entry["file"] = file
            images.append(entry)
        return {
            **_plain(record),
            "owner": _plain(record.owner),
            "request": record.request.to_dict(),
            "delivered_at": row["delivered_at"],
            "deleted_at": row["deleted_at"],
            "images": images,
            "messages": [_plain(message) for message in await self.messages_of(record.id)],
        }

    async def delete_user(self, user_id: int) -> int:
        """Erase a user: their jobs, images (files no one else shares), messages, settings, their
        credit budget and the audit entries about them (what BFL charged for their jobs stays in
        the ledger under no one's name). Other people's jobs made from theirs lose the link.
        Returns the number of jobs erased."""
        async with self._transaction() as conn:
            hashes = await conn.execute_fetchall(
                "SELECT i.sha256 FROM images AS i JOIN jobs AS j ON j.id = i.job_id"
                " WHERE j.user_id = ?",
                (user_id,),
            )
            await detach_init_images(conn, "user_id = ?", (user_id,))
            cursor = await conn.execute("DELETE FROM jobs WHERE user_id = ?", (user_id,))
            erased = cursor.rowcount
            await conn.execute("DELETE FROM users WHERE user_id = ?", (user_id,))
            if user_id > 0:  # 0 and -1 hold the server's and the default budgets
                await conn.execute("DELETE FROM credit_budgets WHERE user_id = ?", (user_id,))
            await conn.execute(
                "DELETE FROM audit_log WHERE target IN (?, ?)",
                (f"user:{user_id}", f"budget:{user_id}"),
            )
        await self._release_files(row[0] for row in hashes)
        return erased


def _plain(value: Any) -> dict[str, Any]:
    """A dataclass as a JSON-ready dict (enums as their values, paths as text)."""
    data = {}
    for name in value.__slots__:
        item = getattr(value, name)
        if isinstance(item, Enum):
            item = item.value
        elif isinstance(item, Path):
            item = str(item)
        data[name] = item
    return data
