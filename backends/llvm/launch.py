"""Launching a compiled kernel: arguments to pointers and integers, and the grid split over
threads, one native call per thread (the calling thread's through ctypes, which releases the
GIL; the others from persistent native worker threads).

Arguments are checked as for every backend (``runtime/launch.py``): dtypes, shapes against the
kernel's symbolic shapes, writability. Tensors are passed without copies when they are
contiguous; a non-contiguous numpy array that the kernel only reads is copied, one it writes is
an error (the kernel could not write through a copy).
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
from dataclasses import dataclass

import numpy as np

from bittile.errors import LaunchError
from bittile.ir.core import Kernel, Param
from bittile.ir.symbolic import Sym
from bittile.ir.types import ScalarType, TensorType
from bittile.runtime import config
from bittile.runtime.launch import (
    _match,
    _solve_sizes,
    _to_scalar,
    dtype_of_array,
    evaluate_grid,
    from_dlpack,
    numpy_word,
    written_params,
)
from bittile.runtime.packed import PackedTensor

__all__ = ["NativeArgs", "LaunchPlan", "bind_native", "launch", "num_threads"]


@dataclass
class _NativeTensor:
    param: Param
    shape: tuple[int, ...]
    size: int
    address: int
    keep: object  # what must stay alive while the kernel runs


@dataclass
class NativeArgs:
    pointers: ctypes.Array
    ints: np.ndarray
    grid: tuple[int, ...]
    keep: list
    given: dict  # parameter name -> the argument as passed
    stack: int | None = None  # bittile_stack_bytes for these sizes, if known


def _from_numpy(param: Param, array: np.ndarray, written: bool) -> _NativeTensor:
    numpy_word(param, array, written)
    if not array.flags.c_contiguous:
        if written:
            raise LaunchError(
                f"argument {param.name!r} is written by the kernel and must be C-contiguous",
                hint="pass np.ascontiguousarray(...) and read the result from it")
        array = np.ascontiguousarray(array)
    return _NativeTensor(param, tuple(array.shape), array.size, array.ctypes.data, array)


def _from_packed(param: Param, packed: PackedTensor, written: bool) -> _NativeTensor:
    if packed.dtype != param.type.dtype:
        raise LaunchError(f"argument {param.name!r} must hold {param.type.dtype}, got a packed "
                          f"{packed.dtype}")
    buf = packed.bytes_view()
    if written and not buf.flags.writeable:
        raise LaunchError(f"argument {param.name!r} is written by the kernel but is read-only")
    return _NativeTensor(param, tuple(packed.shape), packed.size, buf.ctypes.data, buf)


def _from_torch(param: Param, tensor, written: bool) -> _NativeTensor:
    if tensor.device.type != "cpu":
        raise LaunchError(
            f"argument {param.name!r} is on {tensor.device}, this backend runs on the CPU",
            hint="move it with .cpu() or choose the triton backend",
        )
    if not tensor.is_contiguous():
        raise LaunchError(f"argument {param.name!r} must be contiguous", hint="call .contiguous()")
    dtype = param.type.dtype
    if dtype_of_array(tensor) != dtype:
        raise LaunchError(f"argument {param.name!r} must hold {dtype}, got a torch tensor of "
                          f"{str(tensor.dtype).removeprefix('torch.')}")
    if written and getattr(tensor, "requires_grad", False) and tensor.is_leaf:
        raise LaunchError(f"argument {param.name!r} is written by the kernel but requires grad",
                          hint="pass tensor.detach()")
    return _NativeTensor(param, tuple(tensor.shape), tensor.numel(), tensor.data_ptr(), tensor)


def _to_native(param: Param, arg, written: bool) -> _NativeTensor:
    if isinstance(arg, PackedTensor):
        return _from_packed(param, arg, written)
    if isinstance(arg, np.ndarray):
        return _from_numpy(param, arg, written)
    if type(arg).__module__.startswith("torch"):
        return _from_torch(param, arg, written)
    shared = from_dlpack(param, arg)
    if shared is not None:
        return _from_numpy(param, shared, written)
    raise LaunchError(f"argument {param.name!r} must be a tensor, got {type(arg).__name__}",
                      hint="pass a numpy array, a torch tensor or a bittile.PackedTensor")


class LaunchPlan:
    """Everything about binding arguments that depends only on the kernel, computed once, so
    that a warm launch does little more than read each argument's shape and address."""

    def __init__(self, kernel: Kernel):
        self.kernel = kernel
        self.params = kernel.params
        self.names = tuple(p.name for p in kernel.params)
        self.written = written_params(kernel)
        self.is_tensor = tuple(isinstance(p.type, TensorType) for p in kernel.params)
        self.size_symbols = tuple(kernel.size_symbols())
        self.numpy_types = {p.name: p.type.dtype.numpy_dtype() for p in kernel.params
                            if isinstance(p.type, TensorType)}
        #: per tensor parameter, per axis: the size name it binds, or None (an expression)
        self.bare = {p.name: tuple(d.name if isinstance(d, Sym) else None for d in p.type.shape)
                     for p in kernel.params if isinstance(p.type, TensorType)}
        self.simple_shapes = all(n is not None for dims in self.bare.values() for n in dims)
        self.int_scalars = {p.name for p in kernel.params
                            if isinstance(p.type, ScalarType) and p.type.dtype.is_int}
        self.grid = kernel.grid
        self._solved: dict[tuple, list] = {}
        #: the integer scalars that shape expressions or the grid use (the rest never change
        #: the sizes, the grid or the stack estimate)
        used: set[str] = set()
        for dim in kernel.grid:
            used |= _symbols(dim)
        for p in kernel.params:
            if isinstance(p.type, TensorType):
                for d in p.type.shape:
                    used |= _symbols(d)
        self.shape_scalars = tuple(sorted(used & self.int_scalars))
        #: the compiled kernel's bittile_stack_bytes, if any
        self.stack_fn = None

    def _tensor(self, param: Param, arg) -> _NativeTensor:
        written = param.name in self.written
        if type(arg) is np.ndarray:
            flags = arg.flags
            if (arg.dtype is self.numpy_types[param.name] and flags.c_contiguous
                    and (flags.writeable or not written)):
                return _NativeTensor(param, arg.shape, arg.size, arg.ctypes.data, arg)
        return _to_native(param, arg, written)

    def bind(self, args: tuple, kwargs: dict) -> NativeArgs:
        """Check the arguments and lay them out as the generated functions expect (see
        ``codegen.py``)."""
        if kwargs or len(args) != len(self.names):
            given = _match(self.kernel, args, kwargs)
        else:
            given = dict(zip(self.names, args))
        tensors: dict[str, _NativeTensor] = {}
        scalars = {}
        for p, is_tensor in zip(self.params, self.is_tensor):
            if is_tensor:
                tensors[p.name] = self._tensor(p, given[p.name])
            else:
                scalars[p.name] = _to_scalar(p, given[p.name])
        int_scalars = {k: v for k, v in scalars.items() if k in self.int_scalars}
        # the sizes, grid and shape integers depend only on the shapes and integer scalars:
        # solved once per combination (a launch with the same shapes skips the checks, which
        # passed for them before)
        key = (tuple(t.shape for t in tensors.values()),
               tuple(int_scalars[name] for name in self.shape_scalars),
               tuple(t.size for t in tensors.values()))
        solved = self._solved.get(key)
        if solved is None:
            sizes = self._sizes(tensors, int_scalars)
            grid = evaluate_grid(self.grid, {**sizes, **int_scalars})
            head = list(grid)
            for t in tensors.values():
                head.extend(t.shape)
            head.extend(sizes[name] for name in self.size_symbols)
            if len(self._solved) >= 64:
                self._solved.clear()
            solved = self._solved[key] = [grid, head, None]
        grid, head, stack = solved
        ints = list(head)
        pointers = [t.address for t in tensors.values()]
        for p, is_tensor in zip(self.params, self.is_tensor):
            if not is_tensor:
                dtype = p.type.dtype
                value = scalars[p.name]
                ints.append(value if dtype.is_int
                            else int(dtype.encode([value], saturate=False)[0]))
        ptr_array = (ctypes.c_void_p * max(1, len(pointers)))(*pointers)
        ints_array = np.array(ints or [0], dtype=np.int64)
        if stack is None and self.stack_fn is not None:
            # the estimate reads sizes only (never a scalar's value): once per shapes
            stack = solved[2] = self.stack_fn(ints_array.ctypes.data)
        return NativeArgs(ptr_array, ints_array, grid, [t.keep for t in tensors.values()],
                          given, stack)

    def _sizes(self, tensors: dict[str, _NativeTensor], int_scalars: dict) -> dict[str, int]:
        if not self.simple_shapes:
            return _solve_sizes(self.kernel, tensors, int_scalars)
        sizes: dict[str, int] = {}
        for name, t in tensors.items():
            bare = self.bare[name]
            if len(t.shape) != len(bare):
                return _solve_sizes(self.kernel, tensors, int_scalars)  # explains the error
            for sym, actual in zip(bare, t.shape):
                if sizes.setdefault(sym, actual) != actual:
                    return _solve_sizes(self.kernel, tensors, int_scalars)
        return sizes


