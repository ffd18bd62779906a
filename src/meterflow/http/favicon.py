"""/favicon.ico: a small icon (a blue square with a white bar chart), made here rather than
shipped as a binary: an ICO file holding one 32x32 PNG. Browsers ask for it on every page of
the console, the portal and GraphiQL; a 404 each time was noise in every log."""

from __future__ import annotations

import struct
import zlib

from starlette.requests import Request
from starlette.responses import Response

SIZE = 32
BLUE = (11, 87, 208, 255)
WHITE = (255, 255, 255, 255)
BARS = ((6, 12, 18), (13, 8, 18), (20, 4, 18))  # (left, top, height in px from the bottom)


def _pixel(x: int, y: int) -> tuple[int, int, int, int]:
    for left, top, _ in BARS:
        if left <= x < left + 5 and top + 6 <= y < SIZE - 6:
            return WHITE
    return BLUE


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png() -> bytes:
    rows = b"".join(
        b"\x00" + b"".join(bytes(_pixel(x, y)) for x in range(SIZE)) for y in range(SIZE)
    )
    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows, 9))
        + _chunk(b"IEND", b"")
    )


def _ico(png: bytes) -> bytes:
    directory = struct.pack("<HHH", 0, 1, 1)  # reserved, type icon, one image
    entry = struct.pack("<BBBBHHII", SIZE, SIZE, 0, 0, 1, 32, len(png), 6 + 16)
    return directory + entry + png


ICON = _ico(_png())


async def favicon(_request: Request) -> Response:
    return Response(
        ICON, media_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"}
    )
