"""``linear(x, qw, bias)``: ``x @ qw.dequantize().T (+ bias)`` by the kernels of
``stdlib/gemm.tile``, which dequantize tile by tile (the full weight is never materialized).

The wrapper only validates, flattens the leading dimensions of ``x``, chooses tile sizes and
launches; docs/stdlib-gemm.md explains the choices.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass

import numpy as np

from bittile.errors import LaunchError
from bittile.ir.dtypes import DType, bf16, f16, f32
from bittile.runtime import config
from bittile.stdlib.quant import QuantizedWeight

__all__ = ["linear", "default_backend", "Tiles", "choose_tiles"]

#: activation dtypes by their numpy / torch names
_ACTIVATIONS = {"float32": f32, "float16": f16, "bfloat16": bf16,
                "torch.float32": f32, "torch.float16": f16, "torch.bfloat16": bf16}


def default_backend() -> str:
    """``BITTILE_BACKEND``, else "llvm" when llvmlite imports, else "interp"."""
    name = config.get("BITTILE_BACKEND")
    if name:
        return name
    return "llvm" if importlib.util.find_spec("llvmlite") is not None else "interp"


def linear(x, qw: QuantizedWeight, bias=None, *, backend: str | None = None):
    """``x @ qw.dequantize().T + bias`` for ``x [..., K]`` (f16, bf16 or f32; a torch tensor or
    a numpy array) and ``qw`` of shape ``[N, K]``; returns ``[..., N]`` of x's dtype and kind.

    ``bias`` (``[N]``, optional) is converted to x's dtype. ``backend`` is "interp", "llvm" or
    "triton" (default: :func:`default_backend`).
    """
    if not isinstance(qw, QuantizedWeight):
        raise LaunchError(f"linear takes a QuantizedWeight, got {type(qw).__name__}",
                          hint="quantize the weight with bittile.stdlib.quantize_weight")
    n, k = qw.shape
    is_torch = _is_torch(x)
    xdtype = _activation_dtype(x)
    shape = tuple(x.shape)
    if not shape or shape[-1] != k:
        raise LaunchError(f"linear: x has shape {list(shape)}, the weight needs [..., {k}] "
                          f"(in_features = {k})")
    rows = x.reshape(-1, k)
    if qw.perm is not None:
        rows = rows[:, _index(qw.perm, rows)]
    rows = rows.contiguous() if is_torch else np.ascontiguousarray(rows)
    m = rows.shape[0]
    y = _empty_like(x, (m, n))
    b = None if bias is None else _bias_like(bias, x, n)
    if m:
        _launch(rows, qw, b, y, xdtype, backend or default_backend())
    return y.reshape(*shape[:-1], n)


def _launch(x, qw: QuantizedWeight, bias, y, xdtype: DType, backend: str) -> None:
    m, _ = x.shape
    tiles = choose_tiles(qw, m, backend)
    scales, zeros = qw.kernel_args(tiles.G)
    name = "linear" if zeros is not None else "linear_float"
    weight = [qw.codes, scales] if zeros is None else [qw.codes, scales, zeros]
    if bias is not None:
        kernel = _specialized(name + "_bias", qw.dtype, xdtype, tiles)
        kernel(x, *weight, bias, y, backend=backend)
    else:
        _specialized(name, qw.dtype, xdtype, tiles)(x, *weight, y, backend=backend)


@functools.lru_cache(maxsize=256)
def _specialized(name: str, wdtype: DType, xdtype: DType, tiles: Tiles):
    """A kernel of gemm.tile specialized on its compile-time values (cached: specializing on
    every call costs more than the rest of the wrapper)."""
    from bittile.stdlib import kernels

    consts = dict(W=wdtype, X=xdtype, BM=tiles.BM, BN=tiles.BN, BK=tiles.BK, G=tiles.G)
    return getattr(kernels("gemm"), name)[consts]


# ---- tile sizes ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tiles:
    """Compile-time tile sizes of one launch; ``G`` is the kernel's group length (it divides
    the weight's own group length and BK)."""

    BM: int
    BN: int
    BK: int
    G: int


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _pow2_dividing(n: int) -> int:
    return n & -n


