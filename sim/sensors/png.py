"""A tiny PNG writer and reader built on zlib (no imaging library needed).

`write_png` stores 8-bit greyscale (H, W) or RGB (H, W, 3) and 16-bit greyscale
(H, W) uint16 with filter type 0 on every row. `read_png` reads what
`write_png` writes (8/16-bit grey, 8-bit RGB, any of the five row filters,
no interlace, no palette).
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray, level: int = 6) -> bytes:
    a = np.asarray(image)
    if a.ndim == 2 and a.dtype == np.uint8:
        depth, colour, rows = 8, 0, a
    elif a.ndim == 2 and a.dtype == np.uint16:
        depth, colour, rows = 16, 0, a.astype(">u2").view(np.uint8).reshape(a.shape[0], -1)
    elif a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.uint8:
        depth, colour, rows = 8, 2, a.reshape(a.shape[0], -1)
    else:
        raise ValueError(f"write_png: expected (H, W) uint8/uint16 or (H, W, 3) uint8, got {a.shape} {a.dtype}")
    h, w = a.shape[:2]
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), rows], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, level)) + _chunk(b"IEND", b"")


def write_png(path: str | Path, image: np.ndarray, level: int = 6) -> None:
    Path(path).write_bytes(encode_png(image, level))


def _unfilter(data: bytes, h: int, stride: int, bpp: int) -> np.ndarray:
    out = np.zeros((h, stride), dtype=np.uint8)
    rows = np.frombuffer(data, dtype=np.uint8).reshape(h, stride + 1)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(h):
        kind, line = rows[y, 0], rows[y, 1:].astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 2:
            cur = (line + prev) & 0xFF
        else:  # sub, average, paeth depend on the pixel to the left: go byte by byte
            cur = np.zeros(stride, dtype=np.int32)
            for x in range(stride):
                left = cur[x - bpp] if x >= bpp else 0
                up = prev[x]
                if kind == 1:
                    pred = left
                elif kind == 3:
                    pred = (left + up) >> 1
                else:
                    ul = prev[x - bpp] if x >= bpp else 0
                    p = left + up - ul
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - ul)
                    pred = left if pa <= pb and pa <= pc else (up if pb <= pc else ul)
                cur[x] = (line[x] + pred) & 0xFF
        out[y] = cur
        prev = cur
    return out


def read_png(path: str | Path) -> np.ndarray:
    blob = Path(path).read_bytes()
    if blob[:8] != _SIGNATURE:
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, header = 8, [], None
    while pos < len(blob):
        (n,), kind = struct.unpack(">I", blob[pos:pos + 4]), blob[pos + 4:pos + 8]
        data = blob[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", data)
        elif kind == b"IDAT":
            idat.append(data)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError(f"{path}: no IHDR chunk")
    w, h, depth, colour, _, _, interlace = header
    channels = {0: 1, 2: 3}.get(colour)
    if channels is None or interlace or depth not in (8, 16) or (depth == 16 and channels != 1):
        raise ValueError(f"{path}: unsupported PNG (bit depth {depth}, colour type {colour}, interlace {interlace})")
    bpp = channels * depth // 8
    rows = _unfilter(zlib.decompress(b"".join(idat)), h, w * bpp, bpp)
    if depth == 16:
        return rows.view(">u2").reshape(h, w).astype(np.uint16)
    return rows.reshape(h, w, channels) if channels == 3 else rows.reshape(h, w)
