"""Binding launch arguments to a kernel's parameters, shared by every backend.

Arguments are matched to parameters by position and then by name. Tensor arguments may be
numpy arrays (of the numpy type with the same memory form as the parameter's dtype), torch CPU
tensors, or :class:`PackedTensor` (any dtype). Sizes are solved from the tensors' shapes and
every shape expression is checked; nothing is read or written outside a tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bittile.errors import LaunchError, PackingError
from bittile.ir.bitstream import pack_codes, unpack_codes
from bittile.ir.core import Kernel, Param
from bittile.ir.dtypes import DType
from bittile.ir.ops import StoreOp
from bittile.ir.ops.packed import StoreWordsOp
from bittile.ir.symbolic import Sym
from bittile.ir.types import ScalarType, TensorType
from bittile.runtime.packed import PackedTensor, check_representable

__all__ = ["TensorArg", "BoundArgs", "bind_arguments"]


@dataclass
class TensorArg:
    """A tensor argument as flat codes, with a way to write changed codes back."""

    param: Param
    shape: tuple[int, ...]
    codes: np.ndarray  # flat uint64 bit patterns, one per element
    _write_back: Any = field(repr=False, default=None)

    @property
    def dtype(self) -> DType:
        return self.param.type.dtype

    @property
    def size(self) -> int:
        return self.codes.size

    def write_back(self, codes: np.ndarray, mask: np.ndarray) -> None:
        """Write the elements selected by the flat bool ``mask`` (only those, so arguments
        that share memory keep each other's stores)."""
        if mask.any():
            self._write_back(np.asarray(codes, np.uint64).reshape(-1), mask.reshape(-1))


@dataclass
class BoundArgs:
    tensors: dict[str, TensorArg]
    scalars: dict[str, Any]  # name -> Python int or float (exactly representable)
    sizes: dict[str, int]
    grid: tuple[int, ...]


def _arg_description(arg) -> str:
    shape = getattr(arg, "shape", None)
    dtype = getattr(arg, "dtype", None)
    if shape is not None:
        return f"{type(arg).__name__} of {dtype} with shape {list(shape)}"
    return f"{type(arg).__name__} {arg!r}"


def numpy_word(param: Param, array: np.ndarray, written: bool) -> type:
    """The unsigned numpy type holding one element's code, after checking that ``array`` holds
    the parameter's dtype (and is writable when the kernel writes it)."""
    dtype: DType = param.type.dtype
    expected = dtype.numpy_dtype()
    if array.dtype.name == "bfloat16" and dtype.name == "bf16":
        word = np.uint16
    elif expected is not None and array.dtype == expected:
        word = {8: np.uint8, 16: np.uint16, 32: np.uint32}[dtype.bits]
    else:
        hint = (f"pass a numpy array of {expected}" if expected is not None
                else f"{dtype} has no numpy type: pass bittile.pack(values, bittile.{dtype})")
        raise LaunchError(
            f"argument {param.name!r} must hold {dtype}, got a numpy array of {array.dtype}",
            hint=hint,
        )
    if written and not array.flags.writeable:
        raise LaunchError(f"argument {param.name!r} is written by the kernel but is read-only",
                          hint="pass a writable array (e.g. a copy)")
    return word


def _tensor_from_numpy(param: Param, array: np.ndarray, written: bool) -> TensorArg:
    word = numpy_word(param, array, written)
    target = array

    def write_back(codes: np.ndarray, mask: np.ndarray) -> None:
        flat = np.flatnonzero(mask)
        target[np.unravel_index(flat, target.shape)] = codes[flat].astype(word).view(target.dtype)

    codes = np.ascontiguousarray(array).view(word).reshape(-1).astype(np.uint64)
    return TensorArg(param, tuple(array.shape), codes, write_back)


def _tensor_from_packed(param: Param, packed: PackedTensor, written: bool) -> TensorArg:
    dtype: DType = param.type.dtype
    if packed.dtype != dtype:
        raise LaunchError(f"argument {param.name!r} must hold {dtype}, got a packed {packed.dtype}")
    buf = packed.bytes_view()
    if written and not buf.flags.writeable:
        raise LaunchError(f"argument {param.name!r} is written by the kernel but is read-only")

    def write_back(codes: np.ndarray, mask: np.ndarray) -> None:
        current = unpack_codes(buf, dtype.bits, packed.size)
        current[mask] = codes[mask]
        new = pack_codes(current, dtype.bits)
        # The last byte may hold bits beyond the tensor: keep them.
        nbytes = packed.nbytes
        if nbytes:
            tail_bits = (packed.size * dtype.bits) % 8
            if tail_bits:
                keep = np.uint8((0xFF << tail_bits) & 0xFF)
                new[-1] = (new[-1] & ~keep) | (buf[nbytes - 1] & keep)
            buf[:nbytes] = new

    codes = unpack_codes(buf, dtype.bits, packed.size)
    return TensorArg(param, packed.shape, codes, write_back)


def _tensor_from_torch(param: Param, tensor, written: bool) -> TensorArg:
    if tensor.device.type != "cpu":
        raise LaunchError(
            f"argument {param.name!r} is on {tensor.device}, this backend runs on the CPU",
            hint="move it with .cpu() or choose the triton backend",
        )
    if not tensor.is_contiguous():
        raise LaunchError(f"argument {param.name!r} must be contiguous", hint="call .contiguous()")
    if str(tensor.dtype) == "torch.bfloat16":
        import torch

        array = tensor.detach().view(torch.int16).numpy().view(np.uint16)
        if param.type.dtype.name != "bf16":
            raise LaunchError(f"argument {param.name!r} must hold {param.type.dtype}, got bf16")
        return _tensor_from_numpy(param, array.view(_bf16_marker()), written)
    return _tensor_from_numpy(param, tensor.detach().numpy(), written)


def _bf16_marker():
    try:
        import ml_dtypes

        return ml_dtypes.bfloat16
    except ImportError as exc:  # pragma: no cover - ml_dtypes ships with the test extra
        raise LaunchError("bf16 torch tensors need the ml_dtypes package") from exc


def from_dlpack(param: Param, arg) -> np.ndarray | None:
    """A numpy view of an object that implements the DLPack protocol (on the CPU), or None."""
    if not hasattr(arg, "__dlpack__"):
        return None
    try:
        return np.from_dlpack(arg)
    except (BufferError, TypeError, RuntimeError, ValueError) as exc:
        raise LaunchError(f"argument {param.name!r} ({type(arg).__name__}) cannot be shared "
                          f"through DLPack: {exc}",
                          hint="pass a CPU tensor or a numpy array") from None


def _to_tensor_arg(param: Param, arg, written: bool) -> TensorArg:
    if isinstance(arg, PackedTensor):
        return _tensor_from_packed(param, arg, written)
    if isinstance(arg, np.ndarray):
        return _tensor_from_numpy(param, arg, written)
    if type(arg).__module__.startswith("torch"):
        return _tensor_from_torch(param, arg, written)
    shared = from_dlpack(param, arg)
    if shared is not None:
        return _tensor_from_numpy(param, shared, written)
    raise LaunchError(
        f"argument {param.name!r} must be a tensor, got {_arg_description(arg)}",
        hint="pass a numpy array, a torch tensor, a bittile.PackedTensor or any object with "
             "__dlpack__",
    )


def _to_scalar(param: Param, arg):
    dtype: DType = param.type.dtype
    if isinstance(arg, np.generic):
        arg = arg.item()
    if isinstance(arg, bool) and dtype.name == "u1":
        arg = int(arg)
    if isinstance(arg, bool) or not isinstance(arg, (int, float)):
        raise LaunchError(f"argument {param.name!r} must be a {dtype} scalar, got {arg!r}")
    if dtype.is_int:
        if isinstance(arg, float) and not arg.is_integer():
            raise LaunchError(f"argument {param.name!r} must be an integer, got {arg!r}")
        arg = int(arg)
        if not dtype.min <= arg <= dtype.max:
            raise LaunchError(
                f"argument {param.name!r} = {arg} is outside the range of {dtype} "
                f"[{dtype.min}, {dtype.max}]"
            )
        return arg
    try:
        check_representable(np.array([float(arg)]), dtype)
    except (PackingError, OverflowError) as exc:
        message = exc.message if isinstance(exc, PackingError) else f"{arg} is not a float"
        raise LaunchError(f"argument {param.name!r}: {message}") from None
    return float(dtype.round([float(arg)], saturate=False)[0])


def _match(kernel: Kernel, args: tuple, kwargs: dict) -> dict[str, Any]:
    params = kernel.params
    if len(args) > len(params):
        raise LaunchError(
            f"kernel {kernel.name} takes {len(params)} arguments, got {len(args)} positional"
        )
    given = {p.name: a for p, a in zip(params, args)}
    for name, value in kwargs.items():
        if name not in {p.name for p in params}:
            raise LaunchError(f"kernel {kernel.name} has no parameter {name!r}",
                              hint=f"parameters: {', '.join(p.name for p in params)}")
        if name in given:
            raise LaunchError(f"argument {name!r} is given twice")
        given[name] = value
    missing = [p.name for p in params if p.name not in given]
    if missing:
        raise LaunchError(f"kernel {kernel.name} is missing argument(s) {', '.join(missing)}")
    return given


def bind_arguments(kernel: Kernel, args: tuple, kwargs: dict) -> BoundArgs:
    """Check and convert launch arguments; solve sizes; evaluate the grid."""
    given = _match(kernel, args, kwargs)
    written = written_params(kernel)
    tensors: dict[str, TensorArg] = {}
    scalars: dict[str, Any] = {}
    for p in kernel.params:
        if isinstance(p.type, TensorType):
            tensors[p.name] = _to_tensor_arg(p, given[p.name], p.name in written)
        elif isinstance(p.type, ScalarType):
            scalars[p.name] = _to_scalar(p, given[p.name])
    int_scalars = {k: v for k, v in scalars.items() if kernel_param(kernel, k).type.dtype.is_int}
    sizes = _solve_sizes(kernel, tensors, int_scalars)
    env = {**sizes, **int_scalars}
    return BoundArgs(tensors, scalars, sizes, evaluate_grid(kernel.grid, env))


def evaluate_grid(grid, env: dict[str, int]) -> tuple[int, ...]:
    """The grid's extents for the sizes and integer scalars ``env`` (checked)."""
    out = []
    for dim in grid:
        try:
            n = dim.evaluate(env)
        except ZeroDivisionError:
            raise LaunchError(f"grid dimension {dim} divides by zero with {env}") from None
        if n < 0:
            raise LaunchError(f"grid dimension {dim} is {n} with {env}")
        out.append(n)
    return tuple(out)


#: numpy / torch dtype names -> the bittile dtype with the same memory form
_ARRAY_DTYPES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "uint8": "u8",
                 "int8": "i8", "int16": "i16", "uint16": "u16", "int32": "i32",
                 "uint32": "u32"}


