"""pack-bits: sub-byte loads, stores, casts, views and arithmetic become word accesses and
integer ops, with bit-identical interpreter results (every byte of every buffer, the bits past
the end of a tensor and bytes past its buffer included), and nothing sub-byte left behind.

Also the word ops themselves, checked against a Python big-integer model of the bitstream."""

from __future__ import annotations

import math
import pathlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bittile
from bittile.backends import interp
from bittile.backends.interp import semantics
from bittile.errors import BittileError
from bittile.ir import dtypes as D
from bittile.ir.bitstream import packed_nbytes
from bittile.ir.builder import KernelBuilder
from bittile.ir.core import Kernel
from bittile.ir.dtypes import DType
from bittile.ir.layout import column_local, local, replicated, spatial
from bittile.ir.ops import LoadWordsOp, StoreWordsOp
from bittile.ir.parser import parse_kernel
from bittile.ir.printer import print_kernel
from bittile.ir.symbolic import cdiv
from bittile.ir.types import ScalarType, TileType
from bittile.passes.base import parse_pipeline
from bittile.passes.manager import run_pipeline
from bittile.passes.pack_bits import PackBitsPass, assert_no_subbyte_ops
from bittile.runtime.packed import PackedTensor
from bittile.testing.checkers import assert_pipeline_preserves, run_codes
from bittile.testing.ir_strategies import kernels_with_sizes

SUBBYTE: tuple[DType, ...] = (
    D.u1, D.u2, D.u3, D.u4, D.u5, D.u6, D.u7,
    D.i1, D.i2, D.i3, D.i4, D.i5, D.i6, D.i7,
    D.f4e2m1, D.f6e3m2, D.f6e2m3,
    D.float_type(3, 1), D.float_type(1, 1), D.float_type(2, 0), D.float_type(6, 0),
    D.float_type(4, 2), D.float_type(1, 5),
)
SUBBYTE_INTS = tuple(d for d in SUBBYTE if d.is_int)
WORDS = (8, 16, 32)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


# ---- running kernels on bytes -------------------------------------------------------------------
def packed(dtype: DType, shape, rng, extra: int = 3) -> PackedTensor:
    """Random bytes for a tensor, including the bits past its end and ``extra`` bytes past
    its buffer (which nothing may change)."""
    nbytes = packed_nbytes(math.prod(shape), dtype.bits)
    return PackedTensor(rng.integers(0, 256, nbytes + extra, dtype=np.uint8), shape, dtype)


def from_values(values, dtype: DType) -> PackedTensor:
    return PackedTensor.from_codes(dtype.encode(np.asarray(values)), dtype)


def run_bytes(kernel: Kernel, args: dict) -> dict[str, bytes]:
    copies = {name: PackedTensor(a.bytes_view().copy(), a.shape, a.dtype)
              if isinstance(a, PackedTensor) else a for name, a in args.items()}
    interp.run(kernel, **copies)
    return {name: a.bytes_view().tobytes() for name, a in copies.items()
            if isinstance(a, PackedTensor)}


def check_bit_exact(kernel: Kernel, args: dict, words=WORDS) -> dict[str, bytes]:
    """Run ``kernel`` before and after pack-bits (each word size); every byte must agree.
    Returns the buffers of the run before the pass."""
    expected = run_bytes(kernel, args)
    for word in words:
        after = run_pipeline(kernel, f"pack-bits{{word={word}}}", verify=True)
        assert_no_subbyte_ops(after)
        got = run_bytes(after, args)
        for name, data in expected.items():
            if got[name] != data:
                first = next(i for i, (x, y) in enumerate(zip(data, got[name])) if x != y)
                raise AssertionError(
                    f"word={word}: buffer {name!r} differs at byte {first}: "
                    f"{data[first]:#04x} before, {got[name][first]:#04x} after\n{after}")
    return expected


def codes_of(data: bytes, dtype: DType, shape) -> np.ndarray:
    return PackedTensor(np.frombuffer(data, np.uint8).copy(), shape, dtype).codes()


