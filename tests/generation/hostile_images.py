"""Hostile and unusual image files, built in memory, shared by the unit and end-to-end tests.

- `DISGUISES`: files of formats Pillow can read but Atelier must not decode, each to be sent as
  `something.png` (Discord sets the content type from the name).
- `BOMBS`: tiny files that declare huge images, above and below Pillow's own limit
  (`Image.MAX_IMAGE_PIXELS`, 89.5 MP; it raises from twice that).
- `TRUNCATED`: each accepted format cut off partway.
- `MODES`: every Pillow mode PNG, JPEG and WebP give, with the 8-bit RGB colour of the image.
- `DAMAGED_EXIF`: usable images of each format whose EXIF cannot be parsed.
- `many_scans_jpeg`: a valid progressive JPEG whose last scan is repeated, to any number of scans.
- `ghostscript_trap`: a stand-in `gs` that records every run, to put first on PATH.
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import EpsImagePlugin, Image, features

EPS = b"""%!PS-Adobe-3.0 EPSF-3.0
%%BoundingBox: 0 0 64 64
%%EndComments
(/tmp/atelier-pwned) (w) file closefile
newpath 0 0 moveto 64 64 lineto stroke
showpage
%%EOF
"""


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(size: tuple[int, int], mode: str = "RGB", seed: int = 7) -> Image.Image:
    rng = random.Random(seed)
    channels = len(mode)
    return Image.frombytes(mode, size, rng.randbytes(size[0] * size[1] * channels))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(
    width: int, height: int, *, depth: int = 8, colour: int = 0, rows: bytes | None = None
) -> bytes:
    """A PNG written by hand: IHDR as given, IDAT of `rows` (default: all zero, complete),
    IEND. `rows` may be short: then the file declares more than it holds."""
    samples = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    if rows is None:
        row = b"\0" + b"\0" * (width * samples * depth // 8)
        rows = row * height
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows, 9))
        + _chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) declares `width` x `height`."""
    data = bytearray(encoded(Image.new("RGB", (16, 16), "red"), "JPEG"))
    start = data.index(b"\xff\xc0")
    data[start + 5 : start + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_declaring(width: int, height: int) -> bytes:
    """A 34-byte lossless WebP whose header declares `width` x `height` (its pixel data is
    that of a 64 x 48 image, so a decoder gives up partway)."""
    data = bytearray(encoded(Image.new("L", (64, 48)), "WEBP", lossless=True, quality=0))
    (bits,) = struct.unpack("<I", data[21:25])
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    data[21:25] = struct.pack("<I", bits)
    return bytes(data)


def _disguises() -> dict[str, bytes]:
    picture = noise((32, 32))
    files = {"eps": EPS}
    for fmt in ("TIFF", "GIF", "BMP", "ICO", "PCX", "PPM", "TGA", "SGI", "DDS"):
        files[fmt.lower()] = encoded(picture, fmt)
    if features.check("jpg_2000"):
        files["jpeg2000"] = encoded(picture, "JPEG2000")
    if features.check("avif"):
        files["avif"] = encoded(picture, "AVIF")
    files["psd-header"] = b"8BPS\x00\x01" + b"\0" * 6 + struct.pack(">HIIHH", 3, 32, 32, 8, 3)
    files["svg"] = b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"/>'
    files["text"] = b"just some words"
    return files


DISGUISES = _disguises()

# name → a file declaring a huge image. Pillow itself refuses only from 2 x 89.5 MP on.
BOMBS: dict[str, Callable[[], bytes]] = {
    "png 30000x30000 (over Pillow's limit)": lambda: raw_png(30000, 30000, rows=b"\0" * 30001),
    "png 10000x10000 (between Pillow's warning and error)": lambda: raw_png(
        10000, 10000, rows=b"\0" * 10001
    ),
    "png 7000x7000, complete (under Pillow's limit)": lambda: raw_png(7000, 7000),
    "jpeg 60000x60000": lambda: jpeg_declaring(60000, 60000),
    "jpeg 7000x7000": lambda: jpeg_declaring(7000, 7000),
    "webp 16384x16384": lambda: webp_declaring(16384, 16384),
    "webp 7000x7000": lambda: webp_declaring(7000, 7000),
}


def _cut(data: bytes) -> bytes:
    return data[: len(data) * 6 // 10]


TRUNCATED: dict[str, bytes] = {
    "png": _cut(encoded(noise((128, 128)), "PNG")),
    "jpeg": _cut(encoded(noise((128, 128)), "JPEG", quality=90)),
    "progressive jpeg": _cut(encoded(noise((128, 128)), "JPEG", progressive=True)),
    "webp lossy": _cut(encoded(noise((128, 128)), "WEBP", quality=80)),
    "webp lossless": _cut(encoded(noise((128, 128)), "WEBP", lossless=True)),
}


@dataclass(frozen=True)
class ModeCase:
    """A uniform image in one Pillow mode of an accepted format, and its colour in 8-bit RGB
    (transparency over white); `tolerance` for lossy formats."""

    data: bytes
    rgb: tuple[int, int, int]
    tolerance: int = 1


def _uniform(mode: str, colour: object, fmt: str, **options: object) -> bytes:
    return encoded(Image.new(mode, (24, 16), colour), fmt, **options)  # type: ignore[arg-type]


def _palette(transparent: bool) -> bytes:
    image = Image.new("P", (24, 16), 1)
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    return encoded(image, "PNG", **({"transparency": 1} if transparent else {}))


def _rgb16(r: int, g: int, b: int) -> bytes:
    row = b"\0" + struct.pack(">HHH", r, g, b) * 24
    return raw_png(24, 16, depth=16, colour=2, rows=row * 16)


def _grey16(value: int) -> bytes:
    row = b"\0" + struct.pack(">H", value) * 24
    return raw_png(24, 16, depth=16, colour=0, rows=row * 16)


def _grey4(value: int) -> bytes:
    row = b"\0" + bytes([value << 4 | value]) * 12
    return raw_png(24, 16, depth=4, colour=0, rows=row * 16)


def _grey_alpha16(value: int, alpha: int) -> bytes:
    row = b"\0" + struct.pack(">HH", value, alpha) * 24
    return raw_png(24, 16, depth=16, colour=4, rows=row * 16)


def _grey16_transparent(value: int) -> bytes:
    """A 16-bit grey PNG whose tRNS chunk makes `value` (every pixel) transparent."""
    row = b"\0" + struct.pack(">H", value) * 24
    data = raw_png(24, 16, depth=16, colour=0, rows=row * 16)
    at = data.index(b"IDAT") - 4
    return data[:at] + _chunk(b"tRNS", struct.pack(">H", value)) + data[at:]


def _cmyk_rgb() -> tuple[int, int, int]:
    return Image.new("CMYK", (1, 1), (0, 128, 255, 0)).convert("RGB").getpixel((0, 0))  # type: ignore[return-value]


MODES: dict[str, ModeCase] = {
    "png 1": ModeCase(_uniform("1", 1, "PNG"), (255, 255, 255)),
    "png L": ModeCase(_uniform("L", 100, "PNG"), (100, 100, 100)),
    "png LA opaque": ModeCase(_uniform("LA", (100, 255), "PNG"), (100, 100, 100)),
    "png LA half transparent": ModeCase(_uniform("LA", (0, 128), "PNG"), (127, 127, 127)),
    "png P": ModeCase(_palette(False), (10, 20, 30)),
    "png P with a transparent colour": ModeCase(_palette(True), (255, 255, 255)),
    "png RGB": ModeCase(_uniform("RGB", (10, 20, 30), "PNG"), (10, 20, 30)),
    "png RGBA transparent": ModeCase(_uniform("RGBA", (10, 20, 30, 0), "PNG"), (255, 255, 255)),
    "png RGBA opaque": ModeCase(_uniform("RGBA", (10, 20, 30, 255), "PNG"), (10, 20, 30)),
    "png L with a tRNS grey": ModeCase(_uniform("L", 7, "PNG", transparency=7), (255, 255, 255)),
    "png RGB with a tRNS colour": ModeCase(
        _uniform("RGB", (10, 20, 30), "PNG", transparency=(10, 20, 30)), (255, 255, 255)
    ),
    "png 16-bit grey with a tRNS value": ModeCase(_grey16_transparent(0x4040), (255, 255, 255)),
    "png 16-bit grey (I;16)": ModeCase(_uniform("I;16", 0x8080, "PNG"), (128, 128, 128)),
    "png 16-bit grey, hand-written": ModeCase(_grey16(0x4040), (64, 64, 64)),
    "png 4-bit grey": ModeCase(_grey4(0x8), (136, 136, 136)),
    "png 16-bit grey + alpha": ModeCase(_grey_alpha16(0x8080, 0xFFFF), (128, 128, 128)),
    "png 48-bit RGB": ModeCase(_rgb16(0x1010, 0x8080, 0xF0F0), (16, 128, 240)),
    "jpeg L": ModeCase(_uniform("L", 100, "JPEG"), (100, 100, 100), 3),
    "jpeg RGB": ModeCase(_uniform("RGB", (200, 100, 50), "JPEG"), (200, 100, 50), 6),
    "jpeg CMYK": ModeCase(_uniform("CMYK", (0, 128, 255, 0), "JPEG"), _cmyk_rgb(), 6),
    "webp RGB lossless": ModeCase(
        _uniform("RGB", (10, 20, 30), "WEBP", lossless=True), (10, 20, 30)
    ),
    "webp RGBA transparent": ModeCase(
        _uniform("RGBA", (10, 20, 30, 0), "WEBP", lossless=True), (255, 255, 255)
    ),
    "webp lossy": ModeCase(_uniform("RGB", (200, 100, 50), "WEBP", quality=90), (200, 100, 50), 6),
}


_EXIF_DAMAGE = {
    "all 0xff": b"\xff" * 16,
    "big-endian header only": b"MM\x00*",
    "little-endian, IFD past the end": b"II*\x00\xff\xff\xff\x7f",
    "IFD entry of a huge count": bytes.fromhex(
        "4d4d002a00000008000101120003ffffffff0006000000000000"
    ),
}
# name → an image of colour (10, 20, 30) whose EXIF is damaged (JPEG carries it after "Exif\0\0")
DAMAGED_EXIF: dict[str, bytes] = {
    f"{fmt.lower()}, EXIF {label}": encoded(
        Image.new("RGB", (24, 16), (10, 20, 30)),
        fmt,
        exif=(b"Exif\x00\x00" if fmt == "JPEG" else b"") + damage,
        **({"lossless": True} if fmt == "WEBP" else {"quality": 95} if fmt == "JPEG" else {}),
    )
    for fmt in ("PNG", "WEBP", "JPEG")
    for label, damage in _EXIF_DAMAGE.items()
}


def many_scans_jpeg(scans: int, size: tuple[int, int] = (64, 48)) -> bytes:
    """A progressive JPEG (10 scans as libjpeg writes it) with its last scan repeated until it
    has `scans` scans: every decoder reads it, each scan another pass over the image."""
    data = encoded(Image.new("RGB", size, (90, 120, 200)), "JPEG", progressive=True)
    last = data.rindex(b"\xff\xda")
    end = data.rindex(b"\xff\xd9")
    assert data.count(b"\xff\xda") == 10
    assert scans >= 10
    return data[:end] + data[last:end] * (scans - 10) + data[end:]


def ghostscript_trap(folder: Path) -> Path:
    """Write a stand-in `gs` into `folder` that appends its arguments to a log, answers
    `--version` like Ghostscript and fails everything else; returns the log's path (absent
    while `gs` never ran). Put `folder` first on PATH, and forget what Pillow found before
    (`forget_ghostscript`)."""
    log = folder / "gs-runs.log"
    script = folder / "gs"
    script.write_text(
        f'#!/bin/sh\necho "$@" >> {log}\n'
        'if [ "$1" = "--version" ]; then echo 10.02.1; exit 0; fi\nexit 1\n'
    )
    script.chmod(0o755)
    return log


def forget_ghostscript() -> None:
    """Make Pillow look for `gs` on PATH again (it remembers the answer in the process)."""
    EpsImagePlugin.gs_binary = None


def path_with(folder: Path) -> str:
    return os.pathsep.join([str(folder), os.environ.get("PATH", "")])