def dtype_of_array(arg) -> DType | None:
    """The bittile dtype an argument holds (PackedTensor, numpy array, torch tensor), or None
    if it holds none."""
    dtype = getattr(arg, "dtype", None)
    if dtype is None or isinstance(dtype, DType):
        return dtype
    try:
        return _DTYPE_OF[dtype]
    except (KeyError, TypeError):
        pass
    name = _ARRAY_DTYPES.get(str(dtype).removeprefix("torch."))
    found = None
    if name is not None:
        from bittile.ir.dtypes import dtype_from_name

        found = dtype_from_name(name)
    try:
        _DTYPE_OF[dtype] = found
    except TypeError:  # an unhashable dtype-like attribute
        pass
    return found


#: numpy / torch dtype objects already looked up
_DTYPE_OF: dict = {}


def written_params(kernel: Kernel) -> set[str]:
    """Names of the tensor parameters that the kernel stores to."""
    names = {id(v): p.name for p, v in zip(kernel.params, kernel.body.args)}
    return {names[id(op.tensor)] for op in kernel.walk() if _writes(op)}


def _writes(op) -> bool:
    return isinstance(op, (StoreOp, StoreWordsOp))


def kernel_param(kernel: Kernel, name: str) -> Param:
    return next(p for p in kernel.params if p.name == name)


