"""A decompression bomb for the pixel-budget tests: a valid PNG header claiming a huge image, a few hundred bytes.

Its pixel data is cut short (PIL fills in the rest), so the file stays tiny while decoding it would still take
the full claimed size in memory: 300 MB for the default 10000x9999, the case that stalled the Gradio demo."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png_bytes(width: int = 10000, height: int = 9999) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * (1 + 3 * width) * 4)  # four rows of the claimed thousands
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def bomb_png(path: Path, width: int = 10000, height: int = 9999) -> Path:
    path.write_bytes(bomb_png_bytes(width, height))
    return path
