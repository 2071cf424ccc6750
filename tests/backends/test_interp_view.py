"""Interpreter ``view``: bit reinterpretation under the Tilus rule (each worker's elements, in
local order, concatenated LSB-first and read back in the result's local order).

References are built here from first principles: numpy views of little-endian words, Python
big-integer bit concatenation, and hand-written worker/local maps for the explicit layouts.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import bittile
from bittile import IRError, PackedTensor, local, spatial
from bittile.backends import interp
from bittile.ir.builder import KernelBuilder


def pack(codes, dt) -> PackedTensor:
    codes = np.asarray(codes, np.uint64)
    flat = codes.reshape(-1)
    big = 0
    for i, c in enumerate(flat.tolist()):
        big |= int(c) << (i * dt.bits)
    n = (flat.size * dt.bits + 7) // 8
    buf = np.frombuffer(big.to_bytes(n, "little"), np.uint8).copy()
    return PackedTensor(buf, codes.shape, dt)


def unpack(p: PackedTensor) -> np.ndarray:
    big = int.from_bytes(bytes(p.data), "little")
    mask = (1 << p.dtype.bits) - 1
    n = int(np.prod(p.shape))
    return np.array([(big >> (i * p.dtype.bits)) & mask for i in range(n)],
                    np.uint64).reshape(p.shape)


def empty(shape, dt) -> PackedTensor:
    n = int(np.prod(shape))
    return PackedTensor(np.zeros((n * dt.bits + 7) // 8, np.uint8), shape, dt)


def view_kernel(src, src_shape, dst, dst_shape=None, src_layout=None, dst_layout=None,
                back=False):
    """y = view(load(x)); with ``back``, also z = view(view(load(x))) as src."""
    kb = KernelBuilder("view")
    x = kb.tensor("x", src, list(src_shape))
    t = kb.builder.load(x, [0] * len(src_shape), src_shape, layout=src_layout)
    v = kb.builder.view(t, dst, shape=dst_shape, layout=dst_layout)
    y = kb.tensor("y", dst, list(v.type.shape))
    kb.builder.store(y, [0] * len(v.type.shape), v)
    if back:
        w = kb.builder.view(v, src, shape=src_shape, layout=src_layout)
        z = kb.tensor("z", src, list(src_shape))
        kb.builder.store(z, [0] * len(src_shape), w)
    return kb.finish()


def concat_lsb_first(codes_row, bits) -> int:
    word = 0
    for i, c in enumerate(codes_row):
        word |= int(c) << (i * bits)
    return word


def split_lsb_first(word: int, bits: int, count: int) -> list[int]:
    return [(word >> (i * bits)) & ((1 << bits) - 1) for i in range(count)]


# ---- default (row-major bitstream) views ---------------------------------------------------------
def test_u4_rows_to_u32_and_back():
    rng = np.random.default_rng(0)
    r = 5
    codes = rng.integers(0, 16, size=(r, 8)).astype(np.uint64)
    y = np.zeros((r, 1), np.uint32)
    z = empty((r, 8), bittile.u4)
    interp.run(view_kernel(bittile.u4, (r, 8), bittile.u32, back=True), pack(codes, bittile.u4),
               y, z)
    expected = [concat_lsb_first(row, 4) for row in codes]
    assert y[:, 0].tolist() == expected
    np.testing.assert_array_equal(unpack(z), codes)


def test_u32_to_u4_rows():
    words = np.array([[0x89ABCDEF], [0x01234567], [0xFFFFFFFF], [0]], np.uint32)
    y = empty((4, 8), bittile.u4)
    interp.run(view_kernel(bittile.u32, (4, 1), bittile.u4), words, y)
    expected = [split_lsb_first(int(w), 4, 8) for w in words[:, 0]]
    assert unpack(y).tolist() == expected


@pytest.mark.parametrize("wide, np_wide", [(bittile.u16, "<u2"), (bittile.u32, "<u4")])
def test_u8_to_wider_words_and_back(wide, np_wide):
    rng = np.random.default_rng(1)
    k = wide.bits // 8
    x = rng.integers(0, 256, size=(6, 3 * k), dtype=np.uint8)
    y = np.zeros((6, 3), np.dtype(np_wide))
    z = np.zeros_like(x)
    interp.run(view_kernel(bittile.u8, x.shape, wide, back=True), x, y, z)
    np.testing.assert_array_equal(y, x.view(np_wide))
    np.testing.assert_array_equal(z, x)


def test_u32_to_u8():
    x = np.array([[0x11223344, 0xA0B0C0D0]], np.uint32)
    y = np.zeros((1, 8), np.uint8)
    interp.run(view_kernel(bittile.u32, (1, 2), bittile.u8), x, y)
    assert y[0].tolist() == [0x44, 0x33, 0x22, 0x11, 0xD0, 0xC0, 0xB0, 0xA0]


def test_u16_to_u32_and_i32():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 1 << 16, size=(3, 4), dtype=np.uint16)
    y = np.zeros((3, 2), np.uint32)
    interp.run(view_kernel(bittile.u16, x.shape, bittile.u32), x, y)
    np.testing.assert_array_equal(y, x.view("<u4"))
    y2 = np.zeros((3, 2), np.int32)
    interp.run(view_kernel(bittile.u16, x.shape, bittile.i32), x, y2)
    np.testing.assert_array_equal(y2, x.view("<i4"))


def f16_non_nan_codes():
    codes = np.arange(1 << 16, dtype=np.uint16)
    return codes[~np.isnan(codes.view(np.float16))]


def test_f16_to_u16_and_i16_non_nan():
    codes = f16_non_nan_codes()
    x = codes.view(np.float16).reshape(1, -1)
    y = np.zeros(x.shape, np.uint16)
    interp.run(view_kernel(bittile.f16, x.shape, bittile.u16), x, y)
    np.testing.assert_array_equal(y[0], codes)
    y2 = np.zeros(x.shape, np.int16)
    interp.run(view_kernel(bittile.f16, x.shape, bittile.i16), x, y2)
    np.testing.assert_array_equal(y2[0], codes.view(np.int16))


def test_u16_and_i16_to_f16_non_nan():
    codes = f16_non_nan_codes().reshape(1, -1)
    y = np.zeros(codes.shape, np.float16)
    interp.run(view_kernel(bittile.u16, codes.shape, bittile.f16), codes, y)
    np.testing.assert_array_equal(y.view(np.uint16), codes)
    y2 = np.zeros(codes.shape, np.float16)
    interp.run(view_kernel(bittile.i16, codes.shape, bittile.f16), codes.view(np.int16), y2)
    np.testing.assert_array_equal(y2.view(np.uint16), codes)


def test_f32_to_i32_and_bf16_to_u16_non_nan():
    rng = np.random.default_rng(3)
    f = (rng.standard_normal((2, 64)) * 1e3).astype(np.float32)
    f[0, :4] = [0.0, -0.0, np.inf, -np.inf]
    y = np.zeros(f.shape, np.int32)
    interp.run(view_kernel(bittile.f32, f.shape, bittile.i32), f, y)
    np.testing.assert_array_equal(y, f.view(np.int32))
    bf = f.astype(ml_dtypes.bfloat16)
    y16 = np.zeros(f.shape, np.uint16)
    interp.run(view_kernel(bittile.bf16, f.shape, bittile.u16), bf, y16)
    np.testing.assert_array_equal(y16, bf.view(np.uint16))


def test_f4e2m1_pairs_to_u8_every_byte():
    """f4e2m1[2k] -> u8[k]: element 2i is the low nibble of byte i (all 256 pairs)."""
    lo = np.tile(np.arange(16), 16)
    hi = np.repeat(np.arange(16), 16)
    codes = np.stack([lo, hi], axis=1).reshape(1, 512).astype(np.uint64)
    y = np.zeros((1, 256), np.uint8)
    z = empty((1, 512), bittile.f4e2m1)
    interp.run(view_kernel(bittile.f4e2m1, (1, 512), bittile.u8, back=True),
               pack(codes, bittile.f4e2m1), y, z)
    np.testing.assert_array_equal(y[0], (lo | (hi << 4)).astype(np.uint8))
    np.testing.assert_array_equal(unpack(z), codes)


def test_u8_to_f4e2m1_values():
    x = np.arange(256, dtype=np.uint8).reshape(1, 256)
    y = empty((1, 512), bittile.f4e2m1)
    interp.run(view_kernel(bittile.u8, (1, 256), bittile.f4e2m1), x, y)
    got = unpack(y)[0]
    np.testing.assert_array_equal(got[0::2], np.arange(256) & 15)
    np.testing.assert_array_equal(got[1::2], np.arange(256) >> 4)


@pytest.mark.parametrize("dst, n_out", [(bittile.u8, 3), (bittile.int_type(24, False), 1),
                                        (bittile.u6, 4), (bittile.i12 if hasattr(bittile, "i12")
                                                          else bittile.int_type(12, True), 2)])
def test_i3_rows_straddling_bytes(dst, n_out):
    """i3[r, 8] is 24 bits per row; codes straddle byte boundaries."""
    rng = np.random.default_rng(4)
    r = 7
    codes = rng.integers(0, 8, size=(r, 8)).astype(np.uint64)
    y = empty((r, n_out), dst)
    z = empty((r, 8), bittile.i3)
    interp.run(view_kernel(bittile.i3, (r, 8), dst, back=True), pack(codes, bittile.i3), y, z)
    expected = [split_lsb_first(concat_lsb_first(row, 3), dst.bits, n_out) for row in codes]
    assert unpack(y).tolist() == expected
    np.testing.assert_array_equal(unpack(z), codes)


def test_u8_rows_to_i3_values_are_signed():
    x = np.array([[0b11111010, 0b01000110, 0b10101100]], np.uint8)  # 24 bits
    y = np.zeros((1, 8), np.int8)
    kb = KernelBuilder("v")
    xt = kb.tensor("x", bittile.u8, [1, 3])
    yt = kb.tensor("y", bittile.i8, [1, 8])
    b = kb.builder
    b.store(yt, [0, 0], b.cast(b.view(b.load(xt, [0, 0], [1, 3]), bittile.i3), bittile.i8))
    interp.run(kb.finish(), x, y)
    word = int(x[0, 0]) | int(x[0, 1]) << 8 | int(x[0, 2]) << 16
    expected = [c - 8 if c >= 4 else c for c in split_lsb_first(word, 3, 8)]
    assert y[0].tolist() == expected


def test_view_with_explicit_shape_changes_rank():
    x = np.arange(16, dtype=np.uint8).reshape(4, 4)
    y = np.zeros(4, np.uint32)
    interp.run(view_kernel(bittile.u8, (4, 4), bittile.u32, dst_shape=(4,)), x, y)
    np.testing.assert_array_equal(y, x.reshape(-1).view("<u4"))


# ---- explicit layouts: the Tilus rule ------------------------------------------------------------
def tilus_view(elements, holder, n_workers, n_local, src_bits, dst_bits, dst_holder, dst_size):
    """Reference: ``holder(e) -> (worker, local)`` for source elements, ``dst_holder`` for
    result elements; each worker's locals concatenated LSB-first, then split."""
    per_worker = [[0] * n_local for _ in range(n_workers)]
    for e, code in enumerate(elements):
        w, lo = holder(e)
        per_worker[w][lo] = int(code)
    words = [concat_lsb_first(locs, src_bits) for locs in per_worker]
    out = [None] * dst_size
    n_dst_local = n_local * src_bits // dst_bits
    for e in range(dst_size):
        w, lo = dst_holder(e)
        out[e] = split_lsb_first(words[w], dst_bits, n_dst_local)[lo]
    return out


