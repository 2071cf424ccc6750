"""Kernel objects: what ``@bittile.kernel`` and ``load_module`` give users.

A :class:`TileKernel` holds a kernel's AST (from either frontend) and the helper functions it
can call. Calling it splits the arguments into compile-time values (by the names of its
compile-time parameters) and runtime arguments, specializes the kernel on the compile-time
values (lowering to IR once per distinct set, cached), and launches it. Helper functions are
looked up when a specialization is first lowered; redefining a helper later does not change
specializations already made.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from bittile.dsl import ast
from bittile.errors import BittileError, LaunchError, TileTypeError
from bittile.ir.core import Kernel
from bittile.runtime import config

__all__ = ["TileKernel", "TileFunction", "BACKENDS"]

#: Backends a kernel can run on today, by name.
BACKENDS = ("interp", "llvm", "triton")


class TileFunction:
    """A helper function (``fn`` in a .tile file, ``@bittile.func`` in Python); it is inlined
    into kernels and cannot be called directly."""

    def __init__(self, fndef: ast.FnDef, python_function: Callable | None = None):
        self.ast = fndef
        self.name = fndef.name
        self._python_function = python_function

    def __call__(self, *args, **kwargs):
        raise BittileError(
            f"{self.name} is a bittile helper function: it can only be called from a kernel",
            self.ast.loc,
        )

    def __repr__(self) -> str:
        return f"<bittile function {self.name} at {self.ast.loc}>"


class TileKernel:
    """A kernel ready to be specialized and launched."""

    def __init__(
        self,
        kdef: ast.KernelDef,
        functions: Mapping[str, ast.FnDef] | Callable[[], Mapping[str, ast.FnDef]] = (),
        backend: str | None = None,
    ):
        self.ast = kdef
        self.name = kdef.name
        self._functions = functions
        self._backend = backend
        self._cache: dict[tuple, Kernel] = {}

    @property
    def functions(self) -> dict[str, ast.FnDef]:
        fns = self._functions() if callable(self._functions) else self._functions
        return dict(fns)

    @functools.cached_property
    def const_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.ast.const_params)

    @functools.cached_property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.ast.params)

    @functools.cached_property
    def _const_set(self) -> frozenset[str]:
        return frozenset(self.const_names)

    @functools.cached_property
    def _dtype_sources(self) -> tuple[tuple[str, int, str], ...]:
        """(dtype parameter, index of a tensor parameter declared with it, that parameter's
        name), for every ``dtype`` compile-time parameter naming a tensor's dtype."""
        kinds = {p.name: p.kind for p in self.ast.const_params}
        out = []
        for index, param in enumerate(self.ast.params):
            type_expr = param.type
            name = getattr(getattr(type_expr, "dtype", None), "id", None)
            if kinds.get(name) == "dtype" and hasattr(type_expr, "shape"):
                out.append((name, index, param.name))
        return tuple(out)

    # ---- specialization ------------------------------------------------------------------
    def specialize(self, **const_args: Any) -> Kernel:
        """The IR of this kernel for the given compile-time values (defaults for the rest)."""
        unknown = set(const_args) - self._const_set
        if unknown:
            raise TileTypeError(
                f"kernel {self.name} has no compile-time parameter {sorted(unknown)[0]!r}",
                self.ast.loc,
                hint=f"its compile-time parameters are: {', '.join(self.const_names) or 'none'}",
            )
        key = tuple(sorted((k, _cache_key(v)) for k, v in const_args.items()))
        kernel = self._cache.get(key)
        if kernel is None:
            from bittile.dsl.lower import lower_kernel

            kernel = user_facing(lower_kernel, self.ast, dict(const_args),
                                 functions=self.functions)
            self._cache[key] = kernel
        return kernel

    def __getitem__(self, const_args) -> _Specialized:
        """``kernel[dict(BM=32)](x, y)``: specialize, then call with runtime arguments only."""
        if not isinstance(const_args, Mapping):
            raise TileTypeError("index a kernel with a dict of compile-time values",
                                self.ast.loc)
        return _Specialized(self, self.specialize(**const_args))

    # ---- launching -----------------------------------------------------------------------
    def __call__(self, *args, backend: str | None = None, **kwargs) -> None:
        names = self._const_set
        const_args = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        runtime_names = self.param_names
        if len(args) > len(runtime_names):
            extra = args[len(runtime_names):]
            # Positional compile-time values may follow the runtime arguments, in order.
            names = [n for n in self.const_names if n not in const_args]
            if len(extra) > len(names):
                raise LaunchError(
                    f"kernel {self.name} takes {len(runtime_names)} runtime and "
                    f"{len(self.const_names)} compile-time arguments, got {len(args)} "
                    "positional"
                )
            const_args.update(zip(names, extra))
            args = args[: len(runtime_names)]
        self._infer_dtypes(const_args, args, kwargs)
        kernel = self.specialize(**const_args)
        user_facing(_launch, kernel, args, kwargs, backend or self._backend)

    def _infer_dtypes(self, const_args: dict, args: tuple, kwargs: dict) -> None:
        """Specialize on argument dtypes: a ``dtype`` compile-time parameter that is not given
        and names a tensor parameter's dtype (``w: W[N, K]``) takes that argument's dtype."""
        from bittile.runtime.launch import dtype_of_array

        for name, index, param in self._dtype_sources:
            if name in const_args:
                continue
            if index < len(args):
                arg = args[index]
            elif param in kwargs:
                arg = kwargs[param]
            else:
                continue
            dtype = dtype_of_array(arg)
            if dtype is not None:
                const_args[name] = dtype

    def __repr__(self) -> str:
        return f"<bittile kernel {self.name} at {self.ast.loc}>"


