"""bittile's contenders in the GEMV benchmark: ``stdlib/gemm.tile``'s ``linear`` kernel on the
llvm backend, with its dot lowered to table lookups (``bittile_lut``) or to
dequantize-and-FMA (``bittile_fma``), on the weight's packed bitstream as it is."""

from __future__ import annotations

import numpy as np

import bittile
from bittile import stdlib


def tiles_for(lowering: str, m: int, k: int, group: int) -> dict:
    """Tile sizes: table lookup takes all of K in one tile (its tables are then built once per
    row block and thread), dequantize-and-FMA steps through K in small tiles."""
    if lowering == "lut":
        return {"BM": m, "BN": 128, "BK": k}
    bk = 256 if k % 256 == 0 and 256 % group == 0 else group
    return {"BM": m, "BN": 128 if m > 1 else 64, "BK": bk}


def _setup(lowering: str):
    def setup(case):
        tiles = tiles_for(lowering, case.m, case.k, case.group_size)
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
