"""Differential checkers: a transformation must not change what the interpreter computes.

``assert_pipeline_preserves(kernel, "canonicalize,cse")`` runs ``kernel`` with the interpreter
before and after the pipeline (verifying the IR after every pass) on copies of the same
random arguments, and fails unless every element of every tensor argument has the same bits
afterwards (NaN payloads and the sign of zero included). The failure message shows the
pipeline, the first differing element and both kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bittile.backends import interp
from bittile.errors import BittileError
from bittile.ir.core import Kernel
from bittile.ir.dtypes import DType
from bittile.ir.printer import print_kernel
from bittile.ir.types import ScalarType, TensorType
from bittile.passes.base import Pass, format_pipeline, parse_pipeline
from bittile.passes.manager import run_pipeline
from bittile.runtime.packed import PackedTensor, pack
from bittile.testing.ir_strategies import GeneratedKernel, random_values

__all__ = ["assert_pipeline_preserves", "assert_backends_agree", "run_codes", "special_codes",
           "FLOAT_TOLERANCE"]


def assert_pipeline_preserves(
    kernel: Kernel | GeneratedKernel,
    passes: Sequence[Pass] | str,
    *,
    args: dict[str, Any] | None = None,
    sizes: dict[str, int] | None = None,
    rng: np.random.Generator | None = None,
) -> Kernel:
    """Check that ``passes`` keep the interpreter's results of ``kernel`` bit-exact; return
    the transformed kernel.

    ``args`` maps parameter names to arguments (numpy arrays of the parameter's numpy type,
    carrier arrays of values as from :func:`random_values`, :class:`PackedTensor`, scalars);
    they are copied for each run. Without ``args``, a :class:`GeneratedKernel` draws them with
    ``random_arguments`` (infinities and NaNs included), and a plain kernel gets random values
    for tensors shaped by ``sizes`` (a value for every size symbol) and for scalars; then a
    quarter of every tensor's elements are replaced by :func:`special_codes` (uniformly random
    codes almost never are ``-0.0`` or a NaN with a payload, where rewrites go wrong).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    if isinstance(kernel, GeneratedKernel):
        before = kernel.kernel
        if args is None:
            args = _salted(kernel.kernel, kernel.random_arguments(rng, nonfinite=True), rng)
    else:
        before = kernel
        if args is None:
            args = _salted(kernel, _random_arguments(kernel, sizes or {}, rng), rng)
    pipeline = passes if isinstance(passes, str) else format_pipeline(passes)
    after = run_pipeline(before, parse_pipeline(pipeline), verify=True)
    expected, got = run_codes(before, args), run_codes(after, args)
    difference = _first_difference(expected, got)
    if difference is not None:
        raise AssertionError(
            f"the pipeline {pipeline!r} changed the interpreter's results: {difference}\n"
            f"--- before ---\n{print_kernel(before)}--- after ---\n{print_kernel(after)}"
        )
    return after


def run_codes(kernel: Kernel, args: dict[str, Any],
              backend: str = "interp") -> dict[str, np.ndarray] | BittileError:
    """Run ``kernel`` on ``backend`` on copies of ``args``; the codes of every tensor
    argument afterwards, or the error the launch raised."""
    copies = {}
    for p in kernel.params:
        value = args[p.name]
        copies[p.name] = _tensor_copy(p.type, value) if isinstance(p.type, TensorType) else value
    try:
        _runner(backend)(kernel, **copies)
    except BittileError as exc:
        return exc
    return {name: _codes(value) for name, value in copies.items()
            if isinstance(value, (PackedTensor, np.ndarray))}


def show_kernel(kernel: Kernel) -> str:
    """``kernel`` as ``.tile`` source when the language can write it, else as IR text."""
    from bittile.testing.tile_source import NotExpressible, kernel_to_tile

    try:
        return kernel_to_tile(kernel)
    except NotExpressible:
        return print_kernel(kernel)


def _runner(backend: str):
    if backend == "interp":
        return interp.run
    if backend == "llvm":
        from bittile.backends.llvm import backend as llvm_backend

        return llvm_backend.run
    if backend == "triton":
        from bittile.backends.triton import backend as triton_backend

        return triton_backend.run
    raise ValueError(f"unknown backend {backend!r}")


#: how far float results of two backends may be apart: ``rtol`` relative to the largest
#: magnitude in the tensor (sums and dots round in a different order; transcendental functions
#: come from different libraries), and ``ulps`` units in the last place of the element itself
FLOAT_TOLERANCE = {"rtol": 1e-5, "ulps": 4}


def assert_backends_agree(
    kernel: Kernel | GeneratedKernel,
    *,
    backends: Sequence[str] = ("interp", "llvm"),
    args: dict[str, Any] | None = None,
    rng: np.random.Generator | None = None,
    salt: bool = True,
) -> None:
    """Run ``kernel`` on every backend in ``backends`` with copies of the same arguments and
    fail unless every tensor argument ends up the same: bit-exact for integer and packed data,
    within :data:`FLOAT_TOLERANCE` for floats (NaN matching NaN, infinities matching exactly).
    Errors must agree too: if one backend rejects the launch, all must, with the same kind
    of error. Arguments are drawn as by :func:`assert_pipeline_preserves` when not given."""
    rng = rng if rng is not None else np.random.default_rng(0)
    if hasattr(kernel, "generated"):  # a TileProgram: test what its source compiles to
        program = kernel
        kernel = program.generated
        if args is None:
            args = kernel.random_arguments(rng, nonfinite=True)
            args = _salted(kernel.kernel, args, rng) if salt else args
        kernel = program.compile()
    if isinstance(kernel, GeneratedKernel):
        if args is None:
            args = kernel.random_arguments(rng, nonfinite=True)
            args = _salted(kernel.kernel, args, rng) if salt else args
        kernel = kernel.kernel
    elif args is None:
        args = _salted(kernel, _random_arguments(kernel, {}, rng), rng)
    reference, *others = backends
    expected = run_codes(kernel, args, reference)
    for other in others:
        got = run_codes(kernel, args, other)
        difference = _first_difference(expected, got, kernel, tolerant=True)
        if difference is not None:
            raise AssertionError(
                f"backend {other!r} disagrees with {reference!r}: {difference}\n"
                f"--- kernel ---\n{show_kernel(kernel)}"
            )


