"""The Python frontend: kernels and helpers written as Python functions, read into the shared AST.

Kernel bodies are never executed: the frontend reads their source, so the size names and
builtins they use (``N``, ``load``) need not exist in Python.
"""

# Kernel sources are read, never run: undefined size names and builtins, unused locals and
# quoted annotations are deliberate.
# ruff: noqa: F821, F841, B007, B008, UP037
from __future__ import annotations

import dataclasses
import inspect
import linecache
import math
import pathlib
import types

import pytest

import bittile
import bittile as bt
from bittile import f32, u4
from bittile import spatial as sp
from bittile.dsl import ast
from bittile.dsl.pyfront import function_to_ast, helper_to_ast
from bittile.errors import TileSyntaxError, TileTypeError, register_source

# Module constants that kernels may read. ``N`` is also a size name of the kernels below: names in
# tensor shapes are symbolic, so this global must not leak into them.
N = 1024
SCALE = 0.5
UNROLL = 4
DEBUG = False
ACC_T = bittile.f32
WARPS = bittile.spatial(4, 8).local(2, 1)
NOT_A_CONSTANT = [1, 2, 3]


def _identity(fn):
    """Stands in for @bittile.kernel: decorators are stripped from the source."""
    return fn


# ---- comparing ASTs ----------------------------------------------------------------------------
def strip(node):
    """A node as nested tuples without locations, for comparisons."""
    if isinstance(node, tuple):
        return tuple(strip(x) for x in node)
    if isinstance(node, ast.Node):
        fields = [f.name for f in dataclasses.fields(node) if f.name != "loc"]
        return (type(node).__name__, *(strip(getattr(node, f)) for f in fields))
    return node


def Nm(name):
    return ast.Name(None, name)


def I(value):  # noqa: E743
    return ast.IntLit(None, value)


def C(func, *args, **keywords):
    kws = tuple(ast.Keyword(None, k, v) for k, v in keywords.items())
    return ast.Call(None, Nm(func), tuple(args), kws)


def L(*items):
    return ast.ListExpr(None, tuple(items))


def B(op, lhs, rhs):
    return ast.BinOp(None, op, lhs, rhs)


def Var(name, value):
    return ast.Let(None, name, value, mutable=True)


def Tensor(name, dtype, *dims):
    return ast.Param(None, name, ast.TensorTypeExpr(None, Nm(dtype), tuple(dims)))


def Const(name, kind, default=None):
    return ast.ConstParam(None, name, kind, default)


SL, NONE = ast.Slice(None), ast.NoneLit(None)


def where(fn, needle, at=None):
    """(line, column) in this file of the first line of ``fn`` containing ``needle``; the column
    is that of ``at`` (default: ``needle``) in that line, 1-based, in characters."""
    lines, first = inspect.getsourcelines(fn)
    for i, line in enumerate(lines):
        if needle in line:
            return first + i, line.index(at or needle) + 1
    raise AssertionError(f"{needle!r} not in the source of {fn.__name__}")


# ---- the gemv kernel of docs/language.md -------------------------------------------------------
@_identity
def gemv_u4(w: u4["N", "K"], s: f32["N", "K / G"], x: f32["K"], y: f32["N"],
            BN: int = 16, BK: int = 64, G: int = 32):
    bittile.grid(bittile.cdiv("N", BN))
    n0 = bittile.block_id(0) * BN
    acc = bittile.zeros(f32, [BN])
    for k0 in range(0, "K", BK):
        wq = bittile.cast(bittile.load(w, [n0, k0], [BN, BK]), f32)
        sc = bittile.load(s, [n0, k0 / G], [BN, BK / G])
        sc_full = bittile.reshape(bittile.broadcast(sc[:, :, None], [BN, BK / G, G]), [BN, BK])
        xs = bittile.broadcast(bittile.load(x, [k0], [BK])[None, :], [BN, BK])
        acc = acc + sum(wq * sc_full * xs, 1)
    bittile.store(y, [n0], acc)


