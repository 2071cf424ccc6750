"""Read ``.tile`` source into the AST of :mod:`bittile.dsl.ast`.

``parse_module(text, filename)`` reads a whole file; ``parse_expr`` and ``parse_param_type``
read the strings the Python frontend finds in annotations (``"K / G"``, ``"u4[N, K]"``), with
optional line and column offsets so that their locations point into the enclosing Python file.

The grammar is ``dsl/tile.lark`` (LALR(1), lark's basic lexer). The text is lexed with that
grammar's terminals, the tokens go through :class:`_TokenFilter` (which decides which newlines
end statements and reports lexical problems: unterminated comments and strings, malformed
numbers), and are fed to lark's interactive LALR parser one at a time, so that every syntax
error is reported at the first token that cannot continue a valid program, with what is
known about its context (the open brackets, the statement it is in). The parse tree is built
with ``propagate_positions`` and turned into AST nodes by :class:`_AstBuilder`, which gives
every node the :class:`~bittile.errors.Loc` of its text: a token's own span for names,
literals and operators, the whole construct for everything else (``(a + b) * c`` spans from
the ``(`` to the ``c``).

Every problem with the input raises :class:`~bittile.errors.TileSyntaxError` with a location,
a message and usually a hint; no lark exception escapes. The lark parsers are built on first
use and cached; importing :mod:`bittile` does not import lark.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from lark import Lark, Token, Transformer_NonRecursive, v_args
from lark.exceptions import (
    LarkError,
    UnexpectedCharacters,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from bittile.dsl import ast
from bittile.errors import Loc, TileSyntaxError, register_source

__all__ = ["parse_module", "parse_expr", "parse_param_type"]

_GRAMMAR = Path(__file__).with_name("tile.lark")


@cache
def _lark(expression_mode: bool) -> Lark:
    """The module parser, or (``expression_mode``) the parser of expressions and parameter
    types, in which ``//`` is floor division rather than a comment."""
    grammar = _GRAMMAR.read_text(encoding="utf-8")
    if expression_mode:
        grammar += "\n%override LINE_COMMENT: /#[^\\n]*/\n"
        start = ["expr_only", "type_only"]
    else:
        start = ["module"]
    return Lark(
        grammar,
        parser="lalr",
        lexer="basic",
        start=start,
        propagate_positions=True,
        maybe_placeholders=True,
    )


# ---- public API --------------------------------------------------------------------------------
def parse_module(text: str, filename: str = "<string>") -> ast.Module:
    """The AST of a ``.tile`` file (``filename`` names it in locations and diagnostics; the
    text is registered under that name so that error messages can show the offending line)."""
    _check_text(text)
    register_source(filename, text)
    locator = _Locator(filename)
    items = _parse(text, "module", locator)
    line, col = _end_position(text)
    return ast.Module(Loc(filename, 1, 1, line, col), filename, tuple(items))


def parse_expr(
    text: str, filename: str = "<string>", line_offset: int = 0, col_offset: int = 0
) -> ast.Expr:
    """One expression, e.g. the size expression ``"K / G"`` of a Python annotation. In this
    mode ``//`` is floor division (there are no ``//`` comments).

    Positions in ``text`` are shifted by ``line_offset`` lines, and positions on its first
    line by ``col_offset`` columns, so that a string found at line ``L``, column ``C``
    (1-based) of a Python file is parsed with ``line_offset=L - 1, col_offset=C - 1``. The
    text is registered for diagnostics under ``filename`` only when both offsets are 0
    (otherwise ``filename`` is the enclosing file, whose own text must stay registered)."""
    _check_text(text)
    locator = _Locator(filename, line_offset, col_offset)
    if not line_offset and not col_offset:
        register_source(filename, text)
    return _parse(text, "expr_only", locator)


def parse_param_type(
    text: str, filename: str = "<string>", line_offset: int = 0, col_offset: int = 0
) -> ast.TensorTypeExpr | ast.ScalarTypeExpr:
    """The type of a runtime parameter: ``"u4[N, K]"`` (a global tensor) or ``"f32"`` (a
    scalar). Offsets and registration as in :func:`parse_expr`."""
    _check_text(text)
    locator = _Locator(filename, line_offset, col_offset)
    if not line_offset and not col_offset:
        register_source(filename, text)
    return _parse(text, "type_only", locator)


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise TileSyntaxError(f"the tile parser reads a str, not {type(text).__name__}")


