"""Loaders for the weight formats of real checkpoints: GPTQ (v1 and v2) and AutoAWQ's GEMM
layout. Both turn int32 words into bittile's own form (a PackedTensor of codes ``[N, K]``,
f32 scales and zero points ``[N, K / G]``), so that the ``linear`` kernels run on them as they
run on :func:`~bittile.stdlib.quantize_weight`'s output. The format facts, with references, are
in docs/stdlib-gemm.md.

GPTQ (AutoGPTQ ``QuantLinear.pack``, GPTQModel):

- ``qweight`` int32 ``[K * bits / 32, N]``: column ``n`` read as little-endian words is a dense
  LSB-first bitstream of the K codes of output ``n`` (for 2, 4 and 8 bits, word ``r`` holds
  codes ``k = r * 32 / bits + j`` at bits ``[j * bits, (j + 1) * bits)``; 3-bit codes straddle
  words, 32 codes per 3 words). Its transpose's bytes are exactly bittile's packed ``[N, K]``.
- ``qzeros`` int32 ``[groups, N * bits / 32]``: row ``g`` is the same kind of bitstream of the N
  zero points of group ``g``. ``checkpoint_format="gptq"`` (v1) stores each zero point minus
  one, so the zero point is the stored field plus one (without wrapping: a stored all-ones field
  means ``2^bits``, as AutoGPTQ's dequantization computes it); ``"gptq_v2"`` stores it as is.
- ``scales`` f16 ``[groups, N]``; ``g_idx`` int32 ``[K]``: the group of each input channel
  (``k // G`` unless the checkpoint was quantized with act-order).
- ``w[n, k] = scales[g_idx[k], n] * (q[k, n] - zero[g_idx[k], n])``.

AWQ (AutoAWQ ``WQLinear_GEMM``, 4 bits only):

- ``qweight`` int32 ``[K, N / 8]``: nibble ``i`` (bits ``[4 i, 4 i + 4)``) of word ``c`` holds
  column ``8 c + ORDER[i]`` with ``ORDER = (0, 2, 4, 6, 1, 3, 5, 7)``;
- ``qzeros`` int32 ``[K / G, N / 8]``, packed the same way; zero points stored as they are;
- ``scales`` f16 ``[K / G, N]``; ``w[n, k] = (q[k, n] - zero[k // G, n]) * scales[k // G, n]``.
"""

from __future__ import annotations

import math

import numpy as np

from bittile.errors import BittileError
from bittile.ir.bitstream import unpack_codes
from bittile.ir.dtypes import int_type
from bittile.runtime.packed import PackedTensor
from bittile.stdlib.quant import QuantizedWeight, _to_numpy

__all__ = ["load_gptq", "load_awq", "AWQ_ORDER"]

#: the column of each nibble of an AWQ word: nibble i holds column 8 c + AWQ_ORDER[i]
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)

GPTQ_BITS = (2, 3, 4, 8)


def _words(tensor, name: str) -> np.ndarray:
    """An int32 (or uint32) tensor's words as uint32."""
    array = _to_numpy(tensor)
    if array.dtype not in (np.int32, np.uint32) or array.ndim != 2:
        raise BittileError(f"{name} must be a 2-D int32 tensor, got {array.dtype} with shape "
                           f"{list(array.shape)}")
    return np.ascontiguousarray(array).view(np.uint32)