# ---- loads at awkward offsets -------------------------------------------------------------------
G, BM, BK, BL = 6, 3, 7, 11
M, K, L = 5, 13, 37


def load_kernel(dtype: DType, target: DType, layout=None) -> Kernel:
    """Program p loads x[2p-2 : 2p+1, 3p-4 : 3p+3] and v[7p-3 : 7p+8] (edges on every side,
    straddling words) and stores them cast to ``target`` into its own slice of y and z."""
    kb = KernelBuilder(f"load_{dtype.name}")
    x = kb.tensor("x", dtype, ["M", "K"])
    v = kb.tensor("v", dtype, ["L"])
    y = kb.tensor("y", target, [G, BM, BK])
    z = kb.tensor("z", target, [G, BL])
    kb.grid(G)
    b = kb.builder
    pid = b.block_id(0)
    tile = b.load(x, [b.sub(b.mul(pid, 2), 2), b.sub(b.mul(pid, 3), 4)], [BM, BK], layout)
    b.store(y, [pid, 0, 0], b.reshape(b.cast(tile, target), [1, BM, BK]))
    row = b.load(v, [b.sub(b.mul(pid, 7), 3)], [BL])
    b.store(z, [pid, 0], b.reshape(b.cast(row, target), [1, BL]))
    return kb.finish()


def reference_window(codes: np.ndarray, starts, shape) -> np.ndarray:
    """The codes of a tile at ``starts`` (0 outside the tensor)."""
    out = np.zeros(shape, np.uint64)
    for index in np.ndindex(*shape):
        pos = tuple(s + i for s, i in zip(starts, index))
        if all(0 <= p < n for p, n in zip(pos, codes.shape)):
            out[index] = codes[pos]
    return out


@pytest.mark.parametrize("dtype", SUBBYTE, ids=str)
def test_loads_at_edges_and_straddling_words(dtype):
    rng = np.random.default_rng(dtype.bits * 31 + dtype.exponent)
    target = D.f32
    args = {"x": packed(dtype, (M, K), rng), "v": packed(dtype, (L,), rng),
            "y": packed(target, (G, BM, BK), rng), "z": packed(target, (G, BL), rng)}
    out = check_bit_exact(load_kernel(dtype, target), args)
    # the kernel does what it says (an independent reference for the run before the pass)
    x = args["x"].codes()
    y = codes_of(out["y"], target, (G, BM, BK))
    for p in range(G):
        window = reference_window(x, (2 * p - 2, 3 * p - 4), (BM, BK))
        want = target.encode(dtype.decode(window))
        np.testing.assert_array_equal(y[p], want)


@pytest.mark.parametrize("dtype", [D.u3, D.i5, D.f6e2m3, D.u4], ids=str)
def test_loads_cast_to_integers_and_with_a_layout(dtype):
    rng = np.random.default_rng(7)
    layout = spatial(3, 1) * local(1, 7)
    for target in (D.i32, D.i8, D.f16):
        args = {"x": packed(dtype, (M, K), rng), "v": packed(dtype, (L,), rng),
                "y": packed(target, (G, BM, BK), rng), "z": packed(target, (G, BL), rng)}
        check_bit_exact(load_kernel(dtype, target, layout), args)


# ---- stores of partial words --------------------------------------------------------------------
M2, K2, L2, LV = 6, 11, 61, 66


def store_kernel(dtype: DType) -> Kernel:
    """Program p stores a cast tile at z[2p-1 : 2p+2, 5p-3 : 5p+4] (clipped at every edge) and
    a cast row at w[11p-2 : 11p+9], so neighbouring programs share words."""
    kb = KernelBuilder(f"store_{dtype.name}")
    x = kb.tensor("x", D.f32, ["M", "K"])
    v = kb.tensor("v", D.f32, ["L"])
    z = kb.tensor("z", dtype, ["M2", "K2"])
    w = kb.tensor("w", dtype, ["L2"])
    kb.grid(G)
    b = kb.builder
    pid = b.block_id(0)
    tile = b.load(x, [b.sub(b.mul(pid, 2), 2), b.sub(b.mul(pid, 3), 4)], [BM, BK])
    b.store(z, [b.sub(b.mul(pid, 2), 1), b.sub(b.mul(pid, 5), 3)], b.cast(tile, dtype))
    row = b.load(v, [b.mul(pid, BL)], [BL])
    b.store(w, [b.sub(b.mul(pid, BL), 2)], b.cast(row, dtype))
    return kb.finish()


