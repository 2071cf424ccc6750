"""The .tile parser (dsl/tile.lark, dsl/parser.py): exact ASTs, locations, precedence,
located syntax errors, and fuzzing (only TileSyntaxError may ever come out)."""

import dataclasses
import linecache
import math
import pathlib
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bittile.dsl import ast
from bittile.dsl.parser import parse_expr, parse_module, parse_param_type
from bittile.errors import Loc, TileSyntaxError

ROOT = pathlib.Path(__file__).resolve().parents[2]


# ---- building expected ASTs without locations ----------------------------------------------------
def strip(value):
    """``value`` with every ``loc`` set to None, to compare structure only."""
    if isinstance(value, tuple):
        return tuple(strip(v) for v in value)
    if dataclasses.is_dataclass(value) and isinstance(value, ast.Node):
        fields = {f.name: strip(getattr(value, f.name)) for f in dataclasses.fields(value)}
        fields["loc"] = None
        return type(value)(**fields)
    return value


def N(name):
    return ast.Name(None, name)


def I(value):  # noqa: E743
    return ast.IntLit(None, value)


def F(value):
    return ast.FloatLit(None, value)


def Lst(*items):
    return ast.ListExpr(None, tuple(items))


def C(func, *args, **keywords):
    kws = tuple(ast.Keyword(None, k, v) for k, v in keywords.items())
    return ast.Call(None, N(func), tuple(args), kws)


def M(obj, method, *args, **keywords):
    kws = tuple(ast.Keyword(None, k, v) for k, v in keywords.items())
    return ast.MethodCall(None, obj, method, tuple(args), kws)


def Op(op, lhs, rhs):
    return ast.BinOp(None, op, lhs, rhs)


def Un(op, operand):
    return ast.UnaryOp(None, op, operand)


def Ix(value, *indices):
    return ast.Index(None, value, tuple(indices))


SL = ast.Slice(None)
NONE = ast.NoneLit(None)
TRUE = ast.BoolLit(None, True)
FALSE = ast.BoolLit(None, False)


def Let(name, value, mutable=False):
    return ast.Let(None, name, value, mutable)


def Var(name, value):
    return ast.Let(None, name, value, True)


def Set(name, value, op=None):
    return ast.Assign(None, name, value, op)


def Ex(expr):
    return ast.ExprStmt(None, expr)


def Tensor(dtype, *shape):
    return ast.TensorTypeExpr(None, N(dtype), tuple(shape))


def Scalar(dtype):
    return ast.ScalarTypeExpr(None, N(dtype))


def P(name, type_):
    return ast.Param(None, name, type_)


def CP(name, kind, default=None):
    return ast.ConstParam(None, name, kind, default)


def body_of(text):
    """The statements of a kernel whose body is ``text``."""
    module = parse_module("kernel k() grid(1) {\n" + text + "\n}", "body.tile")
    return strip(module.items[0].body)


def expr_of(text):
    """The expression ``text`` as the value of a let statement in a kernel."""
    (stmt,) = body_of(f"let v = {text}")
    return stmt.value


# ---- the documentation's example -----------------------------------------------------------------
GEMV = """\
// y[n] = sum_k w[n, k] * s[n, k / G] * x[k], u4 weights with per-group scales
kernel gemv_u4[BN: int = 16, BK: int = 64, G: int = 32](
    w: u4[N, K], s: f32[N, K / G], x: f32[K], y: f32[N],
) grid(cdiv(N, BN)) {
    let n0 = block_id(0) * BN
    var acc = zeros(f32, [BN])
    for k0 in range(0, K, BK) {
        let wq = cast(load(w, [n0, k0], [BN, BK]), f32)
        let sc = load(s, [n0, k0 / G], [BN, BK / G])
        let sc_full = reshape(broadcast(sc[:, :, None], [BN, BK / G, G]), [BN, BK])
        let xs = broadcast(load(x, [k0], [BK])[None, :], [BN, BK])
        acc = acc + sum(wq * sc_full * xs, 1)
    }
    store(y, [n0], acc)
}
"""

