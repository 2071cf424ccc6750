"""The quickstart demo (`make demo`): a u4-weight GEMV with per-group f32 scales.

    y[n] = sum_k w[n, k] * s[n, k // G] * x[k]      w: u4[N, K], s: f32[N, K // G], x: f32[K]

`main` runs the tile-language version, examples/gemv_u4.tile, on the NumPy interpreter (the
executable specification) and checks it against numpy; `build_gemv_u4` builds the same kernel
with the IR builder (the tests compare the two). Faster backends replace the interpreter here
as they land.
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


def main() -> int:
    """Run examples/gemv_u4.tile (the same GEMV with symmetric u4 codes, written in the tile
    language) on the interpreter and check it against numpy in float64."""
    n, k, group = 257, 512, 32
    rng = np.random.default_rng(0)
    w = rng.integers(0, 16, size=(n, k))
    s = (rng.random((n, k // group)) * 0.1).astype(np.float32)
    x = rng.standard_normal(k).astype(np.float32)
    y = np.zeros(n, np.float32)

    module = bittile.load_module(pathlib.Path(__file__).with_name("gemv_u4.tile"))
    kernel = module.gemv_u4
    print(kernel.specialize(G=group))
    packed = bittile.pack(w, bittile.u4)
    start = time.perf_counter()
    kernel(packed, s, x, y, G=group)
    elapsed = time.perf_counter() - start

    reference = ((w - 8.0) * np.repeat(s, group, axis=1)) @ x.astype(np.float64)
    err = float(np.max(np.abs(y - reference)) / np.max(np.abs(reference)))
    print(f"u4 GEMV {n}x{k}, group {group}: weights packed into {packed.nbytes} bytes")
    print(f"y[:6] = {np.array2string(y[:6], precision=4)}")
    print(f"max relative error vs numpy float64: {err:.2e}")
    print(f"interpreter (reference backend, includes compiling): {elapsed * 1e3:.1f} ms")
    ok = err < 1e-5
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
