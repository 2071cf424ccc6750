"""The Python frontend: kernels and helpers written as Python functions, read into the shared AST.

``function_to_ast(fn)`` turns a ``@bittile.kernel`` function into an :class:`ast.KernelDef` and
``helper_to_ast(fn)`` a ``@bittile.func`` function into an :class:`ast.FnDef`. The function is
never executed: its source is read with :mod:`inspect`, parsed with Python's :mod:`ast` and
translated node by node, so the semantic analysis and lowering of ``.tile`` files serve Python
kernels unchanged. Every node carries the :class:`~bittile.errors.Loc` of the text it came from
in the user's file (1-based line and character column; Python reports UTF-8 byte columns, which
are converted), including nodes parsed from inside string annotations such as ``"K // G"``.

Mapping from Python to the tile language:

- Parameters annotated ``int``, ``float``, ``bool``, ``dtype`` or ``layout`` (also
  ``bittile.dtype``, ``"dtype"``, ...) are compile-time parameters; ``DT[dims]`` (``u4["N", "K"]``,
  ``u4[N, K]``, ``bittile.u4[...]`` or the whole annotation as a string) is a global tensor whose
  dimensions are size expressions; a bare dtype (``f32``, ``bittile.f32``, ``"f32"``) is a
  runtime scalar. Names in tensor shapes are symbolic (size names or parameters): they are never
  looked up in the Python module, so ``N = 1024`` at module level does not fix a size ``N``.
- The first statement (after an optional docstring) must be ``bittile.grid(...)``.
- ``x = e`` defines ``x`` (``var``) the first time and assigns it afterwards; a name defined
  inside a loop or branch is local to it, as in the tile language. ``x op= e``, ``for i in
  range(...)``, ``if/elif/else``, expression statements and ``return`` (helpers) map directly.
- Calls of builtins (``bittile.load``, ``bt.load``, ``load`` imported from bittile or not
  defined at all, Python's ``sum``/``max``/``min``/``abs``/``pow``/``round``) and helpers become
  :class:`ast.Call`; other attribute calls (``spatial(4, 8).local(2, 1)``) are method calls.
  ``a @ L`` annotates a layout, ``and``/``or``/``not`` are ``&&``/``||``/``!``, ``x.T`` is
  ``transpose(x)``, a string in an expression is a size expression (``cdiv("N", BN)``).
- A name that is neither a parameter, a size name nor a local of the function is looked up in
  the function's closure and globals: ints, floats and bools are inlined as literals, dtypes
  become their name, register layouts their constructor expression.
"""

from __future__ import annotations

import ast as pyast
import builtins
import difflib
import inspect
import io
import math
import numbers
import os
import re
import tokenize
import types
from collections.abc import Callable
from contextlib import contextmanager

from bittile.dsl import ast
from bittile.errors import Loc, TileSyntaxError, TileTypeError, register_source

__all__ = ["function_to_ast", "helper_to_ast", "BUILTIN_NAMES"]

#: Every builtin of the tile language (docs/language.md), plus ``grid``.
BUILTIN_NAMES = frozenset({"grid", *ast.BUILTIN_FUNCTIONS, *ast.LAYOUT_FUNCTIONS})

_BINOPS = {
    pyast.Add: "+", pyast.Sub: "-", pyast.Mult: "*", pyast.Div: "/", pyast.FloorDiv: "//",
    pyast.Mod: "%", pyast.LShift: "<<", pyast.RShift: ">>", pyast.BitAnd: "&",
    pyast.BitOr: "|", pyast.BitXor: "^",
}
_CMPOPS = {
    pyast.Eq: "==", pyast.NotEq: "!=", pyast.Lt: "<", pyast.LtE: "<=", pyast.Gt: ">",
    pyast.GtE: ">=",
}
_SIZE_OPS = (pyast.Add, pyast.Sub, pyast.Mult, pyast.Div, pyast.FloorDiv, pyast.Mod)
_SIZE_FUNCS = ("cdiv", "min", "max")
_CONST_KINDS = frozenset(ast.CONST_KINDS)
_TYPE_KINDS = {"DType": "dtype", "RegisterLayout": "layout"}

_STMT_NAMES: dict[type, tuple[str, str, str | None]] = {
    pyast.While: ("while", "a while loop",
                  "loops need a static trip count: use `for i in range(...)`"),
    pyast.With: ("with", "a with statement", None),
    pyast.AsyncWith: ("async", "an async with statement", None),
    pyast.AsyncFor: ("async", "an async for loop", "use `for i in range(...)`"),
    pyast.Try: ("try", "a try statement", "kernels cannot catch exceptions"),
    pyast.Raise: ("raise", "a raise statement", "kernels cannot raise exceptions"),
    pyast.Assert: ("assert", "an assert statement", None),
    pyast.Delete: ("del", "a del statement", None),
    pyast.Import: ("import", "an import", "import at module level, outside the function"),
    pyast.ImportFrom: ("from", "an import", "import at module level, outside the function"),
    pyast.Global: ("global", "a global declaration",
                   "module constants can be read directly but not assigned"),
    pyast.Nonlocal: ("nonlocal", "a nonlocal declaration",
                     "enclosing constants can be read directly but not assigned"),
    pyast.FunctionDef: ("def", "a nested function definition",
                        "define helpers at module level with @bittile.func"),
    pyast.AsyncFunctionDef: ("async", "a nested function definition",
                             "define helpers at module level with @bittile.func"),
    pyast.ClassDef: ("class", "a class definition", None),
    pyast.Break: ("break", "break",
                  "loops always run their whole range: guard the body with `if`"),
    pyast.Continue: ("continue", "continue",
                     "loops always run their whole range: guard the body with `if`"),
}
if hasattr(pyast, "Match"):
    _STMT_NAMES[pyast.Match] = ("match", "a match statement", "use if/elif/else")
if hasattr(pyast, "TryStar"):
    _STMT_NAMES[pyast.TryStar] = ("try", "a try statement", "kernels cannot catch exceptions")

_EXPR_NAMES: dict[type, tuple[str, str | None]] = {
    pyast.Lambda: ("a lambda", "define a helper with @bittile.func"),
    pyast.ListComp: ("a list comprehension", "write the list out: [a, b, c]"),
    pyast.SetComp: ("a set comprehension", None),
    pyast.DictComp: ("a dict comprehension", None),
    pyast.GeneratorExp: ("a generator expression", None),
    pyast.JoinedStr: ("an f-string", "strings in kernels are size expressions such as \"N\""),
    pyast.Dict: ("a dict", None),
    pyast.Set: ("a set", None),
    pyast.Starred: ("a starred expression", "pass the arguments one by one"),
    pyast.NamedExpr: ("an assignment expression (:=)", "assign in a statement of its own"),
    pyast.Await: ("await", None),
    pyast.Yield: ("yield", None),
    pyast.YieldFrom: ("yield from", None),
    pyast.IfExp: ("a conditional expression (a if c else b)", "use where(c, a, b)"),
}