# ---- locations ---------------------------------------------------------------------------------
class _Locator:
    """Makes :class:`Loc` objects for tokens and parse-tree spans, shifted by the offsets of
    the text in its file."""

    def __init__(self, filename: str, line_offset: int = 0, col_offset: int = 0):
        self.filename = filename
        self.line_offset = line_offset
        self.col_offset = col_offset

    def position(self, line: int, col: int) -> tuple[int, int]:
        return line + self.line_offset, col + (self.col_offset if line == 1 else 0)

    def span(self, line: int, col: int, end_line: int, end_col: int) -> Loc:
        line_, col_ = self.position(line, col)
        end_line_, end_col_ = self.position(end_line, end_col)
        return Loc(self.filename, line_, col_, end_line_, end_col_)

    def token(self, token: Token) -> Loc:
        return self.span(token.line, token.column, token.end_line, token.end_column)

    def tokens(self, first: Token, last: Token) -> Loc:
        """From the start of ``first`` to the end of ``last``."""
        return self.span(first.line, first.column, last.end_line, last.end_column)

    def meta(self, meta) -> Loc:
        return self.span(meta.line, meta.column, meta.end_line, meta.end_column)

    def at(self, text: str, pos: int, length: int = 1) -> Loc:
        """The span of ``length`` characters at offset ``pos`` of ``text`` (on one line)."""
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        return self.span(line, col, line, col + max(length, 1))

    def end(self, text: str) -> Loc:
        """Just after the last character of ``text`` that is not blank."""
        line, col = _end_position(text.rstrip())
        return self.span(line, col, line, col + 1)


def _end_position(text: str) -> tuple[int, int]:
    """The (line, column) just after the end of ``text``."""
    line = text.count("\n") + 1
    return line, len(text) - (text.rfind("\n") + 1) + 1


def _where(token: Token) -> str:
    return f"line {token.line}, column {token.column}"


# ---- tokens ------------------------------------------------------------------------------------
_OPENERS = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
_CLOSERS = {close: open_ for open_, close in _OPENERS.items()}
_BRACKET_TEXT = {"LPAR": "(", "RPAR": ")", "LSQB": "[", "RSQB": "]", "LBRACE": "{", "RBRACE": "}"}
#: Tokens in front of which newlines are dropped: `} else`, a `{` on its own line, and
#: `.method(...)` chains continued on the next line.
_JOIN_WITH_PREVIOUS_LINE = frozenset({"ELSE", "LBRACE", "DOT"})
_WORD_AFTER_NUMBER = re.compile(r"[\w.]+")
_DEC = re.compile(r"\d+(?:_\d+)*")
_HEX = re.compile(r"0[xX][0-9A-Fa-f]+(?:_[0-9A-Fa-f]+)*")
_BIN = re.compile(r"0[bB][01]+(?:_[01]+)*")
_BAD_UNDERSCORE = re.compile(r"(?<!\d)_|_(?!\d)")
_TERMINATED_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


def _int_value(spelling: str) -> int | None:
    for pattern, base in ((_HEX, 16), (_BIN, 2), (_DEC, 10)):
        if pattern.fullmatch(spelling):
            digits = spelling[2:] if base != 10 else spelling
            return int(digits.replace("_", ""), base)
    return None


def _float_value(spelling: str) -> float | None:
    if _BAD_UNDERSCORE.search(spelling):
        return None
    try:
        return float(spelling.replace("_", ""))
    except ValueError:
        return None


