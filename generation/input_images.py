"""Images that come from people (img2img init images, future reference images): untrusted bytes.

Only PNG, JPEG and WebP are ever decoded, decided from the bytes (`Image.open(formats=...)`), so
no other Pillow plug-in (PostScript through Ghostscript, TIFF, GIF, ...) runs on anything a
person sent. The dimensions are read from the header and checked against `MAX_PIXELS` before
any pixel is decoded; then the image is decoded in full, so a truncated file is refused here and
not on a GPU worker.

The bot turns an upload into a canonical image (`canonical_png`): upright (EXIF orientation
applied), 8-bit RGB, PNG without metadata. That is what jobs store and what workers get. The
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

# Modes Pillow gives for the accepted formats, and how each becomes 8-bit RGB.
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}  # PNG 16-bit greyscale
_WITH_ALPHA = {"LA", "La", "PA", "RGBA", "RGBa"}
_PLAIN = {"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr"}


class UnusableImage(ValueError):
    """The bytes are not an image Atelier takes; `message` says why, for the person."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def _open(data: bytes) -> Image.Image:
    """`data` opened lazily as PNG, JPEG or WebP, with its size checked; no pixel decoded."""
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
def opened(data: bytes) -> Iterator[Image.Image]:
    """`data` opened as PNG, JPEG or WebP, its size checked, its pixels decoded in full.

    Raises `UnusableImage` for another format, more than `MAX_PIXELS` pixels, or a damaged or
    truncated file.
    """
    with _open(data) as image:
        try:
            image.load()
        except (OSError, SyntaxError, ValueError, EOFError):
            raise UnusableImage(DAMAGED) from None
        yield image


def _too_large(what: str) -> str:
    megapixels = MAX_PIXELS // 1_000_000
    return f"{what} is too large: Atelier takes images of up to {megapixels} megapixels."


def canonical_png(data: bytes) -> bytes:
    """The canonical form of an uploaded image: upright, 8-bit RGB, at most
    `CANONICAL_MAX_PIXELS` (larger images are scaled down, aspect kept), a PNG without metadata.

    16-bit greyscale is scaled to 8 bits; transparency is flattened onto white (as a viewer
    shows it on a light background). Raises `UnusableImage` (see `opened`), also for a mode the
    accepted formats should not produce.
    """
    with opened(data) as image:
        rgb = to_rgb(ImageOps.exif_transpose(image))
    pixels = rgb.width * rgb.height
    if pixels > CANONICAL_MAX_PIXELS:
        scale = math.sqrt(CANONICAL_MAX_PIXELS / pixels)
        size = (max(1, int(rgb.width * scale)), max(1, int(rgb.height * scale)))
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` as 8-bit RGB; `UnusableImage` for a mode PNG, JPEG or WebP do not produce."""
    mode = image.mode
    if mode in _SIXTEEN_BIT:
        import numpy as np  # here: the bot imports this module, and rarely needs NumPy

        values = np.asarray(image, dtype=np.float64)
        grey = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode in _WITH_ALPHA or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in _PLAIN:
        return image.convert("RGB")
    raise UnusableImage(f"Atelier cannot read images in Pillow mode {mode!r}.")


def open_for_pipeline(data: bytes) -> Image.Image:
    """A stored init image as the worker gives it to the pipeline: upright, RGB.

    Same checks as `opened`. The conversion (`exif_transpose`, `convert("RGB")`) is the one jobs
    ran with before init images were canonical; for a canonical image it changes nothing.
    """
    with opened(data) as image:
        return ImageOps.exif_transpose(image).convert("RGB")