def interesting_values(dtype: DType, count: int, rng) -> np.ndarray:
    """Values that exercise rounding and saturation when cast to ``dtype``: its own values,
    the midpoints between them (ties), values just off the midpoints, out-of-range values,
    zeros of both signs, infinities and NaN."""
    if dtype.is_int:
        base = rng.integers(dtype.min - 3, dtype.max + 4, count).astype(np.float64)
        return base + rng.choice([0.0, 0.5, -0.5, 0.25], count)
    table = np.unique(dtype.value_table())
    mids = (table[1:] + table[:-1]) / 2
    pool = np.concatenate([
        table, mids, np.nextafter(mids.astype(np.float32), np.float32(np.inf)),
        np.nextafter(mids.astype(np.float32), np.float32(-np.inf)), 3 * table,
        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 3e38],
    ])
    return rng.choice(pool, count).astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("dtype", SUBBYTE, ids=str)
def test_stores_keep_neighbours_and_bits_past_the_end(dtype):
    rng = np.random.default_rng(dtype.bits * 17 + dtype.mantissa)
    args = {"x": from_values(interesting_values(dtype, M * K, rng).reshape(M, K), D.f32),
            "v": from_values(interesting_values(dtype, LV, rng), D.f32),
            "z": packed(dtype, (M2, K2), rng), "w": packed(dtype, (L2,), rng)}
    out = check_bit_exact(store_kernel(dtype), args)
    # every element of w in [0, 64) is written, the bits past its end are not
    original = args["w"].bytes_view()
    nbytes = packed_nbytes(L2, dtype.bits)
    assert out["w"][nbytes:] == original[nbytes:].tobytes()
    tail = (L2 * dtype.bits) % 8
    if tail:
        keep = 0xFF & ~((1 << tail) - 1)
        assert out["w"][nbytes - 1] & keep == original[nbytes - 1] & keep
    v = args["v"].codes().view(np.float32).astype(np.float64)
    want = dtype.encode(semantics.cast(v, D.f32, dtype))
    np.testing.assert_array_equal(codes_of(out["w"], dtype, (L2,))[: L2], want[2:2 + L2])


def test_sub_byte_round_trip_through_memory():
    """load u3 -> arithmetic on u3 -> store u3 -> load it back in a second kernel."""
    kb = KernelBuilder("bump")
    x = kb.tensor("x", D.u3, ["N"])
    y = kb.tensor("y", D.u3, ["N"])
    kb.grid(cdiv("N", 5))
    b = kb.builder
    off = b.mul(b.block_id(0), 5)
    t = b.load(x, [off], [5])
    b.store(y, [off], b.add(b.mul(t, b.constant(3, D.u3)), b.constant(5, D.u3)))
    kernel = kb.finish()
    rng = np.random.default_rng(1)
    args = {"x": packed(D.u3, (23,), rng), "y": packed(D.u3, (23,), rng)}
    out = check_bit_exact(kernel, args)
    want = (args["x"].codes().astype(np.int64) * 3 + 5) % 8
    np.testing.assert_array_equal(codes_of(out["y"], D.u3, (23,)), want)


# ---- casts, exhaustively ------------------------------------------------------------------------
WIDE = (D.f32, D.f16, D.bf16, D.f8e4m3, D.f8e5m2, D.i32, D.u32, D.i16, D.u16, D.i8, D.u8)