_MISSING = object()


# ---- public API --------------------------------------------------------------------------------
def function_to_ast(fn: Callable) -> ast.KernelDef:
    """The :class:`ast.KernelDef` of a kernel written as a Python function."""
    return _Translator(_Source(fn, "kernel"), kernel=True).kernel()


def helper_to_ast(fn: Callable) -> ast.FnDef:
    """The :class:`ast.FnDef` of a helper function written in Python (``@bittile.func``)."""
    return _Translator(_Source(fn, "helper function"), kernel=False).helper()


# ---- source and locations ----------------------------------------------------------------------
def _char_col(line: str, byte_col: int) -> int:
    """The character column of UTF-8 byte offset ``byte_col`` of ``line`` (both 0-based)."""
    if line.isascii():
        return byte_col
    return len(line.encode("utf-8")[:byte_col].decode("utf-8", "ignore"))


class _Source:
    """A Python function's source text, parsed, and the mapping back to its file."""

    def __init__(self, fn: Callable, what: str):
        python_fn = getattr(fn, "_python_function", None)  # a TileFunction handed back to us
        if python_fn is not None:
            fn = python_fn
        fn = inspect.unwrap(fn)
        if not isinstance(fn, types.FunctionType):
            raise TileTypeError(
                f"a bittile {what} must be a Python function, not {type(fn).__name__}",
                hint="write it with `def`",
            )
        self.fn = fn
        code = fn.__code__
        self.file = inspect.getsourcefile(fn) or code.co_filename
        where = Loc(self.file, code.co_firstlineno, 1)
        try:
            lines, first = inspect.getsourcelines(fn)
        except (OSError, TypeError):
            raise TileSyntaxError(
                f"cannot read the source of {what} {fn.__name__!r}: bittile reads kernels "
                "from their source text",
                where,
                hint="define it in a file, or register the text given to compile() with "
                "bittile.errors.register_source under the same file name",
            ) from None
        if not os.path.isfile(self.file):
            # Source held only by linecache (exec'd code, notebooks): keep it for diagnostics.
            import linecache

            text = "".join(linecache.getlines(self.file))
            if not text:
                text = "\n" * (first - 1) + "".join(lines)
            register_source(self.file, text)
        self.lines = lines
        self.first = max(first, 1)
        text = "".join(lines)
        # An indented def (a method, a function in a function) parses as the body of `if 1:`,
        # which keeps every column as it is in the file.
        self.shift = 1 if lines and lines[0][:1] in (" ", "\t") else 0
        self.text = "if 1:\n" + text if self.shift else text
        try:
            tree = pyast.parse(self.text, filename=self.file)
        except SyntaxError as exc:
            raise TileSyntaxError(
                f"cannot parse the source of {what} {fn.__name__!r}: {exc.msg}", where
            ) from None
        node = tree.body[0] if tree.body else None
        if self.shift and isinstance(node, pyast.If):
            node = node.body[0]
        if isinstance(node, pyast.AsyncFunctionDef):
            raise TileSyntaxError(f"a bittile {what} cannot be async", self.loc(node))
        if not isinstance(node, pyast.FunctionDef):
            raise TileSyntaxError(
                f"a bittile {what} must be defined with `def`", where,
                hint="lambdas cannot be kernels or helpers",
            )
        self.node = node
        self._tokens: list[tokenize.TokenInfo] | None = None

    # lines of the parsed text -> lines of the file
    def _line(self, lineno: int) -> str:
        index = lineno - self.shift - 1
        return self.lines[index] if 0 <= index < len(self.lines) else ""

    def real_line(self, lineno: int) -> int:
        return lineno - self.shift + self.first - 1

    def chars(self, node) -> tuple[int, int, int, int]:
        """(line, col, end line, end col) of ``node`` in the parsed text, character columns."""
        end_lineno = node.end_lineno if node.end_lineno is not None else node.lineno
        end_col = node.end_col_offset if node.end_col_offset is not None else node.col_offset
        return (node.lineno, _char_col(self._line(node.lineno), node.col_offset),
                end_lineno, _char_col(self._line(end_lineno), end_col))

    def loc(self, node) -> Loc:
        line, col, end_line, end_col = self.chars(node)
        return Loc(self.file, self.real_line(line), col + 1, self.real_line(end_line),
                   end_col + 1)

    def loc_at(self, line: int, col: int, length: int) -> Loc:
        return Loc(self.file, self.real_line(line), col + 1, self.real_line(line),
                   col + 1 + length)

    def raw_text(self, node) -> str | None:
        line, col, end_line, end_col = self.chars(node)
        return self._line(line)[col:end_col] if line == end_line else None

    def token_after(self, word: str, start: tuple[int, int], end: tuple[int, int]) -> Loc | None:
        """The first NAME token ``word`` between two (line, char col) positions."""
        if self._tokens is None:
            try:
                self._tokens = list(tokenize.generate_tokens(io.StringIO(self.text).readline))
            except (tokenize.TokenError, SyntaxError):
                self._tokens = []
        for tok in self._tokens:
            if tok.type == tokenize.NAME and tok.string == word and start <= tok.start < end:
                return self.loc_at(tok.start[0], tok.start[1], len(word))
        return None


