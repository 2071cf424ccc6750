"""Interpreter reductions, broadcast, reshape, permute, arange, full and dot, against numpy /
Python references computed here (exact sums with ``math.fsum`` or Python ints, rounded once)."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

import bittile
from bittile import IRError, PackedTensor
from bittile.backends import interp
from bittile.ir.builder import KernelBuilder

NP = {"f16": np.float16, "f32": np.float32, "bf16": ml_dtypes.bfloat16, "i8": np.int8,
      "u8": np.uint8, "i16": np.int16, "u16": np.uint16, "i32": np.int32, "u32": np.uint32}


def pack(codes, dt, shape) -> PackedTensor:
    codes = np.asarray(codes).astype(np.uint64).reshape(-1)
    bits = np.unpackbits(codes.astype("<u8").view(np.uint8).reshape(-1, 8), axis=1,
                         bitorder="little")[:, : dt.bits]
    return PackedTensor(np.packbits(bits.reshape(-1), bitorder="little"), shape, dt)


def unpack(p: PackedTensor) -> np.ndarray:
    n, bits = int(np.prod(p.shape)), p.dtype.bits
    stream = np.unpackbits(np.asarray(p.data), bitorder="little")[: n * bits].reshape(n, bits)
    codes = (stream.astype(np.int64) << np.arange(bits)).sum(axis=1)
    if p.dtype.kind == "int":
        codes = np.where(codes >= 1 << (bits - 1), codes - (1 << bits), codes)
    return codes.reshape(p.shape)


def empty(shape, dt) -> PackedTensor:
    n = int(np.prod(shape))
    return PackedTensor(np.zeros((n * dt.bits + 7) // 8, np.uint8), shape, dt)


def wrap(v: int, dt) -> int:
    lo = 0 if dt.kind == "uint" else -(1 << (dt.bits - 1))
    return (v - lo) % (1 << dt.bits) + lo


def as_arg(values, dt):
    """numpy array for types numpy has, a hand-packed tensor otherwise."""
    values = np.asarray(values)
    if dt.name in NP:
        return np.asarray(values).astype(np.float32 if dt.is_float else np.int64).astype(
            NP[dt.name])
    lo = 0 if dt.kind == "uint" else -(1 << (dt.bits - 1))
    assert dt.is_int and values.min() >= lo
    return pack(values.astype(np.int64) & ((1 << dt.bits) - 1), dt, values.shape)


def out_arg(shape, dt):
    if dt.name in NP:
        return np.zeros(shape, NP[dt.name])
    return empty(tuple(shape), dt)


def result_of(arg):
    if isinstance(arg, PackedTensor):
        return unpack(arg)
    return arg.astype(np.float64) if arg.dtype.kind == "f" or arg.dtype == NP["bf16"] else arg


# ---- reductions ---------------------------------------------------------------------------------
def reduce_kernel(kind, dt, shape, axis, keepdims):
    kb = KernelBuilder("reduce")
    x = kb.tensor("x", dt, list(shape))
    b = kb.builder
    r = b.reduce(kind, b.load(x, [0] * len(shape), shape), axis, keepdims)
    out_shape = list(r.type.shape) if hasattr(r.type, "shape") else [1]
    if not hasattr(r.type, "shape"):
        r = b.broadcast(r, [1])
    y = kb.tensor("y", dt, out_shape)
    b.store(y, [0] * len(out_shape), r)
    return kb.finish(), out_shape


def ref_reduce(kind, values: np.ndarray, axis, keepdims, dt):
    moved = np.moveaxis(values, axis, -1)
    flat = moved.reshape(-1, moved.shape[-1])
    out = []
    for row in flat:
        if kind == "max" or kind == "min":
            if dt.is_float and np.isnan(row).any():
                out.append(np.nan)
            else:
                out.append(max(row.tolist()) if kind == "max" else min(row.tolist()))
        elif dt.is_int:
            out.append(wrap(sum(int(v) for v in row), dt))
        else:
            exact = math.fsum(row.tolist())  # exact sums here: the inputs have few bits
            out.append(float(np.array(exact, np.float32).astype(NP[dt.name])))
    res = np.array(out).reshape(moved.shape[:-1])
    return np.expand_dims(res, axis) if keepdims else res


REDUCE_TYPES = ["i8", "u4", "u1", "i3", "i32", "u32", "f16", "bf16", "f32"]


def reduce_inputs(name, shape, rng):
    dt = bittile.dtype_from_name(name)
    if dt.is_int:
        lo = 0 if dt.kind == "uint" else -(1 << (dt.bits - 1))
        hi = (1 << dt.bits) - 1 + lo
        return rng.integers(lo, hi, size=shape, endpoint=True)
    # few significant bits: the float64 (and fsum) sums are exact, the dtype rounding is not
    scale = {"f16": 2.0 ** -6, "bf16": 2.0 ** -4, "f32": 2.0 ** -12}[name]
    v = rng.integers(-2000, 2000, size=shape) * scale
    if name == "f32":
        v = v + rng.integers(-3, 3, size=shape) * 2.0 ** 20
    return np.asarray(v, np.float64)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("kind", ["sum", "max", "min"])
@pytest.mark.parametrize("name", REDUCE_TYPES)
def test_reduce_2d(name, kind, axis, keepdims):
    dt = bittile.dtype_from_name(name)
    rng = np.random.default_rng(sum(map(ord, name + kind)))
    values = reduce_inputs(name, (4, 6), rng)
    arg = as_arg(values, dt)
    values = result_of(arg)  # the values actually representable
    kernel, out_shape = reduce_kernel(kind, dt, (4, 6), axis, keepdims)
    y = out_arg(out_shape, dt)
    interp.run(kernel, arg, y)
    expected = ref_reduce(kind, values, axis % 2, keepdims, dt)
    np.testing.assert_array_equal(result_of(y), expected)


@pytest.mark.parametrize("kind", ["sum", "max", "min"])
@pytest.mark.parametrize("name", ["i16", "f32", "u4"])
def test_reduce_3d_middle_axis_and_to_scalar(name, kind):
    dt = bittile.dtype_from_name(name)
    rng = np.random.default_rng(3)
    values = reduce_inputs(name, (2, 3, 4), rng)
    arg = as_arg(values, dt)
    values = result_of(arg)
    kernel, out_shape = reduce_kernel(kind, dt, (2, 3, 4), 1, False)
    y = out_arg(out_shape, dt)
    interp.run(kernel, arg, y)
    np.testing.assert_array_equal(result_of(y), ref_reduce(kind, values, 1, False, dt))
    flat = values.reshape(-1)
    arg1 = as_arg(flat, dt)
    kernel, out_shape = reduce_kernel(kind, dt, (24,), 0, False)
    assert out_shape == [1]
    y = out_arg([1], dt)
    interp.run(kernel, arg1, y)
    np.testing.assert_array_equal(result_of(y), ref_reduce(kind, flat, 0, False, dt).reshape(1))


def test_float_sum_rounds_once():
    """2^24 + 1 + 1 + ... : accumulating in f32 would stay at 2^24; one rounding of the exact
    sum gives 2^24 + 4 (and 2^24 + 2 for two ones)."""
    x = np.array([[2.0 ** 24, 1, 1, 1, 1], [2.0 ** 24, 1, 1, 0, 0]], np.float32)
    kernel, _ = reduce_kernel("sum", bittile.f32, (2, 5), 1, False)
    y = np.zeros(2, np.float32)
    interp.run(kernel, x, y)
    assert y.tolist() == [2.0 ** 24 + 4, 2.0 ** 24 + 2]


def test_f16_sum_overflows_to_inf_and_max_min_with_nan():
    x = np.array([[60000, 60000, -1], [1, np.nan, 2], [-np.inf, 3, np.inf]], np.float16)
    kernel, _ = reduce_kernel("sum", bittile.f16, (3, 3), 1, False)
    y = np.zeros(3, np.float16)
    interp.run(kernel, x, y)
    assert np.isposinf(y[0]) and np.isnan(y[1]) and np.isnan(y[2])
    for kind in ("max", "min"):
        kernel, _ = reduce_kernel(kind, bittile.f16, (3, 3), 1, False)
        y = np.zeros(3, np.float16)
        interp.run(kernel, x, y)
        assert np.isnan(y[1])
        assert y[2] == (np.inf if kind == "max" else -np.inf)
        assert y[0] == (60000 if kind == "max" else -1)


def test_sum_of_u1_wraps():
    x = pack(np.array([[1, 1, 1], [1, 0, 1]]), bittile.u1, (2, 3))
    kernel, _ = reduce_kernel("sum", bittile.u1, (2, 3), 1, True)
    y = empty((2, 1), bittile.u1)
    interp.run(kernel, x, y)
    assert unpack(y).tolist() == [[1], [0]]


# ---- broadcast, reshape, permute, arange, full ---------------------------------------------------
def test_broadcast_shapes_and_scalar():
    kb = KernelBuilder("bc")
    r = kb.tensor("r", bittile.i32, [1, 6])
    c = kb.tensor("c", bittile.i32, [4, 1])
    s = kb.scalar("s", bittile.i32)
    y1 = kb.tensor("y1", bittile.i32, [4, 6])
    y2 = kb.tensor("y2", bittile.i32, [4, 6])
    y3 = kb.tensor("y3", bittile.i32, [3, 3])
    b = kb.builder
    rv, cv = b.load(r, [0, 0], [1, 6]), b.load(c, [0, 0], [4, 1])
    b.store(y1, [0, 0], b.broadcast(rv, [4, 6]))
    b.store(y2, [0, 0], b.sub(b.broadcast(cv, [4, 6]), b.broadcast(rv, [4, 6])))
    b.store(y3, [0, 0], b.broadcast(s, [3, 3]))
    kernel = kb.finish()
    rr = np.arange(6, dtype=np.int32).reshape(1, 6) * 10
    cc = np.arange(4, dtype=np.int32).reshape(4, 1) - 2
    outs = [np.zeros((4, 6), np.int32), np.zeros((4, 6), np.int32), np.zeros((3, 3), np.int32)]
    interp.run(kernel, rr, cc, -9, *outs)
    np.testing.assert_array_equal(outs[0], np.broadcast_to(rr, (4, 6)))
    np.testing.assert_array_equal(outs[1], cc - rr)
    np.testing.assert_array_equal(outs[2], np.full((3, 3), -9))


def test_broadcast_rejects_non_unit_dimension():
    kb = KernelBuilder("bad")
    x = kb.tensor("x", bittile.i32, [2, 3])
    t = kb.builder.load(x, [0, 0], [2, 3])
    with pytest.raises(IRError, match="broadcast"):
        kb.builder.broadcast(t, [4, 3])


@pytest.mark.parametrize("shape", [(24,), (6, 4), (2, 3, 4), (1, 24), (4, 1, 6)])
def test_reshape_row_major(shape):
    kb = KernelBuilder("rs")
    x = kb.tensor("x", bittile.u8, [4, 6])
    y = kb.tensor("y", bittile.u8, list(shape))
    b = kb.builder
    b.store(y, [0] * len(shape), b.reshape(b.load(x, [0, 0], [4, 6]), shape))
    xv = np.arange(24, dtype=np.uint8).reshape(4, 6) * 3
    out = np.zeros(shape, np.uint8)
    interp.run(kb.finish(), xv, out)
    np.testing.assert_array_equal(out, xv.reshape(shape))


@pytest.mark.parametrize("dims", [(0, 1, 2), (2, 0, 1), (1, 2, 0), (2, 1, 0), (0, 2, 1)])
def test_permute_3d(dims):
    kb = KernelBuilder("perm")
    x = kb.tensor("x", bittile.u4, [2, 3, 4])
    shape = [(2, 3, 4)[d] for d in dims]
    y = kb.tensor("y", bittile.u4, shape)
    b = kb.builder
    b.store(y, [0, 0, 0], b.permute(b.load(x, [0, 0, 0], [2, 3, 4]), dims))
    xv = np.arange(24).reshape(2, 3, 4) % 16
    out = empty(tuple(shape), bittile.u4)
    interp.run(kb.finish(), pack(xv, bittile.u4, (2, 3, 4)), out)
    np.testing.assert_array_equal(unpack(out), np.transpose(xv, dims))


def test_permute_2d_then_reduce():
    kb = KernelBuilder("perm2")
    x = kb.tensor("x", bittile.f32, [3, 5])
    y = kb.tensor("y", bittile.f32, [5])
    b = kb.builder
    b.store(y, [0], b.sum(b.permute(b.load(x, [0, 0], [3, 5]), [1, 0]), 1))
    xv = np.arange(15, dtype=np.float32).reshape(3, 5)
    out = np.zeros(5, np.float32)
    interp.run(kb.finish(), xv, out)
    np.testing.assert_array_equal(out, xv.sum(axis=0))


@pytest.mark.parametrize("name, n", [("i32", 16), ("u4", 16), ("u1", 2), ("i8", 128),
                                     ("u16", 300), ("i3", 4)])
def test_arange(name, n):
    dt = bittile.dtype_from_name(name)
    kb = KernelBuilder("ar")
    y = kb.tensor("y", dt, [n])
    kb.builder.store(y, [0], kb.builder.arange(n, dt))
    out = out_arg([n], dt)
    interp.run(kb.finish(), out)
    np.testing.assert_array_equal(result_of(out), np.arange(n))


def test_arange_too_large_for_dtype_is_rejected():
    kb = KernelBuilder("ar")
    with pytest.raises(IRError):
        kb.builder.arange(17, bittile.u4)
    with pytest.raises(IRError):
        kb.builder.arange(4, bittile.f32)


def test_full_from_scalar_param_and_constants():
    kb = KernelBuilder("full")
    s = kb.scalar("s", bittile.f16)
    y1 = kb.tensor("y1", bittile.f16, [3, 4])
    y2 = kb.tensor("y2", bittile.i3, [5])
    y3 = kb.tensor("y3", bittile.bf16, [2])
    b = kb.builder
    b.store(y1, [0, 0], b.full(s, [3, 4]))
    b.store(y2, [0], b.full(-4, [5], bittile.i3))
    b.store(y3, [0], b.zeros([2], bittile.bf16))
    out1, out2 = np.zeros((3, 4), np.float16), empty((5,), bittile.i3)
    out3 = np.ones(2, ml_dtypes.bfloat16)
    interp.run(kb.finish(), 0.333, out1, out2, out3)
    np.testing.assert_array_equal(out1, np.full((3, 4), np.float16(0.333)))
    assert unpack(out2).tolist() == [-4] * 5
    assert out3.view(np.uint16).tolist() == [0, 0]


# ---- dot ---------------------------------------------------------------------------------------
def dot_kernel(ab_dt, acc_dt, m, k, n):
    kb = KernelBuilder("dot")
    a = kb.tensor("a", ab_dt, [m, k])
    bt = kb.tensor("b", ab_dt, [k, n])
    c = kb.tensor("c", acc_dt, [m, n])
    y = kb.tensor("y", acc_dt, [m, n])
    b = kb.builder
    r = b.dot(b.load(a, [0, 0], [m, k]), b.load(bt, [0, 0], [k, n]), b.load(c, [0, 0], [m, n]))
    b.store(y, [0, 0], r)
    return kb.finish()


def float_arg(values, name):
    if name in NP:
        return values.astype(np.float32).astype(NP[name])
    dt = bittile.dtype_from_name(name)
    ml = {"f8e4m3": ml_dtypes.float8_e4m3fn, "f8e5m2": ml_dtypes.float8_e5m2,
          "f4e2m1": ml_dtypes.float4_e2m1fn, "f6e2m3": ml_dtypes.float6_e2m3fn}[name]
    codes = values.astype(np.float32).astype(ml).view(np.uint8)
    return pack(codes, dt, values.shape), codes.view(ml).astype(np.float64)


@pytest.mark.parametrize("ab, acc", [("f32", "f32"), ("f16", "f32"), ("f16", "f16"),
                                     ("bf16", "f32"), ("bf16", "bf16"), ("f8e4m3", "f32"),
                                     ("f8e5m2", "f16"), ("f4e2m1", "f16"), ("f6e2m3", "bf16")])
def test_dot_float_exact_inputs(ab, acc):
    """Inputs with few significant bits: the float64 matmul is exact, so the result is the exact
    value rounded once to the accumulator type."""
    rng = np.random.default_rng(len(ab) + len(acc))
    m, k, n = 5, 16, 3
    av = rng.integers(-6, 7, size=(m, k)) * 0.5
    bv = rng.integers(-6, 7, size=(k, n)) * 0.25
    cv = rng.integers(-100, 100, size=(m, n)) * 0.125
    if ab in NP:
        a, b = float_arg(av, ab), float_arg(bv, ab)
        av, bv = a.astype(np.float64), b.astype(np.float64)
    else:
        (a, av), (b, bv) = float_arg(av, ab), float_arg(bv, ab)
    c = cv.astype(np.float32).astype(NP[acc])
    y = np.zeros((m, n), NP[acc])
    interp.run(dot_kernel(bittile.dtype_from_name(ab), bittile.dtype_from_name(acc), m, k, n),
               a, b, c, y)
    exact = av @ bv + c.astype(np.float64)
    expected = exact.astype(np.float32).astype(NP[acc])  # exact values: one rounding
    np.testing.assert_array_equal(y.astype(np.float64), expected.astype(np.float64))


def test_dot_f32_random_vs_float64_matmul_rounded():
    rng = np.random.default_rng(21)
    a = rng.standard_normal((8, 32)).astype(np.float32)
    b = rng.standard_normal((32, 4)).astype(np.float32)
    c = rng.standard_normal((8, 4)).astype(np.float32)
    y = np.zeros((8, 4), np.float32)
    interp.run(dot_kernel(bittile.f32, bittile.f32, 8, 32, 4), a, b, c, y)
    expected = (a.astype(np.float64) @ b.astype(np.float64) + c).astype(np.float32)
    np.testing.assert_array_equal(y, expected)


def test_dot_rounds_once():
    a = np.array([[2.0 ** 11, 1, 1]], np.float16)
    b = np.array([[1], [1], [1]], np.float16)
    c = np.zeros((1, 1), np.float16)
    y = np.zeros((1, 1), np.float16)
    interp.run(dot_kernel(bittile.f16, bittile.f16, 1, 3, 1), a, b, c, y)
    assert y[0, 0] == 2050  # sequential f16 accumulation would give 2048


@pytest.mark.parametrize("ab, acc", [("i8", "i32"), ("u8", "u8"), ("u4", "i32"), ("i4", "i8"),
                                     ("i32", "i32"), ("u32", "u32"), ("u1", "u4"),
                                     ("i16", "i16")])
def test_dot_int_exact_then_wrapped(ab, acc):
    abt, acct = bittile.dtype_from_name(ab), bittile.dtype_from_name(acc)
    rng = np.random.default_rng(len(ab) * 7 + len(acc))
    m, k, n = 4, 24, 5

    def rand(dt, shape):
        lo = 0 if dt.kind == "uint" else -(1 << (dt.bits - 1))
        return rng.integers(lo, lo + (1 << dt.bits), size=shape, dtype=np.int64)

    av, bv, cv = rand(abt, (m, k)), rand(abt, (k, n)), rand(acct, (m, n))
    y = out_arg((m, n), acct)
    interp.run(dot_kernel(abt, acct, m, k, n), as_arg(av, abt), as_arg(bv, abt),
               as_arg(cv, acct), y)
    expected = [[wrap(sum(int(av[i, t]) * int(bv[t, j]) for t in range(k)) + int(cv[i, j]), acct)
                 for j in range(n)] for i in range(m)]
    assert result_of(y).tolist() == expected


def test_dot_u4_weights_gemm_with_i32_accumulator():
    """Every u4 product at full magnitude: 15 * 15 * 64 fits i32 exactly."""
    m, k, n = 3, 64, 2
    av = np.full((m, k), 15)
    bv = np.arange(k * n).reshape(k, n) % 16
    y = np.zeros((m, n), np.int32)
    interp.run(dot_kernel(bittile.u4, bittile.i32, m, k, n), pack(av, bittile.u4, (m, k)),
               pack(bv, bittile.u4, (k, n)), np.zeros((m, n), np.int32), y)
    np.testing.assert_array_equal(y, av @ bv)


def test_dot_type_errors():
    kb = KernelBuilder("bad")
    a = kb.tensor("a", bittile.i8, [2, 2])
    f = kb.tensor("f", bittile.f32, [2, 2])
    b = kb.builder
    ai, af = b.load(a, [0, 0], [2, 2]), b.load(f, [0, 0], [2, 2])
    with pytest.raises(IRError, match="accumulator"):
        b.dot(ai, ai, af)
    with pytest.raises(IRError):
        b.dot(ai, af, af)
    with pytest.raises(IRError, match="chain"):
        b.dot(af, b.load(f, [0, 0], [1, 2]), af)


def test_layouts_do_not_change_values():
    """Layouts on load, arange, full, broadcast, reshape and convert_layout: same values."""
    kb = KernelBuilder("layouts")
    x = kb.tensor("x", bittile.i32, [4, 8])
    y = kb.tensor("y", bittile.i32, [4, 8])
    z = kb.tensor("z", bittile.i32, [32])
    b = kb.builder
    lay = bittile.spatial(2, 4).local(2, 2)
    t = b.load(x, [0, 0], [4, 8], layout=lay)
    t = b.convert_layout(t, bittile.local(4, 8))
    t = b.convert_layout(t, bittile.column_spatial(4, 8))
    r = b.arange(8, bittile.i32, layout=bittile.spatial(8))
    r2 = b.broadcast(b.reshape(r, [1, 8]), [4, 8], layout=bittile.spatial(4, 8))
    f = b.full(b.constant(100, bittile.i32), [4, 8], layout=bittile.local(4, 8))
    b.store(y, [0, 0], b.add(b.add(t, r2), f))
    b.store(z, [0], b.reshape(t, [32], layout=bittile.spatial(4).local(8)))
    xv = np.arange(32, dtype=np.int32).reshape(4, 8) * 5
    out, flat = np.zeros((4, 8), np.int32), np.zeros(32, np.int32)
    interp.run(kb.finish(), xv, out, flat)
    np.testing.assert_array_equal(out, xv + np.arange(8) + 100)
    np.testing.assert_array_equal(flat, xv.reshape(-1))
