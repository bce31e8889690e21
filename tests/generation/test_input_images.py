"""Untrusted images: only PNG, JPEG and WebP are decoded, sizes are capped from the header, files
are decoded in full, every mode becomes the right 8-bit RGB, and old init images still give
the pixels their jobs ran with."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageFile, ImageOps

from generation.input_images import (
    CANONICAL_MAX_PIXELS,
    DAMAGED,
    MAX_BYTES,
    MAX_PIXELS,
    UnusableImage,
    canonical_png,
    check_header,
    open_for_pipeline,
)
from generation.jpeg_scans import MAX_JPEG_SCANS, too_many_scans
from tests.generation.hostile_images import (
    BOMBS,
    DAMAGED_EXIF,
    DISGUISES,
    EPS,
    MODES,
    TRUNCATED,
    encoded,
    forget_ghostscript,
    ghostscript_trap,
    many_scans_jpeg,
    noise,
    path_with,
)


@pytest.fixture
def gs_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    log = ghostscript_trap(tmp_path)
    monkeypatch.setenv("PATH", path_with(tmp_path))
    forget_ghostscript()
    yield log
    forget_ghostscript()


def test_the_ghostscript_trap_catches_pillow_running_gs(gs_log: Path) -> None:
    # the control: Pillow left to itself decodes PostScript with gs (the attack of the issue)
    with pytest.raises(subprocess.CalledProcessError), Image.open(io.BytesIO(EPS)) as image:
        image.load()
    assert gs_log.exists()


@pytest.mark.parametrize("name", sorted(DISGUISES))
@pytest.mark.parametrize("check", [canonical_png, open_for_pipeline, check_header])
def test_other_formats_are_refused_without_running_their_decoder(
    name: str, check: object, gs_log: Path
) -> None:
    with pytest.raises(UnusableImage) as refused:
        check(DISGUISES[name])  # type: ignore[operator]

    assert refused.value.message == "That file is not a PNG, JPEG or WebP image."
    assert not gs_log.exists()


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's, from 89 MP
@pytest.mark.parametrize("name", sorted(BOMBS))
@pytest.mark.parametrize("check", [canonical_png, open_for_pipeline, check_header])
def test_bombs_are_refused_from_their_header(
    name: str, check: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = BOMBS[name]()

    def decode(image: ImageFile.ImageFile) -> None:
        raise AssertionError(f"{image.size} decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)
    with pytest.raises(UnusableImage) as refused:
        check(data)  # type: ignore[operator]

    assert "Atelier takes images of up to 40 megapixels" in refused.value.message


def test_the_pixel_cap_itself_is_accepted() -> None:
    side = int(MAX_PIXELS**0.5)
    data = encoded(Image.new("L", (side, side)), "PNG")

    assert check_header(data) == (side, side)


@pytest.mark.parametrize("name", sorted(TRUNCATED))
@pytest.mark.parametrize("check", [canonical_png, open_for_pipeline])
def test_truncated_files_are_refused_when_checked(name: str, check: object) -> None:
    with pytest.raises(UnusableImage) as refused:
        check(TRUNCATED[name])  # type: ignore[operator]

    assert refused.value.message == DAMAGED


@pytest.mark.parametrize("name", sorted(MODES))
def test_every_mode_becomes_its_colour_in_8_bit_rgb(name: str) -> None:
    case = MODES[name]

    canonical = canonical_png(case.data)

    with Image.open(io.BytesIO(canonical)) as image:
        assert (image.format, image.mode) == ("PNG", "RGB")
        assert not {"exif", "icc_profile", "dpi"} & set(image.info)
        pixel = image.getpixel((5, 5))
    assert all(abs(a - b) <= case.tolerance for a, b in zip(pixel, case.rgb, strict=True)), pixel


def test_canonical_images_are_upright() -> None:
    picture = Image.new("RGB", (40, 20), "red")
    exif = picture.getexif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    data = encoded(picture, "JPEG", exif=exif.tobytes())

    with Image.open(io.BytesIO(canonical_png(data))) as image:
        assert image.size == (20, 40)


@pytest.mark.parametrize("name", sorted(MODES))
def test_the_worker_gives_a_canonical_image_to_the_pipeline_unchanged(name: str) -> None:
    canonical = canonical_png(MODES[name].data)

    with Image.open(io.BytesIO(canonical)) as image:
        expected = image.tobytes()
    assert open_for_pipeline(canonical).tobytes() == expected


@pytest.mark.parametrize(
    "name", ["png 16-bit grey (I;16)", "png RGBA transparent", "jpeg CMYK", "png P"]
)
def test_init_images_stored_before_canonical_images_give_the_same_pixels_as_before(
    name: str,
) -> None:
    # what the worker did before this change: exif_transpose, then convert("RGB")
    data = MODES[name].data
    with Image.open(io.BytesIO(data)) as image:
        before = ImageOps.exif_transpose(image).convert("RGB").tobytes()

    assert open_for_pipeline(data).tobytes() == before


def test_a_canonical_image_is_the_same_bytes_every_time() -> None:
    data = encoded(noise((64, 48)), "JPEG")

    assert canonical_png(data) == canonical_png(data)


def test_a_large_photo_is_kept_at_twice_the_largest_model_size_and_within_the_byte_cap() -> None:
    data = encoded(noise((6000, 4000)), "JPEG", quality=95)  # 24 MP, incompressible

    canonical = canonical_png(data)

    with Image.open(io.BytesIO(canonical)) as image:
        assert image.width * image.height <= CANONICAL_MAX_PIXELS
        assert abs(image.width / image.height - 1.5) < 0.01
        assert min(image.size) >= 2048 * 0.8
    assert len(canonical) <= MAX_BYTES


@pytest.mark.parametrize("check", [canonical_png, open_for_pipeline, check_header])
def test_a_jpeg_of_too_many_scans_is_refused_from_its_markers(
    check: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = many_scans_jpeg(MAX_JPEG_SCANS + 1)

    def decode(image: ImageFile.ImageFile) -> None:
        raise AssertionError(f"{image.size} decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)
    with pytest.raises(UnusableImage) as refused:
        check(data)  # type: ignore[operator]

    assert f"more than {MAX_JPEG_SCANS} progressive scans" in refused.value.message


def test_a_jpeg_of_the_scan_limit_is_accepted() -> None:
    with Image.open(io.BytesIO(canonical_png(many_scans_jpeg(MAX_JPEG_SCANS)))) as image:
        assert image.getpixel((5, 5)) == pytest.approx((90, 120, 200), abs=6)


def test_scans_are_counted_from_markers_not_from_bytes_that_look_like_one() -> None:
    # an SOS marker inside a comment segment and an EXIF thumbnail's own scans do not count
    picture = Image.new("RGB", (32, 32), "blue")
    thumbnail = encoded(picture, "JPEG", progressive=True)
    data = encoded(picture, "JPEG", exif=b"Exif\x00\x00" + thumbnail * 12)
    comment = b"\xff\xfe" + (2 + 2 * 200).to_bytes(2, "big") + b"\xff\xda" * 200
    data = data[:2] + comment + data[2:]

    assert not too_many_scans(data)
    assert canonical_png(data)


@pytest.mark.parametrize("name", sorted(DAMAGED_EXIF))
@pytest.mark.parametrize("check", [canonical_png, open_for_pipeline])
def test_damaged_exif_is_ignored(name: str, check: object) -> None:
    result = check(DAMAGED_EXIF[name])  # type: ignore[operator]

    image = Image.open(io.BytesIO(result)) if isinstance(result, bytes) else result
    assert image.size == (24, 16)
    assert image.convert("RGB").getpixel((5, 5)) == pytest.approx((10, 20, 30), abs=3)


def test_an_icc_profile_is_converted_to_srgb_and_an_unusable_one_ignored() -> None:
    from PIL import ImageCms

    picture = Image.new("RGB", (24, 16), (10, 20, 30))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    # sRGB with its red and blue primaries swapped: (10, 20, 30) there is about (30, 20, 10)
    swapped = _with_tags_swapped(srgb, b"rXYZ", b"bXYZ")

    def colour(**options: object) -> tuple[int, int, int]:
        with Image.open(io.BytesIO(canonical_png(encoded(picture, "PNG", **options)))) as image:
            assert "icc_profile" not in image.info
            return image.getpixel((5, 5))  # type: ignore[return-value]

    assert colour(icc_profile=srgb) == pytest.approx((10, 20, 30), abs=1)
    assert colour(icc_profile=b"not a profile") == (10, 20, 30)
    red, _, blue = colour(icc_profile=swapped)
    assert red > 20 > blue


def _with_tags_swapped(profile: bytes, first: bytes, second: bytes) -> bytes:
    """An ICC profile whose tag table points `first` at `second`'s data and back (ICC.1 7.3)."""
    data = bytearray(profile)
    count = int.from_bytes(data[128:132], "big")
    entries = {bytes(data[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    a, b = entries[first] + 4, entries[second] + 4
    data[a : a + 8], data[b : b + 8] = data[b : b + 8], data[a : a + 8]
    return bytes(data)
