"""The builtin functions of the tile language and the methods of layouts.

Each builtin is a function ``(lowerer, call, args, keywords, layout_request) -> value`` that
checks its arguments and emits IR through ``lowerer.b``; :data:`BUILTINS` maps names to
:class:`Builtin` records that check the argument count and the keywords first. Errors raised
here are located at the offending argument (or at the call), with a hint.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bittile.dsl import ast
from bittile.dsl.lower_values import (
    describe,
    is_number,
    is_runtime,
    is_tensor,
    is_tile,
    num_kind,
)
from bittile.errors import IRError
from bittile.ir import layout as layouts
from bittile.ir import ops
from bittile.ir.core import Value
from bittile.ir.dtypes import f32, i32, u1
from bittile.ir.layout import RegisterLayout
from bittile.ir.types import ScalarType, TileType

__all__ = ["BUILTINS", "Builtin", "layout_method"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _arity(lo: int, hi: int | None) -> str:
    if hi is None:
        return f"at least {_plural(lo, 'argument')}"
    if lo == hi:
        return _plural(lo, "argument")
    if hi == lo + 1:
        return f"{lo} or {hi} arguments"
    return f"{lo} to {hi} arguments"


@dataclass(frozen=True)
class Builtin:
    name: str
    fn: Callable
    min_args: int
    max_args: int | None
    signature: str
    keywords: tuple[str, ...] = ()
    #: whether ``f(...) @ L`` may build the result with layout ``L`` directly
    takes_annotation: bool = False

    def usage(self) -> str:
        kws = ", ".join(f"{k}=..." for k in self.keywords)
        args = ", ".join(p for p in (self.signature, kws) if p)
        return f"{self.name}({args})"

    def call(self, lw, node: ast.Call, request=None):
        n = len(node.args)
        if n < self.min_args or (self.max_args is not None and n > self.max_args):
            raise lw.error(
                f"{self.name} expects {_arity(self.min_args, self.max_args)}: "
                f"{self.signature}, got {n}", node.loc, f"usage: {self.usage()}",
            )
        keywords: dict[str, ast.Keyword] = {}
        for k in node.keywords:
            if k.name not in self.keywords:
                raise lw.error(
                    f"{self.name} has no keyword argument {k.name!r}", k.loc,
                    f"its keywords: {', '.join(self.keywords)}" if self.keywords
                    else f"{self.name} takes no keyword arguments",
                )
            if k.name in keywords:
                raise lw.error(f"keyword argument {k.name!r} is given twice", k.loc,
                               f"usage: {self.usage()}")
            keywords[k.name] = k
        return self.fn(lw, node, node.args, keywords, request)


BUILTINS: dict[str, Builtin] = {}


def builtin(names, min_args: int, max_args: int | None, signature: str,
            keywords: tuple[str, ...] = (), takes_annotation: bool = False):
    def register(fn):
        for name in (names,) if isinstance(names, str) else names:
            BUILTINS[name] = Builtin(name, fn, min_args, max_args, signature, keywords,
                                     takes_annotation)
        return fn

    return register


# ---- argument helpers ------------------------------------------------------------------------
def _tensor(lw, node, fname: str) -> Value:
    v = lw.expr(node)
    if not is_tensor(v):
        raise lw.error(f"{fname} needs a global tensor parameter, got {describe(v)}", node.loc,
                       "pass one of the kernel's tensor parameters")
    return v


def _tile(lw, node, fname: str) -> Value:
    v = lw.expr(node)
    if not is_tile(v):
        raise lw.error(f"{fname} needs a tile, got {describe(v)}", node.loc,
                       "tiles come from load, zeros, full, arange, broadcast...")
    return v


def _numeric(lw, node, fname: str):
    v = lw.expr(node)
    if not (is_number(v) or is_runtime(v)):
        raise lw.error(f"{fname} needs a number, a scalar or a tile, got {describe(v)}",
                       node.loc, "load a tile from a tensor first" if is_tensor(v) else None)
    return v


def _offsets(lw, node, tensor: Value, fname: str) -> list[tuple[ast.Expr, object]]:
    """The checked offsets of a load or store; numbers stay numbers until :func:`_indices`
    makes them constants right before the op (as the builder does)."""
    items = lw.list_items(node, "the offsets")
    rank = tensor.type.rank
    if len(items) != rank:
        raise lw.error(
            f"{tensor.name_hint} has rank {rank}, so {fname} needs "
            f"{_plural(rank, 'offset')}, got {len(items)}", node.loc,
            "give one offset per dimension of the tensor",
        )
    for item_node, v in items:
        if not (num_kind(v) == "int" or (isinstance(v, Value) and isinstance(v.type, ScalarType)
                                         and v.type.dtype.is_int)):
            raise lw.error(f"an offset must be an integer scalar, got {describe(v)}",
                           item_node.loc, "offsets are element indices into the tensor")
    return items


def _indices(lw, items) -> list[Value]:
    return [v if isinstance(v, Value) else lw.constant(v, i32, n) for n, v in items]


def _name(node: ast.Call) -> str:
    return node.func.id


# ---- sources ---------------------------------------------------------------------------------
@builtin("block_id", 1, 1, "axis")
def _block_id(lw, node, args, kw, request):
    axis = lw.const_int(args[0], "the axis of block_id")
    if not 0 <= axis < lw.grid_rank:
        raise lw.error(f"block_id axis {axis} does not exist: the grid has "
                       f"{_plural(lw.grid_rank, 'dimension')}", args[0].loc,
                       f"axes are 0..{lw.grid_rank - 1}")
    return lw.b.block_id(axis)


@builtin("zeros", 2, 2, "dtype, shape", ("layout",), True)
def _zeros(lw, node, args, kw, request):
    dtype = lw.dtype_arg(args[0], "the dtype of zeros")
    shape = lw.shape_arg(args[1], "the shape of zeros")
    layout = lw.layout_option(kw, request, shape)
    return lw.b.full(lw.constant(0, dtype, node), shape, dtype, layout)


@builtin("full", 3, 3, "dtype, shape, value", ("layout",), True)
def _full(lw, node, args, kw, request):
    dtype = lw.dtype_arg(args[0], "the dtype of full")
    shape = lw.shape_arg(args[1], "the shape of full")
    v = _numeric(lw, args[2], "full")
    if is_number(v):
        v = lw.constant(v, dtype, args[2])
    elif not isinstance(v.type, ScalarType):
        raise lw.error(f"full fills a tile with a scalar, got {describe(v)}", args[2].loc,
                       "use broadcast(x, shape) to expand a tile")
    elif v.type.dtype != dtype:
        raise lw.error(f"dtype mismatch in 'full': {dtype} and {v.type.dtype}", args[2].loc,
                       f"cast the value: cast(x, {dtype})")
    layout = lw.layout_option(kw, request, shape)
    return lw.b.full(v, shape, dtype, layout)


@builtin("arange", 1, 2, "n[, dtype]", ("layout",), True)
def _arange(lw, node, args, kw, request):
    n = lw.const_int(args[0], "the size of arange", minimum=1)
    dtype = lw.dtype_arg(args[1], "the dtype of arange") if len(args) > 1 else i32
    if not dtype.is_int:
        raise lw.error(f"arange produces integers, not {dtype}", args[1].loc,
                       "cast the result to a float type afterwards")
    if n - 1 > dtype.max:
        raise lw.error(f"arange({n}) does not fit in {dtype}", node.loc,
                       "use a wider integer type")
    layout = lw.layout_option(kw, request, (n,))
    return lw.b.arange(n, dtype, layout)


# ---- memory ----------------------------------------------------------------------------------
@builtin("load", 3, 3, "tensor, offsets, shape", ("layout",), True)
def _load(lw, node, args, kw, request):
    t = _tensor(lw, args[0], "load")
    offsets = _offsets(lw, args[1], t, "load")
    shape = lw.shape_arg(args[2], "the shape of load")
    if len(shape) != t.type.rank:
        raise lw.error(
            f"load from the rank-{t.type.rank} tensor {t.name_hint} needs a rank-{t.type.rank} "
            f"shape, got {list(shape)}", args[2].loc,
            "the tile has one dimension per tensor dimension (reshape it afterwards)",
        )
    layout = lw.layout_option(kw, request, shape)
    return lw.b.load(t, _indices(lw, offsets), shape, layout)


@builtin("store", 3, 3, "tensor, offsets, value")
def _store(lw, node, args, kw, request):
    t = _tensor(lw, args[0], "store")
    offsets = _offsets(lw, args[1], t, "store")
    v = lw.expr(args[2])
    if not is_tile(v):
        raise lw.error(f"store writes a tile, got {describe(v)}", args[2].loc,
                       "make a tile with full(dtype, shape, value) or broadcast(x, shape)")
    tt = t.type
    if v.type.dtype != tt.dtype:
        raise lw.error(
            f"store of a {v.type.dtype} tile into the {tt.dtype} tensor {t.name_hint}",
            args[2].loc, f"cast the tile first: cast(x, {tt.dtype})",
        )
    if v.type.rank != tt.rank:
        raise lw.error(
            f"store of a rank-{v.type.rank} tile {list(v.type.shape)} into the rank-{tt.rank} "
            f"tensor {t.name_hint}", args[2].loc,
            "reshape the tile to the tensor's rank first",
        )
    lw.b.store(t, _indices(lw, offsets), v)
    return None


# ---- conversions -----------------------------------------------------------------------------
@builtin("cast", 2, 2, "x, dtype")
def _cast(lw, node, args, kw, request):
    v = _numeric(lw, args[0], "cast")
    dtype = lw.dtype_arg(args[1], "the dtype of cast")
    if is_number(v):
        x = np.array([float(v) if isinstance(v, float) else int(v)])
        if dtype.is_int:
            value = int(dtype.decode(dtype.encode(x))[0])
        else:
            value = float(dtype.round(x.astype(np.float64), saturate=True)[0])
        return lw.b.constant(value, dtype)
    if v.type.dtype == dtype:
        return v
    return lw.b.cast(v, dtype)


@builtin("view", 2, 3, "x, dtype[, shape]", ("layout",))
def _view(lw, node, args, kw, request):
    x = _tile(lw, args[0], "view")
    dtype = lw.dtype_arg(args[1], "the dtype of view")
    shape = lw.shape_arg(args[2], "the shape of view") if len(args) > 2 else None
    layout = lw.layout_option(kw, None, shape)
    try:
        return lw.b.view(x, dtype, shape, layout)
    except IRError as exc:
        raise lw.error(
            exc.message, node.loc, exc.hint or
            "a view reinterprets bits: each worker must hold as many bits after it as before "
            "(e.g. a u4[16, 8] tile views as u32[16, 1])",
        ) from None


@builtin("convert_layout", 2, 2, "x, layout")
def _convert_layout(lw, node, args, kw, request):
    x = _tile(lw, args[0], "convert_layout")
    layout = lw.layout_arg(args[1], "the layout of convert_layout")
    lw.check_fits(layout, x.type.shape, args[1].loc)
    if x.type.layout == layout:
        return x
    return lw.b.convert_layout(x, layout)


# ---- elementwise -----------------------------------------------------------------------------
_MATH_FOLD = {
    "exp": np.exp, "exp2": np.exp2, "log": np.log, "log2": np.log2, "sqrt": np.sqrt,
    "rsqrt": lambda x: 1.0 / np.sqrt(x), "sin": np.sin, "cos": np.cos, "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)), "abs": np.abs, "floor": np.floor,
    "ceil": np.ceil, "round": np.rint,
}


@builtin(tuple(_MATH_FOLD), 1, 1, "x")
def _math(lw, node, args, kw, request):
    name = _name(node)
    v = _numeric(lw, args[0], name)
    kind = num_kind(v)
    if kind == "bool":
        raise lw.error(f"{name} needs a number, got {describe(v)}", args[0].loc,
                       "bools are not numbers; use 1 or 0")
    if kind == "int" and name in ("abs", "floor", "ceil", "round"):
        return abs(v) if name == "abs" else v
    if kind is not None:
        with np.errstate(all="ignore"):
            return float(_MATH_FOLD[name](np.float64(v)))
    lw.check_kind(v.type.dtype, ops.UNARY_OPS[name], name, node)
    return lw.b.unary(name, v)


def _elementwise2(lw, node, name: str, a, b):
    kind = {"maximum": "max", "minimum": "min", "max": "max", "min": "min", "pow": "pow"}[name]
    if is_number(a) and is_number(b):
        if "bool" in (num_kind(a), num_kind(b)):
            raise lw.error(f"{name} needs numbers, not bools", node.loc, "use 1 or 0")
        if kind == "max":
            return max(a, b)
        if kind == "min":
            return min(a, b)
        if num_kind(a) == num_kind(b) == "int" and b >= 0:
            return a ** b
        with np.errstate(all="ignore"):
            return float(np.power(np.float64(a), np.float64(b)))
    x, y = lw.unify([a, b], f"'{name}'", node)
    lw.check_kind(x.type.dtype, ops.BINARY_OPS[kind], name, node)
    return lw.b.binary(kind, x, y)


@builtin(("maximum", "minimum", "pow"), 2, 2, "a, b")
def _binary_fn(lw, node, args, kw, request):
    name = _name(node)
    a = _numeric(lw, args[0], name)
    b = _numeric(lw, args[1], name)
    return _elementwise2(lw, node, name, a, b)


@builtin("where", 3, 3, "cond, a, b")
def _where(lw, node, args, kw, request):
    cond = lw.expr(args[0])
    a = _numeric(lw, args[1], "where")
    b = _numeric(lw, args[2], "where")
    if num_kind(cond) == "bool":
        return a if cond else b
    if not (is_runtime(cond) and cond.type.dtype == u1):
        raise lw.error(f"the condition of where must be u1 (a comparison), got "
                       f"{describe(cond)}", args[0].loc, "compare first, e.g. where(x > 0, x, 0)")
    x, y = lw.unify([a, b], "'where'", node)
    shapes = [v.type.shape for v in (cond, x, y) if isinstance(v.type, TileType)]
    for shape in shapes[1:]:
        if shape != shapes[0]:
            raise lw.error(f"shape mismatch in 'where': {list(shapes[0])} and {list(shape)}",
                           node.loc, "broadcast the condition and the values to one shape")
    return lw.b.where(cond, x, y)


@builtin("cdiv", 2, 2, "a, b")
def _cdiv(lw, node, args, kw, request):
    a = _numeric(lw, args[0], "cdiv")
    b = _numeric(lw, args[1], "cdiv")
    if is_number(a) and is_number(b):
        if num_kind(a) != "int" or num_kind(b) != "int":
            raise lw.error(f"cdiv divides integers, got {describe(a)} and {describe(b)}",
                           node.loc, "cdiv(a, b) is the ceiling of a / b for integers")
    if num_kind(b) == "int" and b == 0:
        raise lw.error("division by zero in cdiv", args[1].loc, "the divisor is zero")
    if is_number(a) and is_number(b):
        return -(-a // b)
    x, y = lw.unify([a, b], "'cdiv'", node)
    lw.check_kind(x.type.dtype, "int", "cdiv", node)
    one = lw.b.constant(1, x.type.dtype)
    return lw.b.binary("div", lw.b.binary("add", x, lw.b.binary("sub", y, one)), y)


# ---- reductions and shapes -------------------------------------------------------------------
@builtin(("sum", "max", "min"), 2, 2, "x, axis", ("keepdims",))
def _reduce(lw, node, args, kw, request):
    name = _name(node)
    x = _numeric(lw, args[0], name)
    if name in ("max", "min") and not is_tile(x):
        if "keepdims" in kw:
            raise lw.error(f"keepdims applies to reductions; {name} of two scalars has none",
                           kw["keepdims"].loc, f"{name}(tile, axis, keepdims=true) reduces")
        return _elementwise2(lw, node, name, x, _numeric(lw, args[1], name))
    if not is_tile(x):
        raise lw.error(f"{name} reduces a tile along an axis, got {describe(x)}", args[0].loc,
                       "sum(x, axis) reduces the tile x")
    hint = (f"{name}(x, axis) reduces x; use {name}imum(a, b) for the elementwise {name}imum"
            if name != "sum" else None)
    axis = lw.const_int(args[1], f"the axis of {name}", hint=hint)
    rank = x.type.rank
    if not -rank <= axis < rank:
        raise lw.error(f"axis {axis} is out of range for {describe(x)}", args[1].loc,
                       f"axes are 0..{rank - 1} (or -{rank}..-1 from the end)")
    keepdims = lw.const_bool(kw["keepdims"].value, "keepdims") if "keepdims" in kw else False
    lw.check_kind(x.type.dtype, "num", name, node)
    return lw.b.reduce(name, x, axis, keepdims)


@builtin("broadcast", 2, 2, "x, shape", ("layout",), True)
def _broadcast(lw, node, args, kw, request):
    x = _numeric(lw, args[0], "broadcast")
    shape = lw.shape_arg(args[1], "the shape of broadcast")
    if is_number(x):
        x = lw.constant(x, {"int": i32, "float": f32, "bool": u1}[num_kind(x)], args[0])
    if is_tile(x):
        src = x.type.shape
        if len(src) != len(shape):
            raise lw.error(
                f"cannot broadcast {list(src)} to {list(shape)}: the ranks differ", node.loc,
                "insert dimensions of size 1 first, e.g. x[:, None] or x[None, :]",
            )
        for i, (s, d) in enumerate(zip(src, shape)):
            if s != d and s != 1:
                raise lw.error(
                    f"cannot broadcast {list(src)} to {list(shape)}: dimension {i} has size "
                    f"{s}, not 1 or {d}", node.loc, "only dimensions of size 1 expand",
                )
    layout = lw.layout_option(kw, request, shape)
    return lw.b.broadcast(x, shape, layout)


@builtin("reshape", 2, 2, "x, shape", ("layout",), True)
def _reshape(lw, node, args, kw, request):
    x = _tile(lw, args[0], "reshape")
    shape = lw.shape_arg(args[1], "the shape of reshape")
    if math.prod(shape) != x.type.size:
        raise lw.error(
            f"cannot reshape {list(x.type.shape)} ({x.type.size} elements) to {list(shape)} "
            f"({math.prod(shape)} elements)", node.loc,
            "reshape keeps the elements in row-major order; the counts must match",
        )
    layout = lw.layout_option(kw, request, shape)
    return lw.b.reshape(x, shape, layout)


@builtin("permute", 2, 2, "x, dims")
def _permute(lw, node, args, kw, request):
    x = _tile(lw, args[0], "permute")
    dims = lw.const_ints(args[1], "the dims of permute")
    if sorted(dims) != list(range(x.type.rank)):
        raise lw.error(f"permute dims {list(dims)} are not a permutation of "
                       f"0..{x.type.rank - 1}", args[1].loc,
                       "dimension i of the result is dimension dims[i] of x")
    return lw.b.permute(x, dims)


@builtin("transpose", 1, 1, "x")
def _transpose(lw, node, args, kw, request):
    x = _tile(lw, args[0], "transpose")
    if x.type.rank != 2:
        raise lw.error(f"transpose swaps the dimensions of a 2-D tile, got {describe(x)}",
                       args[0].loc, "use permute(x, dims) for other ranks")
    return lw.b.permute(x, (1, 0))


@builtin("dot", 2, 3, "a, b[, acc]")
def _dot(lw, node, args, kw, request):
    a = _tile(lw, args[0], "dot")
    b = _tile(lw, args[1], "dot")
    acc = _tile(lw, args[2], "dot") if len(args) > 2 else None
    for v, arg in ((a, args[0]), (b, args[1])):
        if v.type.rank != 2:
            raise lw.error(f"dot multiplies 2-D tiles, got {describe(v)}", arg.loc,
                           "reshape it to [M, K] or [K, N]")
    (m, k), (k2, n) = a.type.shape, b.type.shape
    hint = "dot computes acc[M, N] + a[M, K] @ b[K, N]"
    if k != k2:
        raise lw.error(f"shape mismatch in dot: a is {[m, k]} and b is {[k2, n]}", node.loc,
                       hint + ": the columns of a must match the rows of b")
    if a.type.dtype != b.type.dtype:
        raise lw.error(f"dtype mismatch in dot: {a.type.dtype} and {b.type.dtype}", node.loc,
                       "cast both operands to one dtype")
    want = f32 if a.type.dtype.is_float else i32
    if acc is None:
        acc = lw.b.full(lw.constant(0, want, node), (m, n), want)
    else:
        if acc.type.shape != (m, n):
            raise lw.error(f"shape mismatch in dot: the accumulator is {list(acc.type.shape)}, "
                           f"expected {[m, n]}", args[2].loc, hint)
        acc_dtype = acc.type.dtype
        if not acc_dtype.supports_arithmetic or acc_dtype.is_float != a.type.dtype.is_float:
            raise lw.error(f"{a.type.dtype} operands cannot accumulate into {acc_dtype}",
                           args[2].loc, f"use an accumulator of {want}")
    return lw.b.dot(a, b, acc)


# ---- layouts ---------------------------------------------------------------------------------
@builtin(("spatial", "local", "column_spatial", "column_local"), 1, None, "sizes...")
def _layout_primitive(lw, node, args, kw, request):
    name = _name(node)
    sizes = [lw.const_int(a, f"each size of {name}") for a in args]
    return getattr(layouts, name)(*sizes)


@builtin("replicated", 1, 2, "n[, rank]", ("rank",))
def _replicated(lw, node, args, kw, request):
    n = lw.const_int(args[0], "the count of replicated")
    rank_node = args[1] if len(args) > 1 else (kw["rank"].value if "rank" in kw else None)
    if len(args) > 1 and "rank" in kw:
        raise lw.error("replicated got its rank twice", kw["rank"].loc,
                       "write replicated(n, rank) or replicated(n, rank=r)")
    rank = lw.const_int(rank_node, "the rank of replicated") if rank_node is not None else 1
    return layouts.replicated(n, rank)


#: method -> (min args, max args, signature, keywords)
_LAYOUT_METHODS = {
    "spatial": (1, None, "sizes...", ()),
    "local": (1, None, "sizes...", ()),
    "column_spatial": (1, None, "sizes...", ()),
    "column_local": (1, None, "sizes...", ()),
    "replicated": (1, 1, "n", ()),
    "reduce": (1, 1, "dims", ("keepdims",)),
    "permute": (1, 1, "dims", ()),
    "reshape": (1, None, "sizes...", ()),
    "flatten": (0, 0, "", ()),
    "squeeze": (1, 1, "dim", ()),
    "unsqueeze": (1, 1, "dim", ()),
}


def layout_method(lw, node: ast.MethodCall, layout: RegisterLayout):
    """``layout.method(args...)`` for a compile-time layout."""
    spec = _LAYOUT_METHODS.get(node.method)
    if spec is None:
        close = difflib.get_close_matches(node.method, list(_LAYOUT_METHODS), n=1)
        raise lw.error(f"a layout has no method {node.method!r}", node.loc,
                       f"did you mean {close[0]!r}?" if close else
                       f"layout methods: {', '.join(_LAYOUT_METHODS)}")
    lo, hi, signature, keywords = spec
    if len(node.args) < lo or (hi is not None and len(node.args) > hi):
        raise lw.error(f".{node.method} expects {_arity(lo, hi)}: {signature}, got "
                       f"{len(node.args)}", node.loc, f"usage: layout.{node.method}({signature})")
    args = []
    for arg in node.args:
        v = lw.const_value(arg, f"the arguments of .{node.method}()")
        ok = num_kind(v) == "int" or (
            isinstance(v, tuple) and hi == 1 and all(num_kind(x) == "int" for x in v)
        ) or (isinstance(v, tuple) and node.method == "reshape" and len(node.args) == 1
              and all(num_kind(x) == "int" for x in v))
        if not ok:
            raise lw.error(f"the arguments of .{node.method}() must be ints, got {describe(v)}",
                           arg.loc, f"usage: layout.{node.method}({signature})")
        args.append(list(v) if isinstance(v, tuple) else v)
    kwargs = {}
    for k in node.keywords:
        if k.name not in keywords or k.name in kwargs:
            raise lw.error(f".{node.method} has no keyword argument {k.name!r}"
                           if k.name not in keywords else f"{k.name!r} is given twice", k.loc,
                           f"usage: layout.{node.method}({signature})")
        kwargs[k.name] = lw.const_bool(k.value, k.name)
    return getattr(layout, node.method)(*args, **kwargs)
