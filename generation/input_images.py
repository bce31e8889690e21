"""Images that come from people (img2img init images, future reference images): untrusted bytes.

Only PNG, JPEG and WebP are ever decoded, decided from the bytes (`Image.open(formats=...)`), so
no other Pillow plug-in (PostScript through Ghostscript, TIFF, GIF, ...) runs on anything a
person sent. The dimensions are read from the header and checked against `MAX_PIXELS` before
any pixel is decoded; then the image is decoded in full, so a truncated file is refused here and
not on a GPU worker.

A JPEG with more scans than `MAX_JPEG_SCANS` is refused from its markers before decoding
(decoding time grows with the scans, see `generation.jpeg_scans`).

The bot turns an upload into a canonical image (`canonical_png`): upright (EXIF orientation
applied; damaged EXIF ignored), colours converted to sRGB from an embedded ICC profile, 8-bit
RGB with transparency (alpha or a PNG tRNS colour) flattened onto white, PNG without metadata.
It works in bounded memory: a JPEG larger than the canonical size is decoded at a reduced scale
(libjpeg's DCT scaling), 16-bit images are scaled to 8 bits in strips, and the image is scaled
down in its own mode before the conversions, so no full-size copy in a wider mode is made.
Measured peaks above the interpreter at 40 MP: 16-bit grey PNG 150 MB, RGB PNG 260 MB, RGBA
PNG 410 MB (Pillow's resize premultiplies alpha in a copy), a large JPEG far less; about
11 bytes per pixel at most. The canonical image is what jobs store and what workers get. The
worker opens it again with the same checks (`open_for_pipeline`); for a canonical image its
conversion changes nothing, and for an init image stored before canonical images existed it is
exactly the conversion those jobs ran with, so they rerun identically.

This module needs only Pillow (and NumPy for 16-bit images): the bot process uses it too.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image, ImageOps, UnidentifiedImageError

from generation.jpeg_scans import MAX_JPEG_SCANS, too_many_scans

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
# A few times the largest image any built-in model makes (2048 x 2048 = 4.2 MP), far below
# Pillow's own decompression-bomb limit (89.5 MP): 40 MP of RGB is 120 MB decoded.
MAX_PIXELS = 40_000_000
# What a job keeps: twice the pixels of the largest image a model makes, so that cropping and
# scaling to any size and aspect a model takes never enlarges it; as an RGB PNG that is at most
# 24 MiB even for pure noise, under MAX_BYTES.
CANONICAL_MAX_PIXELS = 2 * 2048 * 2048
MAX_BYTES = 25 * 2**20  # what an upload may weigh (Discord's default limit for people is 10 MiB)
ACCEPTED_TEXT = "PNG, JPEG or WebP"
DAMAGED = "That image is damaged or cut off; upload it again."

# Pillow warns from 89.5 MP on; `opened` refuses far smaller images itself.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# Damaged EXIF is ignored (`_orientation`); Pillow's warnings about it would only fill the log.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")

# Modes Pillow gives for the accepted formats, and how each becomes 8-bit RGB.
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}  # PNG 16-bit greyscale
_WITH_ALPHA = {"LA", "La", "PA", "RGBA", "RGBa"}
_PLAIN = {"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr"}
_STRIP_PIXELS = 2**20  # 16-bit images are scaled to 8 bits this many pixels at a time
# EXIF orientation → the transpose that makes the image upright (as `ImageOps.exif_transpose`)
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class UnusableImage(ValueError):
    """The bytes are not an image Atelier takes; `message` says why, for the person."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def _open(data: bytes) -> Image.Image:
    """`data` opened lazily as PNG, JPEG or WebP, with its size (and a JPEG's number of scans)
    checked; no pixel decoded."""
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise UnusableImage(f"That file is not a {ACCEPTED_TEXT} image.") from None
    except Image.DecompressionBombError:  # over twice Pillow's limit: far over ours
        raise UnusableImage(_too_large("That image")) from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise UnusableImage(DAMAGED) from None
    width, height = image.size
    if width * height > MAX_PIXELS or width == 0 or height == 0:
        image.close()
        what = f"That image ({width}x{height} pixels)"
        raise UnusableImage(_too_large(what) if width and height else f"{what} has no pixels.")
    if image.format == "JPEG" and too_many_scans(data):
        image.close()
        raise UnusableImage(
            f"That JPEG has more than {MAX_JPEG_SCANS} progressive scans (cameras and editors "
            "write about 10); save it again as an ordinary JPEG or a PNG."
        )
    return image


def check_header(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, JPEG or WebP image with at most `MAX_PIXELS` pixels, read
    from its header alone (cheap: for checks on the event loop); raises `UnusableImage`."""
    with _open(data) as image:
        return image.size


def upright_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an accepted image as seen upright (after its EXIF orientation), from
    its header alone; raises `UnusableImage` like `check_header`."""
    with _open(data) as image:
        width, height = image.size
        try:
            orientation = image.getexif().get(ImageOps.ExifTags.Base.Orientation, 1)
        except (OSError, SyntaxError, ValueError):  # unreadable EXIF: the pixels as stored
            orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


@contextmanager
def opened(data: bytes, draft_pixels: int | None = None) -> Iterator[Image.Image]:
    """`data` opened as PNG, JPEG or WebP, its size checked, its pixels decoded in full (a JPEG
    with more than `draft_pixels` pixels at the smallest DCT scale that keeps at least that many).

    Raises `UnusableImage` for another format, more than `MAX_PIXELS` pixels, more than
    `MAX_JPEG_SCANS` scans, or a damaged or truncated file.
    """
    with _open(data) as image:
        try:
            width, height = image.size
            if draft_pixels and image.format == "JPEG" and width * height > draft_pixels:
                scale = math.sqrt(draft_pixels / (width * height))
                image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))
            image.load()
        except (OSError, SyntaxError, ValueError, EOFError):
            raise UnusableImage(DAMAGED) from None
        yield image