def _solve_sizes(
    kernel: Kernel, tensors: dict[str, TensorArg], int_scalars: dict[str, int]
) -> dict[str, int]:
    sizes: dict[str, int] = {}
    origin: dict[str, str] = {}
    for arg in tensors.values():
        declared = arg.param.type.shape
        if len(arg.shape) != len(declared):
            raise LaunchError(
                f"argument {arg.param.name!r} must have rank {len(declared)} "
                f"({arg.param.type}), got shape {list(arg.shape)}"
            )
        for axis, (dim, actual) in enumerate(zip(declared, arg.shape)):
            if isinstance(dim, Sym):
                where = f"{arg.param.name}.shape[{axis}]"
                if dim.name in sizes and sizes[dim.name] != actual:
                    raise LaunchError(
                        f"size {dim.name} is {sizes[dim.name]} from {origin[dim.name]} but "
                        f"{actual} from {where}",
                        hint="tensors that share a size name must agree on it",
                    )
                sizes[dim.name] = actual
                origin[dim.name] = where
    for arg in tensors.values():
        for axis, (dim, actual) in enumerate(zip(arg.param.type.shape, arg.shape)):
            if isinstance(dim, Sym):
                continue
            unbound = dim.symbols() - set(sizes) - set(int_scalars)
            if unbound:
                raise LaunchError(
                    f"size {sorted(unbound)[0]} of {arg.param.name} cannot be inferred: it "
                    "appears only inside expressions",
                    hint="give some tensor a dimension that is exactly that name",
                )
            try:
                expected = dim.evaluate({**sizes, **int_scalars})
            except ZeroDivisionError:
                raise LaunchError(f"shape expression {dim} divides by zero") from None
            if expected != actual:
                raise LaunchError(
                    f"argument {arg.param.name!r} has {actual} in dimension {axis}, but its "
                    f"declared size {dim} is {expected} with {sizes}"
                )
        if math.prod(arg.shape) != arg.size:
            raise LaunchError(f"argument {arg.param.name!r} holds the wrong number of elements")
    return sizes