class _StringFrame:
    """Locations of an expression parsed from the text of a string literal: exact columns when
    the literal is written plainly on one line (no escapes), else the whole literal."""

    def __init__(self, parent, node: pyast.Constant):
        self.file = parent.file
        self.base = parent.loc(node)
        self.text: str = node.value
        self.offset: int | None = None
        raw = parent.raw_text(node)
        if raw is not None:
            prefix = len(raw) - len(raw.lstrip("rRuU"))
            quote = next((q for q in ('"""', "'''", '"', "'") if raw.startswith(q, prefix)), "")
            body = raw[prefix + len(quote): len(raw) - len(quote)]
            if quote and raw.endswith(quote) and body == self.text:
                self.offset = prefix + len(quote)
        self.wrapped = "(" + self.text + ")"

    def parse(self) -> pyast.expr:
        if not self.text.strip():
            raise TileSyntaxError("empty expression in a string", self.base,
                                  hint='write a size expression such as "N" or "K // G"')
        try:
            tree = pyast.parse(self.wrapped, mode="eval")
        except SyntaxError as exc:
            col = min(max((exc.offset or 1) - 2, 0), max(len(self.text) - 1, 0))
            raise TileSyntaxError(
                f"invalid expression in string {self.text!r}: {exc.msg}",
                self._at(col, col + 1),
            ) from None
        return tree.body

    def _at(self, c0: int, c1: int) -> Loc:
        if self.offset is None:
            return self.base
        col = self.base.col + self.offset
        return Loc(self.file, self.base.line, col + c0, self.base.line, col + c1)

    def _chars(self, node) -> tuple[int, int] | None:
        if node.lineno != 1 or node.end_lineno != 1:
            return None
        return (_char_col(self.wrapped, node.col_offset) - 1,
                _char_col(self.wrapped, node.end_col_offset) - 1)

    def loc(self, node) -> Loc:
        span = self._chars(node)
        return self.base if span is None else self._at(*span)

    def raw_text(self, node) -> str | None:
        span = self._chars(node)
        if span is None or self.offset is None:
            return None
        return self.text[span[0]:span[1]]


def _is_bittile_module(obj) -> bool:
    return isinstance(obj, types.ModuleType) and (
        obj.__name__ == "bittile" or obj.__name__.startswith("bittile.")
    )


def _is_bittile_builtin(obj) -> bool:
    """A function object of the bittile package standing for a language builtin."""
    return (
        callable(obj)
        and not isinstance(obj, type)
        and str(getattr(obj, "__module__", "") or "").startswith("bittile")
        and getattr(obj, "__name__", None) in BUILTIN_NAMES
    )


def _tile_function_name(obj) -> str | None:
    """The name of a bittile helper (a TileFunction, or anything holding an FnDef as .ast)."""
    fndef = getattr(obj, "ast", None) if not isinstance(obj, types.ModuleType) else None
    return fndef.name if isinstance(fndef, ast.FnDef) else None


def _is_dtype(obj) -> bool:
    from bittile.ir.dtypes import DType

    return isinstance(obj, DType)


def _valid_dtype_name(name: str) -> bool:
    from bittile.ir.dtypes import dtype_from_name

    try:
        dtype_from_name(name)
    except Exception:
        return False
    return True


def _describe(obj) -> str:
    if isinstance(obj, types.ModuleType):
        return f"the module {obj.__name__}"
    if callable(obj) and hasattr(obj, "__name__"):
        mod = getattr(obj, "__module__", None)
        where = f"{mod}." if mod and mod != "builtins" else ""
        kind = "class" if isinstance(obj, type) else "function"
        return f"the Python {kind} {where}{obj.__name__}"
    return f"a Python {type(obj).__name__}"


# ---- translation -------------------------------------------------------------------------------
class _Annotation:
    """A classified parameter annotation: a compile-time ``kind``, or a runtime ``dtype``
    node with tensor ``dims`` (None for a scalar); nodes live in ``frame``."""

    def __init__(self, frame, node, *, kind=None, dtype=None, dims=None):
        self.frame, self.node, self.kind, self.dtype, self.dims = frame, node, kind, dtype, dims