class _Specialized:
    def __init__(self, owner: TileKernel, kernel: Kernel):
        self.owner = owner
        self.ir = kernel

    def __call__(self, *args, backend: str | None = None, **kwargs) -> None:
        user_facing(_launch, self.ir, args, kwargs, backend or self.owner._backend)


def user_facing(fn, *args, **kwargs):
    """Call ``fn``; re-raise a BittileError without the compiler's frames (the diagnostic
    already shows the user's source). ``BITTILE_DEBUG=1`` keeps the full traceback."""
    try:
        return fn(*args, **kwargs)
    except BittileError as exc:
        if config.get("BITTILE_DEBUG"):
            raise
        raise exc.with_traceback(None) from None


def _launch(kernel: Kernel, args: tuple, kwargs: dict, backend: str | None) -> None:
    name = backend or config.get("BITTILE_BACKEND")
    if name is None:
        from bittile.backends.triton.device import cuda_available

        name = "triton" if cuda_available() else "interp"
    if name not in BACKENDS:
        raise LaunchError(
            f"unknown or unavailable backend {name!r}",
            hint=f"available backends: {', '.join(BACKENDS)}",
        )
    if name == "llvm":
        from bittile.backends.llvm import backend as llvm_backend

        llvm_backend.run(kernel, *args, **kwargs)
        return
    if name == "triton":
        from bittile.backends.triton import backend as triton_backend

        triton_backend.run(kernel, *args, **kwargs)
        return
    from bittile.backends import interp

    interp.run(kernel, *args, **kwargs)


def _cache_key(value):
    """A key that tells apart values that compare equal but compile differently (1 and 1.0,
    0.0 and -0.0, (1, 2) and (1.0, 2.0)) and that is equal to itself for NaN."""
    if isinstance(value, tuple):
        return ("tuple", tuple(_cache_key(v) for v in value))
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, (bool, int, str)):
        return (type(value).__name__, value)
    try:
        hash(value)
    except TypeError:
        raise TileTypeError(f"compile-time value {value!r} is not hashable") from None
    return (type(value).__name__, value)
