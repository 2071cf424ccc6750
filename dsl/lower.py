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

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from bittile.dsl import ast
from bittile.dsl.scope import Binding, Scope, assigned_outer_names, find_return
from bittile.errors import (
    BittileError,
    DTypeError,
    InternalError,
    IRError,
    LayoutError,
    Loc,
    PackingError,
    TileTypeError,
)
from bittile.ir import symbolic
from bittile.ir.builder import Builder, KernelBuilder
from bittile.ir.core import Block, Kernel, Value
from bittile.ir.dtypes import DType, dtype_from_name, f32, i32, u1
from bittile.ir.layout import RegisterLayout
from bittile.ir.types import ScalarType, TensorType, TileType

__all__ = ["lower_kernel", "describe", "type_str"]

_CONVERTED = (IRError, LayoutError, DTypeError, PackingError)

#: the dtype a compile-time number gets when nothing else decides it
DEFAULT_DTYPE = {"int": i32, "float": f32, "bool": u1}

_ARITH = {"+": "add", "-": "sub", "*": "mul", "/": "div", "%": "rem",
          "&": "and", "|": "or", "^": "xor", "<<": "shl", ">>": "shr"}
_COMPARE = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
_LOGIC = {"&&": "and", "||": "or"}
_BITWISE = {"&", "|", "^", "<<", ">>"}

_DEFAULT_HINT = "see docs/language.md for the rules of the tile language"
_SHAPE_HINT = ("tile shapes, axes and layouts are compile-time values: literals, compile-time "
               "parameters and arithmetic on them (not loads, block_id, sizes, loop variables "
               "or scalar parameters)")


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


