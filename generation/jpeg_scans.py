"""Counting the scans of a JPEG from its markers, before any decoding.

A progressive JPEG is decoded scan by scan, each scan a pass over the whole image's
coefficients, so decoding time grows with the number of scans, not with the file size: a
0.24 MiB file of 40 megapixels that repeats an empty scan hundreds of times takes seconds, and
25 MiB of them hours. libjpeg-turbo leaves the bound to the application: `djpeg -maxscans N`
("abort if the input image contains more than N scans", usage.txt) and TurboJPEG's
`TJPARAM_SCANLIMIT` exist to guard against such crafted images (the Cure53 audit of
libjpeg-turbo, 2018); NVIDIA's nvImageCodec refuses more than 256 by default. The encoders
people use write far fewer: libjpeg's standard progression 10 scans for colour (6 for grey),
mozjpeg's optimised ones about as many. Measured here (one core, 8000 x 5000, an empty scan
repeated): 10 scans 0.9 s, 32 scans 1.4 s, 64 scans 3.1 s, 100 scans 4.1 s for the whole
canonical conversion; so the limit is 32, three times what encoders write.
"""

from __future__ import annotations

import re

MAX_JPEG_SCANS = 32
_SOS = 0xDA
_EOI = 0xD9
# A marker inside entropy-coded data: 0xFF followed by anything but a stuffed 0x00, a restart
# marker (0xD0-0xD7) or a fill byte 0xFF (ITU-T T.81, B.1.1.2 and B.1.1.5).
_NEXT_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")
_MAX_MARKERS = 40 * MAX_JPEG_SCANS  # tables and APPn segments between scans, generously


def too_many_scans(data: bytes) -> bool:
    """Whether the JPEG `data` has more than `MAX_JPEG_SCANS` scans (or more markers than any
    such JPEG has). Reads markers and segment lengths only; a damaged file is left to the
    decoder, which refuses it."""
    scans = markers = 0
    position = 2  # after SOI
    while position + 4 <= len(data) and markers <= _MAX_MARKERS:
        if data[position] != 0xFF:
            return False  # damaged: the decoder says so
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        markers += 1
        if marker == _EOI:
            return False
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            position += 2
            continue
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == _SOS:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                return True
            found = _NEXT_MARKER.search(data, position)
            if found is None:
                return False
            position = found.start()
    return markers > _MAX_MARKERS
