"""bittile's standard library: kernels written in the tile language (``stdlib/*.tile``) and
thin Python wrappers that validate, choose tile sizes and launch them."""

from __future__ import annotations

import functools
import pathlib

from bittile.stdlib.attention import attention, decode_attention
from bittile.stdlib.kivi import KIVICache, KIVIQuantized, kivi_quantize
from bittile.stdlib.linear import linear
from bittile.stdlib.pq import PQCache, PQCodebook
from bittile.stdlib.quant import QuantizedWeight, quantize_weight

__all__ = ["kernels", "linear", "QuantizedWeight", "quantize_weight", "attention",
           "decode_attention", "kivi_quantize", "KIVIQuantized", "KIVICache", "PQCodebook",
           "PQCache"]

_HERE = pathlib.Path(__file__).resolve().parent


@functools.cache
def kernels(family: str):
    """The module of ``stdlib/<family>.tile`` (e.g. ``kernels("gemm").linear``)."""
    from bittile.dsl.module import load_module

    return load_module(_HERE / f"{family}.tile")
