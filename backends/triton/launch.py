"""Binding launch arguments to a generated kernel's parameters.

Arguments are checked as for every backend (``runtime/launch.py``: names, dtypes, shapes
against the kernel's symbolic shapes, writability) and become torch tensors on the device the
kernel runs on: the CPU under Triton's interpreter, else CUDA. Each tensor is passed as a flat
integer view of its memory (``numerics.memory_type``), without copying when the memory is
already where it must be; packed tensors (and tensors addressed by word ops) are passed as int32
words, padded to a whole word by a copy when their buffer ends inside one. Whatever was copied
and is written by the kernel is copied back after the launch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bittile.backends.triton.program import TritonProgram
from bittile.errors import LaunchError
from bittile.ir.core import Kernel, Param
from bittile.ir.types import ScalarType, TensorType
from bittile.runtime.launch import (
    _match,
    _solve_sizes,
    _to_scalar,
    evaluate_grid,
    numpy_word,
    written_params,
)
from bittile.runtime.packed import PackedTensor

__all__ = ["BoundLaunch", "LaunchPlan"]

#: element counts (and stream bits / 32 for packed tensors) must fit int32 indices
_MAX_ELEMENTS = 2**31 - 1

_TORCH_VIEW = {"i8": "int8", "u8": "uint8", "i16": "int16", "i32": "int32"}


@dataclass
class _Tensor:
    """A tensor argument ready for the kernel (what ``_solve_sizes`` reads: param, shape,
    size)."""

    param: Param
    shape: tuple[int, ...]
    size: int
    data: object  # the torch tensor passed to the kernel
    write_back: Callable[[], None] | None = None


@dataclass
class BoundLaunch:
    args: list
    grid: tuple[int, ...]
    write_backs: list[Callable[[], None]] = field(default_factory=list)
    status: object = None  # the status word, when the kernel has one


class LaunchPlan:
    """What binding needs from the kernel, computed once."""

    def __init__(self, kernel: Kernel, program: TritonProgram, device: str):
        import torch

        self.torch = torch
        self.kernel = kernel
        self.program = program
        self.device = device
        self.written = written_params(kernel)
        self._tables: list | None = None

    def tables(self) -> list:
        if self._tables is None:
            self._tables = [self.torch.from_numpy(t).to(self.device)
                            for t in self.program.tables]
        return self._tables

    def bind(self, args: tuple, kwargs: dict) -> BoundLaunch:
        kernel = self.kernel
        given = _match(kernel, args, kwargs)
        tensors: dict[str, _Tensor] = {}
        scalars: dict = {}
        for p in kernel.params:
            if isinstance(p.type, TensorType):
                tensors[p.name] = self._tensor(p, given[p.name])
            elif isinstance(p.type, ScalarType):
                scalars[p.name] = _to_scalar(p, given[p.name])
        int_scalars = {k: v for k, v in scalars.items() if isinstance(v, int)}
        sizes = _solve_sizes(kernel, tensors, int_scalars)
        grid = evaluate_grid(kernel.grid, {**sizes, **int_scalars})
        if math.prod(grid) > _MAX_ELEMENTS:
            raise LaunchError(f"the grid {grid} has more than 2^31 - 1 blocks")
        bound = BoundLaunch([], tuple(grid))
        for t in tensors.values():
            if t.write_back is not None:
                bound.write_backs.append(t.write_back)
        for spec in self.program.args:
            if spec.kind == "tensor":
                bound.args.append(tensors[spec.source].data)
            elif spec.kind == "dim":
                bound.args.append(tensors[spec.source].shape[spec.axis])
            elif spec.kind == "size":
                bound.args.append(sizes[spec.source])
            elif spec.kind == "scalar":
                bound.args.append(_scalar_arg(scalars[spec.source]))
            elif spec.kind == "grid":
                bound.args.append(grid[spec.axis])
            elif spec.kind == "table":
                bound.args.append(self.tables()[spec.source])
            else:  # status
                bound.status = self.torch.zeros(1, dtype=self.torch.int32, device=self.device)
                bound.args.append(bound.status)
        return bound

    # ---- tensors ---------------------------------------------------------------------------
    def _tensor(self, param: Param, arg) -> _Tensor:
        written = param.name in self.written
        words = param.name in self.program.word_params
        if isinstance(arg, PackedTensor):
            return self._packed(param, arg, written)
        if isinstance(arg, np.ndarray):
            word = numpy_word(param, arg, written)
            if not arg.flags.c_contiguous:
                if written:
                    raise LaunchError(
                        f"argument {param.name!r} is written by the kernel and must be "
                        "C-contiguous", hint="pass np.ascontiguousarray(...) and read the "
                        "result from it")
                arg = np.ascontiguousarray(arg)
            flat = arg.reshape(-1).view(word)
            return self._memory(param, tuple(arg.shape), flat, written, words)
        if type(arg).__module__.startswith("torch"):
            return self._torch(param, arg, written, words)
        raise LaunchError(f"argument {param.name!r} must be a tensor, got {type(arg).__name__}",
                          hint="pass a numpy array, a torch tensor or a bittile.PackedTensor")

    def _torch(self, param: Param, tensor, written: bool, words: bool) -> _Tensor:
        torch = self.torch
        dtype = param.type.dtype
        if tensor.device.type not in ("cpu", "cuda"):
            raise LaunchError(f"argument {param.name!r} is on {tensor.device}",
                              hint="the triton backend takes CPU or CUDA tensors")
        if not tensor.is_contiguous():
            raise LaunchError(f"argument {param.name!r} must be contiguous",
                              hint="call .contiguous()")
        torch_name = str(tensor.dtype).removeprefix("torch.")
        expected = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "u8": "uint8",
                    "i8": "int8", "i16": "int16", "i32": "int32", "u16": "uint16",
                    "u32": "uint32"}.get(dtype.name)
        if torch_name != expected:
            hint = None if expected else (f"{dtype} has no torch type: pass "
                                          f"bittile.pack(values, bittile.{dtype})")
            raise LaunchError(f"argument {param.name!r} must hold {dtype}, got a torch tensor "
                              f"of {torch_name}", hint=hint)
        if written and getattr(tensor, "requires_grad", False) and tensor.is_leaf:
            raise LaunchError(f"argument {param.name!r} is written by the kernel but requires "
                              "grad", hint="pass tensor.detach()")
        flat = tensor.detach().reshape(-1)
        if words:
            return self._words(param, tuple(tensor.shape), flat.view(torch.uint8), written)
        view = getattr(torch, _TORCH_VIEW[_memory_name(dtype)])
        data = flat.view(view)
        write_back = None
        if data.device.type != self.device:
            original, data = data, data.to(self.device)
            if written:
                write_back = _copier(original, data)
        return _Tensor(param, tuple(tensor.shape), tensor.numel(), data, write_back)

    def _memory(self, param: Param, shape, flat: np.ndarray, written: bool,
                words: bool) -> _Tensor:
        """A numpy tensor's flat memory (unsigned words of the element's width)."""
        torch = self.torch
        size = flat.size
        _check_count(param, size)
        if words:
            return self._words(param, shape, _from_numpy(torch, flat.view(np.uint8)), written)
        host = _from_numpy(torch, flat.view(_NUMPY_VIEW[_memory_name(param.type.dtype)]))
        if self.device == "cpu":
            return _Tensor(param, shape, size, host)
        data = host.to(self.device)
        return _Tensor(param, shape, size, data, _copier(host, data) if written else None)

    def _packed(self, param: Param, packed: PackedTensor, written: bool) -> _Tensor:
        torch = self.torch
        if packed.dtype != param.type.dtype:
            raise LaunchError(f"argument {param.name!r} must hold {param.type.dtype}, got a "
                              f"packed {packed.dtype}")
        _check_count(param, packed.size)
        data = packed.data
        if isinstance(data, np.ndarray):
            if written and not data.flags.writeable:
                raise LaunchError(f"argument {param.name!r} is written by the kernel but is "
                                  "read-only")
            buffer = _from_numpy(torch, data.reshape(-1))
        else:
            buffer = data.detach().reshape(-1)
        memory = param.type.dtype.bits in (8, 16, 32) and param.name not in \
            self.program.word_params
        if memory:  # a packed tensor of a byte-sized dtype is its plain memory
            view = getattr(torch, _TORCH_VIEW[_memory_name(param.type.dtype)])
            nbytes = packed.nbytes
            data = buffer[:nbytes].view(view)
            write_back = None
            if data.device.type != self.device:
                original, data = data, data.to(self.device)
                write_back = _copier(original, data) if written else None
            return _Tensor(param, packed.shape, packed.size, data, write_back)
        return self._words(param, packed.shape, buffer, written, packed.nbytes)

    def _words(self, param: Param, shape, buffer, written: bool,
               nbytes: int | None = None) -> _Tensor:
        """A uint8 torch buffer as int32 words covering its first ``nbytes`` bytes."""
        torch = self.torch
        size = math.prod(shape)
        nbytes = buffer.numel() if nbytes is None else nbytes
        if nbytes * 8 // 32 > _MAX_ELEMENTS:
            raise LaunchError(f"argument {param.name!r} is too large for int32 word indices")
        nwords = -(-nbytes // 4)
        aligned = buffer.data_ptr() % 4 == 0 and buffer.numel() >= 4 * nwords
        if aligned and buffer.device.type == self.device:
            data = buffer[:4 * nwords].view(torch.int32)
            return _Tensor(param, shape, size, data)
        padded = torch.zeros(4 * max(nwords, 1), dtype=torch.uint8, device=self.device)
        padded[:nbytes] = buffer[:nbytes].to(self.device)
        write_back = None
        if written:
            def write_back(buffer=buffer, padded=padded, nbytes=nbytes):
                buffer[:nbytes] = padded[:nbytes].to(buffer.device)
        return _Tensor(param, shape, size, padded.view(torch.int32), write_back)


def _from_numpy(torch, array: np.ndarray):
    """A torch view of ``array`` (read-only arrays too: the kernel does not write them)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


_NUMPY_VIEW = {"i8": np.int8, "u8": np.uint8, "i16": np.int16, "i32": np.int32}


def _memory_name(dtype) -> str:
    """The key of ``_TORCH_VIEW`` for a tensor of ``dtype`` (see ``numerics.memory_type``)."""
    if dtype.bits == 8:
        return "i8" if dtype.kind == "int" else "u8"
    return {16: "i16", 32: "i32"}[dtype.bits]


def _check_count(param: Param, size: int) -> None:
    if size > _MAX_ELEMENTS:
        raise LaunchError(f"argument {param.name!r} has {size} elements; the triton backend "
                          "indexes tensors with int32")


def _copier(host, device_copy):
    def write_back():
        host.copy_(device_copy.to(host.device))

    return write_back


def _scalar_arg(value):
    """A scalar as the kernel takes it: integers as their int32 bit pattern, floats as f32."""
    if isinstance(value, int):
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value >= 1 << 31 else value
    return float(value)
