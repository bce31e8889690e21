"""A person's attachment (an img2img init image) in: bounded download, checked, made canonical.

Nothing about an attachment is trusted: its name, its content type (Discord derives it from the
name, and sometimes sends none) and its declared size only decide what to refuse early. What
counts is the bytes: `generation.input_images.canonical_png` decides the format from them
(PNG, JPEG or WebP only), checks the pixel count from the header, decodes in full and re-encodes;
the job stores that canonical PNG, never the uploaded bytes. The download is bounded in time
(`timeout_s`) and size (`MAX_BYTES`, counted as it arrives), decodes run at most a few at a time
(the caller's semaphore), and every failure is one sentence, composed here with the file name
escaped once (`plain`) and raised as a `UserError`, shown as it is.
"""

from __future__ import annotations

import asyncio

import aiohttp
import discord

from bot.errors import UserError
from bot.ui.text import plain
from generation.input_images import (
    ACCEPTED_TEXT,
    MAX_BYTES,
    MAX_PIXELS,
    UnusableImage,
    canonical_png,
)

_CHUNK = 64 * 1024


async def read_init_image(
    attachment: discord.Attachment, timeout_s: float, decodes: asyncio.Semaphore
) -> bytes:
    """The canonical PNG of `attachment`, decoded while holding `decodes`; `UserError` with a
    sentence when the declared size is too large, the download fails, stalls past `timeout_s`
    or grows past `MAX_BYTES`, or the bytes are not a usable PNG, JPEG or WebP image."""
    name = plain(attachment.filename, 100)
    if attachment.size > MAX_BYTES:
        raise UserError(f"{name} is larger than {MAX_BYTES // 2**20} MiB.")
    data = await _download(attachment.url, name, timeout_s)
    try:
        async with decodes:
            return await asyncio.to_thread(canonical_png, data)
    except UnusableImage as error:
        raise UserError(f"{name}: {error.message}") from None


async def _download(url: str, name: str, timeout_s: float) -> bytes:
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            if response.status != 200:
                raise UserError(
                    f"Discord did not hand over {name} (HTTP {response.status}); "
                    "upload it again in a moment.",
                )
            data = bytearray()
            async for chunk in response.content.iter_chunked(_CHUNK):
                data += chunk
                if len(data) > MAX_BYTES:
                    raise UserError(f"{name} is larger than {MAX_BYTES // 2**20} MiB.")
            return bytes(data)
    except TimeoutError:
        raise UserError(
            f"{name} did not arrive within {timeout_s:g} s; upload it again in a moment.",
        ) from None
    except aiohttp.ClientError:
        raise UserError(f"{name} could not be downloaded from Discord; upload it again.") from None


def accepted_summary() -> str:
    """For help texts: `PNG, JPEG or WebP, up to 25 MiB and 40 megapixels`."""
    megapixels = MAX_PIXELS // 1_000_000
    return f"{ACCEPTED_TEXT}, up to {MAX_BYTES // 2**20} MiB and {megapixels} megapixels"