GEMV_AST = ast.Module(None, "gemv.tile", (
    ast.KernelDef(
        None, "gemv_u4",
        (CP("BN", "int", I(16)), CP("BK", "int", I(64)), CP("G", "int", I(32))),
        (
            P("w", Tensor("u4", N("N"), N("K"))),
            P("s", Tensor("f32", N("N"), Op("/", N("K"), N("G")))),
            P("x", Tensor("f32", N("K"))),
            P("y", Tensor("f32", N("N"))),
        ),
        (C("cdiv", N("N"), N("BN")),),
        (
            Let("n0", Op("*", C("block_id", I(0)), N("BN"))),
            Var("acc", C("zeros", N("f32"), Lst(N("BN")))),
            ast.For(None, "k0", I(0), N("K"), N("BK"), (
                Let("wq", C("cast", C("load", N("w"), Lst(N("n0"), N("k0")),
                                      Lst(N("BN"), N("BK"))), N("f32"))),
                Let("sc", C("load", N("s"), Lst(N("n0"), Op("/", N("k0"), N("G"))),
                            Lst(N("BN"), Op("/", N("BK"), N("G"))))),
                Let("sc_full", C(
                    "reshape",
                    C("broadcast", Ix(N("sc"), SL, SL, NONE),
                      Lst(N("BN"), Op("/", N("BK"), N("G")), N("G"))),
                    Lst(N("BN"), N("BK")),
                )),
                Let("xs", C("broadcast",
                            Ix(C("load", N("x"), Lst(N("k0")), Lst(N("BK"))), NONE, SL),
                            Lst(N("BN"), N("BK")))),
                Set("acc", Op("+", N("acc"), C("sum", Op("*", Op("*", N("wq"), N("sc_full")),
                                                        N("xs")), I(1)))),
            )),
            Ex(C("store", N("y"), Lst(N("n0")), N("acc"))),
        ),
    ),
))


def test_gemv_example_exact_ast():
    assert strip(parse_module(GEMV, "gemv.tile")) == GEMV_AST


def test_gemv_example_is_the_documented_one():
    doc = (ROOT / "docs" / "language.md").read_text()
    first = re.search(r"^```tile\n(.*?)^```", doc, re.S | re.M)
    assert first is not None
    assert strip(parse_module(first.group(1), "gemv.tile")) == GEMV_AST


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_every_tile_block_of_the_docs_parses(page):
    for block in re.findall(r"^```tile\n(.*?)^```", page.read_text(), re.S | re.M):
        parse_module(block, page.name)


@pytest.mark.parametrize(
    "path", sorted(ROOT.glob("examples/*.tile")) + sorted(ROOT.glob("stdlib/*.tile")),
    ids=lambda p: p.name,
)
def test_every_shipped_tile_file_parses(path):
    module = parse_module(path.read_text(), str(path))
    assert module.items and module.file == str(path)


# ---- every construct -----------------------------------------------------------------------------
EVERYTHING = """\
import "lib/quant.tile"; import "other \\"q\\".tile"

/* helpers,
   then the kernel */
fn dequant(w, s,) {
    return cast(w, f32) * s
}

fn nothing() { return }

# every kind of compile-time parameter
kernel every[
    N0: int = 0x1_F, M: int = 0b1010, F: float = 2., H: float = .5, E: float = 1e-3,
    B: bool = true, C: bool = false, D: dtype = f16, L: layout, Z: int = 1_000,
](t: D[M, K % 4], alpha: f32,) grid(cdiv(M, 4), 2, 1,) {
    let lay = spatial(4, 8)
        .local(2, 1)
    var acc = zeros(f32, [4, 8]) @ lay; var i = arange(8, i32)
    acc += 1; acc -= 1; acc *= 2; acc /= 2; acc %= 3
    i &= 1; i |= 2; i ^= 3; i <<= 1; i >>= 1
    for j in range(4) { acc = acc + load(t, [j, 0], [4, 8], layout=lay,) }
    for j in range(1, N0) {}
    if alpha > -inf || alpha != 1.5 {
        acc = -acc
    }
    else if !(alpha <= 0.0) && ~i == 1 {
        acc = dequant(acc, alpha)
    } else {
        acc = sum(acc, 1, keepdims=true)[:, None,]
    }
    store(t, [], view(acc, u8, [4, 32], layout=replicated(2)))
}
"""

