"""The Pygments lexer of .tile source (dsl/highlight.py)."""

import pytest
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, Punctuation, String

from bittile.dsl.highlight import TileLexer

SAMPLE = """\
import "lib.tile"  # helpers
kernel k[B: int = 0x10](x: bf16[N], s: f8e4m3) grid(cdiv(N, B)) {
    /* a block
       comment */
    var acc = zeros(f32, [B]) @ spatial(4).local(2)
    for i in range(0, N, B) { acc += load(x, [i], [B])[None, :] }
    if s >= 1.5e-3 && !false { return } else { acc = -acc << 2 }
    store(x, [0], cast(acc, u4)) // done
}
fn helper(a) { return a * inf }
"""


def tokens(text):
    return [(kind, value) for kind, value in TileLexer().get_tokens(text) if value.strip()]


def kind_of(text, value):
    kinds = {kind for kind, v in tokens(text) if v == value}
    assert len(kinds) == 1, (value, kinds)
    return kinds.pop()


@pytest.mark.parametrize("value, expected", [
    ("import", Keyword.Namespace),
    ("kernel", Keyword.Declaration),
    ("fn", Keyword.Declaration),
    ("var", Keyword.Declaration),
    ("for", Keyword),
    ("in", Keyword),
    ("grid", Keyword),
    ("if", Keyword),
    ("else", Keyword),
    ("return", Keyword),
    ("false", Keyword.Constant),
    ("None", Keyword.Constant),
    ("k", Name.Function),
    ("helper", Name.Function),
    ("int", Keyword.Type),
    ("bf16", Keyword.Type),
    ("f8e4m3", Keyword.Type),
    ("f32", Keyword.Type),
    ("u4", Keyword.Type),
    ("cdiv", Name.Builtin),
    ("zeros", Name.Builtin),
    ("range", Name.Builtin),
    ("load", Name.Builtin),
    ("store", Name.Builtin),
    ("cast", Name.Builtin),
    ("spatial", Name.Builtin.Pseudo),
    ("local", Name.Builtin.Pseudo),
    ("acc", Name),
    ("N", Name),
    ("0x10", Number.Hex),
    ("0", Number.Integer),
    ("1.5e-3", Number.Float),
    ("inf", Number.Float),
    ("# helpers", Comment.Single),
    ("// done", Comment.Single),
    ('"', String),
    ("lib.tile", String),
    ("@", Operator),
    ("+=", Operator),
    (">=", Operator),
    ("&&", Operator),
    ("<<", Operator),
    ("!", Operator),
    ("{", Punctuation),
    (":", Punctuation),
    (".", Punctuation),
])
def test_token_types(value, expected):
    assert kind_of(SAMPLE, value) == expected


def test_block_comment_and_round_trip():
    toks = list(TileLexer().get_tokens(SAMPLE))
    assert "".join(v for _, v in toks) == SAMPLE
    comment = "".join(v for k, v in toks if k in Comment.Multiline)
    assert comment == "/* a block\n       comment */"
    assert not [v for k, v in toks if k in Error]


def test_words_inside_names_are_names():
    assert tokens("let load_x = u4x + f32_ + inf2 + spatially") == [
        (Keyword.Declaration, "let"), (Name, "load_x"), (Operator, "="), (Name, "u4x"),
        (Operator, "+"), (Name, "f32_"), (Operator, "+"), (Name, "inf2"), (Operator, "+"),
        (Name, "spatially"),
    ]


def test_numbers():
    assert tokens("1_000 0b101 2. .5 1e3 nan") == [
        (Number.Integer, "1_000"), (Number.Bin, "0b101"), (Number.Float, "2."),
        (Number.Float, ".5"), (Number.Float, "1e3"), (Number.Float, "nan"),
    ]


def test_unknown_characters_are_errors():
    assert (Error, "$") in tokens("a $ b")


def test_registered_with_pygments_when_installed():
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name("tile")
    except ClassNotFound:
        pytest.fail("pyproject.toml's pygments.lexers entry point 'tile' is not installed")
    assert isinstance(lexer, TileLexer)
