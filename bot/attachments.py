"""Fit images under Discord's upload limit: keep the PNG when it fits, else re-encode smaller.

The PNG in storage is never touched (it keeps its metadata chunks); only the copy sent to
Discord changes, and the result message says so.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

_JPEG_QUALITIES = (92, 85, 75, 60)
_MIN_SIDE = 64


@dataclass(frozen=True, slots=True)
class Upload:
    """One file to attach: its name and bytes; `reencoded` when it is not the original PNG."""

    filename: str
    data: bytes
    reencoded: bool = False


def fit_upload(stem: str, png: bytes, limit: int) -> Upload:
    """`png` as `stem.png` if it fits in `limit` bytes, else the best JPEG that fits.

    JPEG quality goes down first, then the size halves, until the file fits.
    """
    if len(png) <= limit:
        return Upload(f"{stem}.png", png)
    with Image.open(io.BytesIO(png)) as original:
        image = original.convert("RGB")
    while True:
        for quality in _JPEG_QUALITIES:
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=quality, optimize=True)
            if buffer.tell() <= limit:
                return Upload(f"{stem}.jpg", buffer.getvalue(), reencoded=True)
        if min(image.size) <= _MIN_SIDE:
            return Upload(f"{stem}.jpg", buffer.getvalue(), reencoded=True)
        image = image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)


def limit_note(uploads: list[Upload], limit: int) -> str | None:
    """The sentence telling people which images were re-encoded, if any were."""
    changed = [str(index + 1) for index, upload in enumerate(uploads) if upload.reencoded]
    if not changed:
        return None
    which = "Image " + changed[0] if len(changed) == 1 else "Images " + ", ".join(changed)
    return (
        f"{which} re-encoded as JPEG to fit this server's {format_size(limit)} upload limit; "
        "the original PNG (with its parameters) is kept."
    )


def format_size(size: int) -> str:
    """`10485760` → `10 MiB`, `20000` → `20 KiB`."""
    if size >= 2**20:
        return f"{size / 2**20:.0f} MiB"
    return f"{max(1, round(size / 1024))} KiB"
