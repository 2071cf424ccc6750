"""IR kernels back to ``.tile`` source, so that generated programs can be shown (and replayed)
in the language users write, and so that the parser and the lowering are tested on every
program the generators make.

Every SSA value becomes a ``let``; constants become ``cast(literal, dtype)`` (a runtime scalar
of exactly the IR's dtype); ``scf.for`` becomes a ``for`` loop whose carried values are
``var``s assigned at the end of the body; ``scf.if`` results are ``var``s initialized with
zeros and assigned in both branches. The source lowers to a kernel that computes the same
results (its IR may differ in the order and number of ops).
"""

from __future__ import annotations

import math

from bittile.ir import ops
from bittile.ir.core import Block, Kernel, Op, Value
from bittile.ir.dtypes import DType
from bittile.ir.layout import RegisterLayout
from bittile.ir.types import ScalarType, TensorType, TileType

__all__ = ["kernel_to_tile", "NotExpressible"]


class NotExpressible(ValueError):
    """The kernel uses something the surface language cannot write (e.g. a layout that is not a
    product of primitives)."""


_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "rem": "%", "and": "&", "or": "|",
           "xor": "^", "shl": "<<", "shr": ">>"}
_BINARY_CALL = {"min": "minimum", "max": "maximum", "pow": "pow"}
_COMPARE = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_REDUCE = {"sum": "sum", "max": "max", "min": "min"}
_KEYWORDS = {"kernel", "fn", "import", "let", "var", "for", "in", "if", "else", "return", "grid",
             "true", "false", "None", "inf", "nan"}


def _literal(value, dtype: DType) -> str:
    if dtype.is_int:
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0.0 and math.copysign(1.0, value) < 0:
        return "-0.0"
    text = repr(value)
    return text if any(c in text for c in ".en") else text + ".0"


def _layout(layout: RegisterLayout | None) -> str | None:
    if layout is None:
        return None
    text = str(layout)
    if text.startswith("RegisterLayout("):
        raise NotExpressible(f"layout {text} is not a product of primitives")
    return text


