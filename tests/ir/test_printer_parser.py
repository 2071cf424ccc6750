"""Tests of the textual IR: the printer's exact output, parse(print(k)) round trips over random
kernels, symbolic expressions, and the parser's error messages and locations."""

# The expected IR texts below are exact printer output, whose lines can be long.
# ruff: noqa: E501

from __future__ import annotations

import math
import pathlib
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bittile.errors import IRError, Loc
from bittile.ir import printer as printer_module
from bittile.ir.builder import KernelBuilder
from bittile.ir.core import OP_REGISTRY, Kernel
from bittile.ir.dtypes import bf16, f4e2m1, f6e3m2, f16, f32, i8, i32, u1, u4, u8, u32
from bittile.ir.layout import RegisterLayout, local, replicated, spatial
from bittile.ir.ops import BINARY_OPS, COMPARE_OPS, UNARY_OPS
from bittile.ir.parser import parse_kernel, parse_module
from bittile.ir.printer import format_attribute, print_kernel, print_module, print_op
from bittile.ir.symbolic import BinExpr, Const, Sym, SymExpr, cdiv, make_binary, sym
from bittile.testing.ir_strategies import kernels, kernels_with_sizes

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def roundtrip(kernel: Kernel, locs: bool = False) -> str:
    text = print_kernel(kernel, locs=locs)
    again = print_kernel(parse_kernel(text), locs=locs)
    assert again == text
    return text


# ---- hand-written kernels ----------------------------------------------------------------------
def dequant_kernel() -> Kernel:
    """The example of the printer's docstring."""
    kb = KernelBuilder("dequant")
    w = kb.tensor("w", u4, ["N", 8])
    y = kb.tensor("y", f32, ["N"])
    alpha = kb.scalar("alpha", f32)
    kb.grid(cdiv("N", 16))
    b = kb.builder
    row = b.mul(b.block_id(0), 16)
    zero = b.constant(0, i32)
    t = b.load(w, [row, zero], [16, 8])
    b.view(t, u32)
    x = b.cast(t, f32)
    one = b.constant(1, i32)
    with b.for_range(zero, one, one, [x]) as loop:
        loop.yield_(b.mul(loop.carried[0], alpha))
    s = b.convert_layout(b.sum(loop.results[0], 1), spatial(16))
    with b.if_(b.compare("lt", row, 64)) as br:
        with br.then_():
            br.yield_(s)
        with br.else_():
            br.yield_(b.unary("neg", s))
    b.store(y, [row], br.results[0])
    return kb.finish()


def test_docstring_example_is_the_printed_form():
    doc = printer_module.__doc__
    block = doc[doc.index("    kernel @dequant"):doc.index("\n\nGrammar")]
    expected = "\n".join(line[4:] for line in block.split("\n")) + "\n"
    assert print_kernel(dequant_kernel()) == expected
    assert print_kernel(parse_kernel(expected)) == expected