EVERYTHING_AST = ast.Module(None, "every.tile", (
    ast.Import(None, "lib/quant.tile"),
    ast.Import(None, 'other "q".tile'),
    ast.FnDef(None, "dequant", ("w", "s"), (
        ast.Return(None, Op("*", C("cast", N("w"), N("f32")), N("s"))),
    )),
    ast.FnDef(None, "nothing", (), (ast.Return(None, None),)),
    ast.KernelDef(
        None, "every",
        (
            CP("N0", "int", I(31)), CP("M", "int", I(10)), CP("F", "float", F(2.0)),
            CP("H", "float", F(0.5)), CP("E", "float", F(1e-3)), CP("B", "bool", TRUE),
            CP("C", "bool", FALSE), CP("D", "dtype", N("f16")), CP("L", "layout"),
            CP("Z", "int", I(1000)),
        ),
        (P("t", Tensor("D", N("M"), Op("%", N("K"), I(4)))), P("alpha", Scalar("f32"))),
        (C("cdiv", N("M"), I(4)), I(2), I(1)),
        (
            Let("lay", M(C("spatial", I(4), I(8)), "local", I(2), I(1))),
            Var("acc", ast.Annotate(None, C("zeros", N("f32"), Lst(I(4), I(8))), N("lay"))),
            Var("i", C("arange", I(8), N("i32"))),
            Set("acc", I(1), "+"), Set("acc", I(1), "-"), Set("acc", I(2), "*"),
            Set("acc", I(2), "/"), Set("acc", I(3), "%"),
            Set("i", I(1), "&"), Set("i", I(2), "|"), Set("i", I(3), "^"),
            Set("i", I(1), "<<"), Set("i", I(1), ">>"),
            ast.For(None, "j", I(0), I(4), None, (
                Set("acc", Op("+", N("acc"), C("load", N("t"), Lst(N("j"), I(0)), Lst(I(4), I(8)),
                                               layout=N("lay")))),
            )),
            ast.For(None, "j", I(1), N("N0"), None, ()),
            ast.If(
                None,
                Op("||", Op(">", N("alpha"), Un("-", F(math.inf))), Op("!=", N("alpha"), F(1.5))),
                (Set("acc", Un("-", N("acc"))),),
                (ast.If(
                    None,
                    Op("&&", Un("!", Op("<=", N("alpha"), F(0.0))),
                       Op("==", Un("~", N("i")), I(1))),
                    (Set("acc", C("dequant", N("acc"), N("alpha"))),),
                    (Set("acc", Ix(C("sum", N("acc"), I(1), keepdims=TRUE), SL, NONE)),),
                ),),
            ),
            Ex(C("store", N("t"), Lst(),
                 C("view", N("acc"), N("u8"), Lst(I(4), I(32)),
                   layout=C("replicated", I(2))))),
        ),
    ),
))


def test_every_construct_exact_ast():
    assert strip(parse_module(EVERYTHING, "every.tile")) == EVERYTHING_AST


def test_empty_inputs():
    assert parse_module("", "e.tile") == ast.Module(Loc("e.tile", 1, 1, 1, 1), "e.tile", ())
    assert strip(parse_module("// only a comment\n;\n/* and */", "e.tile")).items == ()
    assert body_of("") == ()
    assert body_of(";;\n\n;") == ()


def test_float_literals():
    assert expr_of("inf") == F(math.inf)
    assert math.isnan(expr_of("nan").value)
    assert expr_of("1_000.5e1_0") == F(1000.5e10)
    assert expr_of("2.") == F(2.0) and expr_of(".25") == F(0.25) and expr_of("3e2") == F(300.0)
    assert expr_of("0XfF") == I(255) and expr_of("0B11") == I(3) and expr_of("007") == I(7)


