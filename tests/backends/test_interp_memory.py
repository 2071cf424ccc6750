"""Interpreter loads and stores: tiles at offsets hanging off every side of a tensor, packed
sub-byte tensors (neighbouring elements sharing a byte, unused bits of the last byte), numpy /
torch / PackedTensor arguments, and bit-exact copies of every dtype.

References are computed here, independently of bittile: element codes are unpacked from the
byte buffer with Python big integers, values are decoded with numpy / ml_dtypes views.
"""

from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import pytest
import torch

import bittile
from bittile import LaunchError, PackedTensor
from bittile.backends import interp
from bittile.ir.builder import KernelBuilder

ALL = list(bittile.ALL_DTYPES)
IDS = [d.name for d in ALL]
NUMPY_TYPES = {
    "u8": np.uint8, "i8": np.int8, "u16": np.uint16, "i16": np.int16, "u32": np.uint32,
    "i32": np.int32, "f16": np.float16, "f32": np.float32, "bf16": ml_dtypes.bfloat16,
}
ML_FLOAT = {
    "bf16": ml_dtypes.bfloat16, "f8e4m3": ml_dtypes.float8_e4m3fn,
    "f8e5m2": ml_dtypes.float8_e5m2, "f6e3m2": ml_dtypes.float6_e3m2fn,
    "f6e2m3": ml_dtypes.float6_e2m3fn, "f4e2m1": ml_dtypes.float4_e2m1fn,
}


# ---- independent references ------------------------------------------------------------------
def ref_decode(codes, dt) -> np.ndarray:
    """Values of ``codes`` (float64 for floats, int64 for ints), via numpy / ml_dtypes views."""
    codes = np.asarray(codes, np.uint64)
    if dt.kind == "uint":
        return codes.astype(np.int64)
    if dt.kind == "int":
        c = codes.astype(np.int64)
        return np.where(c >= 1 << (dt.bits - 1), c - (1 << dt.bits), c)
    with np.errstate(invalid="ignore"):
        if dt.name == "f16":
            return codes.astype(np.uint16).view(np.float16).astype(np.float64)
        if dt.name == "f32":
            return codes.astype(np.uint32).view(np.float32).astype(np.float64)
        if dt.name == "bf16":
            return codes.astype(np.uint16).view(ml_dtypes.bfloat16).astype(np.float64)
        return codes.astype(np.uint8).view(ML_FLOAT[dt.name]).astype(np.float64)