class _Translator:
    def __init__(self, source: _Source, *, kernel: bool):
        self.src = source
        self.fn = source.fn
        self.frame = source
        self.is_kernel = kernel
        self.what = "kernel" if kernel else "helper function"
        self.locals: set[str] = set()  # names that are never looked up in Python scopes
        self.scopes: list[set[str]] = []
        self.closed: dict[str, tuple[str, Loc]] = {}  # names defined in blocks now closed
        self.symbolic = False  # inside shape annotations and strings: names stay names
        self.const_names: set[str] = set()
        self.local_names: set[str] = set()

    # ---- helpers ---------------------------------------------------------------------------
    def loc(self, node) -> Loc:
        return self.frame.loc(node)

    def syntax(self, message: str, node_or_loc, hint: str | None = None) -> TileSyntaxError:
        loc = node_or_loc if isinstance(node_or_loc, Loc) else self.loc(node_or_loc)
        return TileSyntaxError(message, loc, hint)

    def type_error(self, message: str, node_or_loc, hint: str | None = None) -> TileTypeError:
        loc = node_or_loc if isinstance(node_or_loc, Loc) else self.loc(node_or_loc)
        return TileTypeError(message, loc, hint)

    def def_loc(self) -> Loc:
        """``def name`` of the function: where whole-function diagnostics point."""
        node = self.src.node
        line, col, _, _ = self.src.chars(node)
        text = self.src._line(line)
        m = re.compile(r"def\s+\w+").match(text, col)
        return self.src.loc_at(line, col, (m.end() - col) if m else 3)

    def lookup(self, name: str):
        """The value of a free name of the function: closure, then globals, then builtins."""
        code = self.fn.__code__
        if name in code.co_freevars and self.fn.__closure__:
            cell = self.fn.__closure__[code.co_freevars.index(name)]
            try:
                return cell.cell_contents
            except ValueError:
                return _MISSING
        scope = self.fn.__globals__
        if name in scope:
            return scope[name]
        bi = scope.get("__builtins__", builtins)
        if isinstance(bi, dict):
            return bi.get(name, _MISSING)
        return getattr(bi, name, _MISSING)

    def static_value(self, node):
        """The Python object a non-local name or attribute chain denotes, or _MISSING."""
        if isinstance(node, pyast.Name):
            if node.id in self.locals:
                return _MISSING
            return self.lookup(node.id)
        if isinstance(node, pyast.Attribute):
            base = self.static_value(node.value)
            if base is _MISSING:
                return _MISSING
            try:
                return getattr(base, node.attr)
            except Exception:
                return _MISSING
        return _MISSING

    @contextmanager
    def in_frame(self, frame, symbolic: bool):
        saved = self.frame, self.symbolic
        self.frame, self.symbolic = frame, symbolic
        try:
            yield
        finally:
            self.frame, self.symbolic = saved

    # ---- scopes ----------------------------------------------------------------------------
    def defined(self, name: str) -> bool:
        return any(name in scope for scope in self.scopes)

    def define(self, name: str) -> None:
        self.scopes[-1].add(name)
        self.closed.pop(name, None)

    @contextmanager
    def block(self, kind: str, loc: Loc):
        self.scopes.append(set())
        try:
            yield
        finally:
            for name in self.scopes.pop():
                if not self.defined(name):
                    self.closed[name] = (kind, loc)

    def check_defined(self, name: str, node) -> None:
        if self.defined(name):
            return
        if name in self.closed:
            kind, where = self.closed[name]
            raise self.syntax(
                f"{name!r} is defined only inside the {kind} at line {where.line}",
                node,
                hint=f"assign {name} before the {kind} (e.g. `{name} = zeros(...)`) so that "
                "its value is carried out of it",
            )
        raise self.syntax(f"{name!r} is used before it is assigned", node)

    # ---- functions -------------------------------------------------------------------------
    def kernel(self) -> ast.KernelDef:
        fdef = self.src.node
        body = self.strip_docstring(fdef.body)
        self.local_names = _assigned_names(body)
        const_params, params = self.signature(fdef)
        size_names = set()
        for p in params:
            if isinstance(p.type, ast.TensorTypeExpr):
                for dim in p.type.shape:
                    size_names |= _names_in(dim)
        size_names -= {p.name for p in params} | self.const_names
        outer = {p.name for p in params} | self.const_names | size_names
        self.locals = outer | self.local_names
        self.scopes = [outer]
        if not body or not self.is_grid_stmt(body[0]):
            raise self.syntax(
                f"kernel {fdef.name!r} must start with bittile.grid(...)", self.def_loc(),
                hint="make the first statement of the body the launch grid, e.g. "
                "`bittile.grid(bittile.cdiv(\"N\", BN))`",
            )
        grid = self.grid(body[0].value)
        stmts = self.stmts(body[1:])
        return ast.KernelDef(self.def_loc(), fdef.name, const_params, params, grid, stmts)

    def helper(self) -> ast.FnDef:
        fdef = self.src.node
        args = fdef.args
        for extra, what in ((args.vararg, "*args"), (args.kwarg, "**kwargs")):
            if extra is not None:
                raise self.syntax(f"a helper function cannot take {what}", extra)
        if args.kwonlyargs:
            raise self.syntax("a helper function cannot have keyword-only parameters",
                              args.kwonlyargs[0], hint="remove the `*`")
        if args.defaults:
            raise self.syntax("parameters of helper functions cannot have defaults",
                              args.defaults[0], hint="pass every argument at each call")
        names = tuple(a.arg for a in args.posonlyargs + args.args)
        body = self.strip_docstring(fdef.body)
        self.local_names = _assigned_names(body)
        self.locals = set(names) | self.local_names
        self.scopes = [set(names)]
        if not body or not isinstance(body[-1], pyast.Return):
            raise self.syntax(
                f"helper function {fdef.name!r} must end with a return statement",
                self.def_loc() if not body else self.loc(body[-1]),
                hint="helpers are inlined: their value is the returned expression",
            )
        return ast.FnDef(self.def_loc(), fdef.name, names, self.stmts(body))

    @staticmethod
    def strip_docstring(body: list[pyast.stmt]) -> list[pyast.stmt]:
        if (body and isinstance(body[0], pyast.Expr) and isinstance(body[0].value, pyast.Constant)
                and isinstance(body[0].value.value, str)):
            return body[1:]
        return body

    # ---- signature -------------------------------------------------------------------------
    def signature(self, fdef: pyast.FunctionDef):
        args = fdef.args
        for extra, what in ((args.vararg, "*args"), (args.kwarg, "**kwargs")):
            if extra is not None:
                raise self.syntax(f"a kernel cannot take {what}", extra,
                                  hint="list every parameter with its type")
        positional = args.posonlyargs + args.args
        defaults: list[pyast.expr | None] = [None] * (len(positional) - len(args.defaults))
        defaults += args.defaults
        defaults += args.kw_defaults
        classified = []
        for arg, default in zip(positional + args.kwonlyargs, defaults):
            if arg.annotation is None:
                raise self.type_error(
                    f"parameter {arg.arg!r} of kernel {fdef.name!r} has no annotation", arg,
                    hint=f'annotate it: a tensor `{arg.arg}: f32["N", "K"]`, a scalar '
                    f"`{arg.arg}: f32` or a compile-time value `{arg.arg}: int = 16`",
                )
            classified.append((arg, default, self.classify(arg.annotation, self.src)))
        self.const_names = {a.arg for a, _, c in classified if c.kind is not None}
        const_params, params = [], []
        self.locals = set()  # defaults are evaluated in the enclosing Python scope
        self.scopes = [set()]
        for arg, default, ann in classified:
            if ann.kind is not None:
                value = None if default is None else self.expr(default)
                const_params.append(ast.ConstParam(self.loc(arg), arg.arg, ann.kind, value))
                continue
            if default is not None:
                raise self.syntax(
                    f"runtime parameter {arg.arg!r} cannot have a default value", default,
                    hint="only compile-time parameters (int, float, bool, dtype, layout) can",
                )
            with self.in_frame(ann.frame, symbolic=True):
                dtype = self.dtype_name(ann.dtype)
                if ann.dims is None:
                    ty = ast.ScalarTypeExpr(self.loc(ann.node), dtype)
                else:
                    shape = tuple(self.expr(d) for d in ann.dims)
                    ty = ast.TensorTypeExpr(self.loc(ann.node), dtype, shape)
            params.append(ast.Param(self.loc(arg), arg.arg, ty))
        return tuple(const_params), tuple(params)

    def classify(self, node: pyast.expr, frame) -> _Annotation:
        """What a parameter annotation (in ``frame``) declares."""
        with self.in_frame(frame, symbolic=self.symbolic):
            if isinstance(node, pyast.Constant) and isinstance(node.value, str):
                inner = _StringFrame(frame, node)
                return self.classify(inner.parse(), inner)
            if isinstance(node, pyast.Name):
                if node.id in _CONST_KINDS:
                    return _Annotation(frame, node, kind=node.id)
                value = self.lookup(node.id)
                if isinstance(value, type) and value.__name__ in _TYPE_KINDS:
                    return _Annotation(frame, node, kind=_TYPE_KINDS[value.__name__])
                return _Annotation(frame, node, dtype=node)
            if isinstance(node, pyast.Attribute):
                base = self.static_value(node.value)
                if _is_bittile_module(base) and node.attr in ("dtype", "layout"):
                    return _Annotation(frame, node, kind=node.attr)
                if _is_bittile_module(base) and node.attr in _TYPE_KINDS:
                    return _Annotation(frame, node, kind=_TYPE_KINDS[node.attr])
                return _Annotation(frame, node, dtype=node)
            if isinstance(node, pyast.Subscript):
                dims = node.slice.elts if isinstance(node.slice, pyast.Tuple) else [node.slice]
                for d in dims:
                    if isinstance(d, pyast.Slice):
                        raise self.syntax("a slice is not a tensor dimension", d,
                                          hint='write dimensions as sizes: f32["N", "K"]')
                return _Annotation(frame, node, dtype=node.value, dims=list(dims))
            raise self.type_error(
                "unsupported parameter annotation", node,
                hint='use a tensor type `f32["N", "K"]`, a scalar dtype `f32` or a '
                "compile-time kind (int, float, bool, dtype, layout)",
            )

    def dtype_name(self, node: pyast.expr) -> ast.Name:
        """The dtype of a parameter annotation: a dtype or a ``dtype`` compile-time parameter."""
        if isinstance(node, pyast.Constant) and isinstance(node.value, str):
            inner = _StringFrame(self.frame, node)
            parsed = inner.parse()
            with self.in_frame(inner, symbolic=True):
                return self.dtype_name(parsed)
        if isinstance(node, pyast.Name):
            if node.id in self.const_names or _valid_dtype_name(node.id):
                return ast.Name(self.loc(node), node.id)
            value = self.lookup(node.id)
            if _is_dtype(value):
                return ast.Name(self.loc(node), value.name)
            if value is _MISSING:
                raise self.type_error(f"unknown dtype {node.id!r}", node,
                                      hint="dtypes are spelled u4, i8, f16, bf16, f32, ...")
            raise self.type_error(f"{node.id!r} is {_describe(value)}, not a dtype", node)
        if isinstance(node, pyast.Attribute):
            value = self.static_value(node)
            if _is_dtype(value):
                return ast.Name(self.loc(node), value.name)
            base = self.static_value(node.value)
            if _is_bittile_module(base):
                if value is _MISSING and _valid_dtype_name(node.attr):
                    return ast.Name(self.loc(node), node.attr)
                raise self.type_error(f"bittile.{node.attr} is not a dtype", node)
        raise self.type_error("expected a dtype", node,
                              hint="dtypes are spelled u4, i8, f16, bf16, f32, ...")

    # ---- grid ------------------------------------------------------------------------------
    def is_grid_call(self, call: pyast.Call) -> bool:
        func = call.func
        if isinstance(func, pyast.Name) and func.id not in self.locals:
            value = self.lookup(func.id)
            return (func.id == "grid" and value is _MISSING) or (
                _is_bittile_builtin(value) and value.__name__ == "grid")
        if isinstance(func, pyast.Attribute) and func.attr == "grid":
            return _is_bittile_module(self.static_value(func.value))
        return False

    def is_grid_stmt(self, stmt: pyast.stmt) -> bool:
        return (isinstance(stmt, pyast.Expr) and isinstance(stmt.value, pyast.Call)
                and self.is_grid_call(stmt.value))

    def grid(self, call: pyast.Call) -> tuple[ast.Expr, ...]:
        if call.keywords:
            raise self.syntax("grid(...) takes no keyword arguments", call.keywords[0])
        if not 1 <= len(call.args) <= 3:
            raise self.syntax(
                f"grid(...) takes one to three sizes, got {len(call.args)}", call,
                hint='e.g. bittile.grid(bittile.cdiv("M", BM), bittile.cdiv("N", BN))',
            )
        return tuple(self.expr(a) for a in call.args)

    # ---- statements ------------------------------------------------------------------------
    def stmts(self, body: list[pyast.stmt]) -> tuple[ast.Stmt, ...]:
        out: list[ast.Stmt] = []
        for stmt in body:
            s = self.stmt(stmt)
            if s is not None:
                out.append(s)
        return tuple(out)

    def keyword_loc(self, node: pyast.stmt, keyword: str) -> Loc:
        line, col, _, _ = self.src.chars(node)
        return self.src.loc_at(line, col, len(keyword))

    def stmt(self, node: pyast.stmt) -> ast.Stmt | None:
        if isinstance(node, pyast.Pass):
            return None
        if isinstance(node, pyast.Expr):
            value = node.value
            if isinstance(value, pyast.Constant) and (
                    value.value is Ellipsis or isinstance(value.value, str)):
                return None  # `...` and string statements (comments) do nothing
            if isinstance(value, pyast.Call) and self.is_grid_call(value):
                raise self.syntax(
                    "grid(...) must be the first statement of a kernel"
                    if self.is_kernel else "grid(...) can only be used in a kernel",
                    value,
                )
            return ast.ExprStmt(self.loc(node), self.expr(value))
        if isinstance(node, pyast.Assign):
            return self.assign(node)
        if isinstance(node, pyast.AugAssign):
            return self.aug_assign(node)
        if isinstance(node, pyast.AnnAssign):
            raise self.syntax("an annotated assignment is not supported", node,
                              hint="drop the annotation: types are inferred")
        if isinstance(node, pyast.For):
            return self.for_loop(node)
        if isinstance(node, pyast.If):
            return self.if_stmt(node)
        if isinstance(node, pyast.Return):
            if self.is_kernel:
                raise self.syntax(
                    "a kernel cannot return a value" if node.value is not None
                    else "return is not allowed in a kernel",
                    node, hint="kernels write their results with store(...)",
                )
            value = None if node.value is None else self.expr(node.value)
            return ast.Return(self.loc(node), value)
        keyword, name, hint = _STMT_NAMES.get(type(node), (None, None, None))
        if name is None:
            raise self.syntax(f"unsupported statement ({type(node).__name__})", node)
        raise self.syntax(f"{name} is not supported in a bittile {self.what}",
                          self.keyword_loc(node, keyword), hint=hint)

    def assign(self, node: pyast.Assign) -> ast.Stmt:
        if len(node.targets) > 1:
            raise self.syntax("chained assignment (a = b = ...) is not supported",
                              node.targets[1], hint="assign each name in its own statement")
        target = node.targets[0]
        self.check_target(target)
        value = self.expr(node.value)
        if self.defined(target.id):
            return ast.Assign(self.loc(node), target.id, value)
        self.define(target.id)
        return ast.Let(self.loc(node), target.id, value, mutable=True)

    def check_target(self, target: pyast.expr) -> None:
        if isinstance(target, pyast.Name):
            return
        if isinstance(target, (pyast.Tuple, pyast.List)):
            raise self.syntax("tuple unpacking is not supported", target,
                              hint="assign each name in its own statement")
        if isinstance(target, pyast.Subscript):
            raise self.syntax(
                "subscript assignment is not supported", target,
                hint="tiles are values: write a global tensor with store(t, [offsets], value)",
            )
        if isinstance(target, pyast.Attribute):
            raise self.syntax("attribute assignment is not supported", target)
        raise self.syntax("unsupported assignment target", target)

    def aug_assign(self, node: pyast.AugAssign) -> ast.Stmt:
        self.check_target(node.target)
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.syntax(f"the operator {_op_text(node.op)}= is not supported", node,
                              hint=_op_hint(node.op))
        self.check_defined(node.target.id, node.target)
        return ast.Assign(self.loc(node), node.target.id, self.expr(node.value), op)

    def for_loop(self, node: pyast.For) -> ast.Stmt:
        if node.orelse:
            end = (node.body[-1].end_lineno, 0)
            first = node.orelse[0]
            at = self.src.token_after("else", end, (first.lineno, first.col_offset + 1))
            raise self.syntax("an else clause on a for loop is not supported",
                              at or self.loc(first), hint="put the code after the loop")
        if not isinstance(node.target, pyast.Name):
            raise self.syntax("a for loop needs a single loop variable", node.target,
                              hint="for i in range(...)")
        it = node.iter
        is_range = (isinstance(it, pyast.Call) and isinstance(it.func, pyast.Name)
                    and it.func.id == "range" and it.func.id not in self.locals
                    and self.lookup("range") in (builtins.range, _MISSING))
        if not is_range:
            raise self.syntax("a for loop must iterate over range(...)", it,
                              hint="for i in range(stop), range(start, stop) or "
                              "range(start, stop, step)")
        if it.keywords:
            raise self.syntax("range(...) takes no keyword arguments", it.keywords[0])
        if not 1 <= len(it.args) <= 3:
            raise self.syntax(f"range(...) takes 1 to 3 arguments, got {len(it.args)}", it)
        for a in it.args:
            if isinstance(a, pyast.Starred):
                raise self.syntax("a starred argument is not supported", a)
        args = [self.expr(a) for a in it.args]
        if len(args) == 1:
            start, stop, step = ast.IntLit(self.loc(it), 0), args[0], None
        else:
            start, stop = args[0], args[1]
            step = args[2] if len(args) == 3 else None
        loc = self.loc(node)
        with self.block("for loop", loc):
            self.define(node.target.id)
            body = self.stmts(node.body)
        return ast.For(loc, node.target.id, start, stop, step, body)

    def if_stmt(self, node: pyast.If) -> ast.Stmt:
        cond = self.expr(node.test)
        loc = self.loc(node)
        with self.block("if branch", loc):
            then = self.stmts(node.body)
        with self.block("else branch", loc):
            other = self.stmts(node.orelse)
        return ast.If(loc, cond, then, other)

    # ---- expressions -----------------------------------------------------------------------
    def expr(self, node: pyast.expr) -> ast.Expr:
        loc = self.loc(node)
        if isinstance(node, pyast.Name):
            return self.name(node)
        if isinstance(node, pyast.Constant):
            return self.constant(node)
        if isinstance(node, pyast.BinOp):
            lhs, rhs = self.expr(node.left), self.expr(node.right)
            if isinstance(node.op, pyast.MatMult):
                return ast.Annotate(loc, lhs, rhs)
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise self.syntax(f"the operator {_op_text(node.op)} is not supported", node,
                                  hint=_op_hint(node.op))
            return ast.BinOp(loc, op, lhs, rhs)
        if isinstance(node, pyast.UnaryOp):
            operand = self.expr(node.operand)
            if isinstance(node.op, pyast.UAdd):
                return operand
            op = {pyast.USub: "-", pyast.Invert: "~", pyast.Not: "!"}[type(node.op)]
            return ast.UnaryOp(loc, op, operand)
        if isinstance(node, pyast.BoolOp):
            op = "&&" if isinstance(node.op, pyast.And) else "||"
            result = self.expr(node.values[0])
            for value in node.values[1:]:
                rhs = self.expr(value)
                end = self.loc(value)
                span = Loc(loc.file, loc.line, loc.col, end.end_line, end.end_col)
                result = ast.BinOp(span, op, result, rhs)
            return result
        if isinstance(node, pyast.Compare):
            if len(node.ops) > 1:
                raise self.syntax(
                    "chained comparisons are not supported", node,
                    hint="compare once per expression and combine with `and`",
                )
            op = _CMPOPS.get(type(node.ops[0]))
            if op is None:
                raise self.syntax(
                    f"the comparison {_op_text(node.ops[0])!r} is not supported", node,
                    hint="compare values with == != < <= > >=",
                )
            return ast.BinOp(loc, op, self.expr(node.left), self.expr(node.comparators[0]))
        if isinstance(node, pyast.Call):
            return self.call(node)
        if isinstance(node, pyast.Attribute):
            return self.attribute(node)
        if isinstance(node, pyast.Subscript):
            return self.subscript(node)
        if isinstance(node, (pyast.List, pyast.Tuple)):
            return ast.ListExpr(loc, tuple(self.expr(e) for e in node.elts))
        if isinstance(node, pyast.Slice):
            raise self.syntax("a slice can only be used in an index", node)
        name, hint = _EXPR_NAMES.get(type(node), (None, None))
        if name is None:
            raise self.syntax(f"unsupported expression ({type(node).__name__})", node)
        raise self.syntax(f"{name} is not supported in a bittile {self.what}", node, hint=hint)

    def name(self, node: pyast.Name) -> ast.Expr:
        if self.symbolic:
            return ast.Name(self.loc(node), node.id)
        if node.id in self.locals:
            if node.id in self.local_names and self.scopes:
                self.check_defined(node.id, node)
            return ast.Name(self.loc(node), node.id)
        value = self.lookup(node.id)
        if value is _MISSING:
            return ast.Name(self.loc(node), node.id)
        return self.value_to_expr(value, node.id, node)

    def value_to_expr(self, value, what: str, node) -> ast.Expr:
        """A Python constant from the enclosing scope, as an expression at ``node``."""
        loc = self.loc(node)
        if isinstance(value, bool):
            return ast.BoolLit(loc, value)
        if isinstance(value, numbers.Integral):
            return ast.IntLit(loc, int(value))
        if isinstance(value, numbers.Real):
            return ast.FloatLit(loc, float(value))
        if _is_dtype(value):
            return ast.Name(loc, value.name)
        from bittile.ir.layout import RegisterLayout

        if isinstance(value, RegisterLayout):
            return self.layout_expr(value, what, node)
        if _tile_function_name(value) is not None or _is_bittile_builtin(value):
            raise self.type_error(f"the function {what!r} can only be called", node)
        raise self.type_error(
            f"{what!r} is {_describe(value)}: only int, float, bool, dtype and layout "
            "values of the enclosing Python code can be used in a kernel",
            node, hint="pass it as an argument or a compile-time parameter",
        )

    def layout_expr(self, layout, what: str, node) -> ast.Expr:
        """A RegisterLayout as the layout expression it prints as, located at ``node``."""
        loc = self.loc(node)
        try:
            tree = pyast.parse(str(layout), mode="eval").body
        except SyntaxError:
            tree = None

        def build(n):
            args = tuple(build(a) for a in getattr(n, "args", ()))
            if isinstance(n, pyast.Constant) and type(n.value) is int:
                return ast.IntLit(loc, n.value)
            if isinstance(n, pyast.UnaryOp) and isinstance(n.op, pyast.USub):
                return ast.IntLit(loc, -build(n.operand).value)
            if isinstance(n, pyast.Call) and not n.keywords:
                if isinstance(n.func, pyast.Name) and n.func.id in BUILTIN_NAMES:
                    return ast.Call(loc, ast.Name(loc, n.func.id), args)
                if isinstance(n.func, pyast.Attribute):
                    return ast.MethodCall(loc, build(n.func.value), n.func.attr, args)
            raise ValueError

        try:
            return build(tree)
        except (ValueError, AttributeError):
            raise self.type_error(
                f"the layout {what!r} ({layout}) has no expression form", node,
                hint="pass it as a `layout` compile-time parameter",
            ) from None

    def constant(self, node: pyast.Constant) -> ast.Expr:
        value, loc = node.value, self.loc(node)
        if value is None:
            return ast.NoneLit(loc)
        if isinstance(value, bool):
            return ast.BoolLit(loc, value)
        if isinstance(value, int):
            return ast.IntLit(loc, value)
        if isinstance(value, float):
            return ast.FloatLit(loc, value)
        if isinstance(value, str):
            return self.size_string(node)
        if value is Ellipsis:
            raise self.syntax("... is not an expression", node)
        raise self.syntax(f"a {type(value).__name__} constant is not supported", node)

    def size_string(self, node: pyast.Constant) -> ast.Expr:
        """A string in an expression: a size expression such as ``"N"`` or ``"K // G"``."""
        frame = _StringFrame(self.frame, node)
        parsed = frame.parse()
        with self.in_frame(frame, symbolic=True):
            self.check_size_expr(parsed)
            return self.expr(parsed)

    def check_size_expr(self, node: pyast.expr) -> None:
        ok = (
            isinstance(node, pyast.Name)
            or (isinstance(node, pyast.Constant) and type(node.value) is int)
            or (isinstance(node, pyast.BinOp) and isinstance(node.op, _SIZE_OPS))
            or (isinstance(node, pyast.UnaryOp) and isinstance(node.op, (pyast.USub, pyast.UAdd)))
            or (isinstance(node, pyast.Call) and isinstance(node.func, pyast.Name)
                and node.func.id in _SIZE_FUNCS and not node.keywords)
        )
        if not ok:
            raise self.syntax(
                "a string must hold a size expression", node,
                hint="strings are sizes: names, integers, + - * / // % and cdiv/min/max",
            )
        children = node.args if isinstance(node, pyast.Call) else (
            [node.left, node.right] if isinstance(node, pyast.BinOp)
            else [node.operand] if isinstance(node, pyast.UnaryOp) else [])
        for child in children:
            self.check_size_expr(child)

    def call_args(self, node: pyast.Call) -> tuple[tuple[ast.Expr, ...], tuple[ast.Keyword, ...]]:
        args = []
        for a in node.args:
            if isinstance(a, pyast.Starred):
                raise self.syntax("a starred argument is not supported", a,
                                  hint="pass the arguments one by one")
            args.append(self.expr(a))
        keywords = []
        for k in node.keywords:
            if k.arg is None:
                raise self.syntax("**keyword arguments are not supported", k)
            keywords.append(ast.Keyword(self.loc(k), k.arg, self.expr(k.value)))
        return tuple(args), tuple(keywords)

    def builtin_call(self, node: pyast.Call, name: str) -> ast.Expr:
        if name == "grid":
            raise self.syntax("grid(...) must be the first statement of a kernel"
                              if self.is_kernel else "grid(...) can only be used in a kernel",
                              node)
        args, keywords = self.call_args(node)
        return ast.Call(self.loc(node), ast.Name(self.loc(node.func), name), args, keywords)

    def call(self, node: pyast.Call) -> ast.Expr:
        func = node.func
        if isinstance(func, pyast.Name):
            if self.symbolic:
                return self.builtin_call(node, func.id)
            if func.id in self.locals:
                raise self.type_error(f"{func.id!r} is a value, not a function", func)
            value = self.lookup(func.id)
            if value is _MISSING:  # a builtin, or a helper defined later in the module
                return self.builtin_call(node, func.id)
            if _tile_function_name(value) is not None:
                return self.builtin_call(node, func.id)
            if _is_bittile_builtin(value):
                return self.builtin_call(node, value.__name__)
            if getattr(builtins, func.id, None) is value:
                if func.id in BUILTIN_NAMES:
                    return self.builtin_call(node, func.id)
                special = self.python_builtin_call(node, func.id)
                if special is not None:
                    return special
            hint = ("decorate it with @bittile.func to use it as a helper"
                    if isinstance(value, types.FunctionType) else None)
            raise self.type_error(
                f"{func.id!r} is {_describe(value)}, not a bittile builtin or helper", func,
                hint=hint,
            )
        if isinstance(func, pyast.Attribute):
            base = self.static_value(func.value)
            if _is_bittile_module(base):
                return self.module_call(node, func, base)
            if isinstance(base, types.ModuleType) and base is math:
                raise self.type_error(
                    f"math.{func.attr} cannot be used in a kernel", func,
                    hint=f"use the tile builtin {func.attr}(...)"
                    if func.attr in BUILTIN_NAMES else None,
                )
            if base is not _MISSING:
                value = getattr(base, func.attr, _MISSING)
                if (name := _tile_function_name(value)) is not None:
                    return self.builtin_call(node, name)
                if _is_bittile_builtin(value):
                    return self.builtin_call(node, value.__name__)
                what = f"{_dotted(func)}"
                if value is _MISSING:
                    raise self.type_error(f"{_dotted(func.value)} has no attribute "
                                          f"{func.attr!r}", func)
                raise self.type_error(f"{what!r} is {_describe(value)}, not a bittile builtin "
                                      "or helper", func)
            if (isinstance(func.value, pyast.Name) and func.value.id not in self.locals
                    and not self.symbolic):
                raise self.syntax(f"name {func.value.id!r} is not defined", func.value,
                                  hint="import bittile (e.g. `import bittile as bt`)")
            obj = self.expr(func.value)
            args, keywords = self.call_args(node)
            return ast.MethodCall(self.loc(node), obj, func.attr, args, keywords)
        raise self.syntax("only builtins, helper functions and layout methods can be called",
                          func)

    def module_call(self, node: pyast.Call, func: pyast.Attribute, module) -> ast.Expr:
        if func.attr in BUILTIN_NAMES:
            return self.builtin_call(node, func.attr)
        value = getattr(module, func.attr, _MISSING)
        if (name := _tile_function_name(value)) is not None:
            return self.builtin_call(node, name)
        if value is _MISSING:
            close = difflib.get_close_matches(func.attr, sorted(BUILTIN_NAMES), n=1)
            raise self.syntax(
                f"{module.__name__} has no builtin {func.attr!r}", func,
                hint=f"did you mean {module.__name__}.{close[0]}?" if close
                else "see the builtins in docs/language.md",
            )
        raise self.type_error(f"{module.__name__}.{func.attr} cannot be used in a kernel", func,
                              hint="see the builtins in docs/language.md")

    def python_builtin_call(self, node: pyast.Call, name: str) -> ast.Expr | None:
        if (name == "float" and len(node.args) == 1 and not node.keywords
                and isinstance(node.args[0], pyast.Constant)
                and isinstance(node.args[0].value, str)):
            text = node.args[0].value.strip().lower()
            if text in ("inf", "+inf", "infinity", "nan"):
                return ast.FloatLit(self.loc(node), float(text))
            if text in ("-inf", "-infinity"):
                return ast.UnaryOp(self.loc(node), "-", ast.FloatLit(self.loc(node), math.inf))
        if name in ("int", "float", "bool"):
            raise self.type_error(f"{name}(...) is not supported in a kernel", node,
                                  hint="convert tiles with cast(x, dtype)")
        if name == "range":
            raise self.syntax("range(...) can only be used as the iterable of a for loop", node)
        return None

    def attribute(self, node: pyast.Attribute) -> ast.Expr:
        base = self.static_value(node.value)
        if base is _MISSING:
            if node.attr == "T":
                return ast.Call(self.loc(node), ast.Name(self.loc(node), "transpose"),
                                (self.expr(node.value),))
            if (isinstance(node.value, pyast.Name) and node.value.id not in self.locals
                    and not self.symbolic):
                raise self.syntax(f"name {node.value.id!r} is not defined", node.value)
            raise self.syntax(f"the attribute .{node.attr} is not supported here", node,
                              hint="the only attribute of a tile is .T (transpose)")
        value = getattr(base, node.attr, _MISSING)
        if _is_bittile_module(base):
            if value is _MISSING and _valid_dtype_name(node.attr):  # bittile.u12
                return ast.Name(self.loc(node), node.attr)
            if node.attr in BUILTIN_NAMES:
                raise self.type_error(f"{base.__name__}.{node.attr} is a function: call it",
                                      node)
            if value is _MISSING:
                close = difflib.get_close_matches(node.attr, _module_names(base), n=1)
                raise self.syntax(
                    f"{base.__name__} has no attribute {node.attr!r}", node,
                    hint=f"did you mean {base.__name__}.{close[0]}?" if close else None,
                )
        elif value is _MISSING:
            raise self.type_error(f"{_dotted(node.value)} has no attribute {node.attr!r}",
                                  node)
        return self.value_to_expr(value, _dotted(node), node)

    def subscript(self, node: pyast.Subscript) -> ast.Expr:
        value = self.expr(node.value)
        elts = node.slice.elts if isinstance(node.slice, pyast.Tuple) else [node.slice]
        indices: list[ast.Expr] = []
        for e in elts:
            if isinstance(e, pyast.Constant) and e.value is None:
                indices.append(ast.NoneLit(self.loc(e)))
            elif (isinstance(e, pyast.Slice) and e.lower is None and e.upper is None
                    and e.step is None):
                indices.append(ast.Slice(self.loc(e)))
            elif isinstance(e, pyast.Slice):
                raise self.syntax(
                    "only a whole-dimension slice ':' is supported in an index", e,
                    hint="take sub-tiles with load(t, [offsets], [shape]) or reshape",
                )
            else:
                raise self.syntax(
                    "an index may only contain ':' and None", e,
                    hint="x[None, :] inserts a dimension of size 1; select elements with "
                    "where(...) or load(...)",
                )
        return ast.Index(self.loc(node), value, tuple(indices))