def test_statement_separators_and_continuations():
    # a newline inside ( ) and [ ] does not end a statement
    assert body_of("let a = f(1,\n 2)\nlet b = [1,\n 2]") == (
        Let("a", C("f", I(1), I(2))), Let("b", Lst(I(1), I(2))),
    )
    # a /* */ comment across lines ends the statement, one on a line does not
    assert body_of("let a = 1 /* x\n y */ let b = 2") == (Let("a", I(1)), Let("b", I(2)))
    assert body_of("let a = /* x */ 1") == (Let("a", I(1)),)
    # `else` and `{` may start a line, and so may a `.method(...)` continuing a chain
    assert body_of("if c\n{\n}\nelse\n{\n}") == (ast.If(None, N("c"), (), ()),)
    assert body_of("let l = spatial(2)\n\n  .local(4)") == (
        Let("l", M(C("spatial", I(2)), "local", I(4))),
    )
    # a `-` starting a line starts a new statement
    assert body_of("x = a\n-b") == (Set("x", N("a")), Ex(Un("-", N("b"))))


def test_range_forms():
    (loop,) = body_of("for i in range(n) {}")
    assert (loop.start, loop.stop, loop.step) == (I(0), N("n"), None)
    (loop,) = body_of("for i in range(a, b, -2) {}")
    assert (loop.start, loop.stop, loop.step) == (N("a"), N("b"), Un("-", I(2)))


def test_else_if_chain_nests():
    (stmt,) = body_of("if a { x = 1 } else if b { x = 2 } else if c { x = 3 }")
    assert stmt.cond == N("a")
    (inner,) = stmt.else_body
    assert inner.cond == N("b")
    (innermost,) = inner.else_body
    assert innermost == ast.If(None, N("c"), (Set("x", I(3)),), ())


def test_double_slash_is_a_comment_in_tile_files_but_floor_division_in_expressions():
    assert expr_of("K // G") == N("K")
    assert strip(parse_expr("K // G")) == Op("//", N("K"), N("G"))
    assert strip(parse_expr("(K + 1) // 2 * G")) == Op("*", Op("//", Op("+", N("K"), I(1)), I(2)),
                                                       N("G"))


def test_parse_param_type():
    assert strip(parse_param_type("u4[N, K // G]")) == Tensor("u4", N("N"), Op("//", N("K"),
                                                                                N("G")))
    assert strip(parse_param_type("f32")) == Scalar("f32")
    assert strip(parse_param_type(" f16 [ M ,\n K ] ")) == Tensor("f16", N("M"), N("K"))


# ---- locations -----------------------------------------------------------------------------------
LOCS = """\
kernel k(x: f32[N]) grid(1) {
    let y = (a + b) * c
    store(x,
          [0],
          y)
    if y > 0 { return } else { y = -y }
}
"""


@pytest.fixture(scope="module")
def locs_module():
    return parse_module(LOCS, "locs.tile")


def test_locations_of_names_and_binary_operators(locs_module):
    let = locs_module.items[0].body[0]
    assert let.loc == Loc("locs.tile", 2, 5, 2, 24)
    product = let.value
    assert product.loc == Loc("locs.tile", 2, 13, 2, 24)  # from the '(' to the 'c'
    assert product.lhs.loc == Loc("locs.tile", 2, 14, 2, 19)  # a + b, without its parentheses
    assert product.lhs.lhs == ast.Name(Loc("locs.tile", 2, 14, 2, 15), "a")
    assert product.rhs == ast.Name(Loc("locs.tile", 2, 23, 2, 24), "c")


def test_locations_of_a_call_over_several_lines(locs_module):
    stmt = locs_module.items[0].body[1]
    call = stmt.expr
    assert stmt.loc == call.loc == Loc("locs.tile", 3, 5, 5, 13)
    assert call.func.loc == Loc("locs.tile", 3, 5, 3, 10)
    assert call.args[1] == ast.ListExpr(Loc("locs.tile", 4, 11, 4, 14),
                                        (ast.IntLit(Loc("locs.tile", 4, 12, 4, 13), 0),))
    assert call.args[2].loc == Loc("locs.tile", 5, 11, 5, 12)


