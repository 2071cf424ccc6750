"""Interpreter control flow and program structure: for loops (carried values, negative steps,
zero-trip loops, step 0), if/else, grids and block ids, sizes, and a whole GEMV kernel."""

from __future__ import annotations

import itertools
import pathlib
import runpy

import numpy as np
import pytest

import bittile
from bittile import LaunchError
from bittile.backends import interp
from bittile.ir.builder import KernelBuilder
from bittile.ir.symbolic import cdiv


def loop_kernel():
    """y = [sum of i, number of iterations, last i (or -999)] over range(lo, hi, step)."""
    kb = KernelBuilder("loop")
    lo, hi, step = (kb.scalar(n, bittile.i32) for n in ("lo", "hi", "step"))
    y = kb.tensor("y", bittile.i32, [3])
    b = kb.builder
    with b.for_range(lo, hi, step, [0, 0, -999]) as loop:
        i = loop.iv
        s, c, _ = loop.carried
        loop.yield_(b.add(s, i), b.add(c, 1), i)
    s, c, last = loop.results
    vec = b.add(b.mul(b.arange(3), 0), 0)  # i32[3] of zeros
    idx = b.arange(3)
    out = b.where(b.compare("eq", idx, 0), b.broadcast(s, [3]), vec)
    out = b.where(b.compare("eq", idx, 1), b.broadcast(c, [3]), out)
    out = b.where(b.compare("eq", idx, 2), b.broadcast(last, [3]), out)
    b.store(y, [0], out)
    return kb.finish()


@pytest.mark.parametrize("lo, hi, step", [
    (0, 10, 1), (0, 10, 3), (10, 0, -3), (5, 5, 1), (5, 0, 1), (0, 5, -1), (-7, 7, 4),
    (3, -9, -5), (-2, -1, 100), (0, 1, -1), (100, -100, -7),
])
def test_for_loop_ranges(lo, hi, step):
    y = np.zeros(3, np.int32)
    interp.run(loop_kernel(), lo, hi, step, y)
    r = list(range(lo, hi, step))
    assert y.tolist() == [sum(r), len(r), r[-1] if r else -999]


def test_for_loop_step_zero_is_a_launch_error():
    y = np.zeros(3, np.int32)
    with pytest.raises(LaunchError, match="step"):
        interp.run(loop_kernel(), 0, 10, 0, y)
    assert y.tolist() == [0, 0, 0]


def test_for_loop_carries_tiles_and_wraps():
    """An i8 tile accumulator wraps on every addition."""
    kb = KernelBuilder("acc")
    x = kb.tensor("x", bittile.i8, ["N"])
    y = kb.tensor("y", bittile.i8, [4])
    b = kb.builder
    with b.for_range(0, b.size("N"), 4, [b.zeros([4], bittile.i8)]) as loop:
        loop.yield_(b.add(loop.carried[0], b.load(x, [loop.iv], [4])))
    b.store(y, [0], loop.results[0])
    kernel = kb.finish()
    xv = np.random.default_rng(0).integers(-128, 128, size=22).astype(np.int8)
    out = np.zeros(4, np.int8)
    interp.run(kernel, xv, out)
    padded = np.zeros(24, np.int64)
    padded[:22] = xv
    expected = [((v + 128) % 256) - 128 for v in padded.reshape(6, 4).sum(axis=0)]
    assert out.tolist() == expected


def test_nested_loops_and_if_inside_loop():
    """sum over i in [0, n), j in [0, i) of (i * j if (i + j) is even else -1)."""
    kb = KernelBuilder("nest")
    n = kb.scalar("n", bittile.i32)
    y = kb.tensor("y", bittile.i32, [1])
    b = kb.builder
    with b.for_range(0, n, 1, [0]) as outer:
        i = outer.iv
        with b.for_range(0, i, 1, [outer.carried[0]]) as inner:
            j = inner.iv
            even = b.compare("eq", b.binary("and", b.add(i, j), 1), 0)
            with b.if_(even) as br:
                with br.then_():
                    br.yield_(b.mul(i, j))
                with br.else_():
                    br.yield_(-1)
            inner.yield_(b.add(inner.carried[0], br.results[0]))
        outer.yield_(inner.results[0])
    b.store(y, [0], b.broadcast(outer.results[0], [1]))
    kernel = kb.finish()
    for nv in (0, 1, 2, 7):
        out = np.zeros(1, np.int32)
        interp.run(kernel, nv, out)
        expected = sum(i * j if (i + j) % 2 == 0 else -1 for i in range(nv) for j in range(i))
        assert out[0] == expected, nv


def test_if_else_with_tile_results_and_stores_in_branches():
    kb = KernelBuilder("ifelse")
    p = kb.scalar("p", bittile.i32)
    x = kb.tensor("x", bittile.f32, [4])
    y = kb.tensor("y", bittile.f32, [4])
    z = kb.tensor("z", bittile.i32, [2])
    b = kb.builder
    xv = b.load(x, [0], [4])
    with b.if_(b.compare("gt", p, 0)) as br:
        with br.then_():
            b.store(z, [0], b.full(1, [1]))
            br.yield_(b.mul(xv, 2.0), p)
        with br.else_():
            b.store(z, [1], b.full(2, [1]))
            br.yield_(b.unary("neg", xv), b.sub(0, p))
    tile, scalar = br.results
    b.store(y, [0], b.add(tile, b.cast(b.full(scalar, [4]), bittile.f32)))
    kernel = kb.finish()
    xa = np.array([1.5, -2, 0, 4], np.float32)
    for pv in (3, 0, -5):
        out, zz = np.zeros(4, np.float32), np.zeros(2, np.int32)
        interp.run(kernel, pv, xa, out, zz)
        if pv > 0:
            np.testing.assert_array_equal(out, xa * 2 + pv)
            assert zz.tolist() == [1, 0]
        else:
            np.testing.assert_array_equal(out, -xa - pv)
            assert zz.tolist() == [0, 2]


