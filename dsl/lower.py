"""Semantic analysis and lowering of a kernel's AST to the tile IR, in one walk.

:func:`lower_kernel` specializes a :class:`~bittile.dsl.ast.KernelDef` on its compile-time
values and builds the IR with :class:`~bittile.ir.builder.KernelBuilder`; every op gets the
location of the AST node it comes from, and every mistake in the program is reported as a
:class:`~bittile.errors.TileTypeError` located at the offending node, with a hint.

Values during lowering are either compile-time values -- Python ``int``, ``float`` and
``bool``, :class:`~bittile.ir.dtypes.DType`, :class:`~bittile.ir.layout.RegisterLayout` and
tuples of values (``[a, b]`` lists) -- or IR :class:`~bittile.ir.core.Value` s: runtime
scalars and tiles, and the kernel's global tensors. Arithmetic among compile-time numbers is
folded (with the IR's semantics: ``/`` truncates integers, ``%`` has the dividend's sign).

Typing rules (see ``docs/language.md``):

- the operands of an operator share one dtype; a compile-time number takes the dtype of the
  other operand (an int may become any numeric dtype, a float only a float dtype, a bool only
  ``u1``); a scalar operand splats over a tile; two tiles must have one shape;
- a ``var`` keeps its type. A var initialized with a compile-time number stays a compile-time
  value until it is assigned a runtime scalar, which fixes its dtype (the number adopts it);
  when such a var is carried through a runtime loop it becomes a runtime value of the default
  dtype of its number (``i32``, ``f32`` or ``u1``);
- the vars carried by a loop, or merged after a runtime ``if``, are the vars declared outside
  the statement and assigned anywhere inside it (found by a syntactic scan that respects
  declarations inside the statement, see :func:`~bittile.dsl.scope.assigned_outer_names`).
"""

from __future__ import annotations

from collections.abc import Mapping

from bittile.dsl import ast
from bittile.dsl.lower_args import ArgLowering
from bittile.dsl.lower_decls import DeclLowering
from bittile.dsl.lower_exprs import ExprLowering
from bittile.dsl.lower_stmts import StmtLowering
from bittile.dsl.lower_values import (
    _DEFAULT_HINT,
    describe,
    type_str,
)
from bittile.dsl.scope import Scope, find_return
from bittile.errors import (
    BittileError,
    InternalError,
    IRError,
    Loc,
    TileTypeError,
)
from bittile.ir.builder import Builder, KernelBuilder
from bittile.ir.core import Kernel, Value

__all__ = ["lower_kernel", "describe", "type_str"]


def lower_kernel(
    kdef: ast.KernelDef,
    const_args: Mapping[str, object] | None = None,
    *,
    functions: Mapping[str, ast.FnDef] | None = None,
) -> Kernel:
    """The verified IR of ``kdef`` specialized on ``const_args`` (compile-time parameter name
    -> Python int/float/bool, DType or RegisterLayout; parameters left out take their
    defaults). ``functions`` are the helper functions the kernel may call, by name."""
    return _Lowerer(kdef, dict(const_args or {}), dict(functions or {})).run()


class _Lowerer(DeclLowering, StmtLowering, ExprLowering, ArgLowering):
    """Lowers one kernel; each base class holds one part of the language."""

    def __init__(self, kdef: ast.KernelDef, const_args: dict, functions: dict):
        self.kdef = kdef
        self.const_args = const_args
        self.functions = functions
        self.kb = KernelBuilder(kdef.name, kdef.loc)
        self.b: Builder = self.kb.builder
        self.scope = Scope()
        self.sizes: set[str] = set()
        self.shape_names: set[str] = set()
        self.size_frames: list[dict[str, Value]] = [{}]
        self.grid_rank = 0
        self.fn_depth = 0
        self.call_stack: list[str] = []
        self.carried: dict[int, ast.For] = {}  # id(binding) -> the loop carrying it

    # ---- errors --------------------------------------------------------------------------
    @staticmethod
    def error(message: str, loc: Loc | None, hint: str | None = None) -> TileTypeError:
        return TileTypeError(message, loc, hint or _DEFAULT_HINT)

    # ---- the kernel ----------------------------------------------------------------------
    def run(self) -> Kernel:
        kdef = self.kdef
        ret = find_return(kdef.body)
        if ret is not None:
            raise self.error("return outside a helper function", ret.loc,
                             "a kernel gives its results with store(tensor, offsets, tile)")
        try:
            self._const_params()
            self._runtime_params()
            self._grid()
            self._block(kdef.body)
        except BittileError:
            raise
        except RecursionError:
            raise self.error("the kernel is nested too deeply to compile", kdef.loc,
                             "split deeply nested expressions into several lets") from None
        except Exception as exc:  # a bug in the lowering, never the user's fault
            raise InternalError(f"the lowering failed: {type(exc).__name__}: {exc}",
                                kdef.loc) from exc
        try:
            return self.kb.finish()
        except IRError as exc:
            raise self.error(exc.message, exc.loc or kdef.loc, exc.hint) from None