def cast_kernel(src: DType, targets, count: int) -> Kernel:
    kb = KernelBuilder(f"cast_{src.name}")
    x = kb.tensor("x", src, [count])
    outs = [kb.tensor(f"o{k}", t, [count]) for k, t in enumerate(targets)]
    b = kb.builder
    tile = b.load(x, [0], [count])
    for out, target in zip(outs, targets):
        b.store(out, [0], b.cast(tile, target))
    return kb.finish()


def cast_args(src_values: PackedTensor, targets, rng) -> dict:
    args = {"x": src_values}
    args.update({f"o{k}": packed(t, src_values.shape, rng) for k, t in enumerate(targets)})
    return args


@pytest.mark.parametrize("src", SUBBYTE, ids=str)
def test_every_code_casts_to_every_type(src):
    targets = WIDE + SUBBYTE
    rng = np.random.default_rng(src.bits)
    count = 1 << src.bits
    codes = np.arange(count, dtype=np.uint64)
    out = check_bit_exact(cast_kernel(src, targets, count),
                          cast_args(PackedTensor.from_codes(codes, src), targets, rng),
                          words=(32,))
    for k, target in enumerate(targets):  # against the dtype tables
        want = target.encode(semantics.cast(
            src.value_table(), src, target))
        np.testing.assert_array_equal(codes_of(out[f"o{k}"], target, (count,)), want)


def special_sources(src: DType, rng) -> np.ndarray:
    """Values of ``src`` around every rounding threshold of every sub-byte type."""
    pool = [0.0, -0.0, 1.0, -1.0]
    if src.is_float:
        pool += [np.inf, -np.inf, np.nan, 1e-40, -1e-40, 6e4, -6e4, 3.3e38]
        for dt in SUBBYTE:
            if dt.is_float:
                table = np.unique(dt.value_table())
                mids = (table[1:] + table[:-1]) / 2
                pool += list(table) + list(mids) + list(mids * (1 + 2.0 ** -9)) \
                    + list(mids * (1 - 2.0 ** -9)) + [2 * dt.max, dt.max * 1.2]
        values = np.array(pool, np.float64)
        values = src.decode(src.encode(values, saturate=True))
    else:
        for k in list(range(0, 10)) + list(range(20, 32)):
            for delta in (-1, 0, 1):
                pool += [2.0 ** k + delta, 1.5 * 2.0 ** k + delta, -(1.5 * 2.0 ** k) + delta]
        pool += list(rng.integers(src.min, src.max, 64, endpoint=True))
        values = np.clip(np.array(pool, np.float64), src.min, src.max)
    return values


@pytest.mark.parametrize("src", (D.f32, D.f16, D.bf16, D.f8e5m2, D.i32, D.u32, D.i16, D.u8,
                                 D.i8), ids=str)
def test_casts_to_sub_byte_types_round_and_saturate(src):
    rng = np.random.default_rng(3)
    values = special_sources(src, rng)
    source = PackedTensor.from_codes(src.encode(values, saturate=True), src)
    out = check_bit_exact(cast_kernel(src, SUBBYTE, values.size),
                          cast_args(source, SUBBYTE, rng), words=(32,))
    carried = src.decode(source.codes())
    for k, target in enumerate(SUBBYTE):
        want = target.encode(semantics.cast(carried, src, target))
        np.testing.assert_array_equal(codes_of(out[f"o{k}"], target, (values.size,)), want,
                                      err_msg=f"{src} -> {target}")


# ---- integer arithmetic -------------------------------------------------------------------------
BINARY = ("add", "sub", "mul", "div", "rem", "min", "max", "and", "or", "xor", "shl", "shr")