# ---- small utilities ---------------------------------------------------------------------------
def _assigned_names(body: list[pyast.stmt]) -> set[str]:
    """Names a Python function body binds: they are its locals, never module constants."""
    names: set[str] = set()
    for stmt in body:
        for node in pyast.walk(stmt):
            if isinstance(node, pyast.Name) and isinstance(node.ctx, pyast.Store):
                names.add(node.id)
    return names


def _names_in(expr: ast.Expr) -> set[str]:
    if isinstance(expr, ast.Name):
        return {expr.id}
    if isinstance(expr, ast.BinOp):
        return _names_in(expr.lhs) | _names_in(expr.rhs)
    if isinstance(expr, ast.UnaryOp):
        return _names_in(expr.operand)
    if isinstance(expr, ast.Call):
        out: set[str] = set()
        for a in expr.args:
            out |= _names_in(a)
        return out
    return set()


def _dotted(node: pyast.expr) -> str:
    if isinstance(node, pyast.Name):
        return node.id
    if isinstance(node, pyast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "<expression>"


def _module_names(module) -> list[str]:
    return sorted(set(BUILTIN_NAMES) | {n for n in dir(module) if not n.startswith("_")})


_OP_TEXT = {pyast.Pow: "**", pyast.MatMult: "@", pyast.Is: "is", pyast.IsNot: "is not",
            pyast.In: "in", pyast.NotIn: "not in"}


def _op_text(op) -> str:
    return _OP_TEXT.get(type(op), type(op).__name__)


def _op_hint(op) -> str | None:
    if isinstance(op, pyast.Pow):
        return "use pow(a, b)"
    if isinstance(op, pyast.MatMult):
        return "`@` annotates a layout (x @ L); write x = x @ L"
    return None