class _TokenFilter:
    """The tokens the parser sees, made from lark's raw tokens (see ``dsl/tile.lark``), with
    the context that syntax errors are explained with."""

    def __init__(self, text: str, lark: Lark, locator: _Locator):
        self.text = text
        self.lark = lark
        self.locator = locator
        #: open brackets, innermost last, with what a `{` opens ("the body of kernel 'k'")
        self.stack: list[tuple[Token, str]] = []
        #: a closing bracket that does not match the innermost open one
        self.mismatch: tuple[Token, Token | None] | None = None
        #: the first token of the statement being read (inside a block)
        self.statement_start: Token | None = None
        self._at_statement_start = False
        self._owner = ""  # what the next `{` opens
        self._owner_keyword = ""

    def error(self, message: str, loc: Loc, hint: str | None = None) -> TileSyntaxError:
        return TileSyntaxError(message, loc, hint)

    def raw(self) -> Iterator[Token]:
        """lark's tokens without blanks and comments, checked."""
        text = self.text
        for token in self.lark.lex(text, dont_ignore=True):
            kind = token.type
            if kind in ("WS", "LINE_COMMENT"):
                continue
            if kind == "BLOCK_COMMENT":
                if len(token) < 4 or not token.endswith("*/"):
                    raise self.error(
                        "unterminated comment: '/*' has no matching '*/'",
                        self.locator.at(text, token.start_pos, 2),
                        hint="close the comment with '*/' (comments do not nest)",
                    )
                if "\n" in token:  # a comment across lines ends the line it starts on
                    yield Token.new_borrow_pos("_NL", "\n", token)
                continue
            if kind == "STRING":
                self.check_string(token)
            elif kind in ("INT", "FLOAT"):
                self.check_number(token)
            yield token

    def check_string(self, token: Token) -> None:
        value = str(token)
        if not _TERMINATED_STRING.fullmatch(value):
            raise self.error(
                "unterminated string", self.locator.at(self.text, token.start_pos, 1),
                hint='close the string with \'"\' on the same line',
            )
        for match in re.finditer(r"\\(.)", value[1:-1]):
            if match[1] not in _ESCAPES:
                pos = token.start_pos + 1 + match.start()
                raise self.error(
                    f"invalid escape sequence '\\{match[1]}' in a string",
                    self.locator.at(self.text, pos, 2),
                    hint='strings may contain \\" \\\\ \\n and \\t',
                )

    def check_number(self, token: Token) -> None:
        end = token.end_pos
        glued = _WORD_AFTER_NUMBER.match(self.text, end)
        spelling = str(token) + (glued[0] if glued else "")
        if glued:
            ok = False
        elif token.type == "INT":
            ok = _int_value(spelling) is not None
        else:
            value = _float_value(spelling)
            ok = value is not None
            if ok and math.isinf(value):
                raise self.error(
                    f"float literal {spelling} is too large", self.locator.token(token),
                    hint="write inf for infinity",
                )
        if not ok:
            raise self.error(
                f"invalid number literal '{spelling}'",
                self.locator.at(self.text, token.start_pos, len(spelling)),
                hint="numbers are written 123, 1_000, 0x7f, 0b101, 1.5, 2., .5 or 1e-3 "
                "('_' only between digits)",
            )

    def tokens(self) -> Iterator[Token]:
        """The tokens to feed to the parser, with significant newlines as ``_NL``."""
        pending_newline: Token | None = None
        for token in self.raw():
            if token.type == "_NL":
                if pending_newline is None and self.stack and self.stack[-1][0].type == "LBRACE":
                    pending_newline = token
                continue
            if pending_newline is not None:
                if token.type not in _JOIN_WITH_PREVIOUS_LINE:
                    yield self.emit(pending_newline)
                pending_newline = None
            yield self.emit(token)

    def emit(self, token: Token) -> Token:
        """Book-keeping for ``token`` just before it is fed to the parser."""
        kind = token.type
        in_block = bool(self.stack) and self.stack[-1][0].type == "LBRACE"
        if self._at_statement_start and in_block:
            self.statement_start = token
        self._at_statement_start = False
        if kind in ("KERNEL", "FN", "IF", "ELSE", "FOR"):
            self._owner_keyword = kind
            self._owner = {
                "IF": "the block of an if",
                "ELSE": "the block of an else",
                "FOR": "the body of a for loop",
            }.get(kind, "")
        elif kind == "NAME" and self._owner_keyword in ("KERNEL", "FN") and not self._owner:
            what = "kernel" if self._owner_keyword == "KERNEL" else "fn"
            self._owner = f"the body of {what} '{token}'"
        if kind in _OPENERS:
            owner = (self._owner or "a block") if kind == "LBRACE" else ""
            if kind == "LBRACE":
                self._owner, self._owner_keyword = "", ""
                self._at_statement_start = True
            self.stack.append((token, owner))
        elif kind in _CLOSERS:
            if self.stack and self.stack[-1][0].type == _CLOSERS[kind]:
                self.stack.pop()
            elif self.mismatch is None:
                self.mismatch = (token, self.stack[-1][0] if self.stack else None)
        elif kind in ("_NL", "SEMICOLON") and in_block:
            self._at_statement_start = True
        return token