SHAPES_TEXT = """\
kernel @shapes(%w: tensor<u4[M, K]>, %a: tensor<f16[M, K]>, %out: tensor<f32[M, max(K, 8) // 2]>) grid(cdiv(M, 8), 2) {
  %0 = tile.block_id() {axis = 0} : i32
  %1 = arith.constant() {dtype = i32, value = 8} : i32
  %2 = arith.mul(%0, %1) : i32
  %3 = tile.block_id() {axis = 1} : i32
  %4 = tile.size() {symbol = "K"} : i32
  %5 = tile.load(%w, %2, %3) {shape = [8, 8]} : tile<u4[8, 8]>
  %6 = tile.view(%5) {dtype = u32, shape = [8, 1]} : tile<u32[8, 1]>
  %7 = tile.convert_layout(%5) {layout = layout<local(1, 8).spatial(8, 1)>} : tile<u4[8, 8] @ local(1, 8).spatial(8, 1)>
  %8 = tile.view(%7) {dtype = u8, layout = layout<local(1, 4).spatial(8, 1)>, shape = [8, 4]} : tile<u8[8, 4] @ local(1, 4).spatial(8, 1)>
  %9 = tile.cast(%8) {dtype = f16} : tile<f16[8, 4] @ local(1, 4).spatial(8, 1)>
  %10 = tile.load(%a, %2, %4) {layout = layout<local(2, 8).spatial(4, 1)>, shape = [8, 8]} : tile<f16[8, 8] @ local(2, 8).spatial(4, 1)>
  %11 = tile.arange() {dtype = i8, layout = layout<replicated(2).spatial(4)>, size = 4} : tile<i8[4] @ replicated(2).spatial(4)>
  %12 = arith.constant() {dtype = f32, value = 0.0} : f32
  %13 = tile.full(%12) {shape = [8, 8]} : tile<f32[8, 8]>
  %14 = tile.permute(%10) {dims = [1, 0]} : tile<f16[8, 8] @ column_local(8, 2).spatial(1, 4)>
  %15 = tile.dot(%14, %10, %13) : tile<f32[8, 8]>
  %16 = tile.reshape(%9) {shape = [4, 8]} : tile<f16[4, 8]>
  %17 = tile.reduce_max(%15) {axis = 1, keepdims = true} : tile<f32[8, 1]>
  %18 = tile.broadcast(%17) {shape = [8, 4]} : tile<f32[8, 4]>
  %19 = tile.reduce_min(%18) {axis = 0, keepdims = false} : tile<f32[4]>
  %20 = tile.reduce_sum(%19) {axis = 0, keepdims = false} : f32
  %21 = tile.broadcast(%20) {layout = layout<local(8, 4)>, shape = [8, 4]} : tile<f32[8, 4] @ local(8, 4)>
  %22 = tile.cast(%11) {dtype = f32} : tile<f32[4] @ replicated(2).spatial(4)>
  %23 = arith.mul(%21, %20) : tile<f32[8, 4] @ local(8, 4)>
  tile.store(%out, %2, %3, %23)
}
"""