def test_locations_of_declarations_and_blocks(locs_module):
    kernel = locs_module.items[0]
    assert kernel.loc == Loc("locs.tile", 1, 1, 7, 2)
    (param,) = kernel.params
    assert param.loc == Loc("locs.tile", 1, 10, 1, 19)
    assert param.type.loc == Loc("locs.tile", 1, 13, 1, 19)
    assert kernel.grid[0].loc == Loc("locs.tile", 1, 26, 1, 27)
    stmt = kernel.body[2]
    assert stmt.loc == Loc("locs.tile", 6, 5, 6, 40)
    assert stmt.then_body[0].loc == Loc("locs.tile", 6, 16, 6, 22)
    assert stmt.else_body[0].value == ast.UnaryOp(
        Loc("locs.tile", 6, 36, 6, 38), "-", ast.Name(Loc("locs.tile", 6, 37, 6, 38), "y"))
    assert locs_module.loc == Loc("locs.tile", 1, 1, 8, 1)


def test_locations_of_postfix_expressions():
    (stmt,) = parse_module("fn f() { a.b(1, k=2)[None, :] }", "p.tile").items[0].body
    index = stmt.expr
    assert index.loc == Loc("p.tile", 1, 10, 1, 30)
    assert index.indices == (ast.NoneLit(Loc("p.tile", 1, 22, 1, 26)),
                             ast.Slice(Loc("p.tile", 1, 28, 1, 29)))
    method = index.value
    assert method.loc == Loc("p.tile", 1, 10, 1, 21)
    assert method.keywords == (ast.Keyword(Loc("p.tile", 1, 17, 1, 20), "k",
                                           ast.IntLit(Loc("p.tile", 1, 19, 1, 20), 2)),)


def test_offsets_shift_locations_into_the_enclosing_file():
    linecache.cache.pop("host.py", None)
    # a string found at line 10, column 21 of host.py
    typ = parse_param_type("u4[N,\n  K]", "host.py", line_offset=9, col_offset=20)
    assert typ.loc == Loc("host.py", 10, 21, 11, 5)
    assert typ.dtype.loc == Loc("host.py", 10, 21, 10, 23)
    assert typ.shape[0].loc == Loc("host.py", 10, 24, 10, 25)
    assert typ.shape[1].loc == Loc("host.py", 11, 3, 11, 4)  # later lines are not shifted
    assert "host.py" not in linecache.cache  # the fragment is not registered as the file
    with pytest.raises(TileSyntaxError) as info:
        parse_expr("K +", "host.py", line_offset=4, col_offset=8)
    assert (info.value.loc.line, info.value.loc.col) == (5, 12)


def test_module_text_is_registered_for_diagnostics():
    with pytest.raises(TileSyntaxError) as info:
        parse_module("kernel k() grid(1) {\n    let x = )\n}", "registered.tile")
    assert "    let x = )\n" in str(info.value) and "^" in str(info.value)


# ---- precedence and associativity ----------------------------------------------------------------
def sexpr(node) -> str:
    if isinstance(node, ast.BinOp):
        return f"({node.op} {sexpr(node.lhs)} {sexpr(node.rhs)})"
    if isinstance(node, ast.UnaryOp):
        return f"({node.op} {sexpr(node.operand)})"
    if isinstance(node, ast.Annotate):
        return f"(@ {sexpr(node.value)} {sexpr(node.layout)})"
    if isinstance(node, ast.Index):
        return f"{sexpr(node.value)}[{' '.join(sexpr(i) for i in node.indices)}]"
    if isinstance(node, ast.Call):
        return f"{node.func.id}({' '.join(sexpr(a) for a in node.args)})"
    if isinstance(node, ast.MethodCall):
        return f"{sexpr(node.obj)}.{node.method}({' '.join(sexpr(a) for a in node.args)})"
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.NoneLit):
        return "None"
    if isinstance(node, ast.Slice):
        return ":"
    if isinstance(node, (ast.IntLit, ast.FloatLit, ast.BoolLit)):
        return str(node.value)
    raise AssertionError(node)


