"""Code paths of the llvm backend that generated programs reach only by chance: the float dot
micro-kernel at every row-block shape (blocks of four rows, a tail block, matrix-vector
products with several accumulator sets along K, columns padded to whole vectors) and the
prefetch of streaming loads (which must not change results, nor touch memory past a tensor)."""

from __future__ import annotations

import numpy as np
import pytest

from bittile.backends import interp
from bittile.backends.llvm import backend
from bittile.backends.llvm.emit_gemm import _column_vectors, _k_unroll
from bittile.dsl.module import load_source
from bittile.testing.guards import guarded

DOT = """
kernel mm[M: int, K: int, N: int](a: f32[M, K], b: f32[K, N], c: f32[M, N]) grid(1) {
    let acc = load(c, [0, 0], [M, N])
    store(c, [0, 0], dot(load(a, [0, 0], [M, K]), load(b, [0, 0], [K, N]), acc))
}
"""

#: (M, K, N): every row count up to a block and a half, tails of one to three rows after whole
#: blocks, K not a multiple of the accumulator sets, N below, at and between whole vectors
DOT_SHAPES = [(m, k, n) for m in (1, 2, 3, 4, 5, 7, 9) for k, n in ((1, 8), (3, 17), (130, 64))]
DOT_SHAPES += [(1, 5, 100), (2, 64, 16), (1, 128, 16), (6, 33, 40), (13, 7, 9)]


@pytest.mark.parametrize(("m", "k", "n"), DOT_SHAPES, ids=lambda v: str(v))
def test_float_dots_of_every_block_shape_match_float64(m, k, n):
    kernel = load_source(DOT, "dot.tile").mm.specialize(M=m, K=k, N=n)
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    c = rng.standard_normal((m, n)).astype(np.float32)
    out = c.copy()
    backend.run(kernel, a, b, out)
    ref = c.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
    # f32 accumulation of k products: a few units of f32 rounding per product magnitude
    bound = 4 * k * np.finfo(np.float32).eps * (np.abs(a) @ np.abs(b) + np.abs(c))
    assert (np.abs(out - ref) <= bound + 1e-30).all()


def test_matrix_vector_blocks_take_more_columns_and_accumulator_sets():
    """The shape choices the micro-kernel makes (they decide speed, not results)."""
    assert _column_vectors(1, 128, 16) == 4 and _column_vectors(4, 128, 16) == 2
    assert _column_vectors(1, 16, 16) == 1  # never more vectors than the columns need
    assert _k_unroll(1) == 4 and _k_unroll(4) == 2 and _k_unroll(8) == 1


STREAM = """
kernel rows[W: int](x: f32[R, W], out: f32[1, W]) grid(1) {
    var acc = zeros(f32, [1, W])
    for r in range(R) {
        acc = acc + load(x, [r, 0], [1, W])
    }
    store(out, [0, 0], acc)
}

kernel once[W: int](x: f32[R, W], out: f32[1, W]) grid(1) {
    store(out, [0, 0], load(x, [R - 1, 0], [1, W]))
}
"""


def test_streaming_loads_prefetch_the_next_row():
    module = load_source(STREAM, "stream.tile")
    assert "llvm.prefetch" in backend.llvm_ir(module.rows.specialize(W=128))
    # below PREFETCH_MIN_BYTES, and a load that does not move with a loop: no prefetch
    assert "llvm.prefetch" not in backend.llvm_ir(module.rows.specialize(W=16))
    assert "llvm.prefetch" not in backend.llvm_ir(module.once.specialize(W=128))


@pytest.mark.parametrize("side", ["start", "end"])
def test_prefetching_rows_stays_inside_the_tensor(side):
    """The last row's prefetch would reach past the tensor: it is clamped (a prefetch cannot
    fault, so this also checks the results against the interpreter on guarded memory)."""
    kernel = load_source(STREAM, "stream.tile").rows.specialize(W=96)
    x = np.random.default_rng(0).standard_normal((5, 96)).astype(np.float32)
    expected = np.zeros((1, 96), np.float32)
    interp.run(kernel, x, expected)
    out = np.zeros((1, 96), np.float32)
    backend.run(kernel, guarded(x.copy(), side), out)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


BIG = """
kernel big[W: int](x: f32[R, W], out: f32[R, W]) grid(R) {
    let t = load(x, [block_id(0), 0], [1, W])
    store(out, [block_id(0), 0], t * t + 1.0)
}
"""


@pytest.mark.parametrize("rows", [1, 5])
def test_kernels_with_large_frames_run_on_the_worker_threads(rows, monkeypatch):
    """A row of 1M floats is a 4 MB stack buffer: more than the calling thread may take
    (launch.CALLER_STACK_BYTES), so every range, even a single one, runs on a 64 MB worker
    stack; a small kernel's estimate stays below the limit."""
    from bittile.backends.llvm import launch

    width = 1 << 20
    big = backend.compile_kernel(load_source(BIG, "big.tile").big.specialize(W=width))
    x = np.random.default_rng(0).standard_normal((rows, width)).astype(np.float32)
    native = big.plan.bind((x, np.zeros_like(x)), {})
    assert big.stack_bytes(native.ints.ctypes.data) > launch.CALLER_STACK_BYTES
    small = backend.compile_kernel(load_source(BIG, "big.tile").big.specialize(W=64))
    x64 = x[:, :64].copy()
    assert small.stack_bytes(small.plan.bind((x64, np.zeros_like(x64)), {}).ints.ctypes.data) \
        < launch.CALLER_STACK_BYTES
    callers = []
    real = launch._launch_on_workers
    monkeypatch.setattr(launch, "_launch_on_workers",
                        lambda worker, *a: callers.append(worker) or real(worker, *a))
    out = np.zeros_like(x)
    big(x, out)
    assert callers == [None]  # no range ran on the calling thread
    np.testing.assert_array_equal(out, x * x + np.float32(1))
