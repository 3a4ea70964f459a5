"""The .ssmc container: round trip and refusal of every damaged form."""
from __future__ import annotations

import struct
import zlib

import pytest

from ssm_apps.codecs.container import MAGIC, BitstreamError, Header, pack, unpack

HEADER = Header("cmamba-test", bytes(range(8)), 3, 37, 101, "gray")
PAYLOADS = [b"zz-string", b"y" * 50]


def test_round_trip():
    header, payloads = unpack(pack(HEADER, PAYLOADS))
    assert header == HEADER
    assert payloads == PAYLOADS


def test_layout_starts_with_magic_and_ends_with_crc():
    data = pack(HEADER, PAYLOADS)
    assert data[:4] == MAGIC and data[4] == 1
    assert struct.unpack(">I", data[-4:])[0] == zlib.crc32(data[:-4])


@pytest.mark.parametrize("cut", [1, 4, 10, 30, 45])
def test_truncated_refused(cut):
    data = pack(HEADER, PAYLOADS)
    with pytest.raises(BitstreamError, match="truncated"):
        unpack(data[:-cut] if cut < len(data) - 4 else data[:4])


def test_every_flipped_byte_refused():
    data = pack(HEADER, PAYLOADS)
    for position in range(len(data)):
        for bit in (0x01, 0x80):
            damaged = bytearray(data)
            damaged[position] ^= bit
            with pytest.raises(BitstreamError):
                unpack(bytes(damaged))


def test_overlong_and_other_version_refused():
    data = pack(HEADER, PAYLOADS)
    with pytest.raises(BitstreamError, match="overlong"):
        unpack(data + b"\0")
    other = bytearray(data)
    other[4] = 2
    with pytest.raises(BitstreamError, match="version 2"):
        unpack(bytes(other))
    with pytest.raises(BitstreamError, match="not a .ssmc file"):
        unpack(b"\x89PNG" + data[4:])


def test_pack_checks_its_arguments():
    with pytest.raises(ValueError, match="colour_mode"):
        pack(Header("m", bytes(8), 1, 1, 1, "cmyk"), [])
    with pytest.raises(ValueError, match="quality"):
        pack(Header("m", bytes(8), 0, 1, 1, "rgb"), [])