@pytest.mark.parametrize("dtype", SUBBYTE_INTS, ids=str)
def test_arithmetic_wraps_like_the_spec(dtype):
    side = min(1 << dtype.bits, 16)
    n = side * side
    kb = KernelBuilder(f"arith_{dtype.name}")
    x = kb.tensor("x", dtype, [n])
    y = kb.tensor("y", dtype, [n])
    outs = {k: kb.tensor(f"o_{k}", dtype, [n]) for k in (*BINARY, "neg", "abs", "not", "where")}
    sums = kb.tensor("sums", dtype, [side, 3])
    b = kb.builder
    a, c = b.load(x, [0], [n]), b.load(y, [0], [n])
    for kind in BINARY:
        b.store(outs[kind], [0], b.binary(kind, a, c))
    for kind in ("neg", "abs", "not"):
        b.store(outs[kind], [0], b.unary(kind, a))
    b.store(outs["where"], [0], b.where(b.compare("lt", a, c), a, b.constant(0, dtype)))
    grid = b.reshape(a, [side, side])
    reduced = [b.reshape(b.reduce(kind, grid, 1), [side, 1]) for kind in ("sum", "max", "min")]
    for k, r in enumerate(reduced):
        b.store(sums, [0, k], r)
    kernel = kb.finish()
    rng = np.random.default_rng(dtype.bits)
    codes = np.arange(1 << dtype.bits, dtype=np.uint64)
    xs, ys = np.meshgrid(codes, codes) if side == 1 << dtype.bits else (
        rng.choice(codes, (side, side)), rng.choice(codes, (side, side)))
    args = {"x": PackedTensor.from_codes(xs.reshape(-1), dtype),
            "y": PackedTensor.from_codes(ys.reshape(-1), dtype),
            "sums": packed(dtype, (side, 3), rng)}
    args.update({f"o_{k}": packed(dtype, (n,), rng) for k in outs})
    check_bit_exact(kernel, args, words=(8,))


# ---- views --------------------------------------------------------------------------------------
VIEWS = [
    # (source dtype, source shape, source layout, target dtype, target shape, target layout)
    (D.u4, (4, 8), None, D.u32, (4, 1), None),
    (D.u3, (2, 32), None, D.u32, (2, 3), None),
    (D.u32, (2, 3), None, D.u3, (2, 32), None),
    (D.i3, (3, 8), None, D.i8, (3, 3), None),
    (D.i8, (3, 3), None, D.u6, (3, 4), None),
    (D.f16, (2, 4), None, D.f4e2m1, (2, 16), None),
    (D.f4e2m1, (2, 16), None, D.f16, (2, 4), None),
    (D.u7, (1, 8), None, D.u8, (1, 7), None),
    (D.u5, (2, 8), None, D.u2, (2, 20), None),
    (D.u4, (4, 4), None, D.i4, (4, 4), None),
    (D.u1, (2, 16), None, D.u16, (2, 1), None),
    (D.u4, (4, 8), spatial(4, 1) * local(1, 8), D.u32, (4, 1), spatial(4, 1)),
    (D.u4, (8, 8), spatial(4, 2) * local(2, 4), D.u16, (4, 4),
     spatial(4, 2) * local(1, 2)),
    (D.u8, (4, 3), spatial(4, 1) * local(1, 3), D.u3, (4, 8), spatial(4, 1) * local(1, 8)),
    (D.f6e3m2, (2, 8), column_local(2, 8), D.u16, (2, 3), column_local(2, 3)),
    (D.u4, (2, 8), replicated(2, 2) * spatial(2, 1) * local(1, 8), D.u32, (2, 1),
     replicated(2, 2) * spatial(2, 1)),
    (D.u4, (2, 8), spatial(2, 1) * replicated(2, 2) * local(1, 8), D.u16, (2, 2),
     spatial(2, 1) * replicated(2, 2) * local(1, 2)),
    (D.u6, (2, 4), replicated(2, 2) * spatial(2, 1) * local(1, 4), D.u8, (6, 1),
     replicated(2, 2) * spatial(2, 1) * local(3, 1)),
]


