"""The Python frontend's public face: ``@bittile.kernel``, ``@bittile.func`` and the names a
kernel body uses (``bittile.load``, ``bittile.grid``, ...).

Kernel bodies are never executed by Python: the frontend reads their source. The builtin names
below exist so that ``bittile.load`` and ``from bittile import load`` resolve for linters and
readers; calling one outside a kernel is an error that says so.
"""

from __future__ import annotations

from collections.abc import Callable

from bittile.dsl.ast import BUILTIN_FUNCTIONS
from bittile.dsl.kernel import TileFunction, TileKernel
from bittile.errors import BittileError

__all__ = ["kernel", "func", "BUILTIN_NAMES"]


def kernel(fn: Callable | None = None, *, backend: str | None = None):
    """Decorate a Python function written in the tile language; use bare or with arguments:
    ``@bittile.kernel`` or ``@bittile.kernel(backend="interp")``."""

    def wrap(f: Callable) -> TileKernel:
        from bittile.dsl.pyfront import function_to_ast

        kdef = function_to_ast(f)
        return TileKernel(kdef, lambda: _helpers_visible_from(f), backend=backend)

    return wrap(fn) if fn is not None else wrap


def func(fn: Callable) -> TileFunction:
    """Decorate a helper function; kernels that call it inline it."""
    from bittile.dsl.pyfront import helper_to_ast

    return TileFunction(helper_to_ast(fn), fn)


def _helpers_visible_from(fn: Callable) -> dict:
    scope = dict(fn.__globals__)
    if fn.__closure__:
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__):
            try:
                scope[name] = cell.cell_contents
            except ValueError:  # an unassigned cell
                continue
    return {
        name: value.ast for name, value in scope.items() if isinstance(value, TileFunction)
    }


#: The builtins importable from ``bittile`` for Python kernels: all but the ones whose names
#: are Python builtins (``sum``, ``max``...; kernels use Python's own names for those).
BUILTIN_NAMES = ("grid",) + tuple(
    n for n in BUILTIN_FUNCTIONS if n not in ("abs", "round", "pow", "sum", "max", "min")
)


def _marker(name: str) -> Callable:
    def builtin(*args, **kwargs):
        raise BittileError(
            f"bittile.{name} is part of the tile language: it can only be used inside a "
            "@bittile.kernel or @bittile.func function",
        )

    builtin.__name__ = builtin.__qualname__ = name
    builtin.__doc__ = f"The tile language's ``{name}`` (see docs/language.md)."
    return builtin


globals().update({name: _marker(name) for name in BUILTIN_NAMES})