def _too_large(what: str) -> str:
    megapixels = MAX_PIXELS // 1_000_000
    return f"{what} is too large: Atelier takes images of up to {megapixels} megapixels."


def canonical_png(data: bytes) -> bytes:
    """The canonical form of an uploaded image: upright, sRGB, 8-bit RGB, at most
    `CANONICAL_MAX_PIXELS` (larger images are scaled down, aspect kept), a PNG without metadata.

    16-bit images are scaled to 8 bits; transparency (alpha, or a PNG's tRNS colour) is
    flattened onto white (as a viewer shows it on a light background); an ICC profile is
    converted to sRGB (ignored when unusable), and so is damaged EXIF. Raises `UnusableImage`
    (see `opened`), also for a mode the accepted formats should not produce.
    """
    with opened(data, draft_pixels=CANONICAL_MAX_PIXELS) as image:
        orientation = _orientation(image)
        profile = image.info.get("icc_profile")
        eight_bit = _shrunk(_eight_bit(image))
    rgb = _flattened(_in_srgb(eight_bit, profile))
    if orientation in _UPRIGHT:
        rgb = rgb.transpose(_UPRIGHT[orientation])
    rgb.info = {}  # no metadata (a converted image names its sRGB profile)
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _orientation(image: Image.Image) -> int:
    """The EXIF (or XMP) orientation, 1 (as stored) when there is none or it is unreadable:
    metadata is not what was asked for, so damaged EXIF never refuses an image."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # hostile EXIF raises whatever its parser meets: SyntaxError, struct.error…
        return 1
    return orientation if isinstance(orientation, int) else 1


def _eight_bit(image: Image.Image) -> Image.Image:
    """`image` in an 8-bit mode without a palette: L, LA, RGB, RGBA or CMYK (kept for its ICC
    profile); a tRNS colour becomes alpha. `UnusableImage` for a mode PNG, JPEG or WebP do not
    produce."""
    mode, transparency = image.mode, image.info.get("transparency")
    if mode in _SIXTEEN_BIT:
        grey = _sixteen_to_eight(image)
        if isinstance(transparency, int):  # tRNS: the one fully transparent grey value
            alpha = _sixteen_to_eight(image, transparent=transparency)
            grey.putalpha(alpha)
        return grey
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK") and (transparency is None or "A" in mode):
        return image  # no copy
    if mode in ("L", "RGB"):  # with a tRNS colour
        return image.convert("LA" if mode == "L" else "RGBA")
    if mode in _WITH_ALPHA or (mode == "P" and transparency is not None):
        return image.convert("LA" if mode == "La" else "RGBA")
    if mode in _PLAIN:
        return image.convert("L" if mode == "1" else "RGB")
    raise UnusableImage(f"Atelier cannot read images in Pillow mode {mode!r}.")


def _sixteen_to_eight(image: Image.Image, transparent: int | None = None) -> Image.Image:
    """A 16-bit grey image as 8-bit grey (value / 257, rounded), or with `transparent` its
    alpha (0 where the value is `transparent`, else 255); strip by strip, so the only full-size
    copy is the 8-bit result."""
    import numpy as np  # here: the bot imports this module, and rarely needs NumPy

    width, height = image.size
    out = np.empty((height, width), dtype=np.uint8)
    rows = max(1, _STRIP_PIXELS // width)
    for top in range(0, height, rows):
        strip = np.asarray(image.crop((0, top, width, min(height, top + rows))), dtype=np.int64)
        if transparent is None:
            out[top : top + rows] = np.clip((strip + 128) // 257, 0, 255)
        else:
            out[top : top + rows] = np.where(strip == transparent, 0, 255)
    return Image.fromarray(out, mode="L")


def _shrunk(image: Image.Image) -> Image.Image:
    """`image` scaled down (aspect kept, Lanczos) to at most `CANONICAL_MAX_PIXELS`."""
    pixels = image.width * image.height
    if pixels <= CANONICAL_MAX_PIXELS:
        return image
    scale = math.sqrt(CANONICAL_MAX_PIXELS / pixels)
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _in_srgb(image: Image.Image, profile: bytes | None) -> Image.Image:
    """`image` (L, LA, RGB, RGBA or CMYK) with colours in sRGB: converted from its ICC
    `profile`, or taken as sRGB already when it has none or the profile does not fit."""
    if profile:
        from PIL import ImageCms  # here: most images carry no profile

        alpha = image.getchannel("A") if image.mode in ("LA", "RGBA") else None
        base = image.convert(image.mode[:-1]) if alpha is not None else image
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            converted = ImageCms.profileToProfile(
                base, source, ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            converted = None
        if converted is not None:
            if alpha is not None:
                converted.putalpha(alpha)
            return converted
    return image.convert("RGB") if image.mode == "CMYK" else image


def _flattened(image: Image.Image) -> Image.Image:
    """`image` as RGB, its transparency composited onto white."""
    if image.mode in ("LA", "RGBA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def open_for_pipeline(data: bytes) -> Image.Image:
    """A stored init image as the worker gives it to the pipeline: upright, RGB.

    Same checks as `opened`. The conversion (`exif_transpose`, `convert("RGB")`) is the one jobs
    ran with before init images were canonical; for a canonical image it changes nothing.
    Damaged EXIF is ignored (such an image is used as stored), never an error.
    """
    with opened(data) as image:
        try:
            upright = ImageOps.exif_transpose(image)
        except Exception:  # hostile EXIF: see `_orientation`
            upright = image
        return upright.convert("RGB")
