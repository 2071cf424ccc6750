"""Lowering expressions: names, operators with the promotion rules, indexing, layouts, calls."""

from __future__ import annotations

import difflib
import math

import numpy as np

from bittile.dsl import ast
from bittile.dsl.lower_values import (
    _ARITH,
    _BITWISE,
    _COMPARE,
    _CONVERTED,
    _LOGIC,
    DEFAULT_DTYPE,
    LayoutRequest,
    _plural,
    describe,
    is_number,
    is_runtime,
    is_tensor,
    is_tile,
    num_kind,
)
from bittile.dsl.scope import Binding, Scope
from bittile.errors import (
    BittileError,
    DTypeError,
    InternalError,
)
from bittile.ir.core import Value
from bittile.ir.dtypes import DType, dtype_from_name, u1
from bittile.ir.layout import RegisterLayout
from bittile.ir.types import TileType


class ExprLowering:
    """Part of the lowering (see dsl/lower.py): expressions."""

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


_EXPR_HANDLERS = {
    ast.Name: ExprLowering._name,
    ast.IntLit: ExprLowering._literal,
    ast.FloatLit: ExprLowering._literal,
    ast.BoolLit: ExprLowering._literal,
    ast.NoneLit: ExprLowering._misplaced,
    ast.Slice: ExprLowering._misplaced,
    ast.ListExpr: ExprLowering._list,
    ast.BinOp: ExprLowering._binop,
    ast.UnaryOp: ExprLowering._unary,
    ast.Call: ExprLowering._call,
    ast.MethodCall: ExprLowering._method,
    ast.Index: ExprLowering._index,
    ast.Annotate: ExprLowering._annotate,
}