@pytest.mark.parametrize("text, expected", [
    ("a + b * c", "(+ a (* b c))"),
    ("a * b + c", "(+ (* a b) c)"),
    ("a - b - c", "(- (- a b) c)"),
    ("a / b / c", "(/ (/ a b) c)"),
    ("a % b * c", "(* (% a b) c)"),
    ("a << 1 + 2", "(<< a (+ 1 2))"),
    ("a << b >> c", "(>> (<< a b) c)"),
    ("-a * b", "(* (- a) b)"),
    ("- -a", "(- (- a))"),
    ("!a && b || c", "(|| (&& (! a) b) c)"),
    ("a || b && c", "(|| a (&& b c))"),
    ("a && b || c && d", "(|| (&& a b) (&& c d))"),
    ("a | b ^ c & d", "(| a (^ b (& c d)))"),
    ("a & b == c", "(== (& a b) c)"),
    ("a == b << c", "(== a (<< b c))"),
    ("a < b + c", "(< a (+ b c))"),
    ("a != b | c", "(!= a (| b c))"),
    ("(a < b) < c", "(< (< a b) c)"),
    ("(a + b) * c", "(* (+ a b) c)"),
    ("a @ L", "(@ a L)"),
    ("a + b @ L", "(@ (+ a b) L)"),
    ("a || b @ spatial(2)", "(@ (|| a b) spatial(2))"),
    ("x @ L1 @ L2", "(@ (@ x L1) L2)"),
    ("x @ (L1 @ L2)", "(@ x (@ L1 L2))"),
    ("x[None, :] * 2", "(* x[None :] 2)"),
    ("-x[None]", "(- x[None])"),
    ("~f(a)[:].g(b)", "(~ f(a)[:].g(b))"),
    ("spatial(4, 8).local(2, 1).spatial(1)", "spatial(4 8).local(2 1).spatial(1)"),
    ("a * -b", "(* a (- b))"),
    ("!a == b", "(== (! a) b)"),
])
def test_precedence_and_associativity(text, expected):
    assert sexpr(expr_of(text)) == expected
    assert sexpr(strip(parse_expr(text))) == expected


