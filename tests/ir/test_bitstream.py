"""Tests of ``bittile.ir.bitstream`` against a bit-by-bit reference of the layout definition:
element ``i`` of an n-bit stream occupies bits ``[i*n, (i+1)*n)``, bit 0 being the least
significant bit of byte 0."""

from __future__ import annotations

import numpy as np
import pytest

from bittile.ir.bitstream import pack_codes, packed_nbytes, unpack_codes

WIDTHS = list(range(1, 33))
COUNTS = [0, 1, 2, 3, 5, 7, 8, 9, 13, 31, 64, 65]


def ref_pack(codes, bits: int) -> bytes:
    """Place every bit of every code at its position in the stream, one bit at a time."""
    out = bytearray((len(codes) * bits + 7) // 8)
    for i, code in enumerate(codes):
        for j in range(bits):
            if (int(code) >> j) & 1:
                pos = i * bits + j
                out[pos // 8] |= 1 << (pos % 8)
    return bytes(out)


def ref_unpack(data: bytes, bits: int, count: int) -> list[int]:
    codes = []
    for i in range(count):
        code = 0
        for j in range(bits):
            pos = i * bits + j
            code |= ((data[pos // 8] >> (pos % 8)) & 1) << j
        codes.append(code)
    return codes


def random_codes(rng, bits: int, count: int) -> np.ndarray:
    return rng.integers(0, 1 << bits, count, dtype=np.uint64)


@pytest.mark.parametrize("bits", WIDTHS)
def test_pack_codes_matches_reference(bits):
    rng = np.random.default_rng(bits)
    for count in COUNTS:
        codes = random_codes(rng, bits, count)
        got = pack_codes(codes, bits)
        assert got.dtype == np.uint8 and got.ndim == 1
        assert got.size == packed_nbytes(count, bits)
        assert got.tobytes() == ref_pack(codes, bits), (bits, count, codes)


@pytest.mark.parametrize("bits", WIDTHS)
def test_pack_codes_extremes(bits):
    all_ones = (1 << bits) - 1
    for codes in ([all_ones] * 9, [0, all_ones, 0, all_ones, 1], [1 << (bits - 1)] * 3):
        arr = np.array(codes, np.uint64)
        assert pack_codes(arr, bits).tobytes() == ref_pack(codes, bits)


@pytest.mark.parametrize("bits", WIDTHS)
def test_pack_codes_uses_only_low_bits(bits):
    rng = np.random.default_rng(1000 + bits)
    codes = random_codes(rng, bits, 37)
    junk = codes | (rng.integers(1, 1 << 20, 37, dtype=np.uint64) << np.uint64(bits))
    assert pack_codes(junk, bits).tobytes() == ref_pack(codes, bits)


@pytest.mark.parametrize("bits", WIDTHS)
def test_unpack_codes_matches_reference(bits):
    rng = np.random.default_rng(2000 + bits)
    for count in COUNTS:
        # a buffer of random bytes, longer than needed: trailing bytes are ignored
        nbytes = packed_nbytes(count, bits) + int(rng.integers(0, 4))
        data = rng.integers(0, 256, nbytes, dtype=np.uint8)
        got = unpack_codes(data, bits, count)
        assert got.dtype == np.uint64 and got.shape == (count,)
        assert got.tolist() == ref_unpack(data.tobytes(), bits, count), (bits, count)


@pytest.mark.parametrize("bits", WIDTHS)
def test_round_trip(bits):
    rng = np.random.default_rng(3000 + bits)
    for count in (*COUNTS, 1000, 1001):
        codes = random_codes(rng, bits, count)
        back = unpack_codes(pack_codes(codes, bits), bits, count)
        np.testing.assert_array_equal(back, codes)


def test_packed_nbytes():
    for bits in WIDTHS:
        for count in (*COUNTS, 1000, 12345):
            assert packed_nbytes(count, bits) == -(-count * bits // 8)
    assert packed_nbytes(3, 3) == 2 and packed_nbytes(8, 1) == 1 and packed_nbytes(9, 1) == 2
    assert packed_nbytes(0, 7) == 0 and packed_nbytes(1, 32) == 4


@pytest.mark.parametrize("bits", [8, 16, 32])
def test_word_widths_are_little_endian_memory(bits):
    rng = np.random.default_rng(bits)
    codes = random_codes(rng, bits, 50)
    little = codes.astype(np.dtype(f"<u{bits // 8}")).tobytes()
    assert pack_codes(codes, bits).tobytes() == little
    np.testing.assert_array_equal(
        unpack_codes(np.frombuffer(little, np.uint8), bits, 50), codes
    )


def test_known_layouts():
    # 4-bit: element 0 in the low nibble
    assert pack_codes(np.array([0x1, 0x2, 0x3]), 4).tolist() == [0x21, 0x03]
    # 1-bit: element 0 is bit 0
    assert pack_codes(np.array([1, 0, 0, 0, 0, 0, 0, 0, 1]), 1).tolist() == [0x01, 0x01]
    # 3-bit: 0b101, 0b011, 0b111 -> bits 101 110 111 (LSB first) -> 0b11_011_101, 0b1
    assert pack_codes(np.array([0b101, 0b011, 0b111]), 3).tolist() == [0b11011101, 0b1]
    # 16-bit little-endian
    assert pack_codes(np.array([0x1234]), 16).tolist() == [0x34, 0x12]
    # 12-bit: 0xABC, 0x123 -> bytes BC, 3A, 12
    assert pack_codes(np.array([0xABC, 0x123]), 12).tolist() == [0xBC, 0x3A, 0x12]


@pytest.mark.parametrize("code_dtype", [np.uint8, np.uint16, np.uint32, np.int64, np.uint64])
def test_pack_codes_accepts_integer_arrays_of_any_shape(code_dtype):
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 8, (3, 5)).astype(code_dtype)
    expected = ref_pack(codes.reshape(-1).tolist(), 3)
    assert pack_codes(codes, 3).tobytes() == expected
    assert pack_codes(np.asfortranarray(codes), 3).tobytes() == expected  # row-major order
    assert pack_codes(codes.T.copy().T, 3).tobytes() == expected


@pytest.mark.parametrize("bits", [1, 3, 4, 8, 13, 16, 32])
def test_unpack_too_small_buffer(bits):
    count = 10
    data = np.zeros(packed_nbytes(count, bits) - 1, np.uint8)
    with pytest.raises(ValueError):
        unpack_codes(data, bits, count)
