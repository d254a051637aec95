"""Unsigned LEB128 varints: 7 bits a byte, low bits first, the high bit set on every byte
but the last. The length and count fields of every container semcomp sends (caption +
side payload, CompressAI's strings, PQVAE batch streams)."""

from __future__ import annotations


def varint(value: int) -> bytes:
    """``value`` (≥ 0) as an unsigned LEB128 varint."""
    if value < 0:
        raise ValueError(f"a varint holds no negative number ({value})")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(
    data: bytes, position: int, truncated: str = "the data ends inside a varint"
) -> tuple[int, int]:
    """The varint at ``position`` in ``data`` and the position after it; a ``ValueError``
    saying ``truncated`` if ``data`` ends inside it."""
    value = shift = 0
    while True:
        if position >= len(data):
            raise ValueError(truncated)
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position