# ---- describing tokens in messages -------------------------------------------------------------
_EXPRESSION_STARTS = frozenset(
    {"NAME", "INT", "FLOAT", "INF", "NAN", "TRUE", "FALSE", "LPAR", "LSQB", "MINUS", "TILDE",
     "BANG"}
)
_BINARY_OPERATOR_TOKENS = frozenset(
    {"OROR", "ANDAND", "BAR", "CARET", "AMP", "EQEQ", "NOTEQ", "LT", "LE", "GT", "GE", "SHL",
     "SHR", "PLUS", "MINUS", "STAR", "SLASH", "FLOORDIV", "PERCENT", "AT"}
)
_COMPARISONS = frozenset({"EQEQ", "NOTEQ", "LT", "LE", "GT", "GE"})
_ASSIGNMENTS = frozenset(
    {"EQUAL", "PLUS_EQ", "MINUS_EQ", "STAR_EQ", "SLASH_EQ", "PERCENT_EQ", "AMP_EQ", "BAR_EQ",
     "CARET_EQ", "SHL_EQ", "SHR_EQ"}
)
_STATEMENT_KEYWORDS = frozenset({"LET", "VAR", "FOR", "IF", "ELSE", "RETURN"})
_NAMED_TERMINALS = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": 'a string ("path.tile")',
    "_NL": "a new line",
    "$END": "the end of the input",
}
#: Hints for words from other languages.
_FOREIGN_WORDS = {
    "and": "the logical operators are '&&', '||' and '!'",
    "or": "the logical operators are '&&', '||' and '!'",
    "not": "the logical operators are '&&', '||' and '!'",
    "elif": "write 'else if'",
    "def": "helper functions are declared with 'fn'",
    "while": "the only loop is 'for NAME in range(...) { ... }'",
    "const": "bind values with 'let' (immutable) or 'var' (mutable)",
}


def _describe_token(token: Token) -> str:
    kind = token.type
    if kind == "$END":
        return "end of input"
    if kind == "_NL":
        return "end of line"
    if kind == "NAME":
        return f"name '{token}'"
    if kind in ("INT", "FLOAT"):
        return f"number {token}"
    if kind == "STRING":
        return f"string {token}"
    return repr(str(token))


