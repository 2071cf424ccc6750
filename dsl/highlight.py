"""Syntax highlighting of ``.tile`` source with Pygments (``pygmentize -l tile gemv.tile``).

The lexer is registered as the Pygments lexer ``tile`` through the ``pygments.lexers`` entry
point of the package, so documentation tools (Sphinx, MkDocs) highlight ```` ```tile ````
blocks. Token types:

- ``Keyword``: ``for in if else return grid``; ``Keyword.Declaration``: ``kernel fn let var``;
  ``Keyword.Namespace``: ``import``; ``Keyword.Constant``: ``true false None``;
- ``Keyword.Type``: dtypes (``u4``, ``bf16``, ``f8e4m3`` ...) and the kinds of compile-time
  parameters (``int float bool dtype layout``);
- ``Name.Builtin``: builtins (``load``, ``store``, ``sum``, ``range`` ...);
  ``Name.Builtin.Pseudo``: layout primitives and methods (``spatial``, ``.local`` ...);
- ``Name.Function``: the name declared by ``kernel`` or ``fn``;
- ``Number.Integer`` / ``Number.Hex`` / ``Number.Bin`` / ``Number.Float`` (``inf`` and ``nan``
  too), ``Comment.Single`` / ``Comment.Multiline``, ``String``, ``Operator``, ``Punctuation``.
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
)

from bittile.dsl.ast import BUILTIN_FUNCTIONS, LAYOUT_FUNCTIONS

__all__ = ["TileLexer", "DTYPES", "BUILTINS", "LAYOUTS"]

DTYPES = (
    "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u16", "u32",
    "i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "i16", "i32",
    "f16", "bf16", "f32", "f8e4m3", "f8e5m2", "f6e3m2", "f6e2m3", "f4e2m1",
)
CONST_KINDS = ("int", "float", "bool", "dtype", "layout")
BUILTINS = (*BUILTIN_FUNCTIONS, "range")
LAYOUTS = LAYOUT_FUNCTIONS

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_WORD_END = r"(?![A-Za-z0-9_])"


class TileLexer(RegexLexer):
    """Pygments lexer of the bittile tile language."""

    name = "tile"
    aliases = ["tile"]
    filenames = ["*.tile"]
    mimetypes = ["text/x-tile"]

    tokens = {
        "root": [
            (r"\n", Whitespace),
            (r"[ \t\f\r]+", Whitespace),
            (r"//[^\n]*", Comment.Single),
            (r"#[^\n]*", Comment.Single),
            (r"/\*", Comment.Multiline, "comment"),
            (r'"', String, "string"),
            (r"(kernel|fn)(\s+)(" + _NAME + ")",
             bygroups(Keyword.Declaration, Whitespace, Name.Function)),
            (words(("kernel", "fn", "let", "var"), suffix=_WORD_END), Keyword.Declaration),
            (words(("import",), suffix=_WORD_END), Keyword.Namespace),
            (words(("for", "in", "if", "else", "return", "grid"), suffix=_WORD_END), Keyword),
            (words(("true", "false", "None"), suffix=_WORD_END), Keyword.Constant),
            (words(("inf", "nan"), suffix=_WORD_END), Number.Float),
            (words(DTYPES + CONST_KINDS, suffix=_WORD_END), Keyword.Type),
            (words(LAYOUTS, suffix=_WORD_END), Name.Builtin.Pseudo),
            (words(BUILTINS, suffix=_WORD_END), Name.Builtin),
            (_NAME, Name),
            (r"(\d[\d_]*)?\.\d[\d_]*([eE][+-]?\d[\d_]*)?", Number.Float),
            (r"\d[\d_]*\.([eE][+-]?\d[\d_]*)?(?![.\w])", Number.Float),
            (r"\d[\d_]*[eE][+-]?\d[\d_]*", Number.Float),
            (r"0[xX][0-9A-Fa-f_]+", Number.Hex),
            (r"0[bB][01_]+", Number.Bin),
            (r"\d[\d_]*", Number.Integer),
            (r"<<=|>>=|&&|\|\||<<|>>|[-+*/%&|^]=|[=!<>]=|[-+*/%&|^~!<>=@]", Operator),
            (r"[()\[\]{},;:.]", Punctuation),
        ],
        "comment": [
            (r"[^*]+", Comment.Multiline),
            (r"\*/", Comment.Multiline, "#pop"),
            (r"\*", Comment.Multiline),
        ],
        "string": [
            (r'\\.', String.Escape),
            (r'"', String, "#pop"),
            (r'[^"\\\n]+', String),
            (r"\n", Whitespace, "#pop"),  # unterminated: the parser reports it
        ],
    }