def shapes_kernel() -> Kernel:
    """Sources, memory, views with and without layouts, and the shape ops."""
    kb = KernelBuilder("shapes")
    w = kb.tensor("w", u4, ["M", "K"])
    a = kb.tensor("a", f16, ["M", "K"])
    out = kb.tensor("out", f32, ["M", make_binary("max", "K", 8) // 2])
    kb.grid(cdiv("M", 8), 2)
    b = kb.builder
    row = b.mul(b.block_id(0), 8)
    col = b.block_id(1)
    k = b.size("K")
    wt = b.load(w, [row, col], [8, 8])
    b.view(wt, u32)  # u4[8, 8] -> u32[8, 1]
    spread = b.convert_layout(wt, spatial(8, 1) * local(1, 8))
    as_bytes = b.view(spread, u8, layout=spatial(8, 1) * local(1, 4))
    halves = b.cast(as_bytes, f16)
    at = b.load(a, [row, k], [8, 8], local(2, 8) * spatial(4, 1))
    idx = b.arange(4, i8, replicated(2) * spatial(4))
    acc = b.zeros([8, 8], f32)
    d = b.dot(b.permute(at, [1, 0]), at, acc)
    b.reshape(halves, [4, 8])
    m = b.reduce("max", d, 1, keepdims=True)
    mn = b.reduce("min", b.broadcast(m, [8, 4]), 0)
    total = b.sum(mn, 0)
    full = b.broadcast(total, [8, 4], local(8, 4))
    b.cast(idx, f32)
    b.store(out, [row, col], b.mul(full, total))
    return kb.finish()


def test_shapes_kernel_prints_exactly():
    assert roundtrip(shapes_kernel()) == SHAPES_TEXT


NESTED_TEXT = """\
kernel @nested(%x: tensor<bf16[N]>, %n: i32) grid(cdiv(N, 4)) {
  %0 = arith.constant() {dtype = i32, value = 4} : i32
  %1 = tile.block_id() {axis = 0} : i32
  %2 = arith.mul(%1, %0) : i32
  %3 = tile.load(%x, %2) {shape = [4]} : tile<bf16[4]>
  %4 = arith.constant() {dtype = i32, value = 0} : i32
  %5 = arith.constant() {dtype = i32, value = 1} : i32
  %6, %7 = scf.for(%4, %n, %5, %3, %4) ({
  ^(%8: i32, %9: tile<bf16[4]>, %10: i32):
    %11 = cmp.lt(%8, %0) : u1
    %12 = scf.if(%11) ({
      %13 = math.exp(%9) : tile<bf16[4]>
      scf.for(%4, %8, %5) ({
      ^(%14: i32):
        scf.if(%11) ({
          scf.yield()
        }, {
          tile.store(%x, %14, %13)
          scf.yield()
        })
        scf.yield()
      })
      scf.yield(%13)
    }, {
      scf.yield(%9)
    }) : tile<bf16[4]>
    %15 = arith.add(%10, %8) : i32
    scf.yield(%12, %15)
  }) : tile<bf16[4]>, i32
  tile.store(%x, %7, %6)
}
"""


def nested_kernel() -> Kernel:
    """Loops and branches nested three deep, with and without results."""
    kb = KernelBuilder("nested")
    x = kb.tensor("x", bf16, ["N"])
    n = kb.scalar("n", i32)
    kb.grid(cdiv("N", 4))
    b = kb.builder
    four = b.constant(4, i32)
    off = b.mul(b.block_id(0), four)
    t = b.load(x, [off], [4])
    zero, one = b.constant(0, i32), b.constant(1, i32)
    with b.for_range(zero, n, one, [t, zero]) as loop:
        small = b.compare("lt", loop.iv, four)
        with b.if_(small) as br:
            with br.then_():
                e = b.unary("exp", loop.carried[0])
                with b.for_range(zero, loop.iv, one) as inner:
                    with b.if_(small) as br2:
                        with br2.else_():
                            b.store(x, [inner.iv], e)
                br.yield_(e)
            with br.else_():
                br.yield_(loop.carried[0])
        loop.yield_(br.results[0], b.add(loop.carried[1], loop.iv))
    b.store(x, [loop.results[1]], loop.results[0])
    return kb.finish()


def test_nested_kernel_prints_exactly():
    assert roundtrip(nested_kernel()) == NESTED_TEXT


CONSTANTS_TEXT = """\
kernel @"odd name"(%"x y": tensor<f32[tile, loc + 1]>, %layout: tensor<u1[loc]>) grid(1) {
  %0 = arith.constant() {dtype = f32, value = inf} : f32
  %1 = arith.constant() {dtype = f32, value = -inf} : f32
  %2 = arith.constant() {dtype = f32, value = nan} : f32
  %3 = arith.constant() {dtype = f32, value = -0.0} : f32
  %4 = arith.constant() {dtype = f32, value = 9.5367431640625e-07} : f32
  %5 = arith.constant() {dtype = f32, value = 3.4028234663852886e+38} : f32
  %6 = arith.constant() {dtype = f16, value = -65504.0} : f16
  %7 = arith.constant() {dtype = f4e2m1, value = 1.5} : f4e2m1
  %8 = arith.constant() {dtype = f6e3m2, value = -28.0} : f6e3m2
  %9 = arith.constant() {dtype = i32, value = -2147483648} : i32
  %10 = arith.constant() {dtype = u32, value = 4294967295} : u32
  %11 = arith.constant() {dtype = u1, value = 1} : u1
  %12 = tile.size() {symbol = "loc"} : i32
  %13 = tile.full(%11) {shape = [2]} : tile<u1[2]>
  %14 = tile.where(%13, %0, %1) : tile<f32[2]>
  %15 = tile.full(%7) {shape = [2]} : tile<f4e2m1[2]>
  %16 = tile.full(%8) {shape = [2]} : tile<f6e3m2[2]>
  %17 = tile.where(%11, %15, %15) : tile<f4e2m1[2]>
  tile.store(%layout, %12, %13)
}
"""


def constants_kernel() -> Kernel:
    """Special floats, extreme ints, quoted names and symbols spelled like keywords."""
    kb = KernelBuilder("odd name")
    kb.tensor("x y", f32, ["tile", sym("loc") + 1])
    out = kb.tensor("layout", u1, ["loc"])
    b = kb.builder
    pinf = b.constant(math.inf, f32)
    ninf = b.constant(-math.inf, f32)
    b.constant(math.nan, f32)
    b.constant(-0.0, f32)
    b.constant(2.0**-20, f32)
    b.constant(f32.max, f32)
    b.constant(-65504.0, f16)
    fp4 = b.constant(1.5, f4e2m1)
    fp6 = b.constant(-28.0, f6e3m2)
    b.constant(-(2**31), i32)
    b.constant(2**32 - 1, u32)
    true = b.constant(1, u1)
    loc = b.size("loc")
    mask = b.full(true, [2])
    b.where(mask, pinf, ninf)
    tile4 = b.full(fp4, [2])
    b.full(fp6, [2])
    b.where(true, tile4, tile4)
    b.store(out, [loc], mask)
    return kb.finish()


def test_constants_and_names_print_exactly():
    assert roundtrip(constants_kernel()) == CONSTANTS_TEXT


LOCS_TEXT = """\
kernel @located(%x: tensor<i8[N]>) grid(N) loc("k.py":3:1) {
  %0 = tile.block_id() {axis = 0} : i32 loc("k.py":4:5 to 4:20)
  %1 = tile.load(%x, %0) {shape = [1]} : tile<i8[1]> loc("dir/\\"quoted\\" \\u00fc.py":5:9 to 6:2)
  %2 = math.abs(%1) : tile<i8[1]> loc("k.py":7:1 to :12)
  tile.store(%x, %0, %2) loc(unknown)
}
"""


def located_kernel() -> Kernel:
    kb = KernelBuilder("located", Loc("k.py", 3, 1))
    x = kb.tensor("x", i8, ["N"])
    kb.grid("N")
    b = kb.builder
    with b.at(Loc("k.py", 4, 5, 4, 20)):
        i = b.block_id(0)
    with b.at(Loc('dir/"quoted" ü.py', 5, 9, 6, 2)):
        t = b.load(x, [i], [1])
    with b.at(Loc("k.py", 7, 1, None, 12)):
        t = b.unary("abs", t)
    with b.at(None):
        b.store(x, [i], t)
    return kb.finish()


def test_locations_print_and_survive_the_round_trip():
    kernel = located_kernel()
    assert roundtrip(kernel, locs=True) == LOCS_TEXT
    parsed = parse_kernel(LOCS_TEXT)
    assert parsed.loc == Loc("k.py", 3, 1)
    assert [op.loc for op in parsed.walk()] == [op.loc for op in kernel.walk()]
    # without locs the text is the same as for any kernel
    assert "loc(" not in print_kernel(kernel)


def test_ops_without_loc_are_located_in_the_ir_text():
    text = print_kernel(located_kernel())
    kernel = parse_kernel(text, filename="dump.ir")
    load = kernel.body.ops[1]
    assert load.loc == Loc("dump.ir", 3, 8, 3, 17)  # the op name `tile.load`
    assert kernel.loc == Loc("dump.ir", 1, 8, 1, 16)  # the kernel name


ELEMENTWISE_CASES = (
    [(f"math.{k}", acc) for k, acc in UNARY_OPS.items()]
    + [(f"arith.{k}", acc) for k, acc in BINARY_OPS.items()]
    + [(f"cmp.{k}", acc) for k, acc in COMPARE_OPS.items()]
)


@pytest.mark.parametrize("name,accepts", ELEMENTWISE_CASES)
def test_every_elementwise_op_prints_exactly(name, accepts):
    dtype = i32 if accepts == "int" else f32
    kb = KernelBuilder("ew")
    x = kb.tensor("x", dtype, ["N"])
    b = kb.builder
    t = b.load(x, [b.block_id(0)], [8])
    family, kind = name.split(".")
    if family == "math":
        b.unary(kind, t)
    elif family == "arith":
        b.binary(kind, t, t)
    else:
        b.compare(kind, t, t)
    text = roundtrip(kb.finish())
    operands = "%1" if family == "math" else "%1, %1"
    result = "u1" if family == "cmp" else dtype.name
    assert text.splitlines()[3] == f"  %2 = {name}({operands}) : tile<{result}[8]>"


#: IR texts of ops that later passes add, one file each, shared with those passes' tests.
DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
EXTRA_TEXTS = [p.read_text() for p in sorted(DATA.glob("*.tir"))]


@pytest.mark.parametrize("path", sorted(DATA.glob("*.tir")), ids=lambda p: p.name)
def test_data_texts_round_trip_exactly(path):
    text = path.read_text()
    assert print_kernel(parse_kernel(text, str(path))) == text


def test_every_registered_op_is_covered_by_an_exact_test():
    printed = "".join([SHAPES_TEXT, NESTED_TEXT, CONSTANTS_TEXT, LOCS_TEXT,
                       print_kernel(dequant_kernel()), *EXTRA_TEXTS])
    names = set(re.findall(r"\b([a-z]+\.[a-z_0-9]+)\(", printed))
    names |= {name for name, _ in ELEMENTWISE_CASES}
    assert set(OP_REGISTRY) <= names, sorted(set(OP_REGISTRY) - names)


def test_module_of_several_kernels():
    kernels = [dequant_kernel(), nested_kernel(), shapes_kernel()]
    text = print_module(kernels)
    parsed = parse_module(text, "module.ir")
    assert [k.name for k in parsed] == ["dequant", "nested", "shapes"]
    assert print_module(parsed) == text
    assert parse_module("  # nothing here\n") == []


def test_hand_written_text_is_normalized():
    text = """
    # a comment
    kernel @k(%src: tensor<f32[N]>)
        grid(cdiv(N,4)) {
      %bid = tile.block_id( ) {axis=0}:i32       # program id
      %tile = tile.load(%src, %bid) { shape = [ 4 ] } : tile< f32 [4] >
      %sq = arith.mul(%tile,%tile) : tile<f32[4]>
      %r = tile.reduce_sum(%sq) {keepdims = true, axis = 0} : tile<f32[1]>
      tile.store(%src, %bid, %r)
    }
    """
    kernel = parse_kernel(text)
    assert print_kernel(kernel) == """\
kernel @k(%src: tensor<f32[N]>) grid(cdiv(N, 4)) {
  %0 = tile.block_id() {axis = 0} : i32
  %1 = tile.load(%src, %0) {shape = [4]} : tile<f32[4]>
  %2 = arith.mul(%1, %1) : tile<f32[4]>
  %3 = tile.reduce_sum(%2) {axis = 0, keepdims = true} : tile<f32[1]>
  tile.store(%src, %0, %3)
}
"""
    assert kernel.body.ops[1].out.name_hint == "tile"


def test_print_op_names_unknown_operands_by_position():
    kernel = nested_kernel()
    loop = kernel.body.ops[6]
    assert print_op(kernel.body.ops[2]) == "%0 = arith.mul(%in0, %in1) : i32"
    text = print_op(loop)
    assert text.splitlines()[0] == "%0, %1 = scf.for(%in0, %in1, %in2, %in3, %in0) ({"
    assert text.splitlines()[1] == "^(%2: i32, %3: tile<bf16[4]>, %4: i32):"
    x = kernel.body.args[0]
    assert print_op(kernel.body.ops[-1], names={x: "%x"}) == "tile.store(%x, %in0, %in1)"


def test_format_attribute():
    assert format_attribute(True) == "true"
    assert format_attribute((1, -2)) == "[1, -2]"
    assert format_attribute(()) == "[]"
    assert format_attribute(1e100) == "1e+100"
    assert format_attribute(-math.inf) == "-inf"
    assert format_attribute('a"b\n') == '"a\\"b\\n"'
    assert format_attribute(f6e3m2) == "f6e3m2"
    assert format_attribute(spatial(2) * local(3)) == "layout<spatial(2).local(3)>"
    assert format_attribute((np.int64(3), np.float32(0.5), np.bool_(False))) == "[3, 0.5, false]"


# ---- round trips over random kernels ---------------------------------------------------------
@SETTINGS
@given(kernels_with_sizes())
def test_random_kernels_round_trip(generated):
    kernel = generated.kernel
    text = roundtrip(kernel)
    parsed = parse_kernel(text)
    assert [op.name for op in parsed.walk()] == [op.name for op in kernel.walk()]
    assert parsed.params == kernel.params and parsed.grid == kernel.grid


@SETTINGS
@given(kernels_with_sizes(max_ops=12, locs=True))
def test_random_kernels_round_trip_with_locs(generated):
    kernel = generated.kernel
    roundtrip(kernel, locs=True)
    parsed = parse_kernel(print_kernel(kernel, locs=True))
    assert parsed.loc == kernel.loc
    assert [op.loc for op in parsed.walk()] == [op.loc for op in kernel.walk()]
    assert print_kernel(parsed) == print_kernel(kernel)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kernels(max_ops=10), st.data())
def test_mutated_text_parses_or_raises_ir_error(kernel, data):
    """Deleting, duplicating or replacing a character never leaks a non-IRError."""
    text = print_kernel(kernel)
    pos = data.draw(st.integers(0, len(text) - 1))
    kind = data.draw(st.sampled_from(["delete", "duplicate", "replace"]))
    if kind == "delete":
        mutated = text[:pos] + text[pos + 1:]
    elif kind == "duplicate":
        mutated = text[:pos] + text[pos] + text[pos:]
    else:
        mutated = text[:pos] + data.draw(st.sampled_from(list("%@(){}[]<>,:=-1xa\"^#."))) + text[
            pos + 1:]
    try:
        parse_kernel(mutated)
    except IRError as exc:
        assert exc.loc is not None and exc.loc.line >= 1 and exc.loc.col >= 1


def test_generated_kernel_metadata():
    @settings(max_examples=20, deadline=None, database=None)
    @given(kernels_with_sizes())
    def check(generated):
        shapes = generated.tensor_shapes()
        assert set(shapes) == set(generated.inputs) | set(generated.outputs)
        assert generated.outputs and all(d >= 1 for s in shapes.values() for d in s)
        assert all(g >= 1 for g in generated.grid_shape())
        assert set(generated.sizes) == set(generated.kernel.size_symbols())
        args = generated.random_arguments(np.random.default_rng(0))
        for name, shape in shapes.items():
            assert args[name].shape == shape
        assert "kernel @" in repr(generated)

    check()


# ---- symbolic expressions --------------------------------------------------------------------
a, b_, c, n = sym("a"), sym("b"), sym("c"), sym("N")

EXPRESSIONS = [
    (a - (b_ - c), "a - (b - c)"),
    ((a - b_) - c, "a - b - c"),
    ((a + b_) * c, "(a + b) * c"),
    (a + b_ * c, "a + b * c"),
    (a // (b_ * c), "a // (b * c)"),
    (a * b_ // c, "a * b // c"),
    (a % (b_ + 1), "a % (b + 1)"),
    (cdiv(n, 128), "cdiv(N, 128)"),
    (cdiv(n + 1, 2) * 2, "cdiv(N + 1, 2) * 2"),
    (make_binary("min", cdiv(n, 2), make_binary("max", a, 3)), "min(cdiv(N, 2), max(a, 3))"),
    (n - -3, "N - -3"),
    (-3 * n, "-3 * N"),
    (n * (0 - a), "N * (0 - a)"),
]


@pytest.mark.parametrize("expr,text", EXPRESSIONS, ids=[t for _, t in EXPRESSIONS])
def test_size_expressions_round_trip(expr, text):
    assert str(expr) == text
    kernel_text = f"kernel @k(%t: tensor<f32[{text}]>, %a: i32) grid({text}) {{\n}}\n"
    kernel = parse_kernel(kernel_text)
    assert kernel.params[0].type.shape == (expr,)
    assert kernel.grid == (expr,)
    assert print_kernel(kernel) == kernel_text


def test_size_expressions_fold_constants_when_parsed():
    kernel = parse_kernel("kernel @k(%t: tensor<f32[2 * 3 + N, (4)]>) grid(1) {\n}\n")
    assert kernel.params[0].type.shape == (BinExpr("add", Const(6), Sym("N")), Const(4))


def _combine(op: str, lhs: SymExpr, rhs: SymExpr) -> SymExpr:
    try:
        return make_binary(op, lhs, rhs)
    except ZeroDivisionError:  # constants fold as they are combined
        return make_binary("add", lhs, rhs)


def sym_exprs() -> st.SearchStrategy[SymExpr]:
    leaves = st.one_of(st.sampled_from([Sym("N"), Sym("M"), Sym("tile")]),
                       st.integers(-20, 300).map(Const))
    ops = st.sampled_from(["add", "sub", "mul", "floordiv", "mod", "cdiv", "min", "max"])
    return st.recursive(leaves, lambda sub: st.builds(_combine, ops, sub, sub), max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(st.lists(sym_exprs(), min_size=1, max_size=3))
def test_random_size_expressions_round_trip_structurally(exprs):
    dims = ", ".join(map(str, exprs))
    kernel = parse_kernel(f"kernel @k(%t: tensor<f32[{dims}]>) grid(1) {{\n}}\n")
    assert kernel.params[0].type.shape == tuple(exprs)


# ---- errors ------------------------------------------------------------------------------------
HEADER = "kernel @k(%x: tensor<f32[N]>) grid(cdiv(N, 4)) {\n"
LOAD = ("  %0 = tile.block_id() {axis = 0} : i32\n"
        "  %1 = tile.load(%x, %0) {shape = [4]} : tile<f32[4]>\n")

ERRORS = [
    # (text, line, col, message fragment)
    (HEADER + "  %0 = tile.lod(%x) : i32\n}\n", 2, 8, "unknown op 'tile.lod'"),
    (HEADER + "  %0 = math.neg(%9) : i32\n}\n", 2, 17, "undefined value %9"),
    (HEADER + "  %0, %1 = tile.block_id() {axis = 0} : i32, i32\n}\n", 2, 3, "has 1 result"),
    (HEADER + "  %0 = tile.block_id() {axis = 0}\n}\n", 2, 8, "lists 0 type"),
    (HEADER + "  %0 = tile.block_id() {axis = 0} : i32, i32\n}\n", 2, 37, "lists 2 type"),
    ("kernel @k(%x: tensor<f99[N]>) grid(1) {\n}\n", 1, 22, "unknown dtype 'f99'"),
    (HEADER + "  %0 = tile.block_id() {axes = 0} : i32\n}\n", 2, 25, "no attribute 'axes'"),
    (HEADER + '  %0 = tile.block_id() {axis = "0"} : i32\n}\n', 2, 32, "must be an integer"),
    (HEADER + LOAD + "  %2 = tile.reshape(%1) {shape = 4} : tile<f32[4]>\n}\n", 4, 34,
     "must be a list of integers"),
    (HEADER + "  %0 = tile.block_id() : i32\n}\n", 2, 8, "needs the attribute 'axis'"),
    (HEADER + "  %0 = tile.block_id() {axis = 0} : i32\n"
     "  %0 = tile.block_id() {axis = 0} : i32\n}\n", 3, 3, "%0 is defined twice"),
    (HEADER + "  %0 = tile.block_id( {axis = 0} : i32\n}\n", 2, 23, "unexpected '{'; expected"),
    (HEADER + "  %0 = tile.block_id() {axis = 0} : i32 $\n}\n", 2, 41, "unexpected '$'"),
    (HEADER + "  %0 = tile.block_id() {axis = 0} : i32\n", 2, 40, "unexpected end of input"),
    (HEADER + LOAD + "  %2 = tile.convert_layout(%1) {layout = layout<spatial(3)>} : "
     "tile<f32[4] @ spatial(3)>\n}\n", 4, 64, "has shape [3]"),
    (HEADER + LOAD + "  %2 = tile.convert_layout(%1) {layout = layout<spatial(4).bogus(1)>} : "
     "tile<f32[4]>\n}\n", 4, 49, "malformed layout"),
    (HEADER + LOAD + "  %2 = arith.constant() {dtype = i32, value = 1} : i32\n"
     "  %3 = arith.add(%1, %2) : tile<f32[4]>\n}\n", 5, 8, "operands have different dtypes"),
    (HEADER + LOAD + "  %2 = math.neg(%1) : tile<f32[8]>\n}\n", 4, 8, "result type is"),
    (HEADER + "  %0 = tile.block_id() {axis = 0} : i32\n  %1 = arith.constant() {dtype = i32, "
     "value = 4} : i32\n  scf.for(%0, %1, %1) ({\n  ^(%2: i32):\n    %3 = math.neg(%2) : i32\n"
     "    scf.yield()\n  })\n  %4 = math.neg(%3) : i32\n}\n", 9, 17, "not visible here"),
    (HEADER + "  %0 = tile.block_id() {axis = 0} : i32\n  scf.yield(%0)\n}\n", 3, 3,
     "a yield must be the last op"),
    (HEADER + "  %0 = tile.block_id() {axis = 1} : i32\n}\n", 2, 8, "axis 1 does not exist"),
    ("kernel @k(%x: tensor<f32[N]>) grid(cdiv(M, 4)) {\n}\n", 1, 8, "'M'"),
    ("kernel @k(%x: tensor<f32[foo(N, 2)]>) grid(1) {\n}\n", 1, 26, "unknown size function"),
    ("kernel @k(%x: tensor<f32[4 // 0]>) grid(1) {\n}\n", 1, 26, "division by zero"),
    ("kernel @k(%x: tile<f32[]>) grid(1) {\n}\n", 1, 15, "non-empty static shape"),
    (HEADER + "  %0 = tile.block_id() ({\n  }) {axis = 0} : i32\n}\n", 2, 24, "0 region(s)"),
    (HEADER + "}\n" + HEADER + "}\n", 3, 8, "expected one kernel, found 2"),
    ("", 1, 1, "expected a kernel, found none"),
    (HEADER + '  %0 = tile.block_id() {axis = 0} : i32 loc("a.py":x)\n}\n', 2, 52, "unexpected"),
    ('kernel @k(%x: tensor<f32[N]>, %x: f32) grid(1) {\n}\n', 1, 31, "%x is defined twice"),
]


@pytest.mark.parametrize("text,line,col,fragment", ERRORS, ids=[e[3] for e in ERRORS])
def test_malformed_ir_raises_located_ir_error(text, line, col, fragment):
    with pytest.raises(IRError) as info:
        parse_kernel(text, filename="bad.ir")
    err = info.value
    assert fragment in err.message
    assert err.loc is not None and err.loc.file == "bad.ir"
    assert (err.loc.line, err.loc.col) == (line, col), err.render()
    # the registered source renders a caret under the offending text
    if text:
        assert "^" in str(err).splitlines()[2]


def test_syntax_errors_list_the_expected_tokens():
    with pytest.raises(IRError) as info:
        parse_kernel(HEADER + "  %0 = tile.block_id() {axis = 0} : i32 i32\n}\n")
    message = info.value.message
    assert message.startswith("unexpected 'i32'; expected ")
    for token in ("','", "'loc'", "'}'", "a value (%name)", "an op name"):
        assert token in message


def test_unknown_op_suggests_close_names():
    with pytest.raises(IRError) as info:
        parse_kernel(HEADER + "  %0 = tile.lod(%x) : i32\n}\n")
    assert info.value.hint and "tile.load" in info.value.hint


def test_duplicate_kernel_names_in_a_module():
    with pytest.raises(IRError, match="defined twice"):
        parse_module(HEADER + "}\n" + HEADER + "}\n")


def test_parsed_layout_attribute_with_explicit_register_layout():
    layout = RegisterLayout((4, 4), (2, 2, 2, 2), (0, 3), (2, 1))
    kb = KernelBuilder("k")
    b = kb.builder
    b.arange(4, i32)
    b.full(b.constant(1.0, f32), [4, 4], layout=layout)
    text = roundtrip(kb.finish())
    assert f"layout<{layout}>" in text