def _block_k(k: int, group: int, cap: int) -> int:
    """A power-of-two K tile in [group, cap] covering K with little padding and few tiles."""
    candidates = [1 << i for i in range(group.bit_length() - 1, cap.bit_length())]
    return min(candidates, key=lambda bk: (math.ceil(k / bk) * (bk + 32), -bk))


def choose_tiles(qw: QuantizedWeight, m: int, backend: str) -> Tiles:
    """Tile sizes (all powers of two) for ``m`` rows of activations.

    - llvm, integer codes: row blocks of at most ``BITTILE_LUT_MAX_M`` rows, so that the dot is
      lowered to table lookups, and long K tiles (up to 4096): table lookup costs per weight
      and row block, and was measured ~5x faster than dequantize-and-FMA at every M up to 512.
    - llvm dequantize-and-FMA (float codes, groups not a multiple of 4 along K, or
      ``BITTILE_DOT_LOWERING=fma``): BM up to 32, BN 64, BK up to 128.
    - interp: large tiles (few grid steps in Python): BM up to 64, BN up to 256, BK up to 1024.
    - triton: BM up to 32, BN 64, BK up to 128.
    """
    n, k = qw.shape
    # table lookups need groups of a multiple of 4 along K
    lut = (backend == "llvm" and qw.dtype.is_int and _pow2_dividing(qw.group) >= 4
           and config.get("BITTILE_DOT_LOWERING") != "fma")
    if lut:
        bm_cap, bn, bk_cap = max(1, config.get("BITTILE_LUT_MAX_M")), 128, 4096
        bm = min(_pow2_at_least(m), 1 << (bm_cap.bit_length() - 1))
        bn = bn if bm == 1 else 256
    elif backend == "interp":
        bm, bn, bk_cap = min(_pow2_at_least(m), 64), 256, 1024
    else:  # llvm dequantize-and-FMA, triton
        bm, bn, bk_cap = min(_pow2_at_least(m), 32), 64, 128
    group = min(_pow2_dividing(qw.group), bk_cap)
    bk = _block_k(k, group, bk_cap)
    return Tiles(BM=bm, BN=min(bn, _pow2_at_least(n)), BK=bk, G=group)


# ---- arguments -------------------------------------------------------------------------------
def _is_torch(value) -> bool:
    return type(value).__module__.startswith("torch")


def _activation_dtype(x) -> DType:
    if not (_is_torch(x) or isinstance(x, np.ndarray)):
        raise LaunchError(f"linear: x must be a torch tensor or a numpy array, "
                          f"got {type(x).__name__}")
    dtype = _ACTIVATIONS.get(str(x.dtype))
    if dtype is None:
        raise LaunchError(f"linear: x must hold float16, bfloat16 or float32, got {x.dtype}",
                          hint="convert the activations, e.g. x.float()")
    return dtype


def _index(perm: np.ndarray, like):
    if _is_torch(like):
        import torch

        return torch.from_numpy(perm).to(like.device)
    return perm


def _empty_like(x, shape):
    if _is_torch(x):
        import torch

        return torch.empty(shape, dtype=x.dtype, device=x.device)
    return np.empty(shape, x.dtype)


def _bias_like(bias, x, n: int):
    if tuple(getattr(bias, "shape", ())) != (n,):
        raise LaunchError(f"linear: bias must have shape [{n}] (out_features), "
                          f"got {list(getattr(bias, 'shape', [])) or type(bias).__name__}")
    if _is_torch(x):
        import torch

        bias = bias if _is_torch(bias) else torch.from_numpy(np.asarray(bias))
        return bias.to(device=x.device, dtype=x.dtype).contiguous()
    if _is_torch(bias):
        bias = bias.detach().cpu().float().numpy()
    return np.ascontiguousarray(bias, dtype=x.dtype)