# The same with `from __future__ import annotations` style bare names and bare builtins.
def gemv_u4_bare(w: u4[N, K], s: f32[N, K / G], x: f32[K], y: f32[N],
                 BN: int = 16, BK: int = 64, G: int = 32):
    grid(cdiv(N, BN))
    n0 = block_id(0) * BN
    acc = zeros(f32, [BN])
    for k0 in range(0, K, BK):
        wq = cast(load(w, [n0, k0], [BN, BK]), f32)
        sc = bt.load(s, [n0, k0 / G], [BN, BK / G])
        sc_full = reshape(broadcast(sc[:, :, None], [BN, BK / G, G]), [BN, BK])
        xs = broadcast(load(x, [k0], [BK])[None, :], [BN, BK])
        acc = acc + sum(wq * sc_full * xs, 1)
    store(y, [n0], acc)


GEMV_EXPECTED = ast.KernelDef(
    None, "gemv_u4",
    (Const("BN", "int", I(16)), Const("BK", "int", I(64)), Const("G", "int", I(32))),
    (Tensor("w", "u4", Nm("N"), Nm("K")), Tensor("s", "f32", Nm("N"), B("/", Nm("K"), Nm("G"))),
     Tensor("x", "f32", Nm("K")), Tensor("y", "f32", Nm("N"))),
    (C("cdiv", Nm("N"), Nm("BN")),),
    (
        Var("n0", B("*", C("block_id", I(0)), Nm("BN"))),
        Var("acc", C("zeros", Nm("f32"), L(Nm("BN")))),
        ast.For(None, "k0", I(0), Nm("K"), Nm("BK"), (
            Var("wq", C("cast", C("load", Nm("w"), L(Nm("n0"), Nm("k0")), L(Nm("BN"), Nm("BK"))),
                        Nm("f32"))),
            Var("sc", C("load", Nm("s"), L(Nm("n0"), B("/", Nm("k0"), Nm("G"))),
                        L(Nm("BN"), B("/", Nm("BK"), Nm("G"))))),
            Var("sc_full", C("reshape",
                             C("broadcast", ast.Index(None, Nm("sc"), (SL, SL, NONE)),
                               L(Nm("BN"), B("/", Nm("BK"), Nm("G")), Nm("G"))),
                             L(Nm("BN"), Nm("BK")))),
            Var("xs", C("broadcast",
                        ast.Index(None, C("load", Nm("x"), L(Nm("k0")), L(Nm("BK"))), (NONE, SL)),
                        L(Nm("BN"), Nm("BK")))),
            ast.Assign(None, "acc", B("+", Nm("acc"), C("sum", B("*", B("*", Nm("wq"),
                                                                         Nm("sc_full")),
                                                                  Nm("xs")), I(1)))),
        )),
        ast.ExprStmt(None, C("store", Nm("y"), L(Nm("n0")), Nm("acc"))),
    ),
)


def test_gemv_with_string_sizes():
    assert strip(function_to_ast(gemv_u4)) == strip(GEMV_EXPECTED)


def test_gemv_with_bare_names_is_the_same_kernel():
    expected = dataclasses.replace(GEMV_EXPECTED, name="gemv_u4_bare")
    assert strip(function_to_ast(gemv_u4_bare)) == strip(expected)


def test_gemv_matches_the_tile_parser():
    """The .tile version of docs/language.md parses to the same AST, except that the Python
    frontend makes every first assignment a `var`."""
    parser = pytest.importorskip("bittile.dsl.parser")
    doc = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "language.md").read_text()
    source = doc.split("```tile\n", 1)[1].split("```", 1)[0]
    tile_kernel = parser.parse_module(source, "gemv.tile").items[0]

    def all_var(node):
        if isinstance(node, tuple):
            return tuple(all_var(x) for x in node)
        if not isinstance(node, ast.Node):
            return node
        fields = {f.name: all_var(getattr(node, f.name)) for f in dataclasses.fields(node)}
        if isinstance(node, ast.Let):
            fields["mutable"] = True
        return type(node)(**fields)

    assert strip(all_var(tile_kernel)) == strip(function_to_ast(gemv_u4))


