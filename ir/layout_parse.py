"""Parser for the text form of register layouts (what ``str(layout)`` prints).

A tiny recursive-descent parser, so that layout text from IR dumps or user annotations never
goes through Python's ``eval``. Grammar::

    expr  := term (('*' | '/') term)*
    term  := atom ('.' NAME args)*
    atom  := NAME args | '(' expr ')'
    args  := '(' [arg (',' arg)*] [','] ')'
    arg   := [NAME '='] value
    value := ['-'] INT | '[' [value (',' value)*] [','] ']' | '(' ... ')'

``NAME`` at the head of an atom is a primitive (``spatial``, ``local``, ``column_spatial``,
``column_local``, ``replicated``) or ``RegisterLayout`` with the four explicit fields; the
methods are the chained builders (the four primitives and ``replicated(n)``).
"""

from __future__ import annotations

import re

from bittile.errors import LayoutError
from bittile.ir import layout as L

__all__ = ["parse_layout"]

_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_]\w*)|(\S))")
_PRIMITIVES = ("spatial", "local", "column_spatial", "column_local")
_FIELDS = ("shape", "mode_shape", "spatial_modes", "local_modes")
_CLOSE = {"(": ")", "[": "]"}


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks: list[tuple[str, str | int, int]] = []  # (kind, value, position)
        pos = 0
        while True:
            m = _TOKEN.match(text, pos)
            if m is None:  # only trailing whitespace is left
                break
            num, name, op = m.groups()
            start = m.start(m.lastindex or 0)
            if num is not None:
                self.toks.append(("int", int(num), start))
            elif name is not None:
                self.toks.append(("name", name, start))
            else:
                self.toks.append(("op", op, start))
            pos = m.end()
        self.toks.append(("end", "", len(text)))
        self.k = 0

    # -- token helpers ----------------------------------------------------------------------

    def error(self, expected: str) -> LayoutError:
        kind, value, pos = self.toks[self.k]
        found = "end of text" if kind == "end" else repr(str(value))
        return LayoutError(
            f"malformed layout {self.text!r}: expected {expected} at position {pos}, found {found}",
            hint="write a layout like local(2, 1).spatial(8, 4) or "
            "RegisterLayout(shape=[...], mode_shape=[...], spatial_modes=[...], local_modes=[...])",
        )

    def peek(self, value: str) -> bool:
        kind, v, _ = self.toks[self.k]
        return kind == "op" and v == value

    def expect_op(self, value: str) -> None:
        if not self.peek(value):
            raise self.error(repr(value))
        self.k += 1

    def name(self) -> str:
        kind, value, _ = self.toks[self.k]
        if kind != "name":
            raise self.error("a layout constructor name")
        self.k += 1
        return str(value)

    # -- grammar ----------------------------------------------------------------------------

    def parse(self) -> L.RegisterLayout:
        result = self.expr()
        if self.toks[self.k][0] != "end":
            raise self.error("'*', '/', '.' or the end of the text")
        return result

    def expr(self) -> L.RegisterLayout:
        result = self.term()
        while self.peek("*") or self.peek("/"):
            op = self.toks[self.k][1]
            self.k += 1
            rhs = self.term()
            result = result * rhs if op == "*" else result / rhs
        return result

    def term(self) -> L.RegisterLayout:
        result = self.atom()
        while self.peek("."):
            self.k += 1
            at = self.k
            method = self.name()
            if method not in (*_PRIMITIVES, "replicated"):
                self.k = at
                raise self.error(f"a builder method ({', '.join(_PRIMITIVES)}, replicated(n))")
            args, kwargs = self.args()
            if method in _PRIMITIVES and not kwargs:
                result = getattr(result, method)(*self.int_args(args, method))
            elif method == "replicated" and not kwargs and len(args) == 1:
                result = result.replicated(*self.int_args(args, method))
            else:
                self.k = at
                raise self.error(f"a builder method ({', '.join(_PRIMITIVES)}, replicated(n))")
        return result

    def atom(self) -> L.RegisterLayout:
        if self.peek("("):
            self.k += 1
            result = self.expr()
            self.expect_op(")")
            return result
        at = self.k
        head = self.name()
        if head not in (*_PRIMITIVES, "replicated", "RegisterLayout"):
            self.k = at
            raise self.error(f"one of {', '.join(_PRIMITIVES)}, replicated, RegisterLayout or '('")
        args, kwargs = self.args()
        if head in _PRIMITIVES and not kwargs:
            return getattr(L, head)(*self.int_args(args, head))
        if head == "replicated" and len(args) + len(kwargs) in (1, 2):
            names = ("n", "rank")
            merged = dict(zip(names, args, strict=False))
            for key, value in kwargs.items():
                if key not in names or key in merged:
                    self.k = at
                    raise self.error(f"replicated(n, rank=...), not argument {key!r}")
                merged[key] = value
            return L.replicated(*self.int_args([merged.get("n"), merged.get("rank", 1)], head))
        if head == "RegisterLayout":
            merged = dict(zip(_FIELDS, args, strict=False))
            for key, value in kwargs.items():
                if key not in _FIELDS or key in merged:
                    self.k = at
                    raise self.error(f"RegisterLayout fields {_FIELDS}, not {key!r}")
                merged[key] = value
            if len(args) > 4 or set(merged) != set(_FIELDS):
                self.k = at
                raise self.error(f"RegisterLayout with exactly the fields {', '.join(_FIELDS)}")
            for key in _FIELDS:
                if not isinstance(merged[key], list):
                    raise LayoutError(f"malformed layout {self.text!r}: {key} must be a list")
            return L.RegisterLayout(**{key: tuple(merged[key]) for key in _FIELDS})
        self.k = at
        raise self.error(f"arguments that {head}() accepts")

    def args(self) -> tuple[list, dict]:
        self.expect_op("(")
        args: list = []
        kwargs: dict = {}
        while not self.peek(")"):
            kind, value, _ = self.toks[self.k]
            nxt = self.toks[self.k + 1] if self.k + 1 < len(self.toks) else None
            if kind == "name" and nxt is not None and nxt[:2] == ("op", "="):
                self.k += 2
                if value in kwargs:
                    raise self.error("each keyword argument once")
                kwargs[str(value)] = self.value()
            elif kwargs:
                raise self.error("a keyword argument (positional ones come first)")
            else:
                args.append(self.value())
            if not self.peek(")"):
                self.expect_op(",")
        self.k += 1
        return args, kwargs

    def value(self) -> int | list:
        if self.peek("(") or self.peek("["):
            close = _CLOSE[str(self.toks[self.k][1])]
            self.k += 1
            items = []
            while not self.peek(close):
                items.append(self.value())
                if not self.peek(close):
                    self.expect_op(",")
            self.k += 1
            return items
        sign = 1
        if self.peek("-"):
            sign, self.k = -1, self.k + 1
        kind, value, _ = self.toks[self.k]
        if kind != "int":
            raise self.error("an integer")
        self.k += 1
        return sign * int(value)

    def int_args(self, args: list, what: str) -> list[int]:
        if not all(isinstance(a, int) for a in args):
            raise LayoutError(f"malformed layout {self.text!r}: {what}() takes integer arguments")
        return args


def parse_layout(text: str) -> L.RegisterLayout:
    """The layout written as ``text``; a LayoutError describes malformed text."""
    if not isinstance(text, str):
        raise LayoutError(f"parse_layout() needs a string, got {type(text).__name__}")
    return _Parser(text).parse()
