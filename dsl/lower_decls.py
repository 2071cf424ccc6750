"""Lowering a kernel's declarations: compile-time and runtime parameters, sizes, the grid."""

from __future__ import annotations

import numpy as np

from bittile.dsl import ast
from bittile.dsl.lower_values import (
    _CONVERTED,
    _article,
    describe,
    num_kind,
)
from bittile.dsl.scope import Binding
from bittile.errors import (
    BittileError,
    DTypeError,
    IRError,
    Loc,
)
from bittile.ir import symbolic
from bittile.ir.builder import Builder
from bittile.ir.core import Block, Value
from bittile.ir.dtypes import DType, dtype_from_name
from bittile.ir.layout import RegisterLayout
from bittile.ir.types import ScalarType, TensorType


class DeclLowering:
    """Part of the lowering (see dsl/lower.py): declarations."""

    def _const_params(self) -> None:
        kdef = self.kdef
        names = [p.name for p in kdef.const_params]
        unknown = [n for n in self.const_args if n not in names]
        if unknown:
            raise self.error(
                f"kernel {kdef.name} has no compile-time parameter {unknown[0]!r}", kdef.loc,
                f"its compile-time parameters are: {', '.join(names) or 'none'}",
            )
        for p in kdef.const_params:
            if p.kind not in ast.CONST_KINDS:
                raise self.error(f"unknown kind {p.kind!r} of compile-time parameter {p.name!r}",
                                 p.loc, f"kinds are {', '.join(ast.CONST_KINDS)}")
            self._check_new_name(p.name, p.loc)
            if p.name in self.const_args:
                value = self._const_kind(p, self.const_args[p.name], p.loc, "the value given")
            elif p.default is not None:
                value = self._const_kind(p, self._const_default(p), p.default.loc,
                                         "its default")
            else:
                raise self.error(
                    f"missing compile-time parameter {p.name!r} of kernel {kdef.name}", p.loc,
                    f"pass {p.name}=... when specializing the kernel, or give it a default "
                    f"({p.name}: {p.kind} = ...)",
                )
            self.scope.define(Binding(p.name, value, "const", p.loc))

    def _const_default(self, p: ast.ConstParam):
        saved = self.b
        self.b = Builder(Block(), p.default.loc)  # anything emitted here is thrown away
        try:
            value = self.expr(p.default)
        finally:
            self.b = saved
        if isinstance(value, Value):
            raise self.error(
                f"the default of {p.name!r} must be known at compile time, but it is "
                f"{describe(value)}", p.default.loc,
                "defaults are built from literals and earlier compile-time parameters",
            )
        return value

    def _const_kind(self, p: ast.ConstParam, value, loc, source: str):
        """``value`` checked (and converted) for the kind of ``p``."""
        kind, ok = p.kind, None
        if kind == "int":
            if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
                ok = int(value)
        elif kind == "float":
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
                value, (bool, np.bool_)
            ):
                ok = float(value)
        elif kind == "bool":
            if isinstance(value, (bool, np.bool_)):
                ok = bool(value)
        elif kind == "dtype":
            if isinstance(value, DType):
                ok = value
            elif isinstance(value, str):
                try:
                    ok = dtype_from_name(value)
                except DTypeError as exc:
                    raise self.error(exc.message, loc, exc.hint) from None
        elif kind == "layout":
            if isinstance(value, RegisterLayout):
                ok = value
            elif isinstance(value, str):
                from bittile.ir.layout import parse_layout

                try:
                    ok = parse_layout(value)
                except BittileError as exc:
                    raise self.error(exc.message, loc, exc.hint) from None
        if ok is None:
            examples = {"int": "16", "float": "0.5", "bool": "True", "dtype": "bittile.f16",
                        "layout": "bittile.spatial(4, 8)"}
            raise self.error(
                f"compile-time parameter {p.name!r} is {_article(kind)}, but {source} is "
                f"{describe(value)}", loc,
                f"compile-time values are fixed when the kernel is specialized: pass "
                f"{_article(kind)} such as {p.name}={examples[kind]}",
            )
        return ok

    def _runtime_params(self) -> None:
        for p in self.kdef.params:
            self._check_new_name(p.name, p.loc)
            with self.b.at(p.loc):
                try:
                    if isinstance(p.type, ast.TensorTypeExpr):
                        dtype = self._param_dtype(p.type.dtype)
                        if not p.type.shape:
                            raise self.error(f"tensor parameter {p.name!r} has no dimensions",
                                             p.type.loc, "declare a scalar parameter instead")
                        shape = [self._size_expr(d) for d in p.type.shape]
                        value = self.kb.tensor(p.name, dtype, shape)
                    else:
                        value = self.kb.scalar(p.name, self._param_dtype(p.type.dtype))
                except _CONVERTED as exc:
                    raise self.error(exc.message, p.loc, exc.hint) from None
            self.scope.define(Binding(p.name, value, "param", p.loc))
        dims = [d for p in self.kb.params if isinstance(p.type, TensorType) for d in p.type.shape]
        self.sizes = {d.name for d in dims if isinstance(d, symbolic.Sym)}
        self.shape_names = {name for d in dims for name in d.symbols()}
        for p in self.kdef.params:
            if isinstance(p.type, ast.ScalarTypeExpr) and p.name in self.sizes:
                raise self.error(
                    f"scalar parameter {p.name!r} has the name of a tensor size", p.loc,
                    "sizes are bound from the shapes of tensor arguments; rename the scalar",
                )

    def _param_dtype(self, node: ast.Name) -> DType:
        binding = self.scope.lookup(node.id)
        if binding is not None:
            if isinstance(binding.value, DType):
                return binding.value
            raise self.error(f"{node.id!r} is {describe(binding.value)}, not a dtype", node.loc,
                             "a parameter's dtype is a dtype name or a dtype parameter")
        return self._dtype_name(node)

    def _dtype_name(self, node: ast.Name) -> DType:
        try:
            return dtype_from_name(node.id)
        except DTypeError as exc:
            raise self.error(f"unknown dtype {node.id!r}", node.loc, exc.hint) from None

    def _size_expr(self, node: ast.Expr, allowed=None) -> symbolic.SymExpr:
        """A tensor dimension or grid size as a symbolic expression; ``allowed(name, node)``
        checks the names that are not compile-time ints."""
        try:
            if isinstance(node, ast.IntLit):
                return symbolic.Const(node.value)
            if isinstance(node, ast.Name):
                binding = self.scope.lookup(node.id)
                if binding is not None and binding.kind == "const":
                    if num_kind(binding.value) != "int":
                        raise self.error(
                            f"a size expression needs integers, but {node.id!r} is "
                            f"{describe(binding.value)}", node.loc,
                            "use an int compile-time parameter",
                        )
                    return symbolic.Const(binding.value)
                if allowed is not None:
                    allowed(node.id, node)
                return symbolic.Sym(node.id)
            if isinstance(node, ast.BinOp) and node.op in ("+", "-", "*", "/", "//", "%"):
                op = {"+": "add", "-": "sub", "*": "mul", "/": "floordiv", "//": "floordiv",
                      "%": "mod"}[node.op]
                return symbolic.make_binary(op, self._size_expr(node.lhs, allowed),
                                            self._size_expr(node.rhs, allowed))
            if (isinstance(node, ast.Call) and node.func.id in ("cdiv", "min", "max")
                    and len(node.args) == 2 and not node.keywords):
                lhs, rhs = (self._size_expr(a, allowed) for a in node.args)
                return symbolic.make_binary(node.func.id, lhs, rhs)
        except ZeroDivisionError as exc:
            raise self.error(str(exc), node.loc, "a size expression divides by zero") from None
        except IRError as exc:
            raise self.error(exc.message, node.loc, exc.hint) from None
        if isinstance(node, ast.BinOp):
            what = f"the operator '{node.op}'"
        elif isinstance(node, ast.Call):
            what = f"{node.func.id}(...)"
        elif isinstance(node, (ast.FloatLit, ast.BoolLit)):
            what = f"the {'float' if isinstance(node, ast.FloatLit) else 'bool'} {node.value!r}"
        else:
            what = "this expression"
        raise self.error(
            f"{what} is not a size expression", node.loc,
            "sizes are built from size names (M, K), integers, int compile-time parameters, "
            "+ - * / % and cdiv(a, b), min(a, b), max(a, b)",
        )

    def _grid(self) -> None:
        kdef = self.kdef
        if not kdef.grid:
            raise self.error(f"kernel {kdef.name} has an empty grid", kdef.loc,
                             "give the grid one to three dimensions, e.g. grid(cdiv(N, BLOCK))")
        if len(kdef.grid) > 3:
            raise self.error(f"a grid has one to three dimensions, got {len(kdef.grid)}",
                             kdef.grid[3].loc, "fold extra dimensions into one")
        int_scalars = {p.name for p in self.kb.params
                       if isinstance(p.type, ScalarType) and p.type.dtype.is_int}

        def allowed(name: str, node) -> None:
            if name in self.shape_names or name in int_scalars:
                return
            binding = self.scope.lookup(name)
            what = describe(binding.value) if binding is not None else "undefined"
            raise self.error(
                f"the grid uses {name!r}, which is not a tensor size, an int compile-time "
                f"parameter or an integer scalar parameter ({what})", node.loc,
                "grid sizes are computed from sizes and parameters before the launch",
            )

        self.kb.grid(*(self._size_expr(d, allowed) for d in kdef.grid))
        self.grid_rank = len(kdef.grid)

    def _check_new_name(self, name: str, loc: Loc | None) -> None:
        existing = self.scope.local(name)
        if existing is not None:
            where = f" (at line {existing.loc.line})" if existing.loc is not None else ""
            raise self.error(
                f"{name!r} is already defined in this scope as {existing.description}{where}",
                loc, "choose another name" + (", or assign it without var/let"
                                              if existing.mutable else ""),
            )

    # ---- statements ----------------------------------------------------------------------
