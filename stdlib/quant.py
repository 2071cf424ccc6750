"""Weight-only quantization of Linear weights: :class:`QuantizedWeight` and
:func:`quantize_weight`.

A quantized weight ``w [N, K]`` (a torch ``Linear.weight``: N outputs, K inputs) holds integer or
float codes ``q`` as a dense bitstream (a :class:`PackedTensor` ``[N, K]``), and per row one f32
scale ``s`` (and for integer codes one f32 zero point ``z``) per group of ``G`` consecutive
weights along K. It stands for

    integer codes:  w[n, k] = (q[n, k] - z[n, k // G]) * s[n, k // G]
    float codes:    w[n, k] =  q[n, k]                 * s[n, k // G]

computed in f32 in exactly this order (the order the kernels of ``stdlib/gemm.tile`` use).
See ``docs/stdlib-gemm.md`` for the quantization rules.
"""

from __future__ import annotations

import numpy as np

from bittile.errors import BittileError
from bittile.ir.dtypes import DType, dtype_from_name, u4
from bittile.runtime.packed import PackedTensor

__all__ = ["QuantizedWeight", "quantize_weight"]


class QuantizedWeight:
    """Packed weight codes with per-group scales (and zero points for integer codes).

    ``codes`` is a PackedTensor ``[N, K]`` of ``dtype``; ``scales`` and ``zeros`` are f32 numpy
    arrays ``[N, K // group]`` (``zeros`` is None for float codes); ``group_size`` is the group
    length along K (``-1``: one group per row). ``perm``, when not None, is the order of the
    stored K columns: stored column ``j`` is input channel ``perm[j]`` of the original weight
    (GPTQ act-order checkpoints are loaded this way, see :meth:`from_gptq`);
    :func:`bittile.stdlib.linear` then gathers ``x[..., perm]`` before the kernel.
    """

    def __init__(self, codes: PackedTensor, scales, zeros=None, *, group_size: int,
                 perm=None):
        if not isinstance(codes, PackedTensor) or len(codes.shape) != 2:
            raise BittileError("QuantizedWeight codes must be a 2-D PackedTensor [N, K]")
        n, k = codes.shape
        self.codes = codes
        self.dtype: DType = codes.dtype
        self.group_size = int(group_size)
        group = k if self.group_size == -1 else self.group_size
        if group <= 0 or k % group:
            raise BittileError(f"group_size {group_size} does not divide K = {k}")
        self.scales = _f32_matrix(scales, (n, k // group), "scales")
        if self.dtype.is_int:
            if zeros is None:
                raise BittileError(f"{self.dtype} codes need zero points (zeros)")
            self.zeros = _f32_matrix(zeros, (n, k // group), "zeros")
        else:
            if zeros is not None:
                raise BittileError(f"{self.dtype} codes take scales only, not zeros")
            self.zeros = None
        self.perm = None if perm is None else _permutation(perm, k)
        self._kernel_args: dict = {}  # prepared launch arguments, by kernel group size

    # ---- description ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(N, K)``: out_features, in_features."""
        return self.codes.shape

    @property
    def group(self) -> int:
        """The group length along K (K itself for per-channel weights)."""
        return self.shape[1] // self.scales.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes held: packed codes, scales, zeros and the K permutation (if any)."""
        extra = sum(a.nbytes for a in (self.zeros, self.perm) if a is not None)
        return self.codes.nbytes + self.scales.nbytes + extra

    def __repr__(self) -> str:
        group = "per-channel" if self.group_size == -1 else f"group {self.group_size}"
        order = ", act-order" if self.perm is not None else ""
        return (f"QuantizedWeight({self.dtype.name}{list(self.shape)}, {group}{order}, "
                f"{self.nbytes} bytes)")

    # ---- values --------------------------------------------------------------------------
    def dequantize(self) -> np.ndarray:
        """The weight as a float32 numpy array ``[N, K]`` in the original K order, computed
        in f32 exactly as the kernels do."""
        values = self.dtype.decode(self.codes.codes()).astype(np.float32)
        scales = np.repeat(self.scales, self.group, axis=1)
        if self.zeros is not None:
            values = (values - np.repeat(self.zeros, self.group, axis=1)) * scales
        else:
            values = values * scales
        if self.perm is None:
            return values
        out = np.empty_like(values)
        out[:, self.perm] = values
        return out

    # ---- checkpoint formats --------------------------------------------------------------
    @classmethod
    def from_gptq(cls, qweight, qzeros, scales, g_idx=None, bits: int = 4,
                  checkpoint_format: str = "gptq") -> QuantizedWeight:
        """A GPTQ checkpoint's tensors (see ``stdlib/formats.py`` and docs/stdlib-gemm.md)."""
        from bittile.stdlib.formats import load_gptq

        return load_gptq(qweight, qzeros, scales, g_idx=g_idx, bits=bits,
                         checkpoint_format=checkpoint_format)

    @classmethod
    def from_awq(cls, qweight, qzeros, scales, group_size: int) -> QuantizedWeight:
        """An AutoAWQ (GEMM layout) checkpoint's tensors (see ``stdlib/formats.py``)."""
        from bittile.stdlib.formats import load_awq

        return load_awq(qweight, qzeros, scales, group_size)

    # ---- kernel arguments ----------------------------------------------------------------
    def kernel_args(self, group: int) -> tuple:
        """``(scales, zeros)`` re-expressed for a kernel group length ``group`` that divides
        the weight's own group length (each column repeated), cached."""
        args = self._kernel_args.get(group)
        if args is None:
            repeat = self.group // group
            args = tuple(None if a is None else np.ascontiguousarray(np.repeat(a, repeat, axis=1))
                         for a in (self.scales, self.zeros))
            self._kernel_args[group] = args
        return args


def _f32_matrix(values, shape, name) -> np.ndarray:
    array = np.ascontiguousarray(_to_numpy(values), dtype=np.float32)
    if array.shape != shape:
        raise BittileError(f"QuantizedWeight {name} must have shape {list(shape)}, "
                           f"got {list(array.shape)}")
    return array


def _permutation(perm, k) -> np.ndarray:
    perm = np.asarray(_to_numpy(perm), dtype=np.int64).reshape(-1)
    if perm.shape != (k,) or not np.array_equal(np.sort(perm), np.arange(k)):
        raise BittileError(f"perm must be a permutation of range({k})")
    return perm


def _to_numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, without importing torch
        values = values.detach().cpu()
        if str(values.dtype) == "torch.bfloat16":
            values = values.float()
        return values.numpy()
    return np.asarray(values)


# ---- quantization --------------------------------------------------------------------------
def quantize_weight(w, dtype: DType | str = u4, group_size: int = 128,
                    symmetric: bool | None = None) -> QuantizedWeight:
    """Quantize a Linear weight ``w [N, K]`` (torch tensor or numpy array) to ``dtype`` codes
    with one scale (and zero point) per row and group of ``group_size`` weights along K
    (``-1``: per channel, one group per row).

    - unsigned integers u1..u8, ``symmetric=False`` (their default): min-max over the group
      widened to include 0, ``s = (max - min) / (2^b - 1)``, integer ``z = round(-min / s)``;
    - ``symmetric=True`` with unsigned codes: ``z = 2^(b-1)``, ``s = absmax / (2^(b-1) - 1)``
      (u1: ``z = 1/2``, ``s = 2 absmax``, i.e. sign times absmax);
    - signed integers i2..i8 (default symmetric): ``z = 0``, ``s = absmax / (2^(b-1) - 1)``;
      ``symmetric=False`` gives the unsigned min-max codes shifted by ``-2^(b-1)``;
    - float codes (f4e2m1, f6e3m2, f6e2m3, f8e4m3, f8e5m2; always symmetric, no zeros):
      ``s = absmax / dtype.max`` and ``q = w / s`` rounded to nearest even.

    A constant group ``c`` gets ``s = |c|`` (u1 symmetric: ``2 |c|``; all zeros: ``s = 0``) and
    dequantizes exactly. Every integer code's error is at most ``s / 2``.
    """
    dtype = dtype_from_name(dtype)
    w64 = _weight_matrix(w)
    n, k = w64.shape
    group = _check_group(group_size, k)
    _check_dtype(dtype, symmetric)
    groups = w64.reshape(n, k // group, group)
    if symmetric is None:
        symmetric = dtype.kind != "uint"
    if dtype.is_float:
        scales, codes = _quantize_float(groups, dtype)
        zeros = None
    elif symmetric:
        scales, zeros, codes = _quantize_symmetric(groups, dtype)
    else:
        scales, zeros, codes = _quantize_minmax(groups, dtype)
    packed = PackedTensor.from_codes(codes.reshape(n, k), dtype)
    return QuantizedWeight(packed, scales, zeros, group_size=group_size)


def _weight_matrix(w) -> np.ndarray:
    array = _to_numpy(w)
    if array.ndim != 2:
        raise BittileError(f"quantize_weight takes a 2-D weight [N, K], got shape "
                           f"{list(array.shape)}")
    if array.dtype.kind != "f" and array.dtype.name != "bfloat16":  # ml_dtypes bfloat16
        raise BittileError(f"quantize_weight takes float weights, got {array.dtype}")
    w64 = array.astype(np.float64)
    if not np.isfinite(w64).all():
        raise BittileError("quantize_weight: the weight has NaN or infinite values")
    return w64


def _check_group(group_size: int, k: int) -> int:
    if group_size == -1:
        return k
    if not isinstance(group_size, (int, np.integer)) or group_size <= 0 or k % group_size:
        raise BittileError(
            f"group_size {group_size!r} does not divide K = {k}",
            hint="use a group size that divides the weight's second dimension, or -1 for one "
                 "group per row",
        )
    return group_size


def _check_dtype(dtype: DType, symmetric) -> None:
    if dtype.bits > 8 or dtype.kind == "int" and dtype.bits < 2:
        raise BittileError(f"quantize_weight supports u1..u8, i2..i8 and float types of at most "
                           f"8 bits, not {dtype.name}")
    if dtype.is_float and symmetric is False:
        raise BittileError(f"{dtype.name} codes are quantized symmetrically (scales only)",
                           hint="leave symmetric unset for float codes")


def _scale_f32(scale: np.ndarray, groups: np.ndarray, unit: float = 1.0) -> np.ndarray:
    """Scales as stored (f32). A group of one value ``c != 0`` gets ``|c| / unit``, so that
    ``c`` is exactly the code value ``±unit`` (the ordinary scale, rounded to f32, gives ``c``
    only to within an ulp); a group of zeros gets 0."""
    lo, hi = groups.min(axis=-1), groups.max(axis=-1)
    return np.where(lo == hi, np.abs(hi) / unit, scale).astype(np.float32)


def _divisor(scales: np.ndarray) -> np.ndarray:
    """The scales to divide the weights by (1 for groups of zeros), per weight."""
    return np.where(scales > 0, scales, np.float32(1)).astype(np.float64)[..., None]


def _quantize_minmax(groups: np.ndarray, dtype: DType):
    qmax = (1 << dtype.bits) - 1
    lo = np.minimum(groups.min(axis=-1), 0.0)
    hi = np.maximum(groups.max(axis=-1), 0.0)
    scales = _scale_f32((hi - lo) / qmax, groups)
    s = _divisor(scales)
    zeros = np.clip(np.rint(-lo / s[..., 0]), 0, qmax)
    codes = np.clip(np.rint(groups / s) + zeros[..., None], 0, qmax)
    if dtype.kind == "int":  # the same grid, with signed codes
        offset = 1 << (dtype.bits - 1)
        codes, zeros = codes - offset, zeros - offset
    return scales, zeros.astype(np.float32), dtype.encode(codes)


def _quantize_symmetric(groups: np.ndarray, dtype: DType):
    absmax = np.abs(groups).max(axis=-1)
    if dtype.kind == "int":
        levels, zero = (1 << (dtype.bits - 1)) - 1, 0.0
    elif dtype.bits == 1:
        levels, zero = 0.5, 0.5
    else:
        levels, zero = (1 << (dtype.bits - 1)) - 1, float(1 << (dtype.bits - 1))
    scales = _scale_f32(absmax / levels, groups, unit=min(levels, 1))
    codes = np.clip(np.rint(groups / _divisor(scales) + zero), dtype.min, dtype.max)
    zeros = np.full(scales.shape, zero, np.float32)
    return scales, zeros, dtype.encode(codes)


def _quantize_float(groups: np.ndarray, dtype: DType):
    scales = _scale_f32(np.abs(groups).max(axis=-1) / dtype.max, groups)
    codes = dtype.encode(groups / _divisor(scales), saturate=True)
    return scales, codes