@pytest.mark.parametrize("case", VIEWS, ids=lambda c: f"{c[0]}{list(c[1])}->{c[3]}{list(c[4])}")
def test_views(case):
    src, src_shape, src_layout, dst, dst_shape, dst_layout = case
    kb = KernelBuilder("view")
    x = kb.tensor("x", src, list(src_shape))
    y = kb.tensor("y", dst, list(dst_shape))
    b = kb.builder
    tile = b.load(x, [0] * len(src_shape), src_shape, src_layout)
    b.store(y, [0] * len(dst_shape), b.view(tile, dst, dst_shape, dst_layout))
    kernel = kb.finish()
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 1 << src.bits, src_shape, dtype=np.uint64)
    if src.is_float and src.has_nan:  # keep NaN payloads out of the wide float sources
        codes = src.encode(np.nan_to_num(src.decode(codes), nan=1.0, posinf=2.0, neginf=-2.0))
    args = {"x": PackedTensor.from_codes(codes, src), "y": packed(dst, dst_shape, rng)}
    check_bit_exact(kernel, args)


# ---- scalars, loops and what remains ------------------------------------------------------------
def test_sub_byte_scalar_parameters_and_loop_counters():
    kb = KernelBuilder("scalars")
    a = kb.scalar("a", D.i3)
    s = kb.scalar("s", D.f4e2m1)
    u = kb.scalar("u", D.u2)
    y = kb.tensor("y", D.i3, [8])
    f = kb.tensor("f", D.f32, [8])
    b = kb.builder
    with b.for_range(b.constant(-3, D.i3), b.constant(3, D.i3), b.constant(2, D.i3),
                     [b.zeros([8], D.i3)]) as loop:
        acc = loop.carried[0]
        loop.yield_(b.add(acc, b.broadcast(b.mul(loop.iv, a), [8])))
    b.store(y, [0], loop.results[0])
    total = b.add(b.cast(b.full(s, [8]), D.f32), b.cast(u, D.f32))
    b.store(f, [0], total)
    kernel = kb.finish()
    after = PackBitsPass().run(kernel)
    assert [str(p.type) for p in after.params] == ["i8", "f32", "u8", "tensor<i3[8]>",
                                                     "tensor<f32[8]>"]
    rng = np.random.default_rng(0)
    for a_value, s_value, u_value in [(-4, -6.0, 3), (3, 0.5, 0), (-1, -0.0, 2)]:
        args = {"a": a_value, "s": s_value, "u": u_value, "y": packed(D.i3, (8,), rng),
                "f": packed(D.f32, (8,), rng)}
        check_bit_exact(kernel, args)


def test_predicates_stay_u1_only_as_where_conditions():
    kb = KernelBuilder("preds")
    x = kb.tensor("x", D.f32, [8])
    y = kb.tensor("y", D.f32, [8])
    m = kb.tensor("m", D.u1, [8])
    b = kb.builder
    t = b.load(x, [0], [8])
    only_where = b.compare("gt", t, 0.0)
    also_data = b.compare("lt", t, -1.0)
    b.store(y, [0], b.where(only_where, t, b.where(also_data, -1.0, 0.0)))
    b.store(m, [0], also_data)
    kernel = kb.finish()
    after = PackBitsPass().run(kernel)
    assert_no_subbyte_ops(after)
    compares = [op for op in after.walk() if op.name.startswith("cmp.")]
    assert {str(op.out.type) for op in compares} == {"tile<u1[8]>"}
    rng = np.random.default_rng(2)
    args = {"x": from_values(rng.normal(size=8) * 2, D.f32), "y": packed(D.f32, (8,), rng),
            "m": packed(D.u1, (8,), rng)}
    check_bit_exact(kernel, args)


def test_the_postcondition_check_finds_sub_byte_values():
    kernel = load_kernel(D.u4, D.f32)
    with pytest.raises(AssertionError, match=r"tile.load: result tile<u4\[3, 7\]>"):
        assert_no_subbyte_ops(kernel)
    assert_no_subbyte_ops(PackBitsPass().run(kernel))


def test_pass_options_and_pipeline_text():
    (p,) = parse_pipeline("pack-bits{word=8}")
    assert p == PackBitsPass(word=8) and str(p) == "pack-bits{word=8}"
    assert str(PackBitsPass()) == "pack-bits"
    with pytest.raises(BittileError, match="word must be 8, 16 or 32"):
        PackBitsPass(word=12).run(load_kernel(D.u4, D.f32))