def test_gemv_locations():
    k = function_to_ast(gemv_u4)
    here = inspect.getsourcefile(gemv_u4)
    line, col = where(gemv_u4, "def gemv_u4")
    assert (k.loc.file, k.loc.line, k.loc.col, k.loc.end_col) == (here, line, col, col + 11)
    # a tensor parameter and the size expression inside its string
    s = k.params[1]
    line, col = where(gemv_u4, "def gemv_u4", 's: f32["N", "K / G"]')
    assert (s.loc.line, s.loc.col, s.loc.end_col) == (line, col, col + len('s: f32["N", "K / G"]'))
    div = s.type.shape[1]
    assert (div.loc.line, div.loc.col, div.loc.end_col) == (line, col + 13, col + 18)
    assert (div.rhs.loc.col, div.rhs.loc.end_col) == (col + 17, col + 18)
    # the size name inside the string of the grid
    line, col = where(gemv_u4, "bittile.grid", '"N"')
    assert (k.grid[0].args[0].loc.line, k.grid[0].args[0].loc.col) == (line, col + 1)
    # statements and expressions inside the loop
    loop = k.body[2]
    line, col = where(gemv_u4, "for k0 in")
    assert (loop.loc.line, loop.loc.col, loop.loc.end_line) == (line, col, line + 5)
    update = loop.body[4]
    line, col = where(gemv_u4, "acc = acc + sum")
    assert (update.loc.line, update.loc.col) == (line, col)
    _, col_sum = where(gemv_u4, "acc = acc + sum", "sum(")
    assert (update.value.rhs.loc.col, update.value.rhs.func.loc.col) == (col_sum, col_sum)
    index = loop.body[2].value.args[0].args[0]
    line, col = where(gemv_u4, "sc_full = ", "sc[:, :, None]")
    assert (index.loc.line, index.loc.col, index.loc.end_col) == (line, col, col + 14)
    assert [i.loc.col for i in index.indices] == [col + 3, col + 6, col + 9]


# ---- parameters --------------------------------------------------------------------------------
def params_kernel(a: bittile.u4["M", "K // G"], b: "f32[M, cdiv(K, 2)]", c: f32, d: bittile.i32,
                  e: "u8", f: T["M"], g: T,
                  BM: int = 32, scale: float = 1.5, flag: bool = True, T: dtype = bittile.f16,
                  U: "dtype" = ACC_T, LY: bittile.layout = bittile.spatial(4, 8).local(2, 1),
                  *, G: "int" = UNROLL, BK: int):
    bittile.grid("M", 2)


def test_parameters_of_every_kind():
    k = function_to_ast(params_kernel)
    assert strip(k.params) == strip((
        Tensor("a", "u4", Nm("M"), B("//", Nm("K"), Nm("G"))),
        Tensor("b", "f32", Nm("M"), C("cdiv", Nm("K"), I(2))),
        ast.Param(None, "c", ast.ScalarTypeExpr(None, Nm("f32"))),
        ast.Param(None, "d", ast.ScalarTypeExpr(None, Nm("i32"))),
        ast.Param(None, "e", ast.ScalarTypeExpr(None, Nm("u8"))),
        Tensor("f", "T", Nm("M")),
        ast.Param(None, "g", ast.ScalarTypeExpr(None, Nm("T"))),
    ))
    layout = ast.MethodCall(None, C("spatial", I(4), I(8)), "local", (I(2), I(1)))
    assert strip(k.const_params) == strip((
        Const("BM", "int", I(32)), Const("scale", "float", ast.FloatLit(None, 1.5)),
        Const("flag", "bool", ast.BoolLit(None, True)), Const("T", "dtype", Nm("f16")),
        Const("U", "dtype", Nm("f32")), Const("LY", "layout", layout),
        Const("G", "int", I(4)), Const("BK", "int"),
    ))
    assert strip(k.grid) == strip((Nm("M"), I(2)))


def test_parameter_locations_inside_whole_string_annotations():
    k = function_to_ast(params_kernel)
    line, col = where(params_kernel, "def params_kernel", '"f32[M, cdiv(K, 2)]"')
    b = k.params[1].type
    assert (b.loc.line, b.loc.col, b.loc.end_col) == (line, col + 1, col + 19)
    assert (b.dtype.loc.col, b.dtype.loc.end_col) == (col + 1, col + 4)
    cdiv = b.shape[1]
    assert (cdiv.loc.col, cdiv.func.loc.col, cdiv.args[1].loc.col) == (col + 8, col + 8, col + 16)
    e_line, e_col = where(params_kernel, "e: ", '"u8"')
    assert (k.params[4].type.loc.line, k.params[4].type.loc.col) == (e_line, e_col + 1)