# ---- syntax errors -------------------------------------------------------------------------------
K = "kernel k() grid(1) {"
ERRORS = [
    # (source, line, column, message fragment, hint fragment or None)
    (K + "\n    let x = }\n}", 2, 13, "unexpected '}'; expected an expression", None),
    (K + "\n    let x = 1 +\n}", 2, 16, "unexpected end of line; expected an expression",
     "inside ( ) or [ ]"),
    (K + "\n    let x = 1\n", 1, 20, "'{' is never closed (the body of kernel 'k')", "'}'"),
    (K + "\n    if c {\n        let x = 1\n}", 1, 20, "'{' is never closed", None),
    (K + "\n    let x = f(a,\n", 2, 14, "'(' is never closed", "')'"),
    (K + "}\n/* never\n closed", 2, 1, "unterminated comment", "*/"),
    ('import "a.tile\nkernel', 1, 8, "unterminated string", None),
    (K + " let x = 12abc }", 1, 30, "invalid number literal '12abc'", None),
    (K + " let x = 0b102 }", 1, 30, "invalid number literal '0b102'", None),
    (K + " let x = 1__000 }", 1, 30, "invalid number literal '1__000'", None),
    (K + " let x = 0X_1 }", 1, 30, "invalid number literal '0X_1'", None),
    (K + " let x = 1.5e+ }", 1, 30, "invalid number literal '1.5e'", None),
    (K + " let x = 1e999 }", 1, 30, "too large", "inf"),
    (K + "\n    let a = 1\n    else { }\n}", 3, 5, "'else' without 'if'", None),
    (K + " let c = a < b < d }", 1, 36, "comparisons cannot be chained", "&&"),
    (K + " let c = a == b != d }", 1, 37, "comparisons cannot be chained", None),
    ("kernel k[N: integer](x: f32) grid(1) {}", 1, 13, "unknown kind of compile-time parameter",
     "int, float, bool, dtype or layout"),
    (K + "\n    a[0] = 1\n}", 2, 5, "cannot assign to this expression", "only a variable"),
    (K + "\n    f(x) -= 1\n}", 2, 5, "cannot assign to this expression", None),
    ("kernel k(x: f32[N]) {\n}", 1, 21, "missing grid(...)", "grid(cdiv(N, 64))"),
    (K + "}\n}", 2, 1, "unexpected '}'", "no open '{'"),
    (K + " f(a, b] }", 1, 28, "unexpected ']'", "'(' at line 1, column 23 is still open"),
    (K + " let x = None }", 1, 30, "'None' is only allowed in an index", "x[None, :]"),
    (K + " let x = a $ b }", 1, 32, "unexpected character '$'", None),
    (K + " let x = 'a' }", 1, 30, "unexpected character \"'\"", "double quotes"),
    (K + " for i in rng(3) {} }", 1, 31, "iterates over range(...)", None),
    (K + " for i in range(1, 2, 3, 4) {} }", 1, 46, "range takes one to three", None),
    (K + " f(a=1, 2) }", 1, 29, "positional argument after a keyword argument", None),
    ("let x = 1", 1, 1, "unexpected 'let'", "body of a kernel or fn"),
    (K + " let a = 1 let b = 2 }", 1, 32, "unexpected 'let'; expected an operator", "new line"),
    ("kernel k() grid() {}", 1, 17, "unexpected ')'; expected an expression", None),
    ("kernel k() grid(1, 2, 3, 4) {}", 1, 12, "one to three dimensions", None),
    ("fn f(a b) {}", 1, 8, "unexpected name 'b'", None),
    (K + " x.y = 1 }", 1, 26, "unexpected '='", None),
    (K + " if a = b {} }", 1, 27, "unexpected '='", "'=='"),
    (K + " x = a and b }", 1, 28, "unexpected name 'and'", "'&&'"),
    (K + " x = a ** 2 }", 1, 29, "unexpected '*'; expected an expression", "pow(a, b)"),
    (K + " x = * 2 }", 1, 26, "unexpected '*'; expected an expression", None),
    (K + " if a: { } }", 1, 26, "unexpected ':'", "braces"),
    (K + " let x = y[0](1) }", 1, 34, "unexpected '('", "only names are called"),
    (K + "\nkernel j() grid(1) {}", 2, 1, "unexpected 'kernel'", "'{' at line 1, column 20"),
    ('import "a\\q.tile"', 1, 10, "invalid escape sequence", None),
    ("kernel k() grid(1)", 1, 19, "unexpected end of input; expected '{'", None),
]


@pytest.mark.parametrize("source, line, col, message, hint", ERRORS,
                         ids=[f"{i}:{e[3][:30]}" for i, e in enumerate(ERRORS)])
def test_syntax_errors(source, line, col, message, hint):
    with pytest.raises(TileSyntaxError) as info:
        parse_module(source, "bad.tile")
    error = info.value
    assert error.loc.file == "bad.tile"
    assert (error.loc.line, error.loc.col) == (line, col), error.render()
    assert message in error.message, error.render()
    if hint is not None:
        assert error.hint is not None and hint in error.hint, error.render()


def test_error_spans():
    with pytest.raises(TileSyntaxError) as info:
        parse_module(K + "\n    a[0] = 1\n}", "bad.tile")
    assert info.value.loc == Loc("bad.tile", 2, 5, 2, 9)  # the whole target `a[0]`
    with pytest.raises(TileSyntaxError) as info:
        parse_module(K + " let x = 12abc }", "bad.tile")
    assert info.value.loc == Loc("bad.tile", 1, 30, 1, 35)
    with pytest.raises(TileSyntaxError) as info:
        parse_module(K + "}\n/* never", "bad.tile")
    assert info.value.loc == Loc("bad.tile", 2, 1, 2, 3)