def test_kernels_without_sub_byte_values_are_unchanged():
    kb = KernelBuilder("plain")
    x = kb.tensor("x", D.f16, ["N"])
    kb.grid(1)
    b = kb.builder
    b.store(x, [0], b.mul(b.load(x, [0], [4]), 2.0))
    kernel = kb.finish()
    assert print_kernel(PackBitsPass().run(kernel)) == print_kernel(kernel)


@pytest.mark.parametrize("kernel", [store_kernel(D.u5), load_kernel(D.i3, D.f32)],
                         ids=["store", "load"])
def test_the_printed_form_round_trips(kernel):
    text = print_kernel(PackBitsPass(word=16).run(kernel))
    assert "packed.store_words" in text or "packed.load_words" in text
    assert print_kernel(parse_kernel(text)) == text


GEMV_W4 = """
kernel gemv_w4[BN: int = 8, BK: int = 16](
    w: u4[N, K], x: f32[K], s: f32[N], y: f32[N],
) grid(cdiv(N, BN)) {
    let n0 = block_id(0) * BN
    var acc = zeros(f32, [BN, 1])
    for k0 in range(0, K, BK) {
        let wq = load(w, [n0, k0], [BN, BK])
        let xs = reshape(load(x, [k0], [BK]), [BK, 1])
        acc = dot(cast(wq, f32), xs, acc)
    }
    store(y, [n0], reshape(acc, [BN]) * load(s, [n0], [BN]))
}
"""


def gemv_kernels():
    inline = bittile.load_source(GEMV_W4, "gemv.tile").gemv_w4.specialize()
    example = bittile.load_module(EXAMPLES / "gemv_u4.tile").gemv_u4.specialize()
    return [("inline", inline, 1), ("example", example, 32)]