# ---- describing values ---------------------------------------------------------------------
def num_kind(v) -> str | None:
    """"bool", "int" or "float" for a compile-time number, else None."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    return None


def is_number(v) -> bool:
    return num_kind(v) is not None


def is_runtime(v) -> bool:
    """A runtime scalar or tile (not a tensor)."""
    return isinstance(v, Value) and isinstance(v.type, (ScalarType, TileType))


def is_tile(v) -> bool:
    return isinstance(v, Value) and isinstance(v.type, TileType)


def is_tensor(v) -> bool:
    return isinstance(v, Value) and isinstance(v.type, TensorType)


def type_str(t) -> str:
    """``f32[16, 64]`` for a tile type (with ``@ layout``), ``i32`` for a scalar type."""
    if isinstance(t, TileType):
        text = f"{t.dtype}{list(t.shape)}"
        return f"{text} @ {t.layout}" if t.layout is not None else text
    if isinstance(t, TensorType):
        return f"{t.dtype}[{', '.join(map(str, t.shape))}]"
    return str(t)


def describe(v) -> str:
    """A short description of a lowering value for diagnostics."""
    if v is None:
        return "nothing"
    if isinstance(v, Value):
        if isinstance(v.type, TileType):
            return f"a {type_str(v.type)} tile"
        if isinstance(v.type, TensorType):
            return f"the global tensor {v.name_hint}: {type_str(v.type)}"
        return f"a runtime {v.type.dtype} scalar"
    kind = num_kind(v)
    if kind == "bool":
        return f"the compile-time bool {'true' if v else 'false'}"
    if kind is not None:
        return f"the compile-time {kind} {v!r}"
    if isinstance(v, DType):
        return f"the dtype {v}"
    if isinstance(v, RegisterLayout):
        return f"the layout {v}"
    if isinstance(v, tuple):
        return "a list"
    text = repr(v)
    return f"a {type(v).__name__} ({text[:40]}{'...' if len(text) > 40 else ''})"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _article(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _adopts(kind: str, dtype: DType) -> bool:
    """Whether a compile-time number of ``kind`` can take ``dtype``."""
    if kind == "bool":
        return dtype == u1
    if kind == "float":
        return dtype.is_float
    return True


@dataclass
class _Return:
    value: object


@dataclass
class LayoutRequest:
    """A layout given by ``e @ L`` for a builtin that can produce it directly."""

    layout: RegisterLayout
    loc: Loc | None


# ---- the lowering --------------------------------------------------------------------------
class _Lowerer:
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
    def _block(self, stmts) -> _Return | None:
        for st in stmts:
            ret = self._stmt(st)
            if ret is not None:
                return ret
        return None

    def _scoped_block(self, stmts) -> _Return | None:
        saved = self.scope
        self.scope = Scope(saved)
        try:
            return self._block(stmts)
        finally:
            self.scope = saved

    def _stmt(self, st: ast.Stmt) -> _Return | None:
        with self.b.at(st.loc):
            try:
                if isinstance(st, ast.Let):
                    self._let(st)
                elif isinstance(st, ast.Assign):
                    self._assign_stmt(st)
                elif isinstance(st, ast.ExprStmt):
                    self.expr(st.expr, allow_none=True)
                elif isinstance(st, ast.For):
                    self._for(st)
                elif isinstance(st, ast.If):
                    return self._if(st)
                elif isinstance(st, ast.Return):
                    if self.fn_depth == 0:
                        raise self.error("return outside a helper function", st.loc,
                                         "a kernel gives its results with store(...)")
                    return _Return(self.expr(st.value) if st.value is not None else None)
                else:
                    raise self.error(f"unexpected statement {type(st).__name__}", st.loc,
                                     "statements are let, var, assignments, for, if, return "
                                     "and expressions")
            except _CONVERTED as exc:
                raise self.error(exc.message, st.loc, exc.hint) from None
            except (BittileError, RecursionError):
                raise
            except Exception as exc:
                raise InternalError(
                    f"the lowering failed here: {type(exc).__name__}: {exc}", st.loc
                ) from exc
        return None

    def _let(self, st: ast.Let) -> None:
        value = self.expr(st.value)
        if st.mutable and (is_tensor(value) or isinstance(value, tuple)):
            raise self.error(
                f"a var holds a scalar, a tile or a compile-time value, not {describe(value)}",
                st.value.loc, f"bind it with let {st.name} = ...",
            )
        self._check_new_name(st.name, st.loc)
        self.scope.define(Binding(st.name, value, "var" if st.mutable else "let", st.loc))

    def _assign_stmt(self, st: ast.Assign) -> None:
        binding = self.scope.lookup(st.name)
        if binding is None:
            raise self.error(f"assignment to undeclared variable {st.name!r}", st.loc,
                             f"declare it first: var {st.name} = ...")
        if not binding.mutable:
            raise self.error(
                f"cannot assign to {st.name!r}: it is {binding.description}", st.loc,
                f"only vars can be assigned; declare it with var {st.name} = ..."
                if binding.kind == "let" else "assign a var of your own instead",
            )
        if st.op is not None:
            if st.op not in _ARITH and st.op != "//":
                raise self.error(f"'{st.op}=' is not an assignment operator", st.loc,
                                 "compound assignments are + - * / // % & | ^ << >>")
            rhs = self.expr(st.value)
            new = self.binary(st.op, binding.value, rhs, st)
        else:
            new = self.expr(st.value)
        self.assign(binding, new, st)

    def assign(self, binding: Binding, new, node) -> None:
        old, name = binding.value, binding.name
        if is_runtime(old):
            if is_number(new):
                if not _adopts(num_kind(new), old.type.dtype):
                    raise self._type_change(binding, old.type, None, node, new)
                new = self.splat_const(new, old.type, node)
            elif not is_runtime(new):
                raise self._type_change(binding, old.type, None, node, new)
            elif new.type != old.type:
                raise self._type_change(binding, old.type, new.type, node, new)
        elif is_number(old):
            kind = num_kind(old)
            if is_number(new):
                if num_kind(new) != kind:
                    raise self.error(
                        f"var {name!r} holds a compile-time {kind}; cannot assign "
                        f"{describe(new)}", node.loc,
                        "a var keeps its type; write the initial value with the same kind "
                        f"(e.g. {'0.0' if num_kind(new) == 'float' else '0'})",
                    )
            elif is_runtime(new) and isinstance(new.type, ScalarType):
                if not _adopts(kind, new.type.dtype):
                    raise self.error(
                        f"var {name!r} holds a compile-time {kind}; cannot assign "
                        f"{describe(new)}", node.loc,
                        f"initialize it with a value of that type, e.g. var {name} = "
                        f"cast(0, {new.type.dtype})",
                    )
            else:
                raise self.error(
                    f"var {name!r} holds a scalar ({describe(old)}); cannot assign "
                    f"{describe(new)}", node.loc,
                    "a var keeps its type; initialize it with a value of the final type, "
                    "e.g. var acc = zeros(f32, [BN])",
                )
        elif not isinstance(old, (DType, RegisterLayout)) or type(old) is not type(new):
            raise self.error(f"{name!r} holds {describe(old)}; cannot assign "
                             f"{describe(new)}", node.loc,
                             "a var keeps its type; tensors and lists cannot be reassigned")
        binding.value = new

    def _type_change(self, binding: Binding, old_t, new_t, node, new) -> TileTypeError:
        name = binding.name
        new_text = type_str(new_t) if new_t is not None else describe(new)
        if new_t is None:
            detail = f"cannot assign {describe(new)} to var {name!r} of type {type_str(old_t)}"
            hint = "a var keeps its type"
        elif isinstance(old_t, TileType) != isinstance(new_t, TileType):
            detail = (f"cannot assign {new_text} to var {name!r} of type {type_str(old_t)}: "
                      "a var cannot change between scalar and tile")
            hint = "use broadcast(...) or a reduction, or a new let"
        elif old_t.dtype != new_t.dtype:
            detail = (f"dtype mismatch in assignment to {name!r}: {old_t.dtype} and "
                      f"{new_t.dtype}")
            hint = f"a var keeps its dtype; cast the value: cast(..., {old_t.dtype})"
        elif isinstance(old_t, TileType) and old_t.shape != new_t.shape:
            detail = (f"shape mismatch in assignment to {name!r}: {list(old_t.shape)} and "
                      f"{list(new_t.shape)}")
            hint = "a var keeps its shape; reshape or broadcast the value, or use a new let"
        else:
            detail = (f"layout mismatch in assignment to {name!r}: {old_t.layout} and "
                      f"{new_t.layout}")
            hint = "a var keeps its layout; convert_layout(value, L) first"
        loop = self.carried.get(id(binding))
        if loop is not None:
            return self.error(
                f"loop-carried value changes type: {name!r} is {type_str(old_t)} before the "
                f"loop but {new_text} here", node.loc,
                f"a var carried through a loop keeps its type ({detail}); {hint}",
            )
        return self.error(detail, node.loc, hint)

    def splat_const(self, v, t, node) -> Value:
        """The compile-time number ``v`` as a runtime value of type ``t``."""
        scalar = self.constant(v, t.dtype, node)
        if isinstance(t, TileType):
            return self.b.full(scalar, t.shape, t.dtype, t.layout)
        return scalar

    def _carried(self, bodies) -> list[Binding]:
        out: list[Binding] = []
        for name in assigned_outer_names(bodies):
            binding = self.scope.lookup(name)
            if binding is not None and binding.mutable and binding not in out:
                out.append(binding)
        return out

    def _loop_bound(self, node, what: str):
        if node is None:
            return None
        v = self.expr(node)
        if num_kind(v) == "int" or (isinstance(v, Value) and isinstance(v.type, ScalarType)
                                    and v.type.dtype.is_int):
            return v
        raise self.error(f"the loop {what} must be an integer scalar, got {describe(v)}",
                         node.loc, "range(start, stop, step) takes integer scalars")

    def _for(self, st: ast.For) -> None:
        ret = find_return(st.body)
        if ret is not None:
            raise self.error("return inside a loop", ret.loc,
                             "assign a var in the loop and return it after the loop")
        lo = self._loop_bound(st.start, "start")
        hi = self._loop_bound(st.stop, "stop")
        step = self._loop_bound(st.step, "step")
        lo = 0 if lo is None else lo
        step = 1 if step is None else step
        if step == 0 and not isinstance(step, Value):
            raise self.error("the loop step must not be zero", st.step.loc,
                             "range(start, stop, step) needs a nonzero step")
        dtypes = list(dict.fromkeys(v.type.dtype for v in (lo, hi, step)
                                    if isinstance(v, Value)))
        if len(dtypes) > 1:
            raise self.error(f"the loop bounds have different dtypes: {dtypes[0]} and "
                             f"{dtypes[1]}", st.loc, "cast them to one integer dtype")
        dtype = dtypes[0] if dtypes else i32
        bounds = [v if isinstance(v, Value) else self.constant(v, dtype, st)
                  for v in (lo, hi, step)]

        carried = self._carried([st.body])
        dynamic: list[Binding] = []
        inits: list[Value] = []
        static: list[tuple[Binding, object]] = []
        for binding in carried:
            v = binding.value
            if is_runtime(v):
                dynamic.append(binding)
                inits.append(v)
            elif is_number(v):
                dynamic.append(binding)
                inits.append(self.constant(v, DEFAULT_DTYPE[num_kind(v)], st))
            else:
                static.append((binding, v))

        saved_carried = dict(self.carried)
        with self.b.for_range(*bounds, inits) as loop:
            saved_scope = self.scope
            self.scope = Scope(saved_scope)
            self.size_frames.append({})
            try:
                self.scope.define(Binding(st.var, loop.iv, "loop", st.loc))
                for binding, arg in zip(dynamic, loop.carried):
                    binding.value = arg
                    self.carried[id(binding)] = st
                self._block(st.body)
                finals = []
                for binding, arg in zip(dynamic, loop.carried):
                    v = binding.value
                    if is_number(v):
                        v = self.splat_const(v, arg.type, st)
                    if not is_runtime(v) or v.type != arg.type:
                        raise self._type_change(binding, arg.type, getattr(v, "type", None),
                                                st, v)
                    finals.append(v)
                for binding, v0 in static:
                    if type(binding.value) is not type(v0) or binding.value != v0:
                        raise self.error(
                            f"compile-time var {binding.name!r} changes inside a runtime loop",
                            st.loc, "a compile-time value cannot depend on the iteration",
                        )
                loop.yield_(*finals)
            finally:
                self.scope = saved_scope
                self.size_frames.pop()
                self.carried = saved_carried
        for binding, result in zip(dynamic, loop.results):
            binding.value = result

    def _if(self, st: ast.If) -> _Return | None:
        cond = self.expr(st.cond)
        if num_kind(cond) in ("bool", "int"):
            return self._scoped_block(st.then_body if cond else st.else_body)
        if not (isinstance(cond, Value) and isinstance(cond.type, ScalarType)
                and cond.type.dtype.is_int):
            if is_tile(cond):
                hint = "use where(cond, a, b) to select elementwise, or reduce the condition"
            elif is_runtime(cond):
                hint = "compare it, e.g. x != 0.0"
            else:
                hint = "an if needs a compile-time bool or a runtime u1 scalar (a comparison)"
            raise self.error(f"the condition of an if must be a bool or a u1 scalar, got "
                             f"{describe(cond)}", st.cond.loc, hint)
        ret = find_return(st.then_body) or find_return(st.else_body)
        if ret is not None:
            raise self.error("return inside an if with a runtime condition", ret.loc,
                             "assign a var in the branches and return it after the if")
        carried = self._carried([st.then_body, st.else_body])
        olds = [binding.value for binding in carried]
        with self.b.if_(cond) as br:
            then_vals = self._branch(br.then_, st.then_body, carried, olds)
            else_vals = self._branch(br.else_, st.else_body, carried, olds)
            then_yield, else_yield, merged = [], [], []
            for binding, t, e in zip(carried, then_vals, else_vals):
                if t is e or (is_number(t) and num_kind(t) == num_kind(e) and t == e):
                    continue
                if not (is_runtime(t) or is_number(t)) or not (is_runtime(e) or is_number(e)):
                    if type(t) is type(e) and t == e:
                        continue
                    raise self.error(
                        f"compile-time var {binding.name!r} gets different values in the "
                        "branches of an if with a runtime condition", st.loc,
                        "a compile-time value cannot depend on a runtime condition",
                    )
                if is_runtime(t):
                    typ = t.type
                elif is_runtime(e):
                    typ = e.type
                elif num_kind(t) == num_kind(e):
                    typ = ScalarType(DEFAULT_DTYPE[num_kind(t)])
                else:
                    raise self.error(
                        f"var {binding.name!r} is {describe(t)} in one branch and "
                        f"{describe(e)} in the other", st.loc,
                        "give both branches values of one type",
                    )
                with br.then_():
                    then_yield.append(self._merge_value(binding, t, typ, st))
                with br.else_():
                    else_yield.append(self._merge_value(binding, e, typ, st))
                merged.append(binding)
            with br.then_():
                br.yield_(*then_yield)
            with br.else_():
                br.yield_(*else_yield)
        for binding, result in zip(merged, br.results):
            binding.value = result
        return None

    def _branch(self, enter, body, carried, olds) -> list:
        with enter():
            saved = self.scope
            self.scope = Scope(saved)
            self.size_frames.append({})
            try:
                self._block(body)
                return [binding.value for binding in carried]
            finally:
                self.scope = saved
                self.size_frames.pop()
                for binding, old in zip(carried, olds):
                    binding.value = old

    def _merge_value(self, binding: Binding, v, typ, st) -> Value:
        if is_number(v):
            if not _adopts(num_kind(v), typ.dtype):
                raise self.error(
                    f"var {binding.name!r} is {describe(v)} in one branch and "
                    f"{_article(type_str(typ))} value in the other", st.loc,
                    f"initialize it with a {typ.dtype} value, e.g. cast(0, {typ.dtype})",
                )
            return self.splat_const(v, typ, st)
        if v.type != typ:
            raise self.error(
                f"var {binding.name!r} is {type_str(typ)} in one branch of the if but "
                f"{type_str(v.type)} in the other", st.loc,
                "both branches must leave a var with one type (dtype, shape, layout)",
            )
        return v

    # ---- expressions ---------------------------------------------------------------------
    def expr(self, node: ast.Expr, *, allow_none: bool = False):
        handler = _EXPR_HANDLERS.get(type(node))
        if handler is None:
            raise self.error(f"unexpected {type(node).__name__} in an expression",
                             getattr(node, "loc", None), "this node cannot be a value")
        with self.b.at(node.loc):
            try:
                value = handler(self, node)
            except _CONVERTED as exc:
                raise self.error(exc.message, node.loc, exc.hint) from None
            except ZeroDivisionError as exc:
                raise self.error(str(exc), node.loc, "a compile-time value divides by zero") \
                    from None
        if value is None and not allow_none:
            callee = node.func.id if isinstance(node, ast.Call) else None
            what = f"{callee}(...)" if callee else "this expression"
            raise self.error(f"{what} gives no value", node.loc,
                             "store(...) and helpers without return only have effects")
        return value

    def _name(self, node: ast.Name):
        binding = self.scope.lookup(node.id)
        if binding is not None:
            return binding.value
        if self.fn_depth == 0 and node.id in self.sizes:
            return self.size_value(node.id)
        from bittile.dsl.builtins import BUILTINS

        if node.id in self.functions or node.id in BUILTINS:
            raise self.error(f"{node.id!r} is a function, not a value", node.loc,
                             f"call it: {node.id}(...)")
        try:
            return dtype_from_name(node.id)
        except DTypeError:
            pass
        candidates = self.scope.visible_names()
        if self.fn_depth == 0:
            candidates += sorted(self.sizes)
        close = difflib.get_close_matches(node.id, candidates, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "define it with let or var first"
        if self.fn_depth and not close:
            hint = ("a helper sees only its parameters, dtypes and functions; pass the value "
                    "as an argument")
        raise self.error(f"undefined name {node.id!r}", node.loc, hint)

    def size_value(self, name: str) -> Value:
        for frame in reversed(self.size_frames):
            if name in frame:
                return frame[name]
        value = self.b.size(name)
        self.size_frames[-1][name] = value
        return value

    def _literal(self, node):
        return node.value

    def _misplaced(self, node):
        what = "None" if isinstance(node, ast.NoneLit) else "':'"
        raise self.error(f"{what} can only appear in an index", node.loc,
                         "x[None, :] inserts a dimension of size 1 before the first one")

    def _list(self, node: ast.ListExpr):
        return tuple(self.expr(item) for item in node.items)

    def _binop(self, node: ast.BinOp):
        lhs = self.expr(node.lhs)
        rhs = self.expr(node.rhs)
        return self.binary(node.op, lhs, rhs, node)

    def binary(self, op: str, a, b, node):
        """``a op b`` for lowering values; errors are located at ``node``."""
        if op not in ast.BINARY_OPERATORS:
            raise self.error(f"unknown operator {op!r}", node.loc,
                             f"operators are {' '.join(ast.BINARY_OPERATORS)}")
        if isinstance(a, RegisterLayout) or isinstance(b, RegisterLayout):
            if op in ("*", "/") and isinstance(a, RegisterLayout) and isinstance(b,
                                                                                 RegisterLayout):
                return a * b if op == "*" else a / b
            other = b if isinstance(a, RegisterLayout) else a
            raise self.error(f"'{op}' cannot combine a layout with {describe(other)}", node.loc,
                             "layouts compose with '*' and divide with '/'")
        for v in (a, b):
            if not (is_number(v) or is_runtime(v)):
                hint = ("load a tile from it first: load(t, offsets, shape)" if is_tensor(v)
                        else "operators work on numbers, scalars and tiles")
                raise self.error(f"'{op}' cannot take {describe(v)}", node.loc, hint)
        if is_number(a) and is_number(b):
            return self._fold(op, a, b, node)
        if op in ("/", "//", "%") and is_number(b) and b == 0:
            raise self.error(f"division by zero: the divisor of '{op}' is a compile-time zero",
                             node.loc, "divide by a nonzero value")
        x, y = self.unify([a, b], f"'{op}'", node)
        dtype = x.type.dtype
        if op in _LOGIC:
            if dtype != u1:
                raise self.error(f"'{op}' needs u1 operands (comparisons), got {dtype}",
                                 node.loc, "compare first, e.g. x != 0")
            return self.b.binary(_LOGIC[op], x, y)
        if op in _COMPARE:
            self.check_kind(dtype, "num", f"'{op}'", node)
            return self.b.compare(_COMPARE[op], x, y)
        self.check_kind(dtype, "int" if op in _BITWISE else "num", f"'{op}'", node)
        if op == "//":
            if not dtype.is_int:
                raise self.error(f"'//' is floor division of integers, got {dtype}", node.loc,
                                 "use '/' for floats (and floor(...) to round down)")
            return self._floordiv(x, y, b if is_number(b) else None)
        return self.b.binary(_ARITH[op], x, y)

    def _floordiv(self, x: Value, y: Value, divisor: int | None) -> Value:
        """Floor division from the IR's truncating ``div``: the quotient is one less when
        the remainder is nonzero and has the other sign than the divisor (``divisor`` is the
        divisor's compile-time value, if it has one)."""
        b = self.b
        dtype = x.type.dtype
        q = b.binary("div", x, y)
        if dtype.kind == "uint":
            return q
        r = b.binary("rem", x, y)
        zero = b.constant(0, dtype)
        if divisor is not None:
            fix = b.compare("lt" if divisor > 0 else "gt", r, zero)
        else:
            inexact = b.compare("ne", r, zero)
            signs_differ = b.compare("ne", b.compare("lt", r, zero), b.compare("lt", y, zero))
            fix = b.binary("and", inexact, signs_differ)
        return b.where(fix, b.binary("sub", q, b.constant(1, dtype)), q)

    def _fold(self, op: str, a, b, node):
        ka, kb = num_kind(a), num_kind(b)
        if op in _LOGIC:
            if ka != "bool" or kb != "bool":
                raise self.error(f"'{op}' needs bools, got {describe(a)} and {describe(b)}",
                                 node.loc, "compare first, e.g. x != 0")
            return (a and b) if op == "&&" else (a or b)
        if op in _COMPARE:
            return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b,
                    ">=": a >= b}[op]
        if "bool" in (ka, kb):
            if op in ("&", "|", "^") and ka == kb == "bool":
                return bool({"&": a & b, "|": a | b, "^": a ^ b}[op])
            raise self.error(f"'{op}' cannot take a bool", node.loc,
                             "use && || ! on bools, or an int")
        if op in _BITWISE or op == "//":
            if "float" in (ka, kb):
                what = "floor division" if op == "//" else "a bitwise operator"
                raise self.error(f"'{op}' is {what} of integers, got {describe(a)} and "
                                 f"{describe(b)}", node.loc,
                                 "use '/' for floats" if op == "//" else "use integers")
            if op in ("<<", ">>") and b < 0:
                raise self.error(f"negative shift count {b}", node.loc, "shift by 0 or more")
        if op in ("/", "//", "%") and b == 0:
            raise self.error("division by zero in a compile-time expression", node.loc,
                             "the divisor is a compile-time zero")
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            if ka == kb == "int":
                q = abs(a) // abs(b)
                return -q if (a < 0) != (b < 0) else q
            return a / b
        if op == "//":
            return a // b
        if op == "%":
            if ka == kb == "int":
                q = abs(a) // abs(b)
                q = -q if (a < 0) != (b < 0) else q
                return a - q * b
            return math.fmod(a, b)
        return {"&": lambda: a & b, "|": lambda: a | b, "^": lambda: a ^ b,
                "<<": lambda: a << b, ">>": lambda: a >> b}[op]()

    def check_kind(self, dtype: DType, accepts: str, what: str, node) -> None:
        """Arithmetic on ``dtype`` by the operation ``what`` (accepting "num", "int" or
        "float" operands)."""
        if not dtype.supports_arithmetic:
            raise self.error(f"no arithmetic on {dtype} in {what}: it is a storage format",
                             node.loc, "cast to f16, bf16 or f32 first: cast(x, f32)")
        if accepts == "float" and not dtype.is_float:
            raise self.error(f"{what} needs float operands, got {dtype}", node.loc,
                             "cast first: cast(x, f32)")
        if accepts == "int" and not dtype.is_int:
            raise self.error(f"{what} needs integer operands, got {dtype}", node.loc,
                             "cast first, e.g. cast(x, i32)")

    def unify(self, values: list, what: str, node) -> list[Value]:
        """Runtime values and numbers as Values of one dtype; tiles must share a shape."""
        runtime = [v for v in values if is_runtime(v)]
        shapes = [v.type.shape for v in runtime if isinstance(v.type, TileType)]
        for shape in shapes[1:]:
            if shape != shapes[0]:
                raise self.error(
                    f"shape mismatch in {what}: {list(shapes[0])} and {list(shape)}", node.loc,
                    "broadcast one operand explicitly, e.g. x[None, :] or "
                    f"broadcast(x, {list(shapes[0])})",
                )
        dtypes = list(dict.fromkeys(v.type.dtype for v in runtime))
        if len(dtypes) > 1:
            raise self.error(f"dtype mismatch in {what}: {dtypes[0]} and {dtypes[1]}", node.loc,
                             f"cast one operand, e.g. cast(x, {dtypes[-1]})")
        if dtypes:
            dtype = dtypes[0]
        else:
            kinds = {num_kind(v) for v in values}
            dtype = DEFAULT_DTYPE["float" if "float" in kinds else kinds.pop()]
        return [v if is_runtime(v) else self.constant(v, dtype, node) for v in values]

    def constant(self, v, dtype: DType, node) -> Value:
        """The compile-time number ``v`` as an ``arith.constant`` of ``dtype``."""
        kind = num_kind(v)
        loc = getattr(node, "loc", None)
        if kind == "bool":
            if dtype != u1:
                raise self.error(f"the bool {'true' if v else 'false'} cannot be {dtype}", loc,
                                 "use 1 or 0 for integers; bools are u1")
            return self.b.constant(int(v), u1)
        if kind == "int" and dtype.is_int:
            if not dtype.min <= v <= dtype.max:
                raise self.error(f"the constant {v} does not fit in {dtype} (range "
                                 f"{dtype.min}..{dtype.max})", loc,
                                 "cast the other operand to a wider type")
            return self.b.constant(v, dtype)
        if kind == "float" and dtype.is_int:
            raise self.error(f"the float constant {v!r} cannot be {dtype}", loc,
                             "write an integer, or cast the other operand to a float type")
        value = float(v)
        rounded = float(dtype.round(np.array([value]), saturate=False)[0])
        if math.isinf(rounded) and not math.isinf(value):
            raise self.error(f"the constant {v!r} overflows {dtype} (largest {dtype.max})", loc,
                             "use a wider float type")
        if math.isnan(rounded) and not math.isnan(value):
            rounded = dtype.max if value > 0 else dtype.min
        return self.b.constant(rounded, dtype)

    def _unary(self, node: ast.UnaryOp):
        v = self.expr(node.operand)
        op = node.op
        kind = num_kind(v)
        if kind is not None:
            if op == "!" and kind == "bool":
                return not v
            if op == "-" and kind in ("int", "float"):
                return -v
            if op == "~" and kind == "int":
                return ~v
        elif is_runtime(v):
            dtype = v.type.dtype
            if op == "!":
                if dtype != u1:
                    raise self.error(f"'!' needs a u1 operand (a comparison), got {dtype}",
                                     node.loc, "compare first, e.g. x == 0")
                return self.b.unary("not", v)
            if op == "-":
                self.check_kind(dtype, "num", "'-'", node)
                return self.b.unary("neg", v)
            if op == "~":
                self.check_kind(dtype, "int", "'~'", node)
                return self.b.unary("not", v)
        if op not in ast.UNARY_OPERATORS:
            raise self.error(f"unknown operator {op!r}", node.loc, "unary operators are - ~ !")
        needs = {"!": "a bool", "-": "a number", "~": "an integer"}[op]
        raise self.error(f"'{op}' needs {needs}, got {describe(v)}", node.loc,
                         "'!' negates bools, '-' numbers, '~' flips the bits of integers")

    def _index(self, node: ast.Index):
        v = self.expr(node.value)
        if not is_runtime(v):
            raise self.error(f"only tiles can be indexed, got {describe(v)}", node.loc,
                             "x[None, :] inserts a dimension of size 1 into a tile")
        shape = v.type.shape if isinstance(v.type, TileType) else ()
        new, dims = [], iter(shape)
        for idx in node.indices:
            if isinstance(idx, ast.NoneLit):
                new.append(1)
            elif isinstance(idx, ast.Slice):
                size = next(dims, None)
                if size is None:
                    raise self.error(f"too many ':' for a tile of rank {len(shape)}", idx.loc,
                                     "write one ':' per dimension of the tile")
                new.append(size)
            else:
                raise self.error("a tile index is ':' or None", idx.loc,
                                 "use load(tensor, offsets, shape) to select elements")
        kept = sum(isinstance(i, ast.Slice) for i in node.indices)
        if kept != len(shape):
            raise self.error(f"the index keeps {kept} of the {len(shape)} dimensions of "
                             f"{describe(v)}", node.loc, "write one ':' per dimension")
        if tuple(new) == tuple(shape):
            return v
        if not shape:
            return self.b.broadcast(v, new)
        return self.b.reshape(v, new)

    def _annotate(self, node: ast.Annotate):
        from bittile.dsl.builtins import BUILTINS

        layout = self.layout_arg(node.layout, "the layout after '@'")
        value_node = node.value
        if (isinstance(value_node, ast.Call) and self.scope.lookup(value_node.func.id) is None
                and value_node.func.id not in self.functions):
            spec = BUILTINS.get(value_node.func.id)
            if spec is not None and spec.takes_annotation and not any(
                k.name == "layout" for k in value_node.keywords
            ):
                with self.b.at(value_node.loc):
                    try:
                        return spec.call(self, value_node,
                                         LayoutRequest(layout, node.layout.loc))
                    except _CONVERTED as exc:
                        raise self.error(exc.message, value_node.loc, exc.hint) from None
        v = self.expr(value_node)
        if not is_tile(v):
            raise self.error(f"only tiles have layouts, got {describe(v)}", node.loc,
                             "a layout says which worker holds each element of a tile")
        self.check_fits(layout, v.type.shape, node.layout.loc)
        if v.type.layout == layout:
            return v
        return self.b.convert_layout(v, layout)

    def check_fits(self, layout: RegisterLayout, shape, loc) -> None:
        if tuple(layout.shape) != tuple(shape):
            raise self.error(
                f"layout {layout} has shape {list(layout.shape)}, but the tile has shape "
                f"{list(shape)}", loc,
                "a tile's layout must have the tile's shape (compose primitives whose sizes "
                "multiply to each dimension)",
            )

    def _call(self, node: ast.Call, layout: LayoutRequest | None = None):
        from bittile.dsl.builtins import BUILTINS

        name = node.func.id
        binding = self.scope.lookup(name)
        if binding is not None:
            raise self.error(f"{name!r} is {binding.description} ({describe(binding.value)}), "
                             "not a function", node.func.loc,
                             "rename the variable if you meant the function")
        if name in self.functions:
            return self._inline(node, self.functions[name])
        spec = BUILTINS.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, [*BUILTINS, *self.functions], n=1)
            raise self.error(f"unknown function {name!r}", node.func.loc,
                             f"did you mean {close[0]!r}?" if close else
                             "builtins are listed in docs/language.md; helpers are declared "
                             "with fn")
        return spec.call(self, node, layout)

    def _inline(self, node: ast.Call, fn: ast.FnDef):
        if fn.name in self.call_stack:
            chain = [*self.call_stack[self.call_stack.index(fn.name):], fn.name]
            raise self.error(f"recursive call of helper {fn.name!r}: {' -> '.join(chain)}",
                             node.loc, "helpers are inlined at every call, so a helper cannot "
                             "call itself, directly or through other helpers")
        if node.keywords:
            raise self.error(f"helper {fn.name!r} takes no keyword arguments",
                             node.keywords[0].loc, "pass its arguments by position")
        if len(node.args) != len(fn.params):
            raise self.error(
                f"helper {fn.name!r} takes {_plural(len(fn.params), 'argument')} "
                f"({', '.join(fn.params)}), got {len(node.args)}", node.loc,
                f"call it as {fn.name}({', '.join(fn.params)})",
            )
        args = [self.expr(a) for a in node.args]
        scope = Scope()
        for param, value in zip(fn.params, args):
            if scope.local(param) is not None:
                raise self.error(f"helper {fn.name!r} has two parameters named {param!r}",
                                 fn.loc, "rename one of them")
            scope.define(Binding(param, value, "fnparam", fn.loc))
        saved = self.scope
        self.scope = scope
        self.fn_depth += 1
        self.call_stack.append(fn.name)
        try:
            ret = self._block(fn.body)
        except BittileError as exc:
            if exc.loc is None or exc.loc == node.loc or isinstance(exc, InternalError):
                raise
            note = f"in helper {fn.name!r}, called at {node.loc}"
            hint = f"{exc.hint}\n{note}" if exc.hint else note
            raise type(exc)(exc.message, exc.loc, hint) from None
        finally:
            self.scope = saved
            self.fn_depth -= 1
            self.call_stack.pop()
        return ret.value if ret is not None else None

    def _method(self, node: ast.MethodCall):
        from bittile.dsl.builtins import layout_method

        obj = self.expr(node.obj)
        if not isinstance(obj, RegisterLayout):
            raise self.error(f"{describe(obj)} has no method {node.method!r}", node.loc,
                             "only layouts have methods, e.g. spatial(4, 8).local(2, 1); "
                             "builtins are called as functions, e.g. sum(x, 1)")
        return layout_method(self, node, obj)

    # ---- helpers for builtins --------------------------------------------------------------
    def const_value(self, node, what: str, hint: str | None = None):
        v = self.expr(node)
        if is_runtime(v):
            src = f"{node.id!r}" if isinstance(node, ast.Name) else "it"
            raise self.error(f"{what} must be known at compile time, but {src} is "
                             f"{describe(v)}", node.loc, hint or _SHAPE_HINT)
        return v

    def const_int(self, node, what: str, minimum: int | None = None,
                  hint: str | None = None) -> int:
        v = self.const_value(node, what, hint)
        if num_kind(v) != "int":
            raise self.error(f"{what} must be an int, got {describe(v)}", node.loc,
                             "write an integer or an int compile-time parameter")
        if minimum is not None and v < minimum:
            raise self.error(f"{what} must be at least {minimum}, got {v}", node.loc,
                             "sizes and counts are positive")
        return v

    def const_bool(self, node, what: str) -> bool:
        v = self.const_value(node, what)
        if num_kind(v) != "bool":
            raise self.error(f"{what} must be true or false, got {describe(v)}", node.loc,
                             f"write {what}=true or {what}=false")
        return v

    def list_items(self, node, what: str) -> list[tuple[ast.Expr, object]]:
        """(node, value) of each entry of a list argument."""
        if isinstance(node, ast.ListExpr):
            return [(item, self.expr(item)) for item in node.items]
        v = self.expr(node)
        if not isinstance(v, tuple):
            raise self.error(f"{what} must be a list [...], got {describe(v)}", node.loc,
                             f"write {what} in brackets, e.g. [BM, BN]")
        return [(node, item) for item in v]

    def const_ints(self, node, what: str, minimum: int | None = None) -> tuple[int, ...]:
        out = []
        for i, (item_node, v) in enumerate(self.list_items(node, what)):
            if is_runtime(v):
                src = f"{item_node.id!r}" if isinstance(item_node, ast.Name) else f"entry {i}"
                raise self.error(f"{what} must be known at compile time, but {src} is "
                                 f"{describe(v)}", item_node.loc, _SHAPE_HINT)
            if num_kind(v) != "int":
                raise self.error(f"{what} must be a list of ints, but entry {i} is "
                                 f"{describe(v)}", item_node.loc,
                                 "write integers or int compile-time parameters")
            if minimum is not None and v < minimum:
                raise self.error(f"{what} must be at least {minimum}, got {v}", item_node.loc,
                                 "tile dimensions are positive")
            out.append(v)
        return tuple(out)

    def shape_arg(self, node, what: str = "the tile shape") -> tuple[int, ...]:
        shape = self.const_ints(node, what, minimum=1)
        if not shape:
            raise self.error(f"{what} must have at least one dimension", node.loc,
                             "tiles have a non-empty shape such as [16]")
        return shape

    def dtype_arg(self, node, what: str) -> DType:
        if (isinstance(node, ast.Name) and self.scope.lookup(node.id) is None
                and not (self.fn_depth == 0 and node.id in self.sizes)
                and node.id not in self.functions):
            return self._dtype_name(node)
        v = self.expr(node)
        if not isinstance(v, DType):
            raise self.error(f"{what} must be a dtype, got {describe(v)}", node.loc,
                             "dtypes are written f32, f16, bf16, u4, i8, ...")
        return v

    def layout_arg(self, node, what: str) -> RegisterLayout:
        v = self.expr(node)
        if not isinstance(v, RegisterLayout):
            raise self.error(f"{what} must be a layout, got {describe(v)}", node.loc,
                             "build layouts with spatial(...), local(...), ... and methods")
        return v

    def layout_option(self, keywords: dict, request: LayoutRequest | None,
                      shape) -> RegisterLayout | None:
        """The ``layout=`` keyword or the ``@`` annotation, checked against ``shape``."""
        if "layout" in keywords:
            node = keywords["layout"].value
            layout, loc = self.layout_arg(node, "layout="), node.loc
        elif request is not None:
            layout, loc = request.layout, request.loc
        else:
            return None
        if shape is not None:
            self.check_fits(layout, shape, loc)
        return layout


_EXPR_HANDLERS = {
    ast.Name: _Lowerer._name,
    ast.IntLit: _Lowerer._literal,
    ast.FloatLit: _Lowerer._literal,
    ast.BoolLit: _Lowerer._literal,
    ast.NoneLit: _Lowerer._misplaced,
    ast.Slice: _Lowerer._misplaced,
    ast.ListExpr: _Lowerer._list,
    ast.BinOp: _Lowerer._binop,
    ast.UnaryOp: _Lowerer._unary,
    ast.Call: _Lowerer._call,
    ast.MethodCall: _Lowerer._method,
    ast.Index: _Lowerer._index,
    ast.Annotate: _Lowerer._annotate,
}
