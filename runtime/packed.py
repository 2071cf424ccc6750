"""Host-side packed tensors: ``bittile.pack`` and ``bittile.unpack``.

A :class:`PackedTensor` is a byte buffer holding a tensor of any bit width in bittile's memory
form (``ir/bitstream.py``), with its logical shape and dtype. The buffer may be a numpy uint8
array or a torch uint8 tensor; it is never copied on the way in.
"""

from __future__ import annotations

import math

import numpy as np

from bittile.errors import PackingError
from bittile.ir.bitstream import pack_codes, packed_nbytes, unpack_codes
from bittile.ir.dtypes import DType, dtype_from_name

__all__ = ["PackedTensor", "pack", "unpack", "check_representable"]


class PackedTensor:
    """A tensor of ``dtype`` with logical ``shape`` stored as a dense LSB-first bitstream."""

    __slots__ = ("data", "shape", "dtype", "__weakref__")

    def __init__(self, data, shape, dtype: DType | str):
        dtype = dtype_from_name(dtype)
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise PackingError(f"a packed tensor's shape has no negative sizes, got {shape}")
        _check_byte_buffer(data)
        need = packed_nbytes(math.prod(shape), dtype.bits)
        if _numel(data) < need:
            raise PackingError(
                f"a {dtype.name} tensor of shape {list(shape)} needs {need} bytes, "
                f"the buffer has {_numel(data)}"
            )
        self.data = data
        self.shape = shape
        self.dtype = dtype

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return packed_nbytes(self.size, self.dtype.bits)

    def bytes_view(self) -> np.ndarray:
        """The buffer as a flat numpy uint8 array (a view, not a copy, for CPU data)."""
        data = self.data
        if not isinstance(data, np.ndarray):
            data = data.detach().cpu().numpy() if hasattr(data, "detach") else np.asarray(data)
        return data.reshape(-1)

    def codes(self) -> np.ndarray:
        """The bit pattern of every element, shaped like the tensor."""
        flat = unpack_codes(self.bytes_view(), self.dtype.bits, self.size)
        return flat.astype(self.dtype.code_dtype).reshape(self.shape)

    @classmethod
    def from_codes(cls, codes, dtype: DType | str) -> PackedTensor:
        """Pack raw bit patterns (each must fit in ``dtype.bits`` bits)."""
        dtype = dtype_from_name(dtype)
        codes = np.asarray(codes)
        if codes.dtype.kind not in "ui":
            raise PackingError(f"codes must be integers, got a {codes.dtype} array")
        if codes.dtype.kind == "u":
            bad = codes > np.uint64((1 << dtype.bits) - 1)
        else:
            bad = (codes < 0) | (codes >= (1 << dtype.bits))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise PackingError(
                f"code {codes[idx]} at index {idx} does not fit in {dtype.bits} bits ({dtype.name})"
            )
        return cls(pack_codes(codes, dtype.bits), codes.shape, dtype)

    def __repr__(self) -> str:
        return f"PackedTensor({self.dtype.name}{list(self.shape)}, {self.nbytes} bytes)"


def _numel(data) -> int:
    if hasattr(data, "numel"):
        return int(data.numel())
    return int(np.asarray(data).size)


def _check_byte_buffer(data) -> None:
    dtype = getattr(data, "dtype", None)
    if dtype is None or str(dtype) not in ("uint8", "torch.uint8"):
        raise PackingError(
            f"a packed tensor's buffer must be a uint8 numpy array or torch tensor, got {dtype}"
        )
    contiguous = data.is_contiguous() if hasattr(data, "is_contiguous") else (
        data.flags.c_contiguous
    )
    if not contiguous:
        raise PackingError(
            "a packed tensor's buffer must be contiguous: it is one dense bitstream",
            hint="pass a contiguous copy (np.ascontiguousarray or .contiguous())",
        )