def runtime_annotations_kernel(w: u4["N", "K"], BN: int = 16):
    bittile.grid(BN)


def test_annotations_evaluated_at_definition_time():
    """Without ``from __future__ import annotations`` Python evaluates the annotations when the
    function is defined (``u4["N", "K"]`` must be harmless); the AST is the same."""
    src = (
        "import bittile\nfrom bittile import u4\n\n"
        "def runtime_annotations_kernel(w: u4['N', 'K'], BN: int = 16):\n"
        "    bittile.grid(BN)\n"
    )
    register_source("<pyfront-eager>", src)
    scope: dict = {}
    exec(compile(src, "<pyfront-eager>", "exec", dont_inherit=True), scope)
    fn = scope["runtime_annotations_kernel"]
    assert fn.__annotations__["w"] == ("tensor", bittile.u4, ("N", "K"))
    assert strip(function_to_ast(fn)) == strip(function_to_ast(runtime_annotations_kernel))
    assert function_to_ast(fn).params[0].loc.file == "<pyfront-eager>"


# ---- statements and expressions ----------------------------------------------------------------
def control_kernel(x: f32["N"], y: f32["N"], BN: int = 16):
    """A docstring is allowed before the grid."""
    bittile.grid(bittile.cdiv("N", BN))
    v = bittile.load(x, [0], [BN])
    total = v
    for i in range(4):
        total += v * i
        t = bittile.exp(-total)
        total = t
    for j in range(1, "N", 2):
        pass
    if BN > 8 and BN < 64 and not DEBUG or BN == 4:
        total = bittile.where(total >= 0.0, total, ~total)
    elif BN != 2:
        total -= SCALE * UNROLL
    else:
        ...
    m = bittile.max(total, 0, keepdims=True) @ bt.spatial(4).local(BN // 4)
    z = bittile.maximum(m, float("-inf")) + math.inf
    z = z.T
    bittile.store(y, [0], bittile.convert_layout(z, WARPS) << 1 >> 2 & 3 | 4 ^ 5 % 6)


def test_statements_and_expressions():
    k = function_to_ast(control_kernel)
    total, v = Nm("total"), Nm("v")
    inf = ast.FloatLit(None, math.inf)
    warps = ast.MethodCall(
        None, ast.MethodCall(None, C("spatial", I(4), I(1)), "local", (I(2), I(1))),
        "spatial", (I(1), I(8)),
    )
    cond = B("||", B("&&", B("&&", B(">", Nm("BN"), I(8)), B("<", Nm("BN"), I(64))),
                        ast.UnaryOp(None, "!", ast.BoolLit(None, False))),
             B("==", Nm("BN"), I(4)))
    shifted = B("|", B("&", B(">>", B("<<", C("convert_layout", Nm("z"), warps), I(1)), I(2)),
                       I(3)),
                B("^", I(4), B("%", I(5), I(6))))
    assert strip(k.body) == strip((
        Var("v", C("load", Nm("x"), L(I(0)), L(Nm("BN")))),
        Var("total", v),
        ast.For(None, "i", I(0), I(4), None, (
            ast.Assign(None, "total", B("*", v, Nm("i")), "+"),
            Var("t", C("exp", ast.UnaryOp(None, "-", total))),
            ast.Assign(None, "total", Nm("t")),
        )),
        ast.For(None, "j", I(1), Nm("N"), I(2), ()),
        ast.If(None, cond,
               (ast.Assign(None, "total", C("where", B(">=", total, ast.FloatLit(None, 0.0)),
                                            total, ast.UnaryOp(None, "~", total))),),
               (ast.If(None, B("!=", Nm("BN"), I(2)),
                       (ast.Assign(None, "total", B("*", ast.FloatLit(None, 0.5), I(4)), "-"),),
                       ()),)),
        Var("m", ast.Annotate(None, C("max", total, I(0), keepdims=ast.BoolLit(None, True)),
                              ast.MethodCall(None, C("spatial", I(4)), "local",
                                             (B("//", Nm("BN"), I(4)),)))),
        Var("z", B("+", C("maximum", Nm("m"), ast.UnaryOp(None, "-", inf)), inf)),
        ast.Assign(None, "z", C("transpose", Nm("z"))),
        ast.ExprStmt(None, C("store", Nm("y"), L(I(0)), shifted)),
    ))
    # elif is a nested If located at the `elif`
    line, col = where(control_kernel, "elif BN")
    nested = k.body[4].else_body[0]
    assert (nested.loc.line, nested.loc.col) == (line, col)
    kw = k.body[5].value.value.keywords[0]
    line, col = where(control_kernel, "keepdims=True")
    assert (kw.loc.line, kw.loc.col, kw.loc.end_col) == (line, col, col + len("keepdims=True"))


def test_non_ascii_columns():
    def kernel(x: f32["N"]):
        bittile.grid(1)
        café = x * 2; y2 = café + "N"  # noqa: E702  (é is two bytes in UTF-8)
        bittile.store(x, ["N"], "ñ" + y2)

    k = function_to_ast(kernel)
    line, col = where(kernel, "café = ", "y2 = ")
    assert (k.body[1].loc.line, k.body[1].loc.col) == (line, col)
    _, col_n = where(kernel, "café = ", '"N"')
    size = k.body[1].value.rhs
    assert strip(size) == strip(Nm("N"))
    assert (size.loc.col, size.loc.end_col) == (col_n + 1, col_n + 2)
    _, col_cafe = where(kernel, "café = ", "café +")
    assert (k.body[1].value.lhs.loc.col, k.body[1].value.lhs.loc.end_col) == (
        col_cafe, col_cafe + 4)
    line, col = where(kernel, '"ñ" + y2', "y2)")
    assert (k.body[2].expr.args[2].rhs.loc.line, k.body[2].expr.args[2].rhs.loc.col) == (line, col)
    # the kernel is defined inside a function: indented source keeps its columns
    assert k.loc.col == where(kernel, "def kernel")[1] == 5


def test_module_and_closure_constants_are_inlined_but_sizes_are_not():
    width = 8
    acc_type = bittile.f16

    def kernel(x: f32["N"], BN: int = 16):
        bittile.grid(bittile.cdiv(N, BN))
        a = bittile.zeros(acc_type, [width, UNROLL]) * SCALE
        b = bittile.convert_layout(a, WARPS) @ sp(2, 4)
        bittile.store(x, [N], bittile.cast(b, ACC_T) + DEBUG)

    k = function_to_ast(kernel)
    warps = ast.MethodCall(
        None, ast.MethodCall(None, C("spatial", I(4), I(1)), "local", (I(2), I(1))),
        "spatial", (I(1), I(8)),
    )
    assert strip(k.grid) == strip((C("cdiv", Nm("N"), Nm("BN")),))
    assert strip(k.body) == strip((
        Var("a", B("*", C("zeros", Nm("f16"), L(I(8), I(4))), ast.FloatLit(None, 0.5))),
        Var("b", ast.Annotate(None, C("convert_layout", Nm("a"), warps), C("spatial", I(2), I(4)))),
        ast.ExprStmt(None, C("store", Nm("x"), L(Nm("N")),
                             B("+", C("cast", Nm("b"), Nm("f32")), ast.BoolLit(None, False)))),
    ))
    # an inlined constant is located where it is used
    line, col = where(kernel, "bittile.zeros", "width")
    width_lit = k.body[0].value.lhs.args[1].items[0]
    assert (width_lit.loc.line, width_lit.loc.col, width_lit.loc.end_col) == (line, col, col + 5)


def test_strings_that_are_not_plain_keep_the_literal_location():
    def kernel(x: f32["N"]):
        bittile.grid(bittile.cdiv("N" " + 1", 2), bittile.cdiv("N\x20+ 2", 2))
        "a string statement is a comment"
        bittile.store(x, [0], bt.zeros(bt.u12, [4]))

    k = function_to_ast(kernel)
    assert strip(k.grid) == strip((C("cdiv", B("+", Nm("N"), I(1)), I(2)),
                                   C("cdiv", B("+", Nm("N"), I(2)), I(2))))
    line, col = where(kernel, "bittile.grid", '"N" " + 1"')
    concat = k.grid[0].args[0]
    assert (concat.loc.line, concat.loc.col, concat.loc.end_col) == (line, col, col + 10)
    assert concat.lhs.loc == concat.loc
    _, col = where(kernel, "bittile.grid", '"N\\x20+ 2"')
    assert k.grid[1].args[0].rhs.loc.col == col
    # `bt.u12` is a dtype spelling even though bittile has no such attribute
    assert len(k.body) == 1 and strip(k.body[0].expr.args[2].args[0]) == strip(Nm("u12"))


def test_lambda_is_not_a_kernel():
    with pytest.raises(TileSyntaxError, match="must be defined with `def`"):
        function_to_ast(lambda x: x)


def test_methods_and_decorators_with_arguments():
    class Holder:
        @staticmethod
        @pytest.mark.skip(
            reason="a decorator spanning lines",
        )
        def kernel(x: f32["N"], BN: int = 8):
            bittile.grid(BN)
            bittile.store(x, [0], bittile.zeros(f32, [BN]))

    k = function_to_ast(Holder.kernel)
    line, col = where(Holder.kernel, "def kernel")
    assert (k.loc.line, k.loc.col) == (line, col)
    assert strip(k.grid) == strip((Nm("BN"),))


# ---- helpers -----------------------------------------------------------------------------------
def dequant(w, s: "ignored"):
    """Helpers are inlined; annotations are ignored."""
    scaled = bittile.cast(w, f32) * s
    return scaled


def _fake_tile_function(fn):
    """Stands in for @bittile.func (a TileFunction holds the FnDef as .ast)."""
    fndef = helper_to_ast(fn)
    return types.SimpleNamespace(ast=fndef, name=fndef.name)


dq = _fake_tile_function(dequant)
helpers = types.SimpleNamespace(dequant=dq)


def test_helper_function():
    f = helper_to_ast(dequant)
    assert strip(f) == strip(ast.FnDef(None, "dequant", ("w", "s"), (
        Var("scaled", B("*", C("cast", Nm("w"), Nm("f32")), Nm("s"))),
        ast.Return(None, Nm("scaled")),
    )))
    line, col = where(dequant, "def dequant")
    assert (f.loc.line, f.loc.col) == (line, col)


def test_helpers_are_called_by_name():
    def kernel(w: u4["N"], s: f32["N"]):
        bittile.grid(1)
        a = dq(w, s)
        b = helpers.dequant(w, s)
        c = later_helper(a, b)
        bittile.store(w, [0], c)

    k = function_to_ast(kernel)
    assert strip(k.body[:3]) == strip((
        Var("a", C("dq", Nm("w"), Nm("s"))),
        Var("b", C("dequant", Nm("w"), Nm("s"))),
        Var("c", C("later_helper", Nm("a"), Nm("b"))),
    ))


# ---- sources that are not files ----------------------------------------------------------------
def test_function_from_registered_source_string():
    src = "import bittile\n\n\ndef k(x: 'f32[N]'):\n    bittile.grid(1)\n    return x\n"
    register_source("<pyfront-string>", src)
    scope: dict = {}
    exec(compile(src, "<pyfront-string>", "exec"), scope)
    with pytest.raises(TileSyntaxError) as info:
        function_to_ast(scope["k"])
    assert (info.value.loc.file, info.value.loc.line, info.value.loc.col) == (
        "<pyfront-string>", 6, 5)
    assert "        return x\n        ^^^^^^^^" in str(info.value)


def test_function_without_source():
    scope: dict = {}
    exec(compile("def k(x: 'f32[N]'):\n    pass\n", "<pyfront-nowhere>", "exec"), scope)
    linecache.cache.pop("<pyfront-nowhere>", None)
    with pytest.raises(TileSyntaxError, match="cannot read the source of kernel 'k'"):
        function_to_ast(scope["k"])


def test_not_a_function():
    with pytest.raises(TileTypeError, match="must be a Python function"):
        function_to_ast(len)


# ---- errors ------------------------------------------------------------------------------------
def e_no_grid(x: f32["N"]):
    bittile.store(x, [0], 1)


def e_unannotated(x: f32["N"], y):
    bittile.grid(1)


def e_chained(x: f32["N"]):
    bittile.grid(1)
    c = 0 < x < 1


def e_return(x: f32["N"]):
    bittile.grid(1)
    return x


def e_loop_else(x: f32["N"]):
    bittile.grid(1)
    for i in range(4):
        pass
    else:
        pass


def e_tuple(x: f32["N"]):
    bittile.grid(1)
    a, b = x, x


def e_subscript_assign(x: f32["N"]):
    bittile.grid(1)
    x[0] = 1


def e_slice(x: f32["N"]):
    bittile.grid(1)
    y = x[1:]


def e_module_attr(x: f32["N"]):
    bittile.grid(1)
    y = bittile.lod(x, [0], [4])


def e_while(x: f32["N"]):
    bittile.grid(1)
    while True:
        pass


def e_with(x: f32["N"]):
    bittile.grid(1)
    with open("f"):
        pass


def e_try(x: f32["N"]):
    bittile.grid(1)
    try:
        pass
    except Exception:
        pass


def e_lambda(x: f32["N"]):
    bittile.grid(1)
    f = lambda v: v  # noqa: E731


def e_listcomp(x: f32["N"]):
    bittile.grid(1)
    y = bittile.load(x, [0], [i for i in range(3)])


def e_fstring(x: f32["N"]):
    bittile.grid(1)
    y = f"{x}"


def e_global(x: f32["N"]):
    bittile.grid(1)
    global N


def e_grid_twice(x: f32["N"]):
    bittile.grid(1)
    y = 1
    bittile.grid(2)


def e_python_call(x: f32["N"]):
    bittile.grid(1)
    y = _identity(x)


def e_pow(x: f32["N"]):
    bittile.grid(1)
    y = x ** 2


def e_ifexp(x: f32["N"]):
    bittile.grid(1)
    y = x if True else x


def e_block_local(x: f32["N"]):
    bittile.grid(1)
    for i in range(2):
        t = x
    bittile.store(x, [0], t)


def e_use_before_assign(x: f32["N"]):
    bittile.grid(1)
    acc += x
    acc = x


def e_bad_size_string(x: f32["N"]):
    bittile.grid(bittile.cdiv("N +", 2))


def e_call_in_size_string(x: f32["N"]):
    bittile.grid(bittile.cdiv("load(N)", 2))


def e_runtime_default(x: f32["N"], s: f32 = 1.0):
    bittile.grid(1)


def e_unknown_dtype(x: f33["N"]):
    bittile.grid(1)


def e_list_global(x: f32["N"]):
    bittile.grid(1)
    y = x + NOT_A_CONSTANT


def e_not_range(x: f32["N"]):
    bittile.grid(1)
    for i in [1, 2]:
        pass


def e_is(x: f32["N"]):
    bittile.grid(1)
    y = x is None


def e_break(x: f32["N"]):
    bittile.grid(1)
    for i in range(2):
        break


def e_int_index(x: f32["N"]):
    bittile.grid(1)
    y = x[0]


def e_var_args(x: f32["N"], *rest):
    bittile.grid(1)


def e_annotated_assign(x: f32["N"]):
    bittile.grid(1)
    y: f32 = x


def e_local_call(x: f32["N"]):
    bittile.grid(1)
    y = x(1)


def e_misspelled_dtype_attr(x: f32["N"]):
    bittile.grid(1)
    y = bittile.zeros(bittile.f61, [4])


ERRORS = [
    # fn, error class, line needle, column needle, message fragment
    (e_no_grid, TileSyntaxError, "def e_no_grid", None, "must start with bittile.grid"),
    (e_unannotated, TileTypeError, "def e_unannotated", "y)", "'y' of kernel 'e_unannotated' "
     "has no annotation"),
    (e_chained, TileSyntaxError, "c = 0 < x < 1", "0 < x", "chained comparisons"),
    (e_return, TileSyntaxError, "return x", None, "kernel cannot return"),
    (e_loop_else, TileSyntaxError, "else:", None, "else clause on a for loop"),
    (e_tuple, TileSyntaxError, "a, b = x", None, "tuple unpacking"),
    (e_subscript_assign, TileSyntaxError, "x[0] = 1", "x[0]", "subscript assignment"),
    (e_slice, TileSyntaxError, "y = x[1:]", "1:", "only a whole-dimension slice"),
    (e_module_attr, TileSyntaxError, "bittile.lod", None, "bittile has no builtin 'lod'"),
    (e_while, TileSyntaxError, "while True", None, "a while loop is not supported"),
    (e_with, TileSyntaxError, "with open", None, "a with statement"),
    (e_try, TileSyntaxError, "try:", None, "a try statement"),
    (e_lambda, TileSyntaxError, "f = lambda", "lambda", "a lambda"),
    (e_listcomp, TileSyntaxError, "[i for i", None, "a list comprehension"),
    (e_fstring, TileSyntaxError, 'y = f"', 'f"', "an f-string"),
    (e_global, TileSyntaxError, "global N", None, "a global declaration"),
    (e_grid_twice, TileSyntaxError, "bittile.grid(2)", None, "must be the first statement"),
    (e_python_call, TileTypeError, "y = _identity", "_identity", "not a bittile builtin or helper"),
    (e_pow, TileSyntaxError, "y = x ** 2", "x ** 2", "the operator ** is not supported"),
    (e_ifexp, TileSyntaxError, "y = x if", "x if", "a conditional expression"),
    (e_block_local, TileSyntaxError, "bittile.store(x, [0], t)", "t)",
     "'t' is defined only inside the for loop"),
    (e_use_before_assign, TileSyntaxError, "acc += x", None, "'acc' is used before it is assigned"),
    (e_bad_size_string, TileSyntaxError, '"N +"', "+", "invalid expression in string 'N +'"),
    (e_call_in_size_string, TileSyntaxError, '"load(N)"', "load", "must hold a size expression"),
    (e_runtime_default, TileSyntaxError, "def e_runtime_default", "1.0",
     "runtime parameter 's' cannot have a default"),
    (e_unknown_dtype, TileTypeError, "def e_unknown_dtype", "f33", "unknown dtype 'f33'"),
    (e_list_global, TileTypeError, "y = x + NOT_A", "NOT_A", "'NOT_A_CONSTANT' is a Python list"),
    (e_not_range, TileSyntaxError, "for i in [1, 2]", "[1, 2]", "must iterate over range"),
    (e_is, TileSyntaxError, "y = x is None", "x is", "the comparison 'is' is not supported"),
    (e_break, TileSyntaxError, "        break", "break", "break is not supported"),
    (e_int_index, TileSyntaxError, "y = x[0]", "0]", "an index may only contain ':' and None"),
    (e_var_args, TileSyntaxError, "def e_var_args", "rest", "cannot take *args"),
    (e_annotated_assign, TileSyntaxError, "y: f32 = x", None, "annotated assignment"),
    (e_local_call, TileTypeError, "y = x(1)", "x(1)", "'x' is a value, not a function"),
    (e_misspelled_dtype_attr, TileSyntaxError, "bittile.f61", None,
     "bittile has no attribute 'f61'"),
]


@pytest.mark.parametrize("fn, cls, line_needle, col_needle, fragment", ERRORS,
                         ids=[e[0].__name__ for e in ERRORS])
def test_errors_are_located(fn, cls, line_needle, col_needle, fragment):
    with pytest.raises(cls) as info:
        function_to_ast(fn)
    err = info.value
    assert type(err) is cls
    assert fragment in err.message
    line, col = where(fn, line_needle, col_needle)
    assert (err.loc.file, err.loc.line, err.loc.col) == (inspect.getsourcefile(fn), line, col)
    assert err.loc.render()  # the caret can be drawn from the real file


def test_error_rendering_points_into_the_file():
    with pytest.raises(TileSyntaxError) as info:
        function_to_ast(e_while)
    text = str(info.value)
    line, _ = where(e_while, "while True")
    assert f"test_pyfront.py:{line}:5: syntax error: a while loop is not supported" in text
    assert "    while True:\n        ^^^^^\nhint: loops need a static trip count" in text


def h_no_return(a):
    b = a + 1


def h_grid(a):
    bittile.grid(1)
    return a


def h_default(a, b=2):
    return a


@pytest.mark.parametrize("fn, line_needle, col_needle, fragment", [
    (h_no_return, "b = a + 1", None, "must end with a return statement"),
    (h_grid, "bittile.grid(1)", None, "grid(...) can only be used in a kernel"),
    (h_default, "def h_default", "2)", "cannot have defaults"),
])
def test_helper_errors(fn, line_needle, col_needle, fragment):
    with pytest.raises(TileSyntaxError) as info:
        helper_to_ast(fn)
    assert fragment in info.value.message
    assert (info.value.loc.line, info.value.loc.col) == where(fn, line_needle, col_needle)
