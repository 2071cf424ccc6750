"""The AST of the tile language, shared by both frontends.

The ``.tile`` parser (``dsl/parser.py``) and the Python frontend (``dsl/pyfront.py``) both build
these nodes, so there is one semantic analysis and one lowering (``dsl/lower.py``). Every node
carries the :class:`~bittile.errors.Loc` of the source text it came from (file, 1-based line
and column, end line and end column exclusive), which every diagnostic points at.

Nodes are frozen dataclasses; ``loc`` is the first field, compared like any other (two nodes
from different places are different nodes).
"""

from __future__ import annotations

from dataclasses import dataclass

from bittile.errors import Loc

__all__ = [
    "Node", "Expr", "Name", "IntLit", "FloatLit", "BoolLit", "NoneLit", "Slice", "ListExpr",
    "BinOp", "UnaryOp", "Call", "Keyword", "MethodCall", "Index", "Annotate",
    "Stmt", "Let", "Assign", "ExprStmt", "For", "If", "Return",
    "TensorTypeExpr", "ScalarTypeExpr", "Param", "ConstParam", "KernelDef", "FnDef", "Import",
    "Module", "BINARY_OPERATORS", "UNARY_OPERATORS", "CONST_KINDS", "BUILTIN_FUNCTIONS",
    "LAYOUT_FUNCTIONS",
]

#: The language's builtin functions (docs/language.md); ``dsl/builtins.py`` implements exactly
#: these, and the Python frontend, the highlighter and ``bittile.<name>`` all use this list.
BUILTIN_FUNCTIONS = (
    "block_id", "load", "store", "zeros", "full", "arange", "cast", "view", "convert_layout",
    "exp", "exp2", "log", "log2", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "abs",
    "floor", "ceil", "round", "maximum", "minimum", "pow", "where", "sum", "max", "min",
    "broadcast", "reshape", "permute", "transpose", "dot", "cdiv",
)
#: Layout primitives, callable in kernels to build compile-time layouts.
LAYOUT_FUNCTIONS = ("spatial", "local", "column_spatial", "column_local", "replicated")


@dataclass(frozen=True)
class Node:
    loc: Loc


# ---- expressions -------------------------------------------------------------------------------
class Expr(Node):
    """Base of expressions."""


@dataclass(frozen=True)
class Name(Expr):
    """A name: variable, parameter, size (``M``), dtype (``f16``), builtin or helper function."""

    id: str


@dataclass(frozen=True)
class IntLit(Expr):
    value: int


@dataclass(frozen=True)
class FloatLit(Expr):
    value: float


@dataclass(frozen=True)
class BoolLit(Expr):
    value: bool


@dataclass(frozen=True)
class NoneLit(Expr):
    """``None`` in an index: inserts a dimension of size 1 (``s[None, :]``)."""


@dataclass(frozen=True)
class Slice(Expr):
    """``:`` in an index: keeps a whole dimension."""


@dataclass(frozen=True)
class ListExpr(Expr):
    """``[a, b, ...]``: offsets, shapes, dims."""

    items: tuple[Expr, ...]


#: Binary operators, by their spelling in ``.tile`` source (Python's ``and``/``or`` map to
#: ``&&``/``||``, ``//`` is floor division of integers, ``/`` is division).
BINARY_OPERATORS = (
    "||", "&&", "|", "^", "&", "==", "!=", "<", "<=", ">", ">=", "<<", ">>",
    "+", "-", "*", "/", "//", "%",
)
#: Unary operators: ``-`` negation, ``~`` bitwise not, ``!`` logical not (Python ``not``).
UNARY_OPERATORS = ("-", "~", "!")


@dataclass(frozen=True)
class BinOp(Expr):
    op: str
    lhs: Expr
    rhs: Expr


@dataclass(frozen=True)
class UnaryOp(Expr):
    op: str
    operand: Expr


@dataclass(frozen=True)
class Keyword(Node):
    """``name = value`` in a call."""

    name: str
    value: Expr


@dataclass(frozen=True)
class Call(Expr):
    """``func(args..., name=value...)``; ``func`` names a builtin, a helper function or a
    layout primitive."""

    func: Name
    args: tuple[Expr, ...]
    keywords: tuple[Keyword, ...] = ()


@dataclass(frozen=True)
class MethodCall(Expr):
    """``obj.method(args...)``: layout chains such as ``spatial(4, 8).local(2, 1)``."""

    obj: Expr
    method: str
    args: tuple[Expr, ...]
    keywords: tuple[Keyword, ...] = ()


@dataclass(frozen=True)
class Index(Expr):
    """``value[i, j, ...]`` where each index is ``:`` (:class:`Slice`) or ``None``."""

    value: Expr
    indices: tuple[Expr, ...]


@dataclass(frozen=True)
class Annotate(Expr):
    """``value @ layout``: the tile ``value`` with the given layout."""

    value: Expr
    layout: Expr


# ---- statements --------------------------------------------------------------------------------
class Stmt(Node):
    """Base of statements."""


@dataclass(frozen=True)
class Let(Stmt):
    """``let name = value`` (immutable) or ``var name = value`` (mutable)."""

    name: str
    value: Expr
    mutable: bool = False


@dataclass(frozen=True)
class Assign(Stmt):
    """``name = value`` or ``name op= value`` (``op`` is the binary operator, or None)."""

    name: str
    value: Expr
    op: str | None = None


@dataclass(frozen=True)
class ExprStmt(Stmt):
    expr: Expr


@dataclass(frozen=True)
class For(Stmt):
    """``for var in range(start, stop, step) { body }``; variables assigned in the body and
    defined before the loop are carried through it."""

    var: str
    start: Expr
    stop: Expr
    step: Expr | None
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class If(Stmt):
    cond: Expr
    then_body: tuple[Stmt, ...]
    else_body: tuple[Stmt, ...] = ()


@dataclass(frozen=True)
class Return(Stmt):
    """Only in helper functions (which are inlined)."""

    value: Expr | None


# ---- declarations ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorTypeExpr(Node):
    """``f16[M, K // G]``: a global tensor; ``dtype`` may name a compile-time dtype parameter."""

    dtype: Name
    shape: tuple[Expr, ...]


@dataclass(frozen=True)
class ScalarTypeExpr(Node):
    """``f32``: a runtime scalar."""

    dtype: Name


@dataclass(frozen=True)
class Param(Node):
    """A runtime parameter: a tensor or a scalar."""

    name: str
    type: TensorTypeExpr | ScalarTypeExpr


#: Kinds of compile-time parameters.
CONST_KINDS = ("int", "float", "bool", "dtype", "layout")


@dataclass(frozen=True)
class ConstParam(Node):
    """A compile-time parameter ``name: kind = default``."""

    name: str
    kind: str
    default: Expr | None = None


@dataclass(frozen=True)
class KernelDef(Node):
    name: str
    const_params: tuple[ConstParam, ...]
    params: tuple[Param, ...]
    grid: tuple[Expr, ...]
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class FnDef(Node):
    """A helper function, inlined at each call; parameters are untyped (any value)."""

    name: str
    params: tuple[str, ...]
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Import(Node):
    """``import "path.tile"``: the kernels and functions of another file (path relative to the
    importing file)."""

    path: str


@dataclass(frozen=True)
class Module(Node):
    file: str
    items: tuple[KernelDef | FnDef | Import, ...]