def nbytes_of(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


def _bits(buf: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.asarray(buf, np.uint8), bitorder="little")


def ref_unpack(buf: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The first ``count`` ``bits``-bit codes of a little-endian bitstream."""
    stream = _bits(buf)[: count * bits].reshape(count, bits).astype(np.uint64)
    return (stream << np.arange(bits, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def ref_repack(buf: np.ndarray, bits: int, updates: dict[int, int]) -> np.ndarray:
    """``buf`` with element ``i`` replaced by ``updates[i]``; every other bit unchanged."""
    stream = _bits(buf)
    if updates:
        idx = np.array(list(updates), np.int64)
        codes = np.array([int(c) for c in updates.values()], np.uint64)
        for k in range(bits):
            stream[idx * bits + k] = (codes >> np.uint64(k)) & np.uint64(1)
    return np.packbits(stream, bitorder="little")


def non_nan_codes(dt, count: int, rng) -> np.ndarray:
    """Random codes of ``dt`` that do not encode NaN (NaN payloads are tested separately)."""
    codes = rng.integers(0, 1 << dt.bits, size=count, dtype=np.uint64)
    if dt.is_float:
        bad = np.isnan(ref_decode(codes, dt))
        codes[bad] = 0
    return codes


def packed_from_codes(codes, dt, shape, extra: int = 3, rng=None) -> PackedTensor:
    """A packed tensor built by hand (not with bittile.pack): random bits after the last
    element and ``extra`` random bytes after the tensor."""
    codes = np.asarray(codes, np.uint64).reshape(-1)
    n = nbytes_of(codes.size, dt.bits)
    rng = rng or np.random.default_rng(0)
    filler = rng.integers(0, 256, size=n + extra, dtype=np.uint8)
    buf = ref_repack(filler, dt.bits, dict(enumerate(codes.tolist())))
    return PackedTensor(buf, shape, dt)


# ---- kernels -----------------------------------------------------------------------------------
def load_grid_kernel(dt, tile, oy0, ox0, ny, nx):
    """Program (a, b) loads ``tile`` from t at (a + oy0, b + ox0) into o[a, b]."""
    kb = KernelBuilder("load_grid")
    t = kb.tensor("t", dt, ["H", "W"])
    o = kb.tensor("o", dt, [ny, nx, tile[0], tile[1]])
    kb.grid(ny, nx)
    b = kb.builder
    a_, b_ = b.block_id(0), b.block_id(1)
    x = b.load(t, [b.add(a_, oy0), b.add(b_, ox0)], tile)
    b.store(o, [a_, b_, 0, 0], b.reshape(x, [1, 1, *tile]))
    return kb.finish()


def store_grid_kernel(dt, tile, oy0, ox0, ny, nx):
    """Program (a, b) stores the tile s into o[a * nx + b] at (a + oy0, b + ox0)."""
    kb = KernelBuilder("store_grid")
    s = kb.tensor("s", dt, list(tile))
    o = kb.tensor("o", dt, ["P", "H", "W"])
    kb.grid(ny, nx)
    b = kb.builder
    a_, b_ = b.block_id(0), b.block_id(1)
    p = b.add(b.mul(a_, nx), b_)
    x = b.load(s, [0, 0], tile)
    b.store(o, [p, b.add(a_, oy0), b.add(b_, ox0)], b.reshape(x, [1, *tile]))
    return kb.finish()


def copy_kernel(dt, n):
    kb = KernelBuilder("copy")
    x = kb.tensor("x", dt, ["N"])
    y = kb.tensor("y", dt, ["N"])
    b = kb.builder
    b.store(y, [0], b.load(x, [0], [n]))
    return kb.finish()


def offset_copy_kernel(dt, tile, rank):
    """y[off + i] = x[off + i] for the tile at the scalar offsets (one program)."""
    kb = KernelBuilder("offset_copy")
    shape = [f"N{i}" for i in range(rank)]
    x = kb.tensor("x", dt, shape)
    y = kb.tensor("y", dt, shape)
    offs = [kb.scalar(f"o{i}", bittile.i32) for i in range(rank)]
    b = kb.builder
    b.store(y, offs, b.load(x, offs, tile))
    return kb.finish()


H, W = 5, 7
TILES = [(3, 4), (8, 10), (1, 1)]


def window_ranges(tile):
    """Offsets from fully above/left of the tensor to fully below/right of it."""
    oy = range(-tile[0] - 1, H + 2)
    ox = range(-tile[1] - 1, W + 2)
    return oy, ox


# ---- loads ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("tile", TILES, ids=str)
@pytest.mark.parametrize("dt", ALL, ids=IDS)
def test_load_window_every_side(dt, tile):
    rng = np.random.default_rng(dt.bits * 31 + tile[0])
    codes = non_nan_codes(dt, H * W, rng).reshape(H, W)
    oy, ox = window_ranges(tile)
    ny, nx = len(oy), len(ox)
    kernel = load_grid_kernel(dt, tile, oy[0], ox[0], ny, nx)
    t = packed_from_codes(codes, dt, (H, W), rng=rng)
    t_before = t.data.copy()
    count = ny * nx * tile[0] * tile[1]
    o = PackedTensor(np.full(nbytes_of(count, dt.bits), 0xA5, np.uint8), (ny, nx, *tile), dt)
    interp.run(kernel, t, o)
    got = ref_unpack(o.data, dt.bits, count).reshape(ny, nx, *tile)
    m = max(tile) + 2  # out-of-bounds elements read as 0 (code 0 in every dtype)
    padded = np.zeros((H + 2 * m, W + 2 * m), np.uint64)
    padded[m:m + H, m:m + W] = codes
    expected = np.zeros_like(got)
    for (a, y0), (c, x0) in itertools.product(enumerate(oy), enumerate(ox)):
        expected[a, c] = padded[y0 + m:y0 + m + tile[0], x0 + m:x0 + m + tile[1]]
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(t.data, t_before)  # the input is never written


@pytest.mark.parametrize("name", sorted(NUMPY_TYPES))
def test_load_window_numpy(name):
    dt = bittile.dtype_from_name(name)
    rng = np.random.default_rng(5)
    codes = non_nan_codes(dt, H * W, rng).reshape(H, W)
    word = {8: np.uint8, 16: np.uint16, 32: np.uint32}[dt.bits]
    t = codes.astype(word).view(NUMPY_TYPES[name])
    tile = (3, 4)
    oy, ox = window_ranges(tile)
    kernel = load_grid_kernel(dt, tile, oy[0], ox[0], len(oy), len(ox))
    o = np.ones((len(oy), len(ox), *tile), NUMPY_TYPES[name])
    interp.run(kernel, t, o)
    got = o.view(word)
    for (a, y0), (c, x0) in itertools.product(enumerate(oy), enumerate(ox)):
        for i, j in itertools.product(range(3), range(4)):
            inside = 0 <= y0 + i < H and 0 <= x0 + j < W
            want = codes[y0 + i, x0 + j] if inside else 0
            assert got[a, c, i, j] == want, (a, c, i, j)


def test_load_tile_larger_than_tensor_every_side_at_once():
    kb = KernelBuilder("big")
    t = kb.tensor("t", bittile.i32, ["H", "W"])
    o = kb.tensor("o", bittile.i32, [4, 6])
    b = kb.builder
    b.store(o, [0, 0], b.load(t, [-1, -2], [4, 6]))
    kernel = kb.finish()
    src = np.arange(1, 7, dtype=np.int32).reshape(2, 3)
    out = np.full((4, 6), -7, np.int32)
    interp.run(kernel, src, out)
    expected = np.zeros((4, 6), np.int32)
    expected[1:3, 2:5] = src
    np.testing.assert_array_equal(out, expected)


def test_load_from_empty_tensor_gives_zeros():
    kb = KernelBuilder("empty")
    t = kb.tensor("t", bittile.f32, ["N"])
    o = kb.tensor("o", bittile.f32, [4])
    b = kb.builder
    b.store(o, [0], b.load(t, [0], [4]))
    kernel = kb.finish()
    out = np.full(4, 3.0, np.float32)
    interp.run(kernel, np.zeros(0, np.float32), out)
    np.testing.assert_array_equal(out, np.zeros(4, np.float32))


# ---- stores --------------------------------------------------------------------------------------
@pytest.mark.parametrize("tile", TILES[:2], ids=str)
@pytest.mark.parametrize("dt", ALL, ids=IDS)
def test_store_window_every_side(dt, tile):
    """Stores hanging off every side of o[p] drop the outside elements; nothing else in the
    buffer changes (neighbouring rows/planes, bits sharing a byte, tail bits, extra bytes)."""
    rng = np.random.default_rng(dt.bits * 17 + tile[1])
    oy, ox = window_ranges(tile)
    ny, nx = len(oy), len(ox)
    planes = ny * nx
    count = planes * H * W
    old = non_nan_codes(dt, count, rng)
    o = packed_from_codes(old, dt, (planes, H, W), extra=2, rng=rng)
    before = o.data.copy()
    tile_codes = non_nan_codes(dt, tile[0] * tile[1], rng).reshape(tile)
    s = packed_from_codes(tile_codes, dt, tile, rng=rng)
    kernel = store_grid_kernel(dt, tile, oy[0], ox[0], ny, nx)
    interp.run(kernel, s, o)
    expected = old.reshape(planes, H, W).copy()
    for (a, y0), (c, x0) in itertools.product(enumerate(oy), enumerate(ox)):
        ys, ye = max(y0, 0), min(y0 + tile[0], H)
        xs, xe = max(x0, 0), min(x0 + tile[1], W)
        if ys < ye and xs < xe:
            expected[a * nx + c, ys:ye, xs:xe] = tile_codes[ys - y0:ye - y0, xs - x0:xe - x0]
    # Every element rewritten with its expected code; tail bits and extra bytes from before.
    want = ref_repack(before, dt.bits, dict(enumerate(expected.reshape(-1).tolist())))
    np.testing.assert_array_equal(o.data, want)


@pytest.mark.parametrize("dt", [d for d in ALL if d.bits < 8], ids=lambda d: d.name)
@pytest.mark.parametrize("off", [-3, -1, 0, 2, 5, 6, 7, 9])
def test_store_1d_subbyte_keeps_neighbours_and_tail_bits(dt, off):
    """A 7-element tensor: the last byte has unused bits (except for 8-bit multiples); a
    4-element store at ``off`` touches only its in-bounds elements."""
    n = 7
    rng = np.random.default_rng(dt.bits * 100 + off + 10)
    old = non_nan_codes(dt, n, rng)
    y = packed_from_codes(old, dt, (n,), extra=1, rng=rng)
    before = y.data.copy()
    new = non_nan_codes(dt, n + 8, rng)
    # x is large enough that the load at ``off`` is in bounds where the store is.
    kb = KernelBuilder("st")
    x_t = kb.tensor("x", dt, ["M"])
    y_t = kb.tensor("y", dt, ["N"])
    o = kb.scalar("o", bittile.i32)
    b = kb.builder
    b.store(y_t, [o], b.load(x_t, [b.add(o, 4)], [4]))
    kernel = kb.finish()
    x = packed_from_codes(new, dt, (n + 8,), rng=rng)
    interp.run(kernel, x, y, off)
    updates = {off + i: int(new[off + 4 + i]) for i in range(4) if 0 <= off + i < n}
    np.testing.assert_array_equal(y.data, ref_repack(before, dt.bits, updates))


@pytest.mark.parametrize("name", sorted(NUMPY_TYPES))
def test_store_window_numpy_untouched_elements(name):
    dt = bittile.dtype_from_name(name)
    rng = np.random.default_rng(11)
    word = {8: np.uint8, 16: np.uint16, 32: np.uint32}[dt.bits]
    tile = (3, 4)
    oy, ox = window_ranges(tile)
    ny, nx = len(oy), len(ox)
    old = non_nan_codes(dt, ny * nx * H * W, rng).reshape(ny * nx, H, W)
    o = old.astype(word).view(NUMPY_TYPES[name])
    tile_codes = non_nan_codes(dt, 12, rng).reshape(tile)
    s = tile_codes.astype(word).view(NUMPY_TYPES[name])
    interp.run(store_grid_kernel(dt, tile, oy[0], ox[0], ny, nx), s, o)
    expected = old.astype(word).copy()
    for (a, y0), (c, x0) in itertools.product(enumerate(oy), enumerate(ox)):
        for i, j in itertools.product(range(3), range(4)):
            if 0 <= y0 + i < H and 0 <= x0 + j < W:
                expected[a * nx + c, y0 + i, x0 + j] = tile_codes[i, j]
    np.testing.assert_array_equal(o.view(word), expected)


def test_read_only_output_is_rejected_before_running():
    """Whether a kernel writes a tensor is known statically, so a read-only output is an error
    at launch even when every store happens to fall outside it; nothing is written."""
    kernel = offset_copy_kernel(bittile.f32, (2, 2), 2)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.full((3, 4), 9.0, np.float32)
    y.setflags(write=False)
    with pytest.raises(LaunchError, match="read-only"):
        interp.run(kernel, x, y, 3, 0)
    np.testing.assert_array_equal(y, np.full((3, 4), 9.0, np.float32))


@pytest.mark.parametrize("offs", [(-1, -1), (2, 3), (-1, 3), (2, -1), (1, 1)])
def test_offset_copy_numpy_partial(offs):
    kernel = offset_copy_kernel(bittile.i16, (2, 2), 2)
    x = np.arange(12, dtype=np.int16).reshape(3, 4) + 100
    y = np.full((3, 4), -1, np.int16)
    interp.run(kernel, x, y, *offs)
    expected = np.full((3, 4), -1, np.int16)
    for i, j in itertools.product(range(2), range(2)):
        r, c = offs[0] + i, offs[1] + j
        if 0 <= r < 3 and 0 <= c < 4:
            expected[r, c] = x[r, c]
    np.testing.assert_array_equal(y, expected)


def test_noncontiguous_numpy_arguments():
    """A transposed input is read in its logical order; a strided output is written in place."""
    kb = KernelBuilder("t")
    x = kb.tensor("x", bittile.i32, ["M", "N"])
    y = kb.tensor("y", bittile.i32, ["M", "N"])
    b = kb.builder
    b.store(y, [0, 0], b.add(b.load(x, [0, 0], [3, 4]), 1))
    kernel = kb.finish()
    base = np.arange(12, dtype=np.int32).reshape(4, 3)
    big = np.zeros((3, 8), np.int32)
    out = big[:, ::2]
    interp.run(kernel, base.T, out)
    np.testing.assert_array_equal(big[:, ::2], base.T + 1)
    np.testing.assert_array_equal(big[:, 1::2], 0)


def test_later_program_sees_earlier_store():
    """Programs run in grid order, so program 1 reads what program 0 wrote."""
    kb = KernelBuilder("chain")
    y = kb.tensor("y", bittile.i32, [4])
    kb.grid(3)
    b = kb.builder
    i = b.block_id(0)
    v = b.load(y, [i], [1])
    b.store(y, [b.add(i, 1)], b.add(v, 10))
    kernel = kb.finish()
    arr = np.array([1, 0, 0, 0], np.int32)
    interp.run(kernel, arr)
    np.testing.assert_array_equal(arr, [1, 11, 21, 31])


# ---- bit-exact copies ----------------------------------------------------------------------------
def all_codes(dt) -> np.ndarray:
    if dt.bits <= 16:
        return np.arange(1 << dt.bits, dtype=np.uint64)
    rng = np.random.default_rng(3)
    special = [0, 1, 0x7F7FFFFF, 0x7F800000, 0x7F800001, 0x7FC00000, 0x7FFFFFFF, 0x80000000,
               0xFF800000, 0xFFC00001, 0xFFFFFFFF, 0x00000001, 0x807FFFFF, 0x12345678]
    return np.concatenate([np.array(special, np.uint64),
                           rng.integers(0, 1 << 32, size=4000, dtype=np.uint64)])


def run_packed_copy(dt, codes):
    x = packed_from_codes(codes, dt, (codes.size,))
    y = packed_from_codes(np.zeros(codes.size, np.uint64), dt, (codes.size,))
    interp.run(copy_kernel(dt, codes.size), x, y)
    return ref_unpack(y.data, dt.bits, codes.size)


@pytest.mark.parametrize("dt", ALL, ids=IDS)
def test_copy_is_bit_exact_for_every_non_nan_code(dt):
    codes = all_codes(dt)
    if dt.is_float:
        codes = codes[~np.isnan(ref_decode(codes, dt))]
    np.testing.assert_array_equal(run_packed_copy(dt, codes), codes)


@pytest.mark.parametrize("dt", ALL, ids=IDS)
def test_copy_is_bit_exact_for_every_code(dt):
    """A copy kernel reproduces every code, NaN payloads and signs included."""
    codes = all_codes(dt)
    got = run_packed_copy(dt, codes)
    changed = [(hex(int(c)), hex(int(g))) for c, g in zip(codes, got, strict=False) if c != g]
    assert not changed, f"{len(changed)} codes changed, e.g. {changed[:4]}"


@pytest.mark.parametrize("name", sorted(NUMPY_TYPES))
def test_copy_numpy_bit_exact_non_nan(name):
    dt = bittile.dtype_from_name(name)
    word = {8: np.uint8, 16: np.uint16, 32: np.uint32}[dt.bits]
    codes = all_codes(dt)
    if dt.is_float:
        codes = codes[~np.isnan(ref_decode(codes, dt))]
    x = codes.astype(word).view(NUMPY_TYPES[name])
    y = np.zeros_like(x)
    interp.run(copy_kernel(dt, codes.size), x, y)
    np.testing.assert_array_equal(y.view(word), codes.astype(word))


def test_copy_f32_numpy_nan_payload_preserved():
    codes = np.array([0x7FC00000, 0x7F800001, 0xFFC00000, 0x7FC12345], np.uint32)
    x = codes.view(np.float32)
    y = np.zeros_like(x)
    interp.run(copy_kernel(bittile.f32, 4), x, y)
    assert [hex(c) for c in y.view(np.uint32)] == [hex(c) for c in codes]


def test_store_keeps_untouched_nan_elements_bit_identical():
    """Storing one element must not rewrite the others: numpy's default NaN (0x7E00) in an
    untouched element of an f16 output stays 0x7E00."""
    kernel = offset_copy_kernel(bittile.f16, (1,), 1)
    x = np.ones(4, np.float16)
    y = np.array([np.nan, 0, np.nan, 0], np.float16)
    before = y.view(np.uint16).copy()
    interp.run(kernel, x, y, 1)
    expected = before.copy()
    expected[1] = np.float16(1).view(np.uint16)
    assert [hex(v) for v in y.view(np.uint16)] == [hex(v) for v in expected]


TORCH_TYPES = {
    "u8": torch.uint8, "i8": torch.int8, "i16": torch.int16, "i32": torch.int32,
    "f16": torch.float16, "f32": torch.float32, "bf16": torch.bfloat16,
}


@pytest.mark.parametrize("name", sorted(TORCH_TYPES))
def test_copy_torch_tensors_bit_exact(name):
    dt = bittile.dtype_from_name(name)
    codes = all_codes(dt)
    if dt.is_float:
        codes = codes[~np.isnan(ref_decode(codes, dt))]
    word = {8: np.uint8, 16: np.uint16, 32: np.uint32}[dt.bits]
    if name == "bf16":
        x = torch.from_numpy(codes.astype(np.uint16).view(np.int16).copy()).view(torch.bfloat16)
    else:
        x = torch.from_numpy(codes.astype(word).view(NUMPY_TYPES[name]).copy())
    assert x.dtype == TORCH_TYPES[name]
    y = torch.zeros_like(x)
    interp.run(copy_kernel(dt, codes.size), x, y)
    if name == "bf16":
        got = y.view(torch.int16).numpy().view(np.uint16)
    else:
        got = y.numpy().view(word)
    np.testing.assert_array_equal(got, codes.astype(word))


def test_packed_torch_buffer_is_written_in_place():
    dt = bittile.u3
    codes = np.arange(8, dtype=np.uint64)
    buf = torch.zeros(nbytes_of(8, 3) + 1, dtype=torch.uint8)
    buf[-1] = 0x5A
    x = packed_from_codes(codes, dt, (8,))
    y = PackedTensor(buf, (8,), dt)
    interp.run(copy_kernel(dt, 8), x, y)
    assert buf[-1].item() == 0x5A
    np.testing.assert_array_equal(ref_unpack(buf.numpy(), 3, 8), codes)


def test_data_movement_ops_keep_nan_payloads_and_signed_zeros():
    """where, reshape, permute, broadcast, convert_layout, loop-carried and if-yielded values
    only move data: every bit survives (NaN payloads, signalling NaNs, -0.0)."""
    codes = np.array([[0x7FC00001, 0xFF800001, 0x80000000, 0x7FA00000],
                      [0x3F800000, 0xFFFFFFFF, 0x7F800000, 0x00000001]], np.uint32)
    kb = KernelBuilder("move")
    x = kb.tensor("x", bittile.f32, [2, 4])
    p = kb.scalar("p", bittile.i32)
    ys = [kb.tensor(f"y{i}", bittile.f32, [2, 4]) for i in range(4)]
    yt = kb.tensor("yt", bittile.f32, [4, 2])
    b = kb.builder
    t = b.load(x, [0, 0], [2, 4])
    zeros = b.zeros([2, 4], bittile.f32)
    b.store(ys[0], [0, 0], b.where(b.compare("eq", b.full(p, [2, 4]), 1), t, zeros))
    b.store(ys[1], [0, 0], b.reshape(b.reshape(t, [8]), [2, 4]))
    b.store(yt, [0, 0], b.permute(b.convert_layout(t, bittile.spatial(2, 4)), [1, 0]))
    row = b.broadcast(b.load(x, [0, 0], [1, 4]), [2, 4])
    b.store(ys[2], [0, 0], row)
    with b.for_range(0, p, 1, [zeros]) as loop:
        loop.yield_(t)
    with b.if_(b.compare("gt", p, 0)) as br:
        with br.then_():
            br.yield_(loop.results[0])
        with br.else_():
            br.yield_(zeros)
    b.store(ys[3], [0, 0], br.results[0])
    kernel = kb.finish()
    outs = [np.zeros((2, 4), np.float32) for _ in range(4)]
    outt = np.zeros((4, 2), np.float32)
    interp.run(kernel, codes.view(np.float32), 1, *outs, outt)
    hexes = np.vectorize(hex)
    for got, want in ((outs[0], codes), (outs[1], codes), (outs[2], np.stack([codes[0]] * 2)),
                      (outs[3], codes), (outt, codes.T)):
        assert (hexes(got.view(np.uint32)) == hexes(want)).all(), hexes(got.view(np.uint32))
