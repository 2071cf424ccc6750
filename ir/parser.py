"""Read the textual IR written by :mod:`bittile.ir.printer` (the grammar is described there and
defined in ``ir/ir.lark``).

``parse_kernel(text)`` returns a verified :class:`~bittile.ir.core.Kernel`; ``parse_module``
reads several kernels. Ops are rebuilt generically with ``OP_REGISTRY[name].from_generic``,
so the parser knows no op by name.

Every malformed input raises :class:`~bittile.errors.IRError` located at the offending token
of ``text`` (registered with :func:`~bittile.errors.register_source` under ``filename`` so that
the message shows the line with a caret): syntax errors list the expected tokens; unknown ops,
dtypes, attributes and size functions, undefined or redefined values, wrong numbers of
results, types or regions, malformed layouts and attribute values of the wrong kind are
reported where they are written; finally every op is verified, and then the whole kernel
(:func:`~bittile.ir.verifier.verify_kernel`), with errors located at the op's name.

Names are scoped like the IR: a value is usable after its definition in its block and in the
blocks nested in it, not after the block ends. Every ``%name`` is defined once per kernel.

Locations: an op (or kernel header) followed by ``loc(...)`` gets that location and
``loc(unknown)`` gives ``None``; without ``loc`` an op is located at its op name in ``text``,
so that later errors (from passes or the interpreter) point into the IR file.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import typing
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from bittile.errors import BittileError, IRError, Loc, register_source
from bittile.ir.core import OP_REGISTRY, Block, Kernel, Op, Param, Value
from bittile.ir.dtypes import DType, dtype_from_name
from bittile.ir.layout import RegisterLayout, parse_layout
from bittile.ir.symbolic import BINARY_OPS, Const, SymExpr, make_binary, sym
from bittile.ir.types import ScalarType, TensorType, TileType, Type
from bittile.ir.verifier import verify_kernel

__all__ = ["parse_kernel", "parse_module"]

_GRAMMAR = Path(__file__).with_name("ir.lark")


@cache
def _lark() -> Lark:
    return Lark(
        _GRAMMAR.read_text(encoding="utf-8"),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
    )


def parse_module(text: str, filename: str = "<ir>") -> list[Kernel]:
    """Every kernel of ``text``, in order (an empty list for an empty text)."""
    return _parse(text, filename)


def parse_kernel(text: str, filename: str = "<ir>") -> Kernel:
    """The one kernel of ``text``."""
    return _parse(text, filename, single=True)[0]


def _parse(text: str, filename: str, single: bool = False) -> list[Kernel]:
    if not isinstance(text, str):
        raise IRError(f"the IR parser reads a string, not {type(text).__name__}")
    register_source(filename, text)
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, filename) from None
    except LarkError as exc:  # not expected from an LALR parse, but never leak lark errors
        raise IRError(f"cannot parse the IR: {exc}", Loc(filename, 1, 1)) from None
    kernel_trees = tree.children
    if single and len(kernel_trees) != 1:
        if not kernel_trees:
            raise IRError("expected a kernel, found none", _end_loc(text, filename),
                          hint="a kernel starts with 'kernel @name(...) grid(...) {'")
        name = kernel_trees[1].children[0]
        raise IRError(
            f"expected one kernel, found {len(kernel_trees)}", _token_loc(name, filename),
            hint="use parse_module to read several kernels",
        )
    kernels: list[Kernel] = []
    seen: dict[str, Loc] = {}
    for kt in kernel_trees:
        name_token = kt.children[0]
        kernel = _KernelReader(filename).kernel(kt)
        if kernel.name in seen:
            raise IRError(f"kernel @{kernel.name} is defined twice (first at line "
                          f"{seen[kernel.name].line})", _token_loc(name_token, filename))
        seen[kernel.name] = _token_loc(name_token, filename)
        kernels.append(kernel)
    return kernels


# ---- syntax errors ------------------------------------------------------------------------------
_TERMINAL_DESCRIPTIONS = {
    "KERNEL_NAME": "a kernel name (@name)",
    "VALUE": "a value (%name)",
    "OP_NAME": "an op name",
    "NAME": "a name",
    "FLOAT": "a float",
    "INT": "an integer",
    "STRING": "a string",
    "LAYOUT_TEXT": "a layout",
    "$END": "the end of the input",
}


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_DESCRIPTIONS:
        return _TERMINAL_DESCRIPTIONS[name]
    try:
        pattern = _lark().get_terminal(name).pattern
    except KeyError:
        return name
    if pattern.type == "str":
        return repr(pattern.value)
    return name.lower()


def _or_list(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def _expected_list(names) -> str:
    described = sorted({_describe_terminal(n) for n in names}, key=lambda s: (s[0] != "'", s))
    return _or_list(described) if described else "nothing"


def _token_loc(token: Token, filename: str) -> Loc:
    return Loc(filename, token.line, token.column, token.end_line, token.end_column)


def _end_loc(text: str, filename: str) -> Loc:
    """The position just after the last non-blank character of ``text``."""
    body = text.rstrip()
    line = body.count("\n") + 1
    col = len(body) - (body.rfind("\n") + 1) + 1
    return Loc(filename, line, col, line, col + 1)


def _syntax_error(exc: UnexpectedInput, text: str, filename: str) -> IRError:
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        expected = exc.accepts or exc.expected
        if token.type == "$END":
            return IRError(f"unexpected end of input; expected {_expected_list(expected)}",
                           _end_loc(text, filename))
        shown = str(token)
        if token.type not in expected:
            # The contextual lexer fell back to the whole grammar's terminals: show only the
            # first word, which is what the reader sees as the offending token.
            first = re.match(r'%?[\w.]+|"[^"\n]*"?|\S', shown)
            shown = first[0] if first else shown
        loc = Loc(filename, token.line, token.column, token.line, token.column + len(shown))
        return IRError(f"unexpected {shown!r}; expected {_expected_list(expected)}", loc)
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        loc = Loc(filename, exc.line, exc.column, exc.line, exc.column + 1)
        expected = exc.allowed or ()
        return IRError(f"unexpected character {char!r}; expected {_expected_list(expected)}", loc)
    expected = getattr(exc, "expected", ()) or ()
    return IRError(f"unexpected end of input; expected {_expected_list(expected)}",
                   _end_loc(text, filename))


# ---- attributes: kinds expected by the op classes -----------------------------------------------
@cache
def _attribute_hints(cls: type[Op]) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not evaluate: check nothing
        hints = {}
    return {name: hints.get(name, Any) for name in cls._fields_by_kind["attr"]}


@cache
def _required_attributes(cls: type[Op]) -> tuple[str, ...]:
    attrs = set(cls._fields_by_kind["attr"])
    return tuple(
        f.name for f in dataclasses.fields(cls)
        if f.name in attrs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )


def _conforms(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is UnionType:
        return any(_conforms(value, h) for h in typing.get_args(hint))
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_conforms(v, args[0]) for v in value)
        if len(args) != len(value):
            return False
        return all(_conforms(v, h) for v, h in zip(value, args, strict=True))
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, float)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation this check does not understand


def _describe_hint(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is UnionType:
        return " or ".join(_describe_hint(h) for h in typing.get_args(hint) if h is not type(None))
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe_hint(args[0]).split(' ', 1)[-1]}s"
        return f"a list of {len(args)} values"
    return {
        int: "an integer",
        float: "a float",
        bool: "a bool (true or false)",
        str: "a string",
        DType: "a dtype",
        RegisterLayout: "a layout (layout<...>)",
    }.get(hint, getattr(hint, "__name__", str(hint)))


def _describe_value(value: Any) -> str:
    from bittile.ir.printer import format_attribute

    try:
        return format_attribute(value)
    except BittileError:
        return repr(value)


# ---- the tree walker ----------------------------------------------------------------------------
_SIZE_FUNCTIONS = tuple(name for name, (_, symbol, _) in BINARY_OPS.items() if symbol is None)


class _KernelReader:
    """Builds one kernel from its parse tree, checking names and scopes on the way."""

    def __init__(self, filename: str):
        self.filename = filename
        self.scopes: list[dict[str, Value]] = []
        self.defined: dict[str, Loc] = {}
        self.final_locs: dict[Op, Loc | None] = {}

    # -- locations and errors -------------------------------------------------------------------
    def loc(self, item: Token | Tree) -> Loc:
        if isinstance(item, Token):
            return _token_loc(item, self.filename)
        meta = item.meta
        if getattr(meta, "empty", True):
            return Loc(self.filename, 1, 1)
        return Loc(self.filename, meta.line, meta.column, meta.end_line, meta.end_column)

    def error(self, message: str, item: Token | Tree | Loc, hint: str | None = None) -> IRError:
        loc = item if isinstance(item, Loc) else self.loc(item)
        return IRError(message, loc, hint)

    @staticmethod
    def items(tree: Tree | None) -> list:
        """The children of a possibly-empty list rule (``[x ("," x)*]`` gives ``[None]``)."""
        if tree is None:
            return []
        return [c for c in tree.children if c is not None]

    # -- names ----------------------------------------------------------------------------------
    def decode_name(self, token: Token) -> str:
        """``%x``/``@x`` -> ``x``; quoted names are JSON strings."""
        body = str(token)[1:]
        if body.startswith('"'):
            try:
                return json.loads(body)
            except ValueError as exc:
                raise self.error(f"malformed quoted name {str(token)}: {exc}", token) from None
        return body

    def define(self, token: Token, value: Value) -> None:
        key = str(token)
        if key in self.defined:
            raise self.error(
                f"{key} is defined twice (first at line {self.defined[key].line})", token,
                hint="every %name is defined once in a kernel",
            )
        self.defined[key] = self.loc(token)
        self.scopes[-1][key] = value

    def lookup(self, token: Token) -> Value:
        key = str(token)
        for scope in reversed(self.scopes):
            if key in scope:
                return scope[key]
        if key in self.defined:
            raise self.error(
                f"{key} is not visible here: it is defined at line {self.defined[key].line} "
                "inside a region that has ended", token,
                hint="pass values out of loops and branches with scf.yield and use the results",
            )
        raise self.error(f"undefined value {key}", token,
                         hint="values must be defined before they are used")

    # -- kernels, blocks, ops --------------------------------------------------------------------
    def kernel(self, tree: Tree) -> Kernel:
        name_token, params_tree, grid_tree, loc_tree, ops_tree = tree.children
        name = self.decode_name(name_token)
        text_loc = self.loc(name_token)
        self.scopes.append({})
        body = Block()
        params = []
        for pt in self.items(params_tree):
            value_token, type_tree = pt.children
            type_ = self.type(type_tree)
            pname = self.decode_name(value_token)
            value = Value(type_, pname)
            self.define(value_token, value)
            params.append(Param(pname, type_))
            body.args.append(value)
        grid = tuple(self.expr(e) for e in self.items(grid_tree))
        self.ops(ops_tree, body)
        self.scopes.pop()
        kernel = Kernel(name, tuple(params), grid, body, text_loc)
        try:
            verify_kernel(kernel)
        except IRError as exc:
            raise exc.with_loc(text_loc) from None
        except BittileError as exc:
            raise IRError(exc.message, exc.loc or text_loc, exc.hint) from None
        except Exception as exc:  # a malformed op that its own verify did not anticipate
            raise IRError(f"kernel @{name} is malformed: {exc}", text_loc) from None
        self.apply_locs(body)
        kernel.loc = self.explicit_loc(loc_tree, text_loc)
        return kernel

    def apply_locs(self, block: Block) -> None:
        """Give ops written with ``loc(...)`` that location (they were built with their text
        location, so that verification errors point into the IR text)."""
        for i, op in enumerate(block.ops):
            for region in op.regions:
                self.apply_locs(region)
            if op in self.final_locs:
                block.ops[i] = dataclasses.replace(op, loc=self.final_locs[op])

    def ops(self, tree: Tree, block: Block) -> None:
        for op_tree in tree.children:
            block.ops.append(self.op(op_tree))

    def region(self, tree: Tree) -> Block:
        args_tree, ops_tree = tree.children
        self.scopes.append({})
        block = Block()
        if args_tree is not None:
            for pt in self.items(args_tree.children[0]):
                value_token, type_tree = pt.children
                value = Value(self.type(type_tree), self.hint(value_token))
                self.define(value_token, value)
                block.args.append(value)
        self.ops(ops_tree, block)
        self.scopes.pop()
        return block

    def hint(self, token: Token) -> str | None:
        name = self.decode_name(token)
        return None if name.isdigit() else name

    def op(self, tree: Tree) -> Op:
        results_tree, name_token, operands_tree, regions_tree, attrs_tree, types_tree, loc_tree = (
            tree.children
        )
        name = str(name_token)
        cls = OP_REGISTRY.get(name)
        if cls is None:
            close = difflib.get_close_matches(name, list(OP_REGISTRY), n=3)
            raise self.error(
                f"unknown op {name!r}", name_token,
                hint=f"did you mean {_or_list(close)}?" if close else None,
            )
        text_loc = self.loc(name_token)
        operands = tuple(self.lookup(t) for t in self.items(operands_tree))
        attributes = self.attributes(cls, attrs_tree, name_token)

        result_tokens = self.items(results_tree)
        types = [self.type(t) for t in self.items(types_tree)]
        n_fixed = len(cls._fields_by_kind["result"])
        variadic = bool(cls._fields_by_kind["results"])
        if not variadic and len(result_tokens) != n_fixed:
            plural = "s" if n_fixed != 1 else ""
            raise self.error(
                f"{name} has {n_fixed} result{plural}, but {len(result_tokens)} "
                f"{'is' if len(result_tokens) == 1 else 'are'} named",
                results_tree if results_tree is not None else name_token,
                hint=f"write '%r = {name}(...)'" if n_fixed == 1 and not result_tokens else None,
            )
        if len(types) != len(result_tokens):
            where = types_tree if types_tree is not None else name_token
            raise self.error(
                f"{name} names {len(result_tokens)} result(s) but lists {len(types)} type(s)",
                where, hint="write one type per result after ':', e.g. '%0, %1 = ... : i32, f32'",
            )

        region_trees = self.items(regions_tree)
        n_regions = len(cls._fields_by_kind["region"])
        if len(region_trees) != n_regions:
            raise self.error(
                f"{name} has {n_regions} region(s), but {len(region_trees)} are written",
                regions_tree if regions_tree is not None else name_token,
            )
        regions = tuple(self.region(rt) for rt in region_trees)

        results = []
        for token, type_ in zip(result_tokens, types, strict=True):
            value = Value(type_, self.hint(token))
            self.define(token, value)
            results.append(value)

        try:
            op = cls.from_generic(operands, attributes, tuple(results), regions, text_loc)
            op.verify()
        except IRError as exc:
            if exc.loc is None:  # raised by a type or a helper, not by the op itself
                raise IRError(f"{name}: {exc.message}", text_loc, exc.hint) from None
            raise
        except BittileError as exc:
            raise IRError(f"{name}: {exc.message}", text_loc, exc.hint) from None
        except Exception as exc:  # e.g. a TypeError from an attribute of an unexpected kind
            raise IRError(f"malformed {name}: {exc}", text_loc) from None
        final = self.explicit_loc(loc_tree, text_loc)
        if final != text_loc:
            self.final_locs[op] = final
        return op

    def explicit_loc(self, tree: Tree | None, default: Loc) -> Loc | None:
        if tree is None:
            return default
        if tree.data == "unknown_loc":
            return None
        file_token, line, col, end = tree.children
        file = self.string(file_token)
        end_line = end_col = None
        if end is not None:
            end_line_token, end_col_token = end.children
            end_line = int(end_line_token) if end_line_token is not None else None
            end_col = int(end_col_token) if end_col_token is not None else None
        return Loc(file, int(line), int(col), end_line, end_col)

    def string(self, token: Token) -> str:
        try:
            return json.loads(str(token))
        except ValueError as exc:
            raise self.error(f"malformed string {str(token)}: {exc}", token) from None

    # -- attributes -----------------------------------------------------------------------------
    def attributes(self, cls: type[Op], tree: Tree | None, name_token: Token) -> dict[str, Any]:
        hints = _attribute_hints(cls)
        out: dict[str, Any] = {}
        for at in self.items(tree):
            key_token, value_tree = at.children
            key = str(key_token)
            if key in out:
                raise self.error(f"attribute {key!r} is given twice", key_token)
            if key not in hints:
                known = ", ".join(hints) or "none"
                raise self.error(f"{cls.name} has no attribute {key!r}", key_token,
                                 hint=f"its attributes are: {known}")
            value = self.attribute_value(value_tree)
            if not _conforms(value, hints[key]):
                raise self.error(
                    f"attribute {key!r} of {cls.name} must be {_describe_hint(hints[key])}, "
                    f"got {_describe_value(value)}", value_tree,
                )
            out[key] = value
        missing = [a for a in _required_attributes(cls) if a not in out]
        if missing:
            raise self.error(f"{cls.name} needs the attribute {missing[0]!r}", name_token,
                             hint=f"its attributes are: {', '.join(hints)}")
        return out

    def attribute_value(self, tree: Tree) -> Any:
        kind, children = tree.data, tree.children
        if kind == "int_value":
            sign, digits = children
            return -int(digits) if sign is not None else int(digits)
        if kind == "float_value":
            sign, digits = children
            value = float(digits)
            return -value if sign is not None else value
        if kind == "inf_value":
            return -math.inf if children[0] is not None else math.inf
        if kind == "nan_value":
            return math.nan
        if kind == "true_value":
            return True
        if kind == "false_value":
            return False
        if kind == "string_value":
            return self.string(children[0])
        if kind == "dtype_value":
            return self.dtype(children[0])
        if kind == "layout_value":
            return self.layout(children[0])
        if kind == "list_value":
            return tuple(self.attribute_value(c) for c in children if c is not None)
        raise self.error(f"unknown attribute value {kind}", tree)  # pragma: no cover

    def dtype(self, token: Token) -> DType:
        try:
            return dtype_from_name(str(token))
        except BittileError as exc:
            raise self.error(exc.message, token, exc.hint) from None

    def layout(self, token: Token) -> RegisterLayout:
        try:
            return parse_layout(str(token).strip())
        except BittileError as exc:
            raise self.error(exc.message, token, exc.hint) from None

    # -- types ----------------------------------------------------------------------------------
    def type(self, tree: Tree) -> Type:
        kind, children = tree.data, tree.children
        try:
            if kind == "scalar_type":
                return ScalarType(self.dtype(children[0]))
            if kind == "tensor_type":
                dtype_token, dims = children
                shape = tuple(self.expr(e) for e in self.items(dims))
                return TensorType(self.dtype(dtype_token), shape)
            dtype_token, dims, layout_token = children
            shape = tuple(int(d) for d in self.items(dims))
            layout = self.layout(layout_token) if layout_token is not None else None
            return TileType(self.dtype(dtype_token), shape, layout)
        except IRError as exc:
            raise exc.with_loc(self.loc(tree)) from None

    # -- size expressions -----------------------------------------------------------------------
    def expr(self, tree: Tree) -> SymExpr:
        kind, children = tree.data, tree.children
        try:
            if kind == "const":
                return Const(-int(children[1]) if len(children) == 2 else int(children[0]))
            if kind == "sym":
                return sym(str(children[0]))
            if kind == "call":
                fn, lhs, rhs = children
                if str(fn) not in _SIZE_FUNCTIONS:
                    raise self.error(f"unknown size function {str(fn)!r}", fn,
                                     hint=f"size expressions call {', '.join(_SIZE_FUNCTIONS)}")
                return make_binary(str(fn), self.expr(lhs), self.expr(rhs))
            operands = [c for c in children if isinstance(c, Tree)]
            return make_binary(kind, self.expr(operands[0]), self.expr(operands[1]))
        except ZeroDivisionError as exc:
            raise self.error(str(exc), tree) from None