@pytest.mark.parametrize("pipeline", [
    "pack-bits", "pack-bits{word=8}", "canonicalize,cse,pack-bits{word=16},canonicalize,cse",
    "fuse-elementwise,fuse-dequant-dot,pack-bits", "pack-bits,canonicalize,cse,dce",
])
def test_w4a16_gemv(pipeline):
    """The W4A16 GEMV path: u4 weights loaded as words, decoded to f32, at awkward sizes."""
    rng = np.random.default_rng(11)
    n, k = 13, 96
    for _, kernel, group in gemv_kernels():
        args = {"w": packed(D.u4, (n, k), rng), "x": from_values(rng.normal(size=k), D.f32),
                "y": packed(D.f32, (n,), rng)}
        scales = rng.normal(size=n if group == 1 else (n, k // group))
        args["s"] = from_values(scales, D.f32)
        assert isinstance(run_codes(kernel, args), dict), "the kernel must run"
        after = assert_pipeline_preserves(kernel, pipeline, args=args)
        assert_no_subbyte_ops(after)


# ---- generated kernels --------------------------------------------------------------------------
GENERATED_DTYPES = (D.u1, D.u2, D.u3, D.u4, D.u5, D.u6, D.u7, D.i1, D.i3, D.i4, D.i7,
                    D.f4e2m1, D.f6e3m2, D.f6e2m3, D.float_type(3, 1), D.u8, D.i32, D.f16,
                    D.f32)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kernels_with_sizes(max_ops=24, dtypes=GENERATED_DTYPES), st.sampled_from(WORDS))
def test_generated_kernels_keep_their_results(generated, word):
    after = assert_pipeline_preserves(generated, f"pack-bits{{word={word}}}")
    assert_no_subbyte_ops(after)


# ---- the word ops against a big-integer model ---------------------------------------------------
def stream_of(t: PackedTensor) -> int:
    return int.from_bytes(t.bytes_view().tobytes(), "little")


def word_kernel(dtype: DType, n: int, entries: int, word: DType) -> Kernel:
    kb = KernelBuilder("words")
    x = kb.tensor("x", dtype, [n])
    idx = kb.tensor("idx", D.i32, [entries])
    val = kb.tensor("val", word, [entries])
    msk = kb.tensor("msk", word, [entries])
    out = kb.tensor("out", word, [entries])
    b = kb.builder
    index = b.load(idx, [0], [entries])
    loaded = b.insert(LoadWordsOp.create(x, index, word)).result
    b.store(out, [0], loaded)
    b.insert(StoreWordsOp.create(x, index, b.load(val, [0], [entries]),
                                 b.load(msk, [0], [entries])))
    return kb.finish()


@pytest.mark.parametrize("dtype", [D.u3, D.i5, D.f6e3m2, D.u1, D.u8, D.f16], ids=str)
@pytest.mark.parametrize("word", [D.u8, D.u16, D.u32], ids=str)
def test_word_ops_read_and_write_the_bitstream(dtype, word):
    rng = np.random.default_rng(dtype.bits * word.bits)
    n, entries, w = 29, 24, word.bits
    total = n * dtype.bits
    words = -(-total // w)
    kernel = word_kernel(dtype, n, entries, word)
    x = packed(dtype, (n,), rng)
    index = rng.integers(-2, words + 2, entries)
    index[:4] = index[4:8]  # repeated words: later entries win where masks overlap
    value = rng.integers(0, 1 << w, entries, dtype=np.uint64)
    mask = rng.integers(0, 1 << w, entries, dtype=np.uint64)
    mask[::5] = 0
    args = {"x": x, "idx": from_values(index, D.i32),
            "val": PackedTensor.from_codes(value, word),
            "msk": PackedTensor.from_codes(mask, word), "out": packed(word, (entries,), rng)}
    out = run_bytes(kernel, args)
    # the model: the buffer as one big integer, bits past the tensor's end never move
    stream = stream_of(x)
    inside = (1 << total) - 1
    loaded = [(stream & inside) >> (int(i) * w) & ((1 << w) - 1) if 0 <= i < words else 0
              for i in index]
    np.testing.assert_array_equal(codes_of(out["out"], word, (entries,)), loaded)
    for i, v, m in zip(index, value, mask):
        if 0 <= i < words:
            m = (int(m) << (int(i) * w)) & inside
            stream = (stream & ~m) | ((int(v) << (int(i) * w)) & m)
    assert int.from_bytes(out["x"], "little") == stream


WORDS_TEXT = (pathlib.Path(__file__).resolve().parents[1] / "data" / "words.tir").read_text()


def test_word_ops_print_exactly_and_verify_their_operands():
    assert print_kernel(parse_kernel(WORDS_TEXT)) == WORDS_TEXT
    bad = WORDS_TEXT.replace("{dtype = u16} : tile<u16[8]>", "{dtype = i16} : tile<i16[8]>")
    with pytest.raises(BittileError, match="words are u8, u16 or u32, not i16"):
        parse_kernel(bad)
    with pytest.raises(BittileError, match="the word index must be an i32 tile"):
        parse_kernel(WORDS_TEXT.replace("tensor<i32[8]>", "tensor<i16[8]>")
                     .replace("tile<i32[8]>", "tile<i16[8]>"))
    with pytest.raises(BittileError, match="the mask is u8 but the value u16"):
        mask_u8 = WORDS_TEXT.replace("u16, value = 7} : u16", "u8, value = 7} : u8")
        parse_kernel(mask_u8.replace("tile<u16[8]>\n  packed", "tile<u8[8]>\n  packed"))


# ---- helpers of the pass ------------------------------------------------------------------------
def test_carrier_types_keep_shape_and_layout():
    from bittile.passes.pack_bits import carrier_type

    layout = spatial(2, 1) * local(2, 4)
    assert carrier_type(TileType(D.i3, (4, 4), layout)) == TileType(D.u8, (4, 4), layout)
    assert carrier_type(ScalarType(D.f4e2m1)) == ScalarType(D.u8)
    assert carrier_type(TileType(D.f16, (2,))) == TileType(D.f16, (2,))