def _shape(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


class _Printer:
    def __init__(self, kernel: Kernel):
        self.kernel = kernel
        self.names: dict[int, str] = {}
        self.lines: list[str] = []
        self.counter = 0

    def fresh(self, prefix: str = "v") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def name(self, v: Value) -> str:
        return self.names[id(v)]

    def emit(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)

    def let(self, indent: int, v: Value, expr: str) -> None:
        name = self.fresh()
        self.names[id(v)] = name
        self.emit(indent, f"let {name} = {expr}")

    # ---- ops -----------------------------------------------------------------------------
    def expr(self, op: Op) -> str:
        n = self.name
        if isinstance(op, ops.ConstantOp):
            return f"cast({_literal(op.value, op.dtype)}, {op.dtype})"
        if isinstance(op, ops.BlockIdOp):
            return f"block_id({op.axis})"
        if isinstance(op, ops.SizeOp):
            return op.symbol
        if isinstance(op, ops.ArangeOp):
            return self.call("arange", [str(op.size), str(op.dtype)], op.layout)
        if isinstance(op, ops.FullOp):
            return self.call("full", [str(op.value.type.dtype), _shape(op.shape), n(op.value)],
                             op.layout)
        if isinstance(op, ops.LoadOp):
            offsets = "[" + ", ".join(n(o) for o in op.offsets) + "]"
            return self.call("load", [n(op.tensor), offsets, _shape(op.shape)], op.layout)
        if isinstance(op, ops.CastOp):
            return f"cast({n(op.x)}, {op.dtype})"
        if isinstance(op, ops.ViewOp):
            return self.call("view", [n(op.x), str(op.dtype), _shape(op.shape)], op.layout)
        if isinstance(op, ops.ConvertLayoutOp):
            return f"convert_layout({n(op.x)}, {_layout(op.layout)})"
        if isinstance(op, ops.WhereOp):
            return f"where({n(op.cond)}, {n(op.a)}, {n(op.b)})"
        if isinstance(op, ops.CompareOp):
            return f"({n(op.lhs)} {_COMPARE[op.kind]} {n(op.rhs)})"
        if isinstance(op, ops.BinaryOp):
            if op.kind in _BINARY_CALL:
                return f"{_BINARY_CALL[op.kind]}({n(op.lhs)}, {n(op.rhs)})"
            return f"({n(op.lhs)} {_BINARY[op.kind]} {n(op.rhs)})"
        if isinstance(op, ops.UnaryOp):
            if op.kind == "neg":
                return f"(-{n(op.x)})"
            if op.kind == "not":
                return f"(~{n(op.x)})"
            return f"{op.kind}({n(op.x)})"
        if isinstance(op, ops.ReduceOp):
            keep = ", keepdims=true" if op.keepdims else ""
            return f"{_REDUCE[op.kind]}({n(op.x)}, {op.axis}{keep})"
        if isinstance(op, ops.BroadcastOp):
            return self.call("broadcast", [n(op.x), _shape(op.shape)], op.layout)
        if isinstance(op, ops.ReshapeOp):
            return self.call("reshape", [n(op.x), _shape(op.shape)], op.layout)
        if isinstance(op, ops.PermuteOp):
            return f"permute({n(op.x)}, {_shape(op.dims)})"
        if isinstance(op, ops.DotOp):
            return f"dot({n(op.a)}, {n(op.b)}, {n(op.acc)})"
        raise NotExpressible(f"{op.name} has no surface syntax")

    @staticmethod
    def call(fn: str, args: list[str], layout) -> str:
        text = _layout(layout)
        if text is not None:
            args = [*args, f"layout={text}"]
        return f"{fn}({', '.join(args)})"

    def block(self, block: Block, indent: int) -> None:
        for op in block.ops:
            if isinstance(op, ops.YieldOp):
                continue
            if isinstance(op, ops.StoreOp):
                offsets = "[" + ", ".join(self.name(o) for o in op.offsets) + "]"
                self.emit(indent, f"store({self.name(op.tensor)}, {offsets}, "
                                  f"{self.name(op.value)})")
            elif isinstance(op, ops.ForOp):
                self.for_loop(op, indent)
            elif isinstance(op, ops.IfOp):
                self.if_(op, indent)
            else:
                self.let(indent, op.results[0], self.expr(op))

    def for_loop(self, op: ops.ForOp, indent: int) -> None:
        carried = []
        for init in op.inits:
            name = self.fresh("c")
            carried.append(name)
            self.emit(indent, f"var {name} = {self.name(init)}")
        iv = self.fresh("i")
        self.emit(indent, f"for {iv} in range({self.name(op.lo)}, {self.name(op.hi)}, "
                          f"{self.name(op.step)}) {{")
        self.names[id(op.body.args[0])] = iv
        for arg, name in zip(op.body.args[1:], carried):
            self.names[id(arg)] = name
        self.block(op.body, indent + 1)
        for name, v in zip(carried, op.body.ops[-1].values):
            self.emit(indent + 1, f"{name} = {self.name(v)}")
        self.emit(indent, "}")
        for out, name in zip(op.outs, carried):
            self.let(indent, out, name)

    def if_(self, op: ops.IfOp, indent: int) -> None:
        results = []
        for out in op.outs:
            name = self.fresh("r")
            results.append(name)
            self.emit(indent, f"var {name} = {_zero(out)}")
        self.emit(indent, f"if {self.name(op.cond)} {{")
        self.branch(op.then_body, results, indent)
        self.emit(indent, "} else {")
        self.branch(op.else_body, results, indent)
        self.emit(indent, "}")
        for out, name in zip(op.outs, results):
            self.let(indent, out, name)

    def branch(self, block: Block, results: list[str], indent: int) -> None:
        self.block(block, indent + 1)
        for name, v in zip(results, block.ops[-1].values if block.ops else ()):
            self.emit(indent + 1, f"{name} = {self.name(v)}")

    # ---- the kernel ----------------------------------------------------------------------
    def kernel_source(self) -> str:
        k = self.kernel
        params = []
        for p, v in zip(k.params, k.body.args):
            self.names[id(v)] = p.name
            if isinstance(p.type, TensorType):
                dims = ", ".join(str(d).replace("//", "/") for d in p.type.shape)
                params.append(f"{p.name}: {p.type.dtype}[{dims}]")
            else:
                params.append(f"{p.name}: {p.type.dtype}")
        grid = ", ".join(str(d).replace("//", "/") for d in k.grid)
        self.block(k.body, 1)
        name = k.name if k.name not in _KEYWORDS else f"{k.name}_"
        header = f"kernel {name}({', '.join(params)}) grid({grid}) {{"
        return "\n".join([header, *self.lines, "}"]) + "\n"


def _zero(v: Value) -> str:
    t = v.type
    if isinstance(t, TileType):
        return f"full({t.dtype}, {_shape(t.shape)}, cast(0, {t.dtype}))" + (
            f" @ {_layout(t.layout)}" if t.layout is not None else "")
    if isinstance(t, ScalarType):
        return f"cast(0, {t.dtype})"
    raise NotExpressible(f"an if yielding {t}")


def kernel_to_tile(kernel: Kernel) -> str:
    """``kernel`` as ``.tile`` source (raises :class:`NotExpressible` when it cannot be)."""
    return _Printer(kernel).kernel_source()
