"""Draw the app's icons (static/icons/) without an image library: a lightning
bolt on the theme colour, as PNG files written with zlib.

Run again after changing the shape or colours: ``python scripts/make_icons.py``.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "static" / "icons"
THEME = (0x0B, 0x62, 0xD6)
WHITE = (0xFF, 0xFF, 0xFF)
# The bolt, in a 0..1 square (x, y), clockwise.
BOLT = [(0.58, 0.10), (0.26, 0.56), (0.47, 0.56), (0.40, 0.90), (0.74, 0.42), (0.53, 0.42)]


def _inside(x: float, y: float, polygon: list[tuple[float, float]]) -> bool:
    inside = False
    for (x1, y1), (x2, y2) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def _png(width: int, rows: list[bytes]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + row for row in rows)
    header = struct.pack(">IIBBBBB", width, len(rows), 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def icon(size: int, *, scale: float = 1.0) -> bytes:
    """The bolt on a full square of the theme colour; ``scale`` < 1 keeps it inside
    the safe zone of a maskable icon. Each pixel samples 4x4 points (smooth edges)."""
    polygon = [(0.5 + (x - 0.5) * scale, 0.5 + (y - 0.5) * scale) for x, y in BOLT]
    rows = []
    for py in range(size):
        row = bytearray()
        for px in range(size):
            hits = sum(
                _inside((px + (i + 0.5) / 4) / size, (py + (j + 0.5) / 4) / size, polygon)
                for i in range(4)
                for j in range(4)
            )
            share = hits / 16
            row += bytes(round(t + (w - t) * share) for t, w in zip(THEME, WHITE, strict=True))
        rows.append(bytes(row))
    return _png(size, rows)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for size in (192, 512):
        (OUT / f"icon-{size}.png").write_bytes(icon(size))
    (OUT / "icon-maskable-512.png").write_bytes(icon(512, scale=0.7))


if __name__ == "__main__":
    main()
