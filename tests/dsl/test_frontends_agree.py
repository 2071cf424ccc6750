"""Every example kernel exists in both forms, .tile and Python; both produce the same printed IR
and run to the same (numpy-checked) results."""

# Kernel bodies are read, never run by Python: size names and builtins are undefined here.
# ruff: noqa: F821
from __future__ import annotations

import pathlib

import numpy as np
import pytest

import bittile
from bittile import f32, u4

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


@bittile.kernel
def vector_add(x: f32[N], y: f32[N], z: f32[N], BLOCK: int = 128):
    bittile.grid(bittile.cdiv(N, BLOCK))
    i0 = bittile.block_id(0) * BLOCK
    bittile.store(z, [i0], bittile.load(x, [i0], [BLOCK]) + bittile.load(y, [i0], [BLOCK]))


@bittile.kernel
def softmax(x: f32[M, N], y: f32[M, N], ROWS: int = 4, COLS: int = 128):
    bittile.grid(bittile.cdiv(M, ROWS))
    r0 = bittile.block_id(0) * ROWS
    cols = bittile.broadcast(bittile.arange(COLS)[None, :], [ROWS, COLS])
    valid = cols < N
    t = bittile.where(valid, bittile.load(x, [r0, 0], [ROWS, COLS]), -float("inf"))
    shifted = t - bittile.broadcast(max(t, 1, keepdims=True), [ROWS, COLS])
    e = bittile.where(valid, bittile.exp(shifted), 0.0)
    total = bittile.broadcast(sum(e, 1, keepdims=True), [ROWS, COLS])
    bittile.store(y, [r0, 0], e / total)


@bittile.kernel
def matmul(a: f32[M, K], b: f32[K, N], c: f32[M, N], BM: int = 32, BN: int = 32, BK: int = 32):
    bittile.grid(bittile.cdiv(M, BM), bittile.cdiv(N, BN))
    m0 = bittile.block_id(0) * BM
    n0 = bittile.block_id(1) * BN
    acc = bittile.zeros(f32, [BM, BN])
    for k0 in range(0, K, BK):
        acc = bittile.dot(bittile.load(a, [m0, k0], [BM, BK]), bittile.load(b, [k0, n0], [BK, BN]),
                          acc)
    bittile.store(c, [m0, n0], acc)


@bittile.func
def dequant(wq, scale):
    return (bittile.cast(wq, f32) - 8.0) * scale


@bittile.kernel
def gemv_u4(w: u4[N, K], s: f32[N, K / G], x: f32[K], y: f32[N],
            BN: int = 16, BK: int = 64, G: int = 32):
    bittile.grid(bittile.cdiv(N, BN))
    n0 = bittile.block_id(0) * BN
    acc = bittile.zeros(f32, [BN, 1])
    for k0 in range(0, K, BK):
        sc = bittile.load(s, [n0, k0 / G], [BN, BK / G])
        sc_full = bittile.reshape(bittile.broadcast(sc[:, :, None], [BN, BK / G, G]), [BN, BK])
        wf = dequant(bittile.load(w, [n0, k0], [BN, BK]), sc_full)
        acc = bittile.dot(wf, bittile.reshape(bittile.load(x, [k0], [BK]), [BK, 1]), acc)
    bittile.store(y, [n0], bittile.reshape(acc, [BN]))


PYTHON_KERNELS = {"vector_add": vector_add, "softmax": softmax, "matmul": matmul,
                  "gemv_u4": gemv_u4}


@pytest.mark.parametrize("name", sorted(PYTHON_KERNELS))
def test_both_frontends_print_the_same_ir(name):
    tile_kernel = getattr(bittile.load_module(EXAMPLES / f"{name}.tile"), name)
    assert str(tile_kernel.specialize()) == str(PYTHON_KERNELS[name].specialize())


def test_every_tile_example_has_a_python_twin():
    assert {p.stem for p in EXAMPLES.glob("*.tile")} == set(PYTHON_KERNELS)


def _both(name):
    return getattr(bittile.load_module(EXAMPLES / f"{name}.tile"), name), PYTHON_KERNELS[name]


@pytest.mark.parametrize("n", [1, 127, 129, 300])
def test_vector_add(n):
    rng = np.random.default_rng(n)
    x, y = rng.standard_normal((2, n)).astype(np.float32)
    for kernel in _both("vector_add"):
        z = np.zeros(n, np.float32)
        kernel(x, y, z, BLOCK=64)
        np.testing.assert_array_equal(z, x + y)


@pytest.mark.parametrize("m, n", [(1, 1), (5, 100), (9, 128)])
def test_softmax(m, n):
    x = np.random.default_rng(m).standard_normal((m, n)).astype(np.float32) * 4
    ref = np.exp(x - x.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    for kernel in _both("softmax"):
        y = np.zeros((m, n), np.float32)
        kernel(x, y)
        np.testing.assert_allclose(y, ref, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (33, 17, 70), (64, 64, 64)])
def test_matmul(m, n, k):
    rng = np.random.default_rng(k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    for kernel in _both("matmul"):
        c = np.zeros((m, n), np.float32)
        kernel(a, b, c, BM=16, BN=16, BK=32)
        np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n, k", [(37, 96), (257, 512)])
def test_gemv_u4(n, k):
    rng = np.random.default_rng(n)
    w = rng.integers(0, 16, (n, k))
    s = rng.random((n, k // 32)).astype(np.float32)
    x = rng.standard_normal(k).astype(np.float32)
    ref = ((w - 8.0) * np.repeat(s, 32, axis=1)) @ x
    for kernel in _both("gemv_u4"):
        y = np.zeros(n, np.float32)
        kernel(bittile.pack(w, u4), s, x, y)
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-4)