def _symbols(dim) -> frozenset[str]:
    return dim.symbols() if hasattr(dim, "symbols") else frozenset()


def bind_native(kernel: Kernel, args: tuple, kwargs: dict) -> NativeArgs:
    """Check the arguments of a launch of ``kernel`` (see :class:`LaunchPlan`)."""
    return LaunchPlan(kernel).bind(args, kwargs)


def num_threads() -> int:
    n = config.get("BITTILE_NUM_THREADS")
    return int(n) if n else (os.cpu_count() or 1)


#: the most stack a kernel may take on the calling thread, and at most a quarter of that
#: thread's own stack (the rest is Python's); kernels that need more run on worker threads
CALLER_STACK_BYTES = 2 << 20

_caller = threading.local()


def caller_stack_limit() -> int:
    """How much stack a kernel may use on the current thread: ``CALLER_STACK_BYTES``, or a
    quarter of the thread's stack if that is less, or 0 where its size cannot be read."""
    limit = getattr(_caller, "limit", None)
    if limit is None:
        limit = _caller.limit = min(CALLER_STACK_BYTES, _thread_stack_bytes() // 4)
    return limit


def _thread_stack_bytes() -> int:
    """The current thread's stack size (``pthread_getattr_np``; glibc), or 0."""
    try:
        libc = ctypes.CDLL(None)
        self_id = libc.pthread_self
        self_id.restype = ctypes.c_ulong
        attr = ctypes.create_string_buffer(256)  # larger than any pthread_attr_t
        if libc.pthread_getattr_np(ctypes.c_ulong(self_id()), attr) != 0:
            return 0
        try:
            addr, size = ctypes.c_void_p(), ctypes.c_size_t()
            if libc.pthread_attr_getstack(attr, ctypes.byref(addr), ctypes.byref(size)) != 0:
                return 0
            return size.value
        finally:
            libc.pthread_attr_destroy(attr)
    except (AttributeError, OSError):
        return 0


def launch(worker, native: NativeArgs, errors: dict[int, str], job: int) -> None:
    """Run every block of the grid, one contiguous range of blocks per thread:
    ``worker(pointers, ints, begin, end)`` on the calling thread, ``job`` (the address of the
    module's ``bittile_job``) on persistent native worker threads (``lut.py``'s ``_Worker``,
    which sleep on a futex between launches; their stacks are 64 MB), the calling thread then
    waiting natively for their completion count. The calling thread runs a range itself (the
    first) when ``native.stack``, the kernel's estimate of its stack, is at most
    :func:`caller_stack_limit`."""
    total = math.prod(native.grid)
    if total == 0:
        return
    ints_ptr = native.ints.ctypes.data
    threads = min(num_threads(), total) if total > 1 else 1
    on_caller = native.stack is not None and native.stack <= caller_stack_limit()
    if threads <= 1 and on_caller:
        statuses = [worker(native.pointers, ints_ptr, 0, total)]
    else:
        statuses = _launch_on_workers(worker if on_caller else None, job, native, ints_ptr,
                                      total, threads)
    for status in statuses:
        if status:
            raise LaunchError(errors.get(status, f"the kernel failed with status {status}"))


def _launch_on_workers(worker, job: int, native: NativeArgs, ints_ptr: int, total: int,
                       threads: int) -> list[int]:
    """The ranges on worker threads, the first on the calling thread if ``worker`` is given."""
    from bittile.backends.llvm.lut import _give_workers, _take_workers, _worker_natives

    bounds = [total * i // threads for i in range(threads + 1)]
    # slot t: the status of range t; the last slot counts the ranges done
    state = np.zeros(threads + 1, np.int64)
    base = state.ctypes.data
    tensors = ctypes.cast(native.pointers, ctypes.c_void_p).value
    own = 1 if worker is not None else 0
    workers = _take_workers(threads - own)
    generations = [int(wk._job[0]) for wk in workers]
    try:
        for t, wk in enumerate(workers, start=own):
            wk.start(job, (tensors, bounds[t], ints_ptr, base + 8 * t, base + 8 * threads,
                           0, 0, 0, 0, bounds[t + 1], 0))
        if own:
            state[0] = worker(native.pointers, ints_ptr, bounds[0], bounds[1])
    finally:
        # whatever happened here (an interrupt included), the ranges that were posted (the
        # native post moved a worker's generation) run to their end before the buffers they
        # write to are freed and the workers are given back (a worker takes one job at a time)
        posted = sum(int(wk._job[0]) != g for wk, g in zip(workers, generations))
        _worker_natives()[2](base + 8 * threads, posted)
        _give_workers(workers)
    return [int(v) for v in state[:threads]]