def _bitstream_rows(words: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Each row of little-endian words as a bitstream of ``count`` codes -> [rows, count]."""
    flat = np.ascontiguousarray(words.astype("<u4")).view(np.uint8)
    return unpack_codes(flat, bits, words.shape[0] * count).reshape(words.shape[0], count)


def _float_matrix(tensor, shape, name: str) -> np.ndarray:
    array = _to_numpy(tensor)
    if array.shape != shape:
        raise BittileError(f"{name} must have shape {list(shape)}, got {list(array.shape)}")
    return array.astype(np.float32)


# ---- GPTQ --------------------------------------------------------------------------------------
def load_gptq(qweight, qzeros, scales, g_idx=None, bits: int = 4,
              checkpoint_format: str = "gptq") -> QuantizedWeight:
    """A :class:`QuantizedWeight` from GPTQ tensors (layouts in the module docstring).

    A ``g_idx`` that is not ``k // G`` (act-order) is handled by reordering K: the stored codes
    are sorted by group (stable), the result's ``perm`` records the order, and ``linear`` gathers
    ``x[..., perm]``; ``dequantize()`` returns the original order. The groups after sorting get
    one common length, the gcd of the group sizes (G for real act-order checkpoints).
    """
    if bits not in GPTQ_BITS:
        raise BittileError(f"GPTQ checkpoints have 2, 3, 4 or 8 bits, not {bits}")
    if checkpoint_format not in ("gptq", "gptq_v2"):
        raise BittileError(f"checkpoint_format must be 'gptq' or 'gptq_v2', "
                           f"not {checkpoint_format!r}")
    qweight = _words(qweight, "qweight")
    qzeros = _words(qzeros, "qzeros")
    k, n = qweight.shape[0] * 32 // bits, qweight.shape[1]
    groups = qzeros.shape[0]
    if qzeros.shape[1] * 32 != n * bits:
        raise BittileError(f"qzeros must have shape [groups, {n * bits / 32:g}] for N = {n} and "
                           f"{bits} bits, got {list(qzeros.shape)}")
    scale = _float_matrix(scales, (groups, n), "scales")
    codes = _bitstream_rows(np.ascontiguousarray(qweight.T), bits, k)  # [N, K]
    zeros = _bitstream_rows(qzeros, bits, n).astype(np.float32)  # [groups, N]
    if checkpoint_format == "gptq":
        zeros += 1
    group_of_k = _group_index(g_idx, k, groups)
    perm = np.argsort(group_of_k, kind="stable")
    if np.array_equal(perm, np.arange(k)):
        perm = None
    else:
        codes = codes[:, perm]
        group_of_k = group_of_k[perm]
    counts = np.bincount(group_of_k, minlength=groups)
    group = math.gcd(*(int(c) for c in counts if c))
    block_groups = group_of_k[::group]  # the group of each run of `group` sorted channels
    dtype = int_type(bits, signed=False)
    return QuantizedWeight(
        PackedTensor.from_codes(codes, dtype),
        scale[block_groups].T, zeros[block_groups].T,
        group_size=-1 if group == k else group, perm=perm,
    )


def _group_index(g_idx, k: int, groups: int) -> np.ndarray:
    if g_idx is None:
        if k % groups:
            raise BittileError(f"K = {k} is not a multiple of the {groups} groups of qzeros",
                               hint="pass the checkpoint's g_idx")
        return np.arange(k) // (k // groups)
    index = _to_numpy(g_idx).astype(np.int64).reshape(-1)
    if index.shape != (k,):
        raise BittileError(f"g_idx must have K = {k} entries, got {index.size}")
    if index.min() < 0 or index.max() >= groups:
        raise BittileError(f"g_idx values must be group indices in [0, {groups})")
    return index


# ---- AWQ ---------------------------------------------------------------------------------------
def load_awq(qweight, qzeros, scales, group_size: int) -> QuantizedWeight:
    """A :class:`QuantizedWeight` from AutoAWQ GEMM tensors (4-bit, layouts in the module
    docstring); ``group_size`` -1 means one group per row."""
    qweight = _words(qweight, "qweight")
    qzeros = _words(qzeros, "qzeros")
    k, n = qweight.shape[0], qweight.shape[1] * 8
    group = k if group_size == -1 else group_size
    if group <= 0 or k % group:
        raise BittileError(f"group_size {group_size} does not divide K = {k}")
    if qzeros.shape != (k // group, n // 8):
        raise BittileError(f"qzeros must have shape {[k // group, n // 8]}, "
                           f"got {list(qzeros.shape)}")
    scale = _float_matrix(scales, (k // group, n), "scales")
    codes = _awq_columns(qweight)  # [K, N]
    zeros = _awq_columns(qzeros).astype(np.float32)
    return QuantizedWeight(PackedTensor.from_codes(codes.T, int_type(4, signed=False)),
                           scale.T, zeros.T, group_size=group_size)


def _awq_columns(words: np.ndarray) -> np.ndarray:
    """[rows, N / 8] words -> [rows, N] nibbles in column order."""
    shifts = np.arange(0, 32, 4, dtype=np.uint32)
    nibbles = ((words[:, :, None] >> shifts) & 0xF).astype(np.uint8)  # by position in the word
    out = np.empty_like(nibbles)
    out[:, :, list(AWQ_ORDER)] = nibbles
    return out.reshape(words.shape[0], -1)