@pytest.mark.parametrize("text, col, message", [
    ("", 1, "unexpected end of input; expected an expression"),
    ("a b", 3, "unexpected name 'b'; expected an operator or the end of the input"),
    ("f(", 2, "'(' is never closed"),
    ("a +", 4, "unexpected end of input"),
    ("a; b", 2, "unexpected ';'"),
    ("None", 1, "'None' is only allowed in an index"),
])
def test_expression_parser_errors(text, col, message):
    with pytest.raises(TileSyntaxError) as info:
        parse_expr(text, "e.py")
    assert info.value.loc.col == col and message in info.value.message, info.value.render()


def test_param_type_errors():
    with pytest.raises(TileSyntaxError, match="unexpected name 'x'"):
        parse_param_type("u4[N] x")
    with pytest.raises(TileSyntaxError, match="unexpected '\\]'; expected an expression"):
        parse_param_type("u4[]")
    with pytest.raises(TileSyntaxError, match="unexpected '\\('"):
        parse_param_type("f(x)")
    with pytest.raises(TileSyntaxError, match="reads a str"):
        parse_module(b"kernel")  # type: ignore[arg-type]


def test_deep_nesting_and_long_chains_do_not_overflow():
    parse_module("kernel k() grid(1) { let x = " + "(" * 3000 + "1" + ")" * 3000 + " }")
    chain = parse_expr(" + ".join(["a"] * 3000))
    assert chain.op == "+" and chain.rhs.id == "a"
    parse_expr("-" * 3000 + "a")


# ---- fuzzing -------------------------------------------------------------------------------------
FUZZ_TOKENS = [
    "kernel", "fn", "import", "let", "var", "for", "in", "if", "else", "return", "grid", "true",
    "false", "None", "inf", "nan", "x", "range", "f32", "k", "(", ")", "[", "]", "{", "}", ",",
    ";", "\n", ":", "=", "+=", "<<=", "+", "-", "*", "/", "//", "%", "<", "<=", "==", "&&", "||",
    "!", "~", "@", ".", "0", "0x1f", "1.5", "1e3", '"a.tile"', '"', "/*", "*/", "# c\n", "0b",
    "1_", "'", "$", "\\", "<<", ">>", "&", "|", "^", "é",
]
SMALL = """\
import "q.tile"
fn f(a) { return a * 2 }
kernel k[B: int = 4](x: f32[N], s: f32) grid(cdiv(N, B)) {
    var acc = zeros(f32, [B]) @ spatial(4).local(1)
    for i in range(0, N, B) { acc += load(x, [i], [B])[None, :] }
    if s > 0 && !false { acc = -acc } else { acc = f(acc) }
    store(x, [0], acc)  // done
}
"""


def _check_outcome(text):
    try:
        parse_module(text, "fuzz.tile")
    except TileSyntaxError as error:
        loc = error.loc
        assert loc is not None and loc.file == "fuzz.tile"
        assert 1 <= loc.line <= text.count("\n") + 1 and loc.col >= 1
        assert error.render()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(FUZZ_TOKENS), max_size=40), st.sampled_from([" ", ""]))
def test_fuzz_token_soup(tokens, separator):
    _check_outcome(separator.join(tokens))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SMALL)), st.integers(0, 2),
                          st.sampled_from(FUZZ_TOKENS)), min_size=1, max_size=4))
def test_fuzz_mutations_of_a_valid_file(edits):
    text = SMALL
    for position, kind, token in edits:
        position = min(position, len(text))
        if kind == 0:
            text = text[:position] + text[position + 1:]
        elif kind == 1:
            text = text[:position] + token + text[position:]
        else:
            text = text[:position] + token + text[position + len(token):]
    _check_outcome(text)


def test_small_sample_parses():
    module = parse_module(SMALL, "small.tile")
    assert [type(i).__name__ for i in module.items] == ["Import", "FnDef", "KernelDef"]


def test_importing_bittile_does_not_import_lark_or_pygments():
    code = "import sys, bittile; print('lark' in sys.modules, 'pygments' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_an_empty_line_comment_is_a_comment():
    # `//` alone matched the floor-division token as well (same length) and was a syntax error
    module = parse_module("//\n// text\n//\nkernel k() grid(1) {\n    //\n}\n", "empty.tile")
    assert [item.name for item in module.items] == ["k"]