def test_if_without_else_or_results():
    kb = KernelBuilder("ifonly")
    p = kb.scalar("p", bittile.u1)
    y = kb.tensor("y", bittile.u8, [2])
    b = kb.builder
    with b.if_(p) as br:
        with br.then_():
            b.store(y, [0], b.full(7, [2], bittile.u8))
    kernel = kb.finish()
    for pv, expected in ((1, [7, 7]), (0, [5, 5])):
        out = np.full(2, 5, np.uint8)
        interp.run(kernel, pv, out)
        assert out.tolist() == expected


def test_loop_counter_of_another_integer_type():
    kb = KernelBuilder("i16loop")
    lo = kb.scalar("lo", bittile.i16)
    y = kb.tensor("y", bittile.i16, [1])
    b = kb.builder
    with b.for_range(lo, 30000, 10000, [b.constant(0, bittile.i16)]) as loop:
        loop.yield_(b.add(loop.carried[0], loop.iv))
    b.store(y, [0], b.broadcast(loop.results[0], [1]))
    out = np.zeros(1, np.int16)
    interp.run(kb.finish(), -5, out)
    expected = sum(range(-5, 30000, 10000))  # 59985 wraps in i16
    assert out[0] == ((expected + 32768) % 65536) - 32768


# ---- grids, block ids, sizes -------------------------------------------------------------------
def test_grid_block_ids_and_sizes():
    kb = KernelBuilder("ids")
    x = kb.tensor("x", bittile.i32, ["M", "N"])
    kb.grid(cdiv("M", 2), cdiv("N", 3))
    b = kb.builder
    i, j = b.block_id(0), b.block_id(1)
    code = b.add(b.add(b.mul(i, 100), j), b.mul(b.size("N"), 10000))
    b.store(x, [b.mul(i, 2), b.mul(j, 3)], b.full(code, [2, 3]))
    kernel = kb.finish()
    out = np.zeros((5, 7), np.int32)
    interp.run(kernel, out)
    expected = np.array([[(r // 2) * 100 + c // 3 + 70000 for c in range(7)] for r in range(5)])
    np.testing.assert_array_equal(out, expected)


def test_empty_grid_runs_nothing():
    kb = KernelBuilder("none")
    x = kb.tensor("x", bittile.i32, ["N"])
    kb.grid(cdiv("N", 4))
    kb.builder.store(x, [0], kb.builder.full(1, [4]))
    out = np.zeros(0, np.int32)
    interp.run(kb.finish(), out)
    assert out.size == 0


def test_three_dimensional_grid_order():
    kb = KernelBuilder("grid3")
    x = kb.tensor("x", bittile.i32, [24])
    cnt = kb.tensor("cnt", bittile.i32, [1])
    kb.grid(2, 3, 4)
    b = kb.builder
    n = b.load(cnt, [0], [1])
    flat = b.add(b.add(b.mul(b.block_id(0), 12), b.mul(b.block_id(1), 4)), b.block_id(2))
    b.store(x, [flat], n)  # x[flat] = launch order of program (i, j, k)
    b.store(cnt, [0], b.add(n, 1))
    out, c = np.full(24, -1, np.int32), np.zeros(1, np.int32)
    interp.run(kb.finish(), out, c)
    order = {p: k for k, p in enumerate(itertools.product(range(2), range(3), range(4)))}
    assert sorted(out.tolist()) == list(range(24))
    assert c[0] == 24
    # programs run in row-major grid order (the sequential interpreter's documented loop)
    assert out.tolist() == [order[(f // 12, f // 4 % 3, f % 4)] for f in range(24)]


# ---- a whole kernel ------------------------------------------------------------------------------
def test_u4_gemv_with_group_scales_against_numpy():
    block_n, block_k, group = 8, 32, 16
    demo = runpy.run_path(str(pathlib.Path(__file__).resolve().parents[2] / "examples" / "demo.py"))
    kernel = demo["build_gemv_u4"](block_n=block_n, block_k=block_k, group=group)
    n, k = 21, 96
    rng = np.random.default_rng(0)
    wv = rng.integers(0, 16, size=(n, k))
    sv = (rng.integers(1, 64, size=(n, k // group)) / 64).astype(np.float32)
    xv = (rng.integers(-32, 32, size=k) / 8).astype(np.float32)
    out = np.zeros(n, np.float32)
    interp.run(kernel, bittile.pack(wv, bittile.u4), sv, xv, out)
    # exact products (few bits); per-iteration f32 rounding of the partial sums as in the kernel
    ref = np.zeros(n, np.float32)
    for k0 in range(0, k, block_k):
        part = (wv[:, k0:k0 + block_k] * np.repeat(sv, group, axis=1)[:, k0:k0 + block_k]
                * xv[k0:k0 + block_k]).sum(axis=1)
        ref = (ref.astype(np.float64) + part.astype(np.float32)).astype(np.float32)
    np.testing.assert_array_equal(out, ref)
