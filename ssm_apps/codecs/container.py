"""The ``.ssmc`` container: a versioned, checksummed header around the entropy-coded payloads.

Layout (big-endian)::

    magic    4 bytes  b"SSMC"
    version  u8       1
    model_id u8 length + ASCII (e.g. "cmamba-small-mse")
    weights  8 bytes  first 8 bytes of the SHA-256 of the model's state_dict (see ``weights_hash``)
    quality  u8       1 = lowest rate
    height   u32      original image height
    width    u32      original image width
    colour   u8       0 RGB, 1 grayscale (coded as RGB), 2 RGBA (alpha dropped)
    count    u8       number of payloads, then ``count`` u32 lengths, then the payloads
    crc32    u32      CRC-32 of every byte before it

``unpack`` refuses, with a ``BitstreamError`` naming the problem, anything that is not exactly such a
file: wrong magic or version, truncated or overlong data, a CRC mismatch (a flipped byte).
"""
from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

import torch

MAGIC = b"SSMC"
VERSION = 1
COLOUR_MODES = ("rgb", "gray", "rgba")
_FIXED = struct.Struct(">8sBIIBB")  # weights hash, quality, height, width, colour, count


class BitstreamError(ValueError):
    """A .ssmc file that cannot be decoded (corrupted, truncated, other version or other weights)."""


@dataclass(frozen=True)
class Header:
    """What a .ssmc file says about its image and the model that coded it."""

    model_id: str
    weights_hash: bytes
    quality: int
    height: int
    width: int
    colour_mode: str


def weights_hash(model: torch.nn.Module) -> bytes:
    """First 8 bytes of the SHA-256 over the state_dict (names, dtypes, shapes and values, in key order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.digest()[:8]


def pack(header: Header, payloads: list[bytes]) -> bytes:
    """Header + payloads -> the bytes of a .ssmc file."""
    model_id = header.model_id.encode("ascii")
    if not 0 < len(model_id) < 256:
        raise ValueError(f"pack: model_id must be 1..255 ASCII characters; got {header.model_id!r}")
    if header.colour_mode not in COLOUR_MODES:
        raise ValueError(f"pack: colour_mode must be one of {COLOUR_MODES}; got {header.colour_mode!r}")
    if not 1 <= header.quality <= 255 or len(header.weights_hash) != 8:
        raise ValueError(f"pack: quality must be 1..255 and the weights hash 8 bytes; got {header.quality}")
    body = bytearray(MAGIC)
    body += struct.pack(">BB", VERSION, len(model_id)) + model_id
    body += _FIXED.pack(
        header.weights_hash, header.quality, header.height, header.width,
        COLOUR_MODES.index(header.colour_mode), len(payloads),
    )
    body += b"".join(struct.pack(">I", len(p)) for p in payloads)
    body += b"".join(payloads)
    return bytes(body) + struct.pack(">I", zlib.crc32(body))


def unpack(data: bytes) -> tuple[Header, list[bytes]]:
    """The bytes of a .ssmc file -> (header, payloads).

    Raises:
        BitstreamError: not a .ssmc file, another version, truncated, overlong or corrupted.
    """
    data = bytes(data)
    if data[:4] != MAGIC:
        raise BitstreamError(f"not a .ssmc file: magic {data[:4]!r}, expected {MAGIC!r}")
    minimum = 4 + 2 + _FIXED.size + 4
    if len(data) < minimum:
        raise BitstreamError(f"truncated .ssmc file: {len(data)} bytes, a header alone needs {minimum}")
    version, id_length = data[4], data[5]
    if version != VERSION:
        raise BitstreamError(f".ssmc version {version} is not supported (this build reads version {VERSION})")
    offset = 6 + id_length
    if len(data) < offset + _FIXED.size + 4:
        raise BitstreamError(f"truncated .ssmc file: {len(data)} bytes end inside the header")
    try:
        model_id = data[6:offset].decode("ascii")
    except UnicodeDecodeError as err:
        raise BitstreamError("corrupted .ssmc file: the model id is not ASCII") from err
    w_hash, quality, height, width, colour, count = _FIXED.unpack_from(data, offset)
    offset += _FIXED.size
    if len(data) < offset + 4 * count + 4:
        raise BitstreamError(f"truncated .ssmc file: {len(data)} bytes end inside the payload table")
    lengths = struct.unpack_from(f">{count}I", data, offset)
    offset += 4 * count
    expected = offset + sum(lengths) + 4
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "overlong"
        raise BitstreamError(f"{kind} or corrupted .ssmc file: the header announces {expected} bytes, the file has {len(data)}")
    (crc,) = struct.unpack_from(">I", data, expected - 4)
    if zlib.crc32(data[: expected - 4]) != crc:
        raise BitstreamError("corrupted .ssmc file: CRC-32 mismatch (a changed or flipped byte)")
    if colour >= len(COLOUR_MODES):
        raise BitstreamError(f"corrupted .ssmc file: colour mode {colour}")
    payloads = []
    for length in lengths:
        payloads.append(data[offset: offset + length])
        offset += length
    return Header(model_id, w_hash, quality, height, width, COLOUR_MODES[colour]), payloads
