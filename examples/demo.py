"""The quickstart demo (`make demo`): a u4-weight GEMV with per-group f32 scales.

    y[n] = sum_k (w[n, k] - 8) * s[n, k // G] * x[k]      w: u4[N, K], s: f32[N, K // G], x: f32[K]

`main` compiles the tile-language version, examples/gemv_u4.tile, with the llvm backend (the
fastest backend on a machine without a GPU; its dot with u4 weights becomes T-MAC-style table
lookups), checks its result against numpy in float64, and times it against numpy's own fp32
GEMV on the dequantized weights, measured in the same run. `build_gemv_u4` builds the same
kernel shape with the IR builder (the tests compare the two).
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

import bittile
from bittile.ir.builder import KernelBuilder
from bittile.ir.symbolic import Sym, cdiv


def build_gemv_u4(block_n: int = 16, block_k: int = 64, group: int = 32):
    """The kernel: one program per block of ``block_n`` outputs, looping over K."""
    if block_k % group:
        raise ValueError("block_k must be a multiple of the group size")
    kb = KernelBuilder("gemv_u4")
    w = kb.tensor("w", bittile.u4, ["N", "K"])
    s = kb.tensor("s", bittile.f32, ["N", Sym("K") // group])
    x = kb.tensor("x", bittile.f32, ["K"])
    y = kb.tensor("y", bittile.f32, ["N"])
    kb.grid(cdiv("N", block_n))
    b = kb.builder
    n0 = b.mul(b.block_id(0), block_n)
    groups = block_k // group
    with b.for_range(0, b.size("K"), block_k, [b.zeros([block_n, 1], bittile.f32)]) as loop:
        k0, acc = loop.iv, loop.carried[0]
        wq = b.cast(b.load(w, [n0, k0], [block_n, block_k]), bittile.f32)
        sc = b.load(s, [n0, b.div(k0, group)], [block_n, groups])
        sc = b.broadcast(b.reshape(sc, [block_n, groups, 1]), [block_n, groups, group])
        wf = b.mul(wq, b.reshape(sc, [block_n, block_k]))
        xs = b.reshape(b.load(x, [k0], [block_k]), [block_k, 1])
        loop.yield_(b.dot(wf, xs, acc))
    b.store(y, [n0], b.reshape(loop.results[0], [block_n]))
    return kb.finish()


def _median_ms(fn, repeats: int = 30) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main() -> int:
    """Run examples/gemv_u4.tile on the llvm backend, check it and time it against numpy."""
    n, k, group = 4096, 4096, 128
    consts = {"BN": 256, "BK": 1024, "G": group}
    rng = np.random.default_rng(0)
    w = rng.integers(0, 16, size=(n, k))
    s = (rng.random((n, k // group)) * 0.02 + 0.001).astype(np.float32)
    x = rng.standard_normal(k).astype(np.float32)
    y = np.zeros(n, np.float32)

    module = bittile.load_module(pathlib.Path(__file__).with_name("gemv_u4.tile"))
    kernel = module.gemv_u4
    print(kernel.specialize(**consts))
    packed = bittile.pack(w, bittile.u4)
    start = time.perf_counter()
    kernel(packed, s, x, y, backend="llvm", **consts)
    first = time.perf_counter() - start

    dense = ((w - 8.0) * np.repeat(s, group, axis=1)).astype(np.float32)
    reference = dense.astype(np.float64) @ x.astype(np.float64)
    nmse = float(np.sum((y - reference) ** 2) / np.sum(reference ** 2))
    ours = _median_ms(lambda: kernel(packed, s, x, y, backend="llvm", **consts))
    numpy_ms = _median_ms(lambda: dense @ x)

    print(f"u4 GEMV {n}x{k}, group {group}: weights packed into {packed.nbytes} bytes "
          f"({dense.nbytes} as fp32)")
    print(f"y[:4] = {np.array2string(y[:4], precision=4)}")
    print(f"normalized mean squared error vs numpy float64: {nmse:.2e} (int8 lookup tables)")
    print(f"first call (compiling, repacking the weights): {first * 1e3:.0f} ms")
    print(f"bittile llvm: {ours:.3f} ms   numpy fp32 GEMV: {numpy_ms:.3f} ms   "
          f"speedup {numpy_ms / ours:.2f}x")
    ok = nmse < 5e-5
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
