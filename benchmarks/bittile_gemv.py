"""bittile's contenders in the GEMV benchmark: ``stdlib/gemm.tile``'s ``linear`` kernel on the
llvm backend, with its dot lowered to table lookups (``bittile_lut``) or to
dequantize-and-FMA (``bittile_fma``), on the weight's packed bitstream as it is."""

from __future__ import annotations

import numpy as np

import bittile
from bittile import stdlib

#: tile sizes per lowering and M (M = 1 is a GEMV)
TILES = {
    "lut": {1: {"BM": 1, "BN": 256, "BK": 1024}, 32: {"BM": 32, "BN": 256, "BK": 1024}},
    "fma": {1: {"BM": 1, "BN": 64, "BK": 256}, 32: {"BM": 32, "BN": 128, "BK": 256}},
}


def _setup(lowering: str):
    def setup(case):
        tiles = TILES[lowering].get(case.m) or TILES[lowering][32]
        if case.k % tiles["BK"] or tiles["BK"] % case.group_size:
            return None
        fmt = case.fmt
        dtype = bittile.int_type(fmt.bits, fmt.signed)
        kernel = stdlib.kernels("gemm").linear
        consts = dict(W=dtype, G=case.group_size, **tiles)
        weight = bittile.PackedTensor(case.weight.packed.reshape(-1), case.shape, dtype)
        scales = np.ascontiguousarray(case.weight.scales, np.float32)
        zeros = np.ascontiguousarray(case.weight.zeros, np.float32)
        x = np.ascontiguousarray(case.x, np.float32)
        y = np.zeros((case.m, case.n), np.float32)
        switches = {"BITTILE_DOT_LOWERING": lowering, "BITTILE_LUT_MAX_M": 64}

        def run():
            with bittile.options(**switches):
                kernel(x, weight, scales, zeros, y, backend="llvm", **consts)
            return y

        run()  # compile and repack the weight, untimed
        return run

    return setup


def register_gemv_contenders(register) -> None:
    """Add bittile's contenders (the ``--plugin`` protocol of benchmarks/gemv.py)."""
    register("bittile_lut", _setup("lut"), tolerance=2e-2,
             description="stdlib linear on llvm, table lookups with int8 tables")
    register("bittile_fma", _setup("fma"),
             description="stdlib linear on llvm, dequantize-and-FMA")