@pytest.mark.parametrize(
    "name, src_layout, holder",
    [
        ("spatial4.local8", spatial(4).local(8), lambda e: (e // 8, e % 8)),
        ("local8.spatial4", local(8).spatial(4), lambda e: (e % 4, e // 4)),
        ("local2.spatial4.local4", local(2).spatial(4).local(4),
         lambda e: ((e // 4) % 4, (e // 16) * 4 + e % 4)),
    ],
)
def test_view_u4_layout_to_u32_spatial(name, src_layout, holder):
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 16, size=32).astype(np.uint64)
    y = np.zeros(4, np.uint32)
    kernel = view_kernel(bittile.u4, (32,), bittile.u32, src_layout=src_layout,
                         dst_layout=spatial(4))
    interp.run(kernel, pack(codes, bittile.u4), y)
    expected = tilus_view(codes, holder, 4, 8, 4, 32, lambda e: (e, 0), 4)
    assert y.tolist() == expected


def test_view_u32_spatial_to_u4_interleaved_layout_and_back():
    words = np.array([0x76543210, 0xFEDCBA98, 0x13579BDF, 0x02468ACE], np.uint32)
    y = empty((32,), bittile.u4)
    z = np.zeros(4, np.uint32)
    kernel = view_kernel(bittile.u32, (4,), bittile.u4, src_layout=spatial(4),
                         dst_layout=local(8).spatial(4), back=True)
    interp.run(kernel, words, y, z)
    # element e = l * 4 + w is nibble l of word w
    expected = [split_lsb_first(int(words[e % 4]), 4, 8)[e // 4] for e in range(32)]
    assert unpack(y).tolist() == expected
    np.testing.assert_array_equal(z, words)


def test_view_2d_spatial_rows_local_columns():
    rng = np.random.default_rng(6)
    codes = rng.integers(0, 16, size=(4, 8)).astype(np.uint64)
    y = np.zeros((4, 1), np.uint32)
    kernel = view_kernel(bittile.u4, (4, 8), bittile.u32, src_layout=spatial(4, 1).local(1, 8),
                         dst_layout=spatial(4, 1))
    interp.run(kernel, pack(codes, bittile.u4), y)
    assert y[:, 0].tolist() == [concat_lsb_first(row, 4) for row in codes]


def test_view_column_local_reads_columns():
    """One worker storing u8[4, 4] column-major: its bitstream is the columns, so each u32 of
    the result is one column."""
    x = np.arange(16, dtype=np.uint8).reshape(4, 4) * 7
    y = np.zeros(4, np.uint32)
    kernel = view_kernel(bittile.u8, (4, 4), bittile.u32,
                         src_layout=bittile.column_local(4, 4), dst_layout=local(4))
    interp.run(kernel, x, y)
    assert y.tolist() == [concat_lsb_first(x[:, k], 8) for k in range(4)]


def test_view_column_spatial_workers():
    """u8[4, 4] with column_spatial(1, 4).local(4, 1): worker j holds column j (local = row)."""
    x = (np.arange(16, dtype=np.uint8).reshape(4, 4) * 13 + 1).astype(np.uint8)
    layout = bittile.column_spatial(1, 4).local(4, 1)
    y = np.zeros((1, 4), np.uint32)
    kernel = view_kernel(bittile.u8, (4, 4), bittile.u32, src_layout=layout,
                         dst_layout=spatial(1, 4))
    interp.run(kernel, x, y)
    assert y[0].tolist() == [concat_lsb_first(x[:, j], 8) for j in range(4)]


def test_view_replicated_layout():
    """Two workers each holding all of u8[4] view it as one replicated u32."""
    x = np.array([1, 2, 3, 0xF4], np.uint8)
    y = np.zeros(1, np.uint32)
    kernel = view_kernel(bittile.u8, (4,), bittile.u32, src_layout=local(4).replicated(2),
                         dst_layout=local(1).replicated(2))
    interp.run(kernel, x, y)
    assert y.tolist() == [0xF4030201]


def test_view_bits_per_worker_must_match():
    kb = KernelBuilder("bad")
    x = kb.tensor("x", bittile.u4, [32])
    t = kb.builder.load(x, [0], [32], layout=spatial(4).local(8))
    with pytest.raises(IRError, match="bits"):
        kb.builder.view(t, bittile.u32, layout=spatial(4).local(2))
    with pytest.raises(IRError, match="workers"):
        kb.builder.view(t, bittile.u32, layout=local(4))
    with pytest.raises(IRError, match="multiple"):
        kb.builder.view(kb.builder.load(x, [0], [3]), bittile.u8)


# ---- views must reinterpret bits, NaN encodings included -----------------------------------------
def test_view_f16_nan_bits_to_u16():
    """numpy's NaN (0x7E00), a signalling NaN and a negative NaN keep their bits in a view."""
    codes = np.array([0x7E00, 0x7C01, 0xFE00, 0x7D55], np.uint16)
    y = np.zeros((1, 4), np.uint16)
    interp.run(view_kernel(bittile.f16, (1, 4), bittile.u16), codes.view(np.float16)[None], y)
    assert [hex(v) for v in y[0]] == [hex(v) for v in codes]


def test_view_u8_f8e5m2_roundtrip_every_code():
    """u8 -> f8e5m2 -> u8 inside one kernel is the identity on every byte."""
    x = np.arange(256, dtype=np.uint8).reshape(1, 256)
    kb = KernelBuilder("rt")
    xt = kb.tensor("x", bittile.u8, [1, 256])
    yt = kb.tensor("y", bittile.u8, [1, 256])
    b = kb.builder
    v = b.view(b.view(b.load(xt, [0, 0], [1, 256]), bittile.f8e5m2), bittile.u8)
    b.store(yt, [0, 0], v)
    y = np.zeros_like(x)
    interp.run(kb.finish(), x, y)
    changed = [(hex(a), hex(c)) for a, c in zip(x[0], y[0], strict=False) if a != c]
    assert not changed, f"view changed {len(changed)} codes: {changed}"


def test_view_u16_nan_codes_to_f16_store():
    codes = np.array([[0x7C01, 0x7E00, 0xFFFF, 0x7FFF]], np.uint16)
    y = np.zeros((1, 4), np.float16)
    interp.run(view_kernel(bittile.u16, (1, 4), bittile.f16), codes, y)
    assert [hex(v) for v in y.view(np.uint16)[0]] == [hex(v) for v in codes[0]]


def test_view_with_mismatched_replication_is_rejected_when_built():
    """Four workers each holding a different u8 cannot view their bits as one u8 replicated
    over the four: the replication of the result does not match the source's. That is a
    property of the IR (not of the data), so the verifier must reject it; the interpreter
    instead accepts the kernel and, for distinct inputs, raises InternalError ("a bug in
    bittile itself, never the user's fault")."""
    kb = KernelBuilder("bad_replication")
    x = kb.tensor("x", bittile.u8, [4])
    t = kb.builder.load(x, [0], [4], layout=spatial(4))
    with pytest.raises(IRError, match="replicat"):
        v = kb.builder.view(t, bittile.u8, layout=local(1).replicated(4))
        y = kb.tensor("y", bittile.u8, [1])
        kb.builder.store(y, [0], v)
        interp.run(kb.finish(), np.array([1, 2, 3, 4], np.uint8), np.zeros(1, np.uint8))