def _float_mismatch(dtype: DType, expected: np.ndarray, got: np.ndarray) -> np.ndarray:
    a = dtype.decode(expected.astype(np.uint64))
    b = dtype.decode(got.astype(np.uint64))
    both_nan = np.isnan(a) & np.isnan(b)
    same = (a == b) | both_nan
    finite = np.isfinite(a) & np.isfinite(b)
    with np.errstate(all="ignore"):
        scale = np.max(np.abs(a[np.isfinite(a)]), initial=0.0)
        ulp = np.abs(np.spacing(a.astype(np.float32))) if dtype.bits > 16 else \
            np.abs(a) * 2.0 ** -dtype.mantissa + dtype.smallest_subnormal
        close = np.abs(a - b) <= np.maximum(FLOAT_TOLERANCE["rtol"] * scale,
                                            FLOAT_TOLERANCE["ulps"] * ulp)
    return ~(same | (finite & close))


def _tensor_copy(type_: TensorType, value):
    if isinstance(value, PackedTensor):
        return PackedTensor(value.bytes_view().copy(), value.shape, value.dtype)
    value = np.asarray(value)
    native = type_.dtype.numpy_dtype()
    if value.dtype == native or (value.dtype.name == "bfloat16" and type_.dtype.name == "bf16"):
        return value.copy()
    return pack(value, type_.dtype)  # carrier values (int64 / float64)


def _codes(value) -> np.ndarray:
    if isinstance(value, PackedTensor):
        return value.codes()
    return value.view(f"u{value.dtype.itemsize}")


def _first_difference(expected, got, kernel: Kernel | None = None,
                      tolerant: bool = False) -> str | None:
    if isinstance(expected, BittileError) or isinstance(got, BittileError):
        if type(expected) is type(got):
            return None
        return f"before: {_outcome(expected)}; after: {_outcome(got)}"
    dtypes = {p.name: p.type.dtype for p in kernel.params} if kernel is not None else {}
    for name, codes in expected.items():
        other = got[name]
        dtype = dtypes.get(name)
        if tolerant and dtype is not None and dtype.is_float:
            bad = _float_mismatch(dtype, codes, other)
        else:
            bad = codes != other
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            return (f"tensor {name!r} differs first at index {list(index)}: code "
                    f"{int(codes[index]):#x} before, {int(other[index]):#x} after")
    return None


def _outcome(result) -> str:
    if isinstance(result, BittileError):
        return f"{type(result).__name__}: {result}"
    return "ran"


def _random_arguments(kernel: Kernel, sizes: dict[str, int],
                      rng: np.random.Generator) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for p in kernel.params:
        if isinstance(p.type, TensorType):
            shape = tuple(d.evaluate(sizes) for d in p.type.shape)
            args[p.name] = random_values(p.type.dtype, shape, rng, nonfinite=True)
        elif p.name in sizes:  # an integer scalar that shapes use
            args[p.name] = sizes[p.name]
        elif isinstance(p.type, ScalarType):
            args[p.name] = random_values(p.type.dtype, (), rng).item()
    return args


def special_codes(dtype: DType) -> np.ndarray:
    """The codes of values where exact rewrites tend to break: zeros of both signs, one and
    minus one, the extremes, the smallest subnormal, infinities, and NaNs of both signs, with
    and without a payload."""
    if dtype.is_int:
        values = np.array([0, 1, -1, dtype.min, dtype.max, dtype.min + 1, dtype.max - 1])
        return np.unique(dtype.encode(dtype.wrap(values)).astype(np.uint64))
    sign = 1 << (dtype.bits - 1)
    finite = [0.0, 1.0, dtype.max, dtype.smallest_subnormal, dtype.smallest_normal]
    codes = [int(c) for c in dtype.encode(np.array(finite))]
    if dtype.has_inf:
        codes.append(int(dtype.encode(np.array([np.inf]))[0]))
    if dtype.has_nan:
        canonical = sign - 1
        codes.append(canonical)
        if dtype.has_inf:  # IEEE types: every code above inf is a NaN
            codes += [canonical - 1, int(dtype.encode(np.array([np.inf]))[0]) + 1]
    codes += [c | sign for c in codes]
    return np.unique(np.array(codes, np.uint64))


def _salted(kernel: Kernel, args: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """``args`` with a quarter of each tensor's elements replaced by special codes."""
    salted = dict(args)
    for p in kernel.params:
        if isinstance(p.type, TensorType):
            dtype = p.type.dtype
            codes = dtype.encode(np.asarray(args[p.name])).astype(np.uint64)
            chosen = rng.random(codes.shape) < 0.25
            codes[chosen] = rng.choice(special_codes(dtype), size=int(chosen.sum()))
            salted[p.name] = PackedTensor.from_codes(codes, dtype)
    return salted
