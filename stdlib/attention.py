"""Attention on bittile kernels (``stdlib/attention.tile``): flash attention for prefill and
flash decoding for one query token per sequence.

The wrappers only validate their arguments, choose tile sizes and launch; the computation
(online softmax in f32, causal masking, GQA head mapping, split-K and its log-sum-exp merge) is
in the kernels. Arguments are torch tensors or numpy arrays (bfloat16 numpy arrays come from
``ml_dtypes``); results have the type, dtype and device of ``q``. See
docs/stdlib-attention.md.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bittile.errors import DTypeError, LaunchError
from bittile.ir import dtypes
from bittile.runtime import config

__all__ = ["attention", "decode_attention", "default_backend", "prefill_tiles", "decode_tiles"]

LOG2E = math.log2(math.e)

#: element dtypes the kernels take, by the name torch and numpy (with ml_dtypes) give them
_DTYPES = {"float32": dtypes.f32, "float16": dtypes.f16, "bfloat16": dtypes.bf16}


def default_backend() -> str:
    """``BITTILE_BACKEND`` if set, else ``"llvm"`` when llvmlite imports, else ``"interp"``."""
    return config.get("BITTILE_BACKEND") or ("llvm" if _has_llvmlite() else "interp")


@functools.cache
def _has_llvmlite() -> bool:
    return importlib.util.find_spec("llvmlite") is not None


# ---- tile sizes ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PrefillTiles:
    """Compile-time tile sizes of the ``attention`` kernel."""

    BM: int  # queries per program
    BN: int  # keys per step of the loop
    DP: int  # the head dimension padded to a tile-friendly width

    def as_dict(self) -> dict[str, int]:
        return {"BM": self.BM, "BN": self.BN, "DP": self.DP}


@dataclass(frozen=True)
class DecodeTiles:
    """Compile-time tile sizes of the ``decode_split`` and ``decode_merge`` kernels."""

    GP: int  # query heads per kv head (H / Hkv; a power of two on triton)
    BN: int  # keys per step of the loop
    DP: int  # the head dimension, padded
    SPLITS: int  # chunks the cache is split into (programs per (sequence, kv head))
    SP: int  # SPLITS padded, the tile width of the merge

    def split_dict(self) -> dict[str, int]:
        return {"GP": self.GP, "BN": self.BN, "DP": self.DP}


def _next_pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _pad_head_dim(d: int, backend: str) -> int:
    # Triton's tiles have power-of-two extents (and tl.dot wants at least 16); the CPU's dot
    # micro-kernel works on columns in blocks of 32 (two AVX-512 vectors), so 80 pads to 96.
    if backend == "triton":
        return max(16, _next_pow2(d))
    return _round_up(d, 32) if d > 16 else 16


def prefill_tiles(lq: int, lk: int, d: int, backend: str) -> PrefillTiles:
    """Tile sizes for ``attention``: at most a few distinct values, since each one is compiled
    separately."""
    dp = _pad_head_dim(d, backend)
    # on a GPU, 64x64 tiles of f32 scores with a 128-wide head spill registers (checked ahead
    # of time for sm_80/sm_90 by the tests): triton gets 32x32 tiles
    big = 32 if backend == "triton" else 64
    bm = 16 if lq <= 16 else big
    bn = 16 if lk <= 16 else big
    return PrefillTiles(BM=bm, BN=bn, DP=dp)


def decode_tiles(length: int, group: int, d: int, backend: str, programs: int) -> DecodeTiles:
    """Tile sizes for ``decode_attention`` over ``length`` cached positions: the cache is split
    into chunks of whole key tiles so that there are about 64 programs in all (``programs`` is
    the number of (sequence, kv head) pairs), enough to keep every core of a CPU busy even for
    a single sequence."""
    dp = _pad_head_dim(d, backend)
    gp = _next_pow2(group) if backend == "triton" else group
    # on GPUs larger key tiles spill registers (the tests compile them for sm_80/sm_90)
    gpu_bn = 32 if dp <= 64 else 16
    bn = 16 if length <= 16 else (gpu_bn if backend == "triton" else 64)
    tiles = -(-length // bn)
    splits = max(1, min(-(-64 // programs), tiles))
    return DecodeTiles(GP=gp, BN=bn, DP=dp, SPLITS=splits, SP=_next_pow2(splits))


# ---- arguments -----------------------------------------------------------------------------
def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _dtype_name(x: Any) -> str:
    return str(x.dtype).removeprefix("torch.")


def _as_tensor(x: Any, name: str, rank: int) -> Any:
    """``x`` as a contiguous torch tensor or numpy array of rank ``rank``."""
    if _is_torch(x):
        if x.dim() != rank:
            raise LaunchError(f"{name} must have {rank} dimensions, got shape {list(x.shape)}")
        return x.detach().contiguous()
    if not isinstance(x, np.ndarray):
        raise LaunchError(f"{name} must be a torch tensor or a numpy array, got "
                          f"{type(x).__name__}")
    if x.ndim != rank:
        raise LaunchError(f"{name} must have {rank} dimensions, got shape {list(x.shape)}")
    return np.ascontiguousarray(x)


def _element_dtype(name: str, x: Any) -> dtypes.DType:
    dtype = _DTYPES.get(_dtype_name(x))
    if dtype is None:
        raise DTypeError(f"{name} holds {_dtype_name(x)}; attention takes float32, float16 or "
                         "bfloat16")
    return dtype


def _same_dtype(reference: str, ref: Any, **others: Any) -> dtypes.DType:
    dtype = _element_dtype(reference, ref)
    for name, x in others.items():
        if _dtype_name(x) != _dtype_name(ref):
            raise DTypeError(f"{name} holds {_dtype_name(x)} but {reference} holds "
                             f"{_dtype_name(ref)}", hint="convert them to one dtype")
    return dtype


def _same_kind(reference: Any, **others: Any) -> None:
    for name, x in others.items():
        if _is_torch(x) != _is_torch(reference):
            raise LaunchError(f"{name} is a {type(x).__name__} but q is a "
                              f"{type(reference).__name__}", hint="pass all torch tensors or "
                              "all numpy arrays")
        if _is_torch(x) and x.device != reference.device:
            raise LaunchError(f"{name} is on {x.device} but q is on {reference.device}")


def _empty(like: Any, shape: tuple[int, ...], float32: bool = False) -> Any:
    if _is_torch(like):
        import torch

        return torch.empty(shape, dtype=torch.float32 if float32 else like.dtype,
                           device=like.device)
    return np.empty(shape, np.float32 if float32 else like.dtype)


def _numel(x: Any) -> int:
    return x.numel() if _is_torch(x) else x.size


def _zero(out: Any) -> Any:
    if _is_torch(out):
        out.zero_()
    else:
        out[...] = 0
    return out


def _scale(scale: float | None, d: int) -> float:
    if scale is None:
        return 1.0 / math.sqrt(d)
    scale = float(scale)
    if not math.isfinite(scale):
        raise LaunchError(f"scale must be a finite number, got {scale}")
    return scale


def _kernels():
    from bittile.stdlib import kernels

    return kernels("attention")


# ---- prefill -------------------------------------------------------------------------------
def attention(q, k, v, *, causal: bool = False, scale: float | None = None,
              backend: str | None = None):
    """``softmax(scale * q @ k^T (+ causal mask)) @ v`` for q [B, H, Lq, D] and k, v
    [B, Hkv, Lk, D] with H a multiple of Hkv (query head h uses kv head h // (H // Hkv)).

    f32, f16 or bf16 inputs (all one dtype), f32 accumulation, result in q's dtype. ``scale``
    defaults to ``1 / sqrt(D)``. ``causal`` masks as torch's ``is_causal``: query i sees keys
    j <= i (aligned top-left, also when Lq != Lk). ``backend`` defaults to
    :func:`default_backend`.
    """
    backend = backend or default_backend()
    _same_kind(q, k=k, v=v)
    q, k, v = (_as_tensor(x, n, 4) for x, n in ((q, "q"), (k, "k"), (v, "v")))
    dtype = _same_dtype("q", q, k=k, v=v)
    b, h, lq, d = q.shape
    if tuple(k.shape) != tuple(v.shape):
        raise LaunchError(f"k and v must have one shape, got {list(k.shape)} and "
                          f"{list(v.shape)}")
    bk, hkv, lk, dk = k.shape
    if (bk, dk) != (b, d):
        raise LaunchError(f"k has shape {list(k.shape)}, which does not match q's "
                          f"{list(q.shape)}", hint="q is [B, H, Lq, D], k and v [B, Hkv, Lk, D]")
    if hkv == 0 or h % hkv:
        raise LaunchError(f"q has {h} heads, which is not a multiple of k's and v's {hkv}",
                          hint="GQA needs H to be a multiple of Hkv")
    if d == 0:
        raise LaunchError("the head dimension D must be at least 1")
    out = _empty(q, (b, h, lq, d))
    if _numel(out) == 0:
        return out
    if lk == 0:
        return _zero(out)  # as torch: no keys, no weights, a zero result
    tiles = prefill_tiles(lq, lk, d, backend)
    qk_scale = _scale(scale, d) * LOG2E
    _kernels().attention(q, k, v, out, qk_scale, backend=backend, T=dtype, CAUSAL=bool(causal),
                         **tiles.as_dict())
    return out


# ---- decode --------------------------------------------------------------------------------
def decode_attention(q, k_cache, v_cache, seq_lens, *, scale: float | None = None,
                     backend: str | None = None):
    """Attention of one query token per sequence over its cached keys and values.

    q [B, H, D], k_cache and v_cache [B, Hkv, Lmax, D] (H a multiple of Hkv), seq_lens int32
    [B]: sequence b attends to its first ``seq_lens[b]`` cached positions (0 gives a zero
    result). The cache is split into chunks processed in parallel, each giving a partial
    (max, sum, output) that a second kernel merges with a log-sum-exp (flash decoding).
    """
    backend = backend or default_backend()
    _same_kind(q, k_cache=k_cache, v_cache=v_cache, seq_lens=seq_lens)
    q = _as_tensor(q, "q", 3)
    k_cache = _as_tensor(k_cache, "k_cache", 4)
    v_cache = _as_tensor(v_cache, "v_cache", 4)
    seq_lens = _as_tensor(seq_lens, "seq_lens", 1)
    dtype = _same_dtype("q", q, k_cache=k_cache, v_cache=v_cache)
    if _dtype_name(seq_lens) != "int32":
        raise DTypeError(f"seq_lens must hold int32, got {_dtype_name(seq_lens)}")
    b, h, d = q.shape
    if tuple(k_cache.shape) != tuple(v_cache.shape):
        raise LaunchError(f"k_cache and v_cache must have one shape, got "
                          f"{list(k_cache.shape)} and {list(v_cache.shape)}")
    bk, hkv, lmax, dk = k_cache.shape
    if (bk, dk) != (b, d) or tuple(seq_lens.shape) != (b,):
        raise LaunchError(f"shapes do not match: q {list(q.shape)}, caches "
                          f"{list(k_cache.shape)}, seq_lens {list(seq_lens.shape)}",
                          hint="q is [B, H, D], the caches [B, Hkv, Lmax, D], seq_lens [B]")
    if hkv == 0 or h % hkv:
        raise LaunchError(f"q has {h} heads, which is not a multiple of the caches' {hkv}",
                          hint="GQA needs H to be a multiple of Hkv")
    if d == 0:
        raise LaunchError("the head dimension D must be at least 1")
    lens = seq_lens.cpu().numpy() if _is_torch(seq_lens) else seq_lens
    if lens.size and (lens.min() < 0 or lens.max() > lmax):
        raise LaunchError(f"seq_lens must lie in [0, {lmax}] (the cache length), got values "
                          f"from {lens.min()} to {lens.max()}")
    out = _empty(q, (b, h, d))
    if b * h == 0:
        return out
    used = int(lens.max()) if lens.size else 0
    if used == 0:
        return _zero(out)
    group = h // hkv
    tiles = decode_tiles(used, group, d, backend, b * hkv)
    qk_scale = _scale(scale, d) * LOG2E
    # partial results: per (sequence, query head, split) a running max (base-2 scores), a sum
    # of weights, and the weighted sum of values (f32, padded head dimension)
    part_m = _empty(q, (b, hkv, group, tiles.SPLITS), float32=True)
    part_l = _empty(q, (b, hkv, group, tiles.SPLITS), float32=True)
    part_o = _empty(q, (b, hkv, group, tiles.SPLITS, tiles.DP), float32=True)
    kern = _kernels()
    q4 = q.reshape(b, hkv, group, d)
    # `used` bounds the loop over the cache: the kernel cannot read seq_lens[b] into a scalar
    # on every backend yet, so it masks positions past seq_lens[b] instead of skipping them
    kern.decode_split(q4, k_cache, v_cache, seq_lens, part_m, part_l, part_o, qk_scale, used,
                      backend=backend, T=dtype, **tiles.split_dict())
    kern.decode_merge(part_m.reshape(b * h, tiles.SPLITS), part_l.reshape(b * h, tiles.SPLITS),
                      part_o.reshape(b * h, tiles.SPLITS, tiles.DP), out.reshape(b * h, d),
                      backend=backend, T=dtype, SP=tiles.SP, DP=tiles.DP)
    return out