def _to_numpy(array) -> np.ndarray:
    if hasattr(array, "detach") and hasattr(array, "numpy"):  # torch, without importing it
        array = array.detach().cpu()
        if str(array.dtype) == "torch.bfloat16":
            array = array.float()
        return array.numpy()
    return np.asarray(array)


def pack(array, dtype: DType | str, *, saturate: bool = False) -> PackedTensor:
    """Pack an integer or float array as ``dtype``.

    Floats round to the nearest value of ``dtype`` (ties to even). A value outside the type's
    range, a non-integer for an integer type, or a NaN/inf the type cannot hold is an error
    naming the value, unless ``saturate=True``, which clamps to the finite range instead.
    """
    dtype = dtype_from_name(dtype)
    values = _to_numpy(array)
    if values.dtype.kind not in "biuf":
        raise PackingError(f"cannot pack an array of {values.dtype} as {dtype.name}")
    if values.dtype.kind == "b":
        values = values.astype(np.int64)
    if not saturate:
        check_representable(values, dtype)
    return PackedTensor(pack_codes(dtype.encode(values), dtype.bits), values.shape, dtype)


def unpack(packed: PackedTensor) -> np.ndarray:
    """The values of a packed tensor: int64 for integer types, float64 for float types."""
    if not isinstance(packed, PackedTensor):
        raise PackingError(f"unpack takes a PackedTensor, got {type(packed).__name__}")
    return packed.dtype.decode(packed.codes())


def _first_bad(values: np.ndarray, bad: np.ndarray):
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    return values[idx].item(), idx


def check_representable(values: np.ndarray, dtype: DType) -> None:
    """Raise PackingError naming the first value that ``dtype`` cannot hold (after rounding
    floats to nearest)."""
    is_float_input = values.dtype.kind == "f"
    as_float = values.astype(np.float64) if is_float_input else None
    if dtype.is_int:
        if is_float_input:
            bad = ~np.isfinite(as_float) | (as_float != np.round(as_float))
            if bad.any():
                value, idx = _first_bad(values, bad)
                raise PackingError(
                    f"value {value} at index {idx} is not an integer, so it cannot be packed "
                    f"as {dtype.name}",
                    hint="round the values first, or pack as a float type",
                )
            ints = as_float
        else:
            ints = values
        bad = (ints < dtype.min) | (ints > dtype.max)
    else:
        floats = as_float if is_float_input else values.astype(np.float64)
        nan_bad = np.isnan(floats) & (not dtype.has_nan)
        inf_bad = np.isinf(floats) & (not dtype.has_inf)
        if (nan_bad | inf_bad).any():
            value, idx = _first_bad(values, nan_bad | inf_bad)
            raise PackingError(f"value {value} at index {idx} has no encoding in {dtype.name}")
        rounded = dtype.round(floats, saturate=False) if dtype.has_inf else None
        finite = np.isfinite(floats)
        if rounded is not None:
            bad = finite & np.isinf(rounded)
        else:
            half_ulp_above = _overflow_threshold(dtype)
            bad = finite & (np.abs(floats) >= half_ulp_above)
    if bad.any():
        value, idx = _first_bad(values, bad)
        raise PackingError(
            f"value {value} at index {idx} is outside the range of {dtype.name} "
            f"[{dtype.min}, {dtype.max}]",
            hint="pass saturate=True to clamp to the range",
        )


def _overflow_threshold(dtype: DType) -> float:
    """The smallest magnitude that rounds past the largest finite value.

    Halfway between max and the next value the format would have with one more code
    (max + one ulp of max's binade); a tie there rounds to the even code, so it stays at max
    only when max's code is even.
    """
    top = float(dtype.max)
    ulp = 2.0 ** (np.frexp(top)[1] - 1 - dtype.mantissa)
    threshold = top + ulp / 2
    return float(np.nextafter(threshold, np.inf)) if dtype.max_code % 2 == 0 else threshold
