"""Memory that crashes on any access outside it, to prove kernels stay in bounds.

``guarded(array, side="end")`` copies ``array`` into fresh pages so that its last byte is
followed by an inaccessible page (``side="start"``: its first byte is preceded by one). A
kernel that reads or writes past that edge gets a segmentation fault, which fails the test run
loudly: no out-of-bounds access can pass unnoticed, reads included (guard *bytes* only catch
writes). Use both sides to cover both edges. Linux and macOS (mmap + mprotect).
"""

from __future__ import annotations

import ctypes
import mmap

import numpy as np

__all__ = ["guarded", "guarded_argument"]

_PAGE = mmap.PAGESIZE
_keep: list[mmap.mmap] = []  # guarded memory lives as long as the process (tests are short)
_libc = None


def _protect(address: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.mprotect(ctypes.c_void_p(address), _PAGE, 0) != 0:
        raise OSError(ctypes.get_errno(), "mprotect failed")


def guarded(array: np.ndarray, side: str = "end") -> np.ndarray:
    """A copy of ``array`` (C order) against an inaccessible page on ``side``."""
    if side not in ("start", "end"):
        raise ValueError(f"side must be 'start' or 'end', not {side!r}")
    array = np.ascontiguousarray(array)
    body = -(-max(array.nbytes, 1) // _PAGE) * _PAGE
    mm = mmap.mmap(-1, body + 2 * _PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    _protect(base)
    _protect(base + _PAGE + body)
    offset = _PAGE if side == "start" else _PAGE + body - array.nbytes
    out = np.frombuffer(mm, array.dtype, array.size, offset).reshape(array.shape)
    out[...] = array
    _keep.append(mm)
    return out


def guarded_argument(value, side: str = "end"):
    """``guarded`` for a kernel argument: numpy arrays and PackedTensors (their bytes)."""
    from bittile.runtime.packed import PackedTensor

    if isinstance(value, PackedTensor):
        data = value.bytes_view()[: value.nbytes]
        return PackedTensor(guarded(data, side), value.shape, value.dtype)
    if isinstance(value, np.ndarray):
        return guarded(value, side)
    return value