def _or_list(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def _describe_expected(expected: set[str], lark: Lark) -> str:
    parts: list[str] = []
    rest = set(expected)
    if rest & _EXPRESSION_STARTS and "NAME" in rest and "INT" in rest:
        parts.append("an expression")
        rest -= _EXPRESSION_STARTS
    if rest & _BINARY_OPERATOR_TOKENS and "PLUS" in rest:
        parts.append("an operator")
        rest -= _BINARY_OPERATOR_TOKENS
        rest -= {"LPAR", "LSQB", "DOT"}  # calls, indexing, methods: also "after an operand"
    if "EQUAL" in rest:
        rest -= _ASSIGNMENTS - {"EQUAL"}
    words: list[str] = []
    for name in sorted(rest):
        if name in _NAMED_TERMINALS:
            words.append(_NAMED_TERMINALS[name])
            continue
        try:
            pattern = lark.get_terminal(name).pattern
        except KeyError:
            continue
        words.append(repr(pattern.value) if pattern.type == "str" else name.lower())
    words.sort(key=lambda w: (w.startswith("a ") or w.startswith("the "), w))
    parts += words
    if len(parts) > 6:
        parts = parts[:6] + ["..."]
        return ", ".join(parts)
    return _or_list(parts) or "nothing more"


# ---- parsing -----------------------------------------------------------------------------------
def _parse(text: str, start: str, locator: _Locator):
    lark = _lark(start != "module")
    tokens = _TokenFilter(text, lark, locator)
    try:
        parser = lark.parse_interactive(start=start)
        last = Token("$END", "", 0, 1, 1, 1, 1, 0)
        fed: list[Token] = []
        for token in tokens.tokens():
            try:
                parser.feed_token(token)
            except UnexpectedToken as exc:
                expected = _replay(lark, start, fed).accepts()
                previous = fed[-1] if fed else None
                raise _unexpected(exc, expected, token, previous, tokens, lark) from None
            fed.append(token)
            last = token
        if tokens.stack:  # the grammar is balanced: the end cannot come yet
            raise _unexpected_end(parser, tokens, lark)
        try:
            tree = parser.feed_eof(last)
        except UnexpectedToken:
            raise _unexpected_end(_replay(lark, start, fed), tokens, lark) from None
    except UnexpectedCharacters as exc:
        raise _bad_character(exc, text, locator) from None
    except UnexpectedInput as exc:  # not expected from an interactive LALR parse
        raise TileSyntaxError(f"cannot parse: {exc}", locator.at(text, 0)) from None
    except LarkError as exc:
        raise TileSyntaxError(f"cannot parse: {exc}", locator.at(text, 0)) from None
    except RecursionError:  # a safety net: the parser and the tree walk are iterative
        raise TileSyntaxError("the input is nested too deeply", locator.at(text, 0)) from None
    try:
        return _AstBuilder(locator).transform(tree)
    except VisitError as exc:  # lark wraps the errors raised by the builder
        raise exc.orig_exc from None


def _replay(lark: Lark, start: str, tokens: list[Token]):
    """A parser that has read ``tokens`` (which were accepted before), to ask what may follow
    them: the parser that rejected the next token may have made reductions that LALR(1)
    allows before noticing, so it is not asked itself."""
    parser = lark.parse_interactive(start=start)
    for token in tokens:
        parser.feed_token(token)
    return parser


def _unexpected(
    exc: UnexpectedToken,
    expected: set[str],
    token: Token,
    previous: Token | None,
    tokens: _TokenFilter,
    lark: Lark,
) -> TileSyntaxError:
    """The syntax error for ``token``, which cannot follow ``previous`` (after which the
    parser accepts the terminals ``expected``)."""
    loc = tokens.locator
    kind = token.type
    after_operand = "PLUS" in expected  # the parser has just read a complete operand
    where = loc.token(token)
    shown = _describe_token(token)
    hint = None

    if kind in _CLOSERS:
        if tokens.mismatch is not None and tokens.mismatch[0] is token:
            opener = tokens.mismatch[1]
            if opener is None:
                hint = f"there is no open '{_BRACKET_TEXT[_CLOSERS[kind]]}' for it to close"
            else:
                close = _BRACKET_TEXT[_OPENERS[opener.type]]
                hint = (f"the '{opener}' at {_where(opener)} is still open: close it with "
                        f"'{close}' first")
            return TileSyntaxError(f"unexpected {shown}", where, hint)
    if kind == "ELSE":
        return TileSyntaxError(
            "'else' without 'if'", where,
            hint="'else' follows the closing '}' of an if block: if c { ... } else { ... }",
        )
    if kind == "NONE":
        return TileSyntaxError(
            "'None' is only allowed in an index", where,
            hint="it inserts a dimension of size 1, as in x[None, :]",
        )
    values = getattr(exc.state, "value_stack", None) or []
    after_comparison = (
        len(values) >= 2 and isinstance(values[-2], Token) and values[-2].type in _COMPARISONS
    )
    if kind in _COMPARISONS and after_comparison:
        return TileSyntaxError(
            f"comparisons cannot be chained: {shown} follows another comparison", where,
            hint="combine two comparisons with '&&', e.g. 'a < b && b < c', or parenthesize "
            "one of them",
        )
    if "GRID" in expected and kind != "GRID":
        return TileSyntaxError(
            f"missing grid(...) before {shown}", where,
            hint="a kernel declares its grid after its parameters: "
            "kernel k(x: f32[N]) grid(cdiv(N, 64)) { ... }",
        )
    if kind in _ASSIGNMENTS and after_operand:
        start = tokens.statement_start
        in_block = bool(tokens.stack) and tokens.stack[-1][0].type == "LBRACE"
        if in_block and start is not None and start.type not in _STATEMENT_KEYWORDS \
                and previous is not None and start is not token:
            return TileSyntaxError(
                "cannot assign to this expression", loc.tokens(start, previous),
                hint="only a variable is assigned ('x = ...', 'x += ...'); tiles are values: "
                "build a new one instead of assigning to its elements",
            )
        if kind == "EQUAL" and start is not None and start.type == "IF" and in_block:
            hint = "compare with '=='"
        elif kind == "EQUAL" and tokens.stack and tokens.stack[-1][0].type == "LPAR":
            hint = "a keyword argument is 'name = value'"

    if kind == "NAME" and str(token) in _FOREIGN_WORDS:
        hint = _FOREIGN_WORDS[str(token)]
    elif kind == "_NL" and expected & _EXPRESSION_STARTS:
        hint = "a statement ends at the end of its line; to continue it on the next line, " \
               "break the line inside ( ) or [ ]"
    elif kind == "STAR" and previous is not None and previous.type == "STAR":
        hint = "there is no power operator: use pow(a, b)"
    elif kind == "COLON" and "LBRACE" in expected:
        hint = "blocks are written in braces: if c { ... }"
    elif kind == "LPAR" and after_operand:
        hint = "only names are called: f(x), or methods: x.f(y)"
    elif kind in ("KERNEL", "FN", "IMPORT") and tokens.stack:
        opener, owner = tokens.stack[-1]
        hint = f"'{opener}' at {_where(opener)} is not closed" + (f" ({owner})" if owner else "")
    elif not tokens.stack and "KERNEL" in expected and kind != "$END":
        hint = "statements belong in the body of a kernel or fn"
    elif kind in _STATEMENT_KEYWORDS and after_operand:
        hint = "separate statements with a new line or ';'"
    expected_text = _describe_expected(expected, lark)
    return TileSyntaxError(f"unexpected {shown}; expected {expected_text}", where, hint)


def _unexpected_end(parser, tokens: _TokenFilter, lark: Lark) -> TileSyntaxError:
    """The syntax error for an input that ends too early; ``parser`` has read every token."""
    loc = tokens.locator
    expected = parser.accepts()
    if tokens.stack:
        opener, owner = tokens.stack[-1]
        close = _OPENERS[opener.type]
        if close in expected:
            what = f" ({owner})" if owner else ""
            return TileSyntaxError(
                f"'{opener}' is never closed{what}", loc.token(opener),
                hint=f"the input ends before the matching '{_BRACKET_TEXT[close]}'",
            )
    message = f"unexpected end of input; expected {_describe_expected(expected, lark)}"
    return TileSyntaxError(message, loc.end(tokens.text))


def _bad_character(exc: UnexpectedCharacters, text: str, locator: _Locator) -> TileSyntaxError:
    pos = exc.pos_in_stream
    char = text[pos] if 0 <= pos < len(text) else ""
    hint = None
    if char == "'":
        hint = 'strings are written in double quotes: import "other.tile"'
    elif char == "\\":
        hint = "a backslash is only allowed in a string"
    return TileSyntaxError(f"unexpected character {char!r}", locator.at(text, pos, 1), hint)


# ---- parse tree to AST -------------------------------------------------------------------------
def _present(children: list) -> list:
    return [c for c in children if c is not None]


def _split_args(items: list, locator: _Locator):
    args: list[ast.Expr] = []
    keywords: list[ast.Keyword] = []
    for item in items:
        if isinstance(item, ast.Keyword):
            keywords.append(item)
        elif keywords:
            raise TileSyntaxError(
                "positional argument after a keyword argument", item.loc,
                hint="write the positional arguments first: f(x, y, name=value)",
            )
        else:
            args.append(item)
    return tuple(args), tuple(keywords)


@v_args(meta=True)
class _AstBuilder(Transformer_NonRecursive):
    """Parse tree (``dsl/tile.lark``) to AST, with a location for every node."""

    def __init__(self, locator: _Locator):
        super().__init__(visit_tokens=False)
        self.at = locator

    # -- declarations
    def module(self, meta, items):
        return [i for i in items if i is not None]

    def kernel(self, meta, children):
        name, const_params, params, grid, body = children
        return ast.KernelDef(self.at.meta(meta), str(name), const_params or (), params or (),
                             grid, body)

    def const_params(self, meta, children):
        return tuple(_present(children))

    def const_param(self, meta, children):
        name, kind, default = children
        if str(kind) not in ast.CONST_KINDS:
            raise TileSyntaxError(
                f"unknown kind of compile-time parameter '{kind}'", self.at.token(kind),
                hint=f"the kinds are {_or_list(list(ast.CONST_KINDS))}",
            )
        return ast.ConstParam(self.at.meta(meta), str(name), str(kind), default)

    def params(self, meta, children):
        return tuple(children)

    def param(self, meta, children):
        name, type_ = children
        return ast.Param(self.at.meta(meta), str(name), type_)

    def tensor_type(self, meta, children):
        dtype, *shape = children
        return ast.TensorTypeExpr(self.at.meta(meta), self._name(dtype), tuple(shape))

    def scalar_type(self, meta, children):
        (dtype,) = children
        return ast.ScalarTypeExpr(self.at.meta(meta), self._name(dtype))

    def grid(self, meta, children):
        if len(children) > 3:
            raise TileSyntaxError(
                f"a grid has one to three dimensions, not {len(children)}", self.at.meta(meta),
            )
        return tuple(children)

    def fn_def(self, meta, children):
        name, params, body = children
        return ast.FnDef(self.at.meta(meta), str(name), params or (), body)

    def fn_params(self, meta, children):
        return tuple(str(c) for c in children)

    def import_(self, meta, children):
        (string,) = children
        path = re.sub(r"\\(.)", lambda m: _ESCAPES[m[1]], str(string)[1:-1])
        return ast.Import(self.at.meta(meta), path)

    # -- statements
    def block(self, meta, children):
        return tuple(children)

    def let_stmt(self, meta, children):
        name, value = children
        return ast.Let(self.at.meta(meta), str(name), value)

    def var_stmt(self, meta, children):
        name, value = children
        return ast.Let(self.at.meta(meta), str(name), value, mutable=True)

    def assign(self, meta, children):
        name, op, value = children
        return ast.Assign(self.at.meta(meta), str(name), value, str(op)[:-1] or None)

    def expr_stmt(self, meta, children):
        return ast.ExprStmt(self.at.meta(meta), children[0])

    def for_stmt(self, meta, children):
        var, func, *args, body = children
        if str(func) != "range":
            raise TileSyntaxError(
                f"a for loop iterates over range(...), not '{func}'", self.at.token(func),
                hint="for i in range(start, stop, step) { ... }",
            )
        if len(args) > 3:
            raise TileSyntaxError(
                f"range takes one to three arguments, not {len(args)}", args[3].loc,
                hint="range(stop), range(start, stop) or range(start, stop, step)",
            )
        if len(args) == 1:
            args = [ast.IntLit(self.at.token(func), 0), args[0]]
        step = args[2] if len(args) == 3 else None
        return ast.For(self.at.meta(meta), str(var), args[0], args[1], step, body)

    def if_stmt(self, meta, children):
        cond, then_body, orelse = children
        if orelse is None:
            else_body = ()
        elif isinstance(orelse, ast.If):
            else_body = (orelse,)
        else:
            else_body = orelse
        return ast.If(self.at.meta(meta), cond, then_body, else_body)

    def return_stmt(self, meta, children):
        return ast.Return(self.at.meta(meta), children[0])

    # -- expressions
    def _name(self, token: Token) -> ast.Name:
        return ast.Name(self.at.token(token), str(token))

    def annotate(self, meta, children):
        value, layout = children
        return ast.Annotate(self.at.meta(meta), value, layout)

    def binop(self, meta, children):
        lhs, op, rhs = children
        return ast.BinOp(self.at.meta(meta), str(op), lhs, rhs)

    def unop(self, meta, children):
        op, operand = children
        return ast.UnaryOp(self.at.meta(meta), str(op), operand)

    def call(self, meta, children):
        func, *items = children
        args, keywords = _split_args(_present(items), self.at)
        return ast.Call(self.at.meta(meta), self._name(func), args, keywords)

    def method_call(self, meta, children):
        obj, method, *items = children
        args, keywords = _split_args(_present(items), self.at)
        return ast.MethodCall(self.at.meta(meta), obj, str(method), args, keywords)

    def keyword(self, meta, children):
        name, value = children
        return ast.Keyword(self.at.meta(meta), str(name), value)

    def index(self, meta, children):
        value, *indices = children
        return ast.Index(self.at.meta(meta), value, tuple(indices))

    def slice(self, meta, children):
        return ast.Slice(self.at.meta(meta))

    def none_lit(self, meta, children):
        return ast.NoneLit(self.at.meta(meta))

    def name(self, meta, children):
        return self._name(children[0])

    def int_lit(self, meta, children):
        (token,) = children
        return ast.IntLit(self.at.token(token), _int_value(str(token)))

    def float_lit(self, meta, children):
        (token,) = children
        if token.type == "INF":
            value = math.inf
        elif token.type == "NAN":
            value = math.nan
        else:
            value = _float_value(str(token))
        return ast.FloatLit(self.at.token(token), value)

    def bool_lit(self, meta, children):
        (token,) = children
        return ast.BoolLit(self.at.token(token), token.type == "TRUE")

    def list_expr(self, meta, children):
        return ast.ListExpr(self.at.meta(meta), tuple(_present(children)))

    def expr_only(self, meta, children):
        return children[0]

    def type_only(self, meta, children):
        return children[0]
