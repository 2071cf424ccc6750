"""The memory form of n-bit tensors: a dense little-endian bitstream.

Element ``i`` of a flattened (row-major) tensor of an n-bit type occupies bits
``[i*n, (i+1)*n)`` of the byte buffer, bit 0 being the least significant bit of byte 0. For n in
{8, 16, 32} this is exactly numpy's little-endian memory layout of the same integers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["packed_nbytes", "pack_codes", "unpack_codes"]

_WORD = {8: np.dtype("<u1"), 16: np.dtype("<u2"), 32: np.dtype("<u4")}


def packed_nbytes(count: int, bits: int) -> int:
    """Bytes needed for ``count`` elements of ``bits`` bits."""
    return (count * bits + 7) // 8


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Flat unsigned codes (low ``bits`` bits used) to a uint8 bitstream."""
    flat = np.ascontiguousarray(codes).reshape(-1).astype(np.uint64) & np.uint64((1 << bits) - 1)
    if bits in _WORD:
        return flat.astype(_WORD[bits]).view(np.uint8).copy()
    if 8 % bits == 0:
        per_byte = 8 // bits
        padded = np.zeros(-(-flat.size // per_byte) * per_byte, np.uint64)
        padded[: flat.size] = flat
        shifts = np.arange(per_byte, dtype=np.uint64) * np.uint64(bits)
        return np.bitwise_or.reduce(padded.reshape(-1, per_byte) << shifts, axis=1).astype(np.uint8)
    bit_matrix = (flat[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)
    return np.packbits(bit_matrix.astype(np.uint8).reshape(-1), bitorder="little")


def unpack_codes(buffer: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The first ``count`` codes of a uint8 bitstream, as uint64."""
    buf = np.ascontiguousarray(buffer).reshape(-1).view(np.uint8)
    need = packed_nbytes(count, bits)
    if buf.size < need:
        raise ValueError(f"bitstream of {buf.size} bytes holds fewer than {count} {bits}-bit codes")
    buf = buf[:need]
    if bits in _WORD:
        return buf.view(_WORD[bits]).astype(np.uint64)
    if 8 % bits == 0:
        per_byte = 8 // bits
        shifts = np.arange(per_byte, dtype=np.uint64) * np.uint64(bits)
        spread = (buf.astype(np.uint64)[:, None] >> shifts) & np.uint64((1 << bits) - 1)
        return spread.reshape(-1)[:count]
    bit_matrix = np.unpackbits(buf, bitorder="little")[: count * bits].reshape(count, bits)
    weights = np.uint64(1) << np.arange(bits, dtype=np.uint64)
    return (bit_matrix.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
