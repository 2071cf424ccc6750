"""canonicalize, cse and dce: interpreter results stay bit-exact on random kernels and on
random expressions full of special values; each pass fires where it should; each rewrite
rejected as unsafe is shown to change results, and is shown not to fire."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bittile.ir import dtypes as D
from bittile.ir.builder import KernelBuilder
from bittile.ir.parser import parse_kernel
from bittile.ir.types import ScalarType
from bittile.passes.manager import run_pipeline
from bittile.runtime.packed import PackedTensor
from bittile.testing.checkers import assert_pipeline_preserves, run_codes, special_codes
from bittile.testing.ir_strategies import kernels_with_sizes

PIPELINES = ["canonicalize", "cse", "dce", "canonicalize,cse,dce"]
SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---- random kernels ---------------------------------------------------------------------------
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_random_kernels_keep_their_results(pipeline):
    @SETTINGS
    @given(generated=kernels_with_sizes(), seed=st.integers(0, 2**32 - 1))
    def check(generated, seed):
        assert_pipeline_preserves(generated, pipeline, rng=np.random.default_rng(seed))

    check()


# ---- random expressions over special values ---------------------------------------------------
# Random kernels rarely combine `x + c` with the one c and the one input that break a rewrite;
# these expressions put the constants rewrites look at next to inputs made of special codes.
EXPRESSION_DTYPES = [D.f32, D.f16, D.bf16, D.i32, D.i8, D.u8, D.i4, D.u1]
N = 16  # a 4 x 4 tile when reshaped, so that a transpose keeps the type


def special_constants(dt):
    if dt.is_int:
        return sorted({v for v in (0, 1, -1, 2, dt.min, dt.max, dt.bits) if dt.min <= v <= dt.max})
    return [0.0, -0.0, 1.0, -1.0, 2.0, math.inf, -math.inf, math.nan]


@st.composite
def expressions(draw, dt, depth=0):
    constant = st.tuples(st.sampled_from(["const", "tile_const"]),
                         st.sampled_from(special_constants(dt)))
    if depth >= 3 or draw(st.integers(0, 2)) == 0:
        return draw(st.one_of(st.tuples(st.sampled_from(["x", "y"])), constant))
    binary = ["add", "sub", "mul", "div", "rem", "min", "max"]
    unary = ["neg", "abs"]
    if dt.is_int:
        binary += ["and", "or", "xor", "shl", "shr"]
        unary += ["not"]
    kind = draw(st.sampled_from(["binary", "binary", "unary", "where", "cast", "move"]))
    sub = expressions(dt, depth + 1)
    if kind == "binary":
        operands = [draw(sub), draw(sub)]
        if draw(st.booleans()):  # an operand that identities and absorbing rules look at
            operands[draw(st.integers(0, 1))] = draw(constant)
        return ("binary", draw(st.sampled_from(binary)), *operands)
    if kind == "unary":
        return ("unary", draw(st.sampled_from(unary)), draw(sub))
    if kind == "where":
        cmp = draw(st.sampled_from(["eq", "ne", "lt", "le", "gt", "ge"]))
        return ("where", cmp, draw(sub), draw(sub), draw(sub), draw(sub))
    if kind == "move":
        return ("move", draw(st.sampled_from(["reshape", "transpose", "transpose2"])), draw(sub))
    return ("cast", draw(sub))


def emit(b, node, env, dt):
    tag = node[0]
    if tag in ("x", "y"):
        return env[tag]
    if tag == "const":
        return b.constant(node[1], dt)
    if tag == "tile_const":
        return b.full(b.constant(node[1], dt), [N])
    if tag == "binary":
        return b.binary(node[1], emit(b, node[2], env, dt), emit(b, node[3], env, dt))
    if tag == "unary":
        return b.unary(node[1], emit(b, node[2], env, dt))
    if tag == "where":
        cond = b.compare(node[1], emit(b, node[2], env, dt), emit(b, node[3], env, dt))
        return b.where(cond, emit(b, node[4], env, dt), emit(b, node[5], env, dt))
    if tag == "cast":
        return b.cast(emit(b, node[1], env, dt), dt)
    x = emit(b, node[2], env, dt)  # data movement, which canonicalize must undo exactly
    if isinstance(x.type, ScalarType):
        return x
    square = b.reshape(x, [4, 4])
    if node[1] == "transpose":
        square = b.permute(square, [1, 0])
    elif node[1] == "transpose2":
        square = b.permute(b.permute(square, [1, 0]), [1, 0])
    return b.reshape(square, [N])


@st.composite
def expression_kernels(draw):
    dt = draw(st.sampled_from(EXPRESSION_DTYPES))
    tree = draw(expressions(dt))
    kb = KernelBuilder("expr")
    xt, yt, zt = (kb.tensor(name, dt, [N]) for name in ("x", "y", "z"))
    b = kb.builder
    zero = b.constant(0, D.i32)
    env = {"x": b.load(xt, [zero], [N]), "y": b.load(yt, [zero], [N])}
    out = emit(b, tree, env, dt)
    if isinstance(out.type, ScalarType):
        out = b.full(out, [N])
    b.store(zt, [zero], out)
    return kb.finish()


def mostly_special(dt, rng) -> PackedTensor:
    """N codes, three quarters of them special (signed zeros, NaN payloads, extremes...)."""
    codes = rng.integers(0, 1 << dt.bits, N, dtype=np.uint64)
    special = rng.random(N) < 0.75
    codes[special] = rng.choice(special_codes(dt), int(special.sum()))
    return PackedTensor.from_codes(codes, dt)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kernel=expression_kernels(), seed=st.integers(0, 2**32 - 1))
def test_random_expressions_keep_their_results(kernel, seed):
    rng = np.random.default_rng(seed)
    dt = kernel.params[0].type.dtype
    args = {"x": mostly_special(dt, rng), "y": mostly_special(dt, rng),
            "z": mostly_special(dt, rng)}
    for pipeline in PIPELINES:
        assert_pipeline_preserves(kernel, pipeline, args=args)


# ---- every one-constant pattern on every special input ---------------------------------------
def one_constant_kernels(dt):
    """``x OP c`` and ``c OP x`` for every binary op, special constant ``c`` (a scalar on the
    right, a splat tile on the left) and ``x`` loaded (NaNs with payloads) or computed (only
    canonical NaNs); plus the unary patterns canonicalize looks at."""
    kinds = ["add", "sub", "mul", "div", "rem", "min", "max"]
    if dt.is_int:
        kinds += ["and", "or", "xor", "shl", "shr"]
    sources = ["load", "computed"] if dt.is_float else ["load"]
    n = len(special_codes(dt))
    for source in sources:
        for kind in kinds:
            for value in special_constants(dt):
                for constant_left in (False, True):
                    kb, b, x, store = _pattern_kernel(dt, n, source)
                    c = b.constant(value, dt)
                    if constant_left:
                        store(b.binary(kind, b.full(c, [n]), x))
                    else:
                        store(b.binary(kind, x, c))
                    yield kb.finish()
        for unary in (["neg", "neg"], ["not", "not"] if dt.is_int else ["abs", "neg"]):
            kb, b, x, store = _pattern_kernel(dt, n, source)
            store(b.unary(unary[1], b.unary(unary[0], x)))
            yield kb.finish()
        kb, b, x, store = _pattern_kernel(dt, n, source)
        store(b.cast(x, dt))
        yield kb.finish()


def _pattern_kernel(dt, n, source):
    kb = KernelBuilder("pattern")
    xt, yt = kb.tensor("x", dt, [n]), kb.tensor("y", dt, [n])
    b = kb.builder
    zero = b.constant(0, D.i32)
    x = b.load(xt, [zero], [n])
    if source == "computed":
        x = b.unary("neg", x)
    return kb, b, x, lambda value: b.store(yt, [zero], value)


@pytest.mark.parametrize("dt", [D.f32, D.f16, D.bf16, D.i32, D.u8, D.i4, D.u1, D.i1],
                         ids=str)
def test_every_one_constant_pattern_keeps_its_results(dt):
    codes = special_codes(dt)
    args = {"x": PackedTensor.from_codes(codes, dt),
            "y": PackedTensor.from_codes(codes[::-1].copy(), dt)}
    for kernel in one_constant_kernels(dt):
        assert_pipeline_preserves(kernel, "canonicalize", args=args)


# ---- helpers ----------------------------------------------------------------------------------
def unary_kernel(dtype: str, body: str) -> str:
    """A kernel loading ``%a`` from ``%x``, running ``body`` and storing ``%r`` into ``%y``."""
    return f"""
kernel @k(%x: tensor<{dtype}[4]>, %y: tensor<{dtype}[4]>) grid(1) {{
  %zero = arith.constant() {{dtype = i32, value = 0}} : i32
  %a = tile.load(%x, %zero) {{shape = [4]}} : tile<{dtype}[4]>
{body}
  tile.store(%y, %zero, %r)
}}
"""


def const(dtype: str, value: str) -> str:
    return f"%c = arith.constant() {{dtype = {dtype}, value = {value}}} : {dtype}\n  "


def count(kernel, name: str | None = None) -> int:
    return sum(1 for op in kernel.walk() if name is None or op.name == name)


def run(text: str, pipeline: str):
    """Parse, check the pipeline keeps the results on special inputs, return both kernels."""
    kernel = parse_kernel(text)
    return kernel, assert_pipeline_preserves(kernel, pipeline, sizes={"N": 4})


def specials_args(dtype) -> dict:
    """``%x`` holding every special code of ``dtype`` (as far as it fits), ``%y`` zeros."""
    codes = special_codes(dtype)
    n = len(codes)
    return {"x": PackedTensor.from_codes(codes, dtype),
            "y": PackedTensor.from_codes(np.zeros(n, np.uint64), dtype)}


def results_differ(text_a: str, text_b: str, dtype) -> bool:
    """Whether two kernels of the ``unary_kernel`` form store different bits for some
    special input."""
    codes = special_codes(dtype)
    a = parse_kernel(text_a.replace("[4]", f"[{len(codes)}]"))
    b = parse_kernel(text_b.replace("[4]", f"[{len(codes)}]"))
    ra, rb = run_codes(a, specials_args(dtype)), run_codes(b, specials_args(dtype))
    return not np.array_equal(ra["y"], rb["y"])


# ---- canonicalize fires -----------------------------------------------------------------------
def test_canonicalize_folds_integer_arithmetic_with_wraparound():
    before, after = run(unary_kernel("i8", """
  %c100 = arith.constant() {dtype = i8, value = 100} : i8
  %s = arith.add(%c100, %c100) : i8
  %r = arith.add(%a, %s) : tile<i8[4]>"""), "canonicalize,dce")
    assert count(before, "arith.add") == 2 and count(after, "arith.add") == 1
    folded = [op for op in after.walk() if op.name == "arith.constant" and op.dtype == D.i8]
    assert [op.value for op in folded] == [-56]  # 200 wraps to -56


def test_canonicalize_folds_splat_tiles_and_casts():
    before, after = run(unary_kernel("f32", """
  %two = arith.constant() {dtype = f32, value = 2.0} : f32
  %t = tile.full(%two) {shape = [4]} : tile<f32[4]>
  %e = math.sqrt(%t) : tile<f32[4]>
  %h = tile.cast(%e) {dtype = f16} : tile<f16[4]>
  %back = tile.cast(%h) {dtype = f32} : tile<f32[4]>
  %r = arith.mul(%a, %back) : tile<f32[4]>"""), "canonicalize,dce")
    assert count(after, "math.sqrt") == 0 and count(after, "tile.cast") == 0
    (constant,) = [op for op in after.walk() if op.name == "arith.constant" and op.dtype == D.f32]
    assert constant.value == float(np.float16(np.sqrt(2.0)))


def test_canonicalize_folds_nan_results_to_the_canonical_nan():
    # inf - inf is a NaN with the sign bit set on x86; computing ops canonicalize NaN to the
    # positive one, which a constant op can say, so folding is exact (run() checks the bits).
    _, after = run(unary_kernel("f32", """
  %inf = arith.constant() {dtype = f32, value = inf} : f32
  %n = arith.sub(%inf, %inf) : f32
  %r = arith.mul(%a, %n) : tile<f32[4]>"""), "canonicalize,dce")
    assert count(after, "arith.sub") == 0


def i16_op(text: str) -> str:
    return f"%r = {text} : tile<i16[4]>"


INTEGER_IDENTITIES = {
    "x+0": const("i16", "0") + i16_op("arith.add(%a, %c)"),
    "0+x": const("i16", "0") + i16_op("arith.add(%c, %a)"),
    "x-0": const("i16", "0") + i16_op("arith.sub(%a, %c)"),
    "x*1": const("i16", "1") + i16_op("arith.mul(%a, %c)"),
    "x/1": const("i16", "1") + i16_op("arith.div(%a, %c)"),
    "x&-1": const("i16", "-1") + i16_op("arith.and(%a, %c)"),
    "x|0": const("i16", "0") + i16_op("arith.or(%a, %c)"),
    "x^0": const("i16", "0") + i16_op("arith.xor(%a, %c)"),
    "x<<0": const("i16", "0") + i16_op("arith.shl(%a, %c)"),
    "x>>0": const("i16", "0") + i16_op("arith.shr(%a, %c)"),
    "neg-neg": "%n = math.neg(%a) : tile<i16[4]>\n  " + i16_op("math.neg(%n)"),
    "not-not": "%n = math.not(%a) : tile<i16[4]>\n  " + i16_op("math.not(%n)"),
    "cast": i16_op("tile.cast(%a) {dtype = i16}"),
    "reshape": i16_op("tile.reshape(%a) {shape = [4]}"),
    "broadcast": i16_op("tile.broadcast(%a) {shape = [4]}"),
    "permute": i16_op("tile.permute(%a) {dims = [0]}"),
    "reshape-reshape": "%m = tile.reshape(%a) {shape = [2, 2]} : tile<i16[2, 2]>\n  "
                       + i16_op("tile.reshape(%m) {shape = [4]}"),
    "where-same": "%c = cmp.eq(%a, %a) : tile<u1[4]>\n  " + i16_op("tile.where(%c, %a, %a)"),
    "where-const": const("u1", "0") + "%b = math.neg(%a) : tile<i16[4]>\n  "
                   + i16_op("tile.where(%c, %b, %a)"),
}


@pytest.mark.parametrize("name", list(INTEGER_IDENTITIES))
def test_canonicalize_integer_identities_give_the_operand(name):
    _, after = run(unary_kernel("i16", "  " + INTEGER_IDENTITIES[name]), "canonicalize,dce")
    assert [op.name for op in after.walk()] == ["arith.constant", "tile.load", "tile.store"]


@pytest.mark.parametrize("body", [
    const("i16", "0") + i16_op("arith.mul(%a, %c)"),
    const("i16", "0") + i16_op("arith.and(%a, %c)"),
    const("i16", "-1") + i16_op("arith.or(%a, %c)"),
], ids=["x*0", "x&0", "x|-1"])
def test_canonicalize_integer_absorbing_constants(body):
    _, after = run(unary_kernel("i16", "  " + body), "canonicalize,dce")
    assert [op.name for op in after.walk()] == [
        "arith.constant", "arith.constant", "tile.full", "tile.store"]


EXP = "%e = math.exp(%a) : tile<f32[4]>\n  "


@pytest.mark.parametrize("body", [
    EXP + const("f32", "1.0") + "%r = arith.mul(%c, %e) : tile<f32[4]>",
    EXP + const("f32", "1.0") + "%r = arith.div(%e, %c) : tile<f32[4]>",
    EXP + const("f32", "-0.0") + "%r = arith.add(%e, %c) : tile<f32[4]>",
    EXP + const("f32", "0.0") + "%r = arith.sub(%e, %c) : tile<f32[4]>",
    EXP + "%r = tile.cast(%e) {dtype = f32} : tile<f32[4]>",
], ids=["1.0*x", "x/1.0", "x+(-0.0)", "x-0.0", "cast"])
def test_canonicalize_float_identities_on_computed_values(body):
    _, after = run(unary_kernel("f32", "  " + body), "canonicalize,dce")
    assert [op.name for op in after.walk()] == [
        "arith.constant", "tile.load", "math.exp", "tile.store"]


def test_canonicalize_moves_constants_right_and_swaps_comparisons():
    _, after = run(unary_kernel("i32", """
  %c = arith.constant() {dtype = i32, value = 3} : i32
  %s = arith.add(%c, %a) : tile<i32[4]>
  %m = arith.max(%c, %s) : tile<i32[4]>
  %lt = cmp.lt(%c, %m) : tile<u1[4]>
  %r = tile.where(%lt, %m, %s) : tile<i32[4]>"""), "canonicalize")
    binaries = [op for op in after.walk() if op.name in ("arith.add", "arith.max", "cmp.gt")]
    assert [op.name for op in binaries] == ["arith.add", "arith.max", "cmp.gt"]
    for op in binaries:
        assert isinstance(op.rhs.type, ScalarType), op.name


def test_canonicalize_removes_zero_trip_loops_and_inlines_constant_ifs():
    before, after = run("""
kernel @k(%x: tensor<f32[N]>, %y: tensor<f32[N]>) grid(1) {
  %zero = arith.constant() {dtype = i32, value = 0} : i32
  %one = arith.constant() {dtype = i32, value = 1} : i32
  %a = tile.load(%x, %zero) {shape = [4]} : tile<f32[4]>
  %l = scf.for(%one, %zero, %one, %a) ({
  ^(%i: i32, %c: tile<f32[4]>):
    %e = math.exp(%c) : tile<f32[4]>
    tile.store(%y, %zero, %e)
    scf.yield(%e)
  }) : tile<f32[4]>
  %r = scf.if(%one) ({
    %n = math.neg(%l) : tile<f32[4]>
    scf.yield(%n)
  }, {
    scf.yield(%l)
  }) : tile<f32[4]>
  tile.store(%y, %zero, %r)
}
""", "canonicalize,dce")
    assert count(before, "scf.for") == count(before, "scf.if") == 1
    assert [op.name for op in after.walk()] == [
        "arith.constant", "tile.load", "math.neg", "tile.store"]


def test_canonicalize_reaches_a_fixpoint_through_chains():
    # (0 + x) needs a swap and then the identity; the constant if needs the fold first
    _, after = run(unary_kernel("i32", """
  %c0 = arith.constant() {dtype = i32, value = 0} : i32
  %c5 = arith.constant() {dtype = i32, value = 5} : i32
  %s = arith.sub(%c5, %c5) : i32
  %z = arith.add(%c0, %a) : tile<i32[4]>
  %r = scf.if(%s) ({
    scf.yield(%a)
  }, {
    %w = arith.mul(%z, %c0) : tile<i32[4]>
    %v = arith.or(%w, %z) : tile<i32[4]>
    scf.yield(%v)
  }) : tile<i32[4]>"""), "canonicalize,dce")
    assert [op.name for op in after.walk()] == ["arith.constant", "tile.load", "tile.store"]


# ---- canonicalize rejects unsafe rewrites ----------------------------------------------------
#: name -> (dtype, body computing %r, the op that must stay, the body the rejected rule gives)
UNSAFE = {
    # -0.0 + 0.0 == +0.0
    "float x + 0.0": ("f32", const("f32", "0.0") + "%r = arith.add(%a, %c) : tile<f32[4]>",
                      "arith.add", "%r = tile.reshape(%a) {shape = [4]} : tile<f32[4]>"),
    "float x - (-0.0)": ("f32", const("f32", "-0.0") + "%r = arith.sub(%a, %c) : tile<f32[4]>",
                         "arith.sub", "%r = tile.reshape(%a) {shape = [4]} : tile<f32[4]>"),
    # NaN * 0 and inf * 0 are NaN, -1 * 0 is -0.0
    "float x * 0.0": ("bf16", const("bf16", "0.0") + "%r = arith.mul(%a, %c) : tile<bf16[4]>",
                      "arith.mul", const("bf16", "0.0")
                      + "%r = tile.full(%c) {shape = [4]} : tile<bf16[4]>"),
    # a loaded NaN keeps its payload; arithmetic and casts return the canonical NaN
    "x * 1.0 of a loaded NaN": (
        "f16", const("f16", "1.0") + "%r = arith.mul(%a, %c) : tile<f16[4]>",
        "arith.mul", "%r = tile.reshape(%a) {shape = [4]} : tile<f16[4]>"),
    "x / 1.0 of a loaded NaN": (
        "f32", const("f32", "1.0") + "%r = arith.div(%a, %c) : tile<f32[4]>",
        "arith.div", "%r = tile.reshape(%a) {shape = [4]} : tile<f32[4]>"),
    "same-dtype cast of a loaded NaN": (
        "bf16", "%r = tile.cast(%a) {dtype = bf16} : tile<bf16[4]>",
        "tile.cast", "%r = tile.reshape(%a) {shape = [4]} : tile<bf16[4]>"),
}


@pytest.mark.parametrize("name", list(UNSAFE))
def test_canonicalize_rejects_unsafe_identity(name):
    dtype, body, op_name, rejected = UNSAFE[name]
    text = unary_kernel(dtype, "  " + body)
    _, after = run(text, "canonicalize,cse,dce")
    assert count(after, op_name) == 1
    assert results_differ(text, unary_kernel(dtype, "  " + rejected), D.dtype_from_name(dtype))


@pytest.mark.parametrize("kind", ["min", "max"])
def test_canonicalize_keeps_constants_left_of_float_min_max(kind):
    body = ("  %c = arith.constant() {dtype = f32, value = 0.0} : f32\n"
            f"  %r = arith.{kind}(%c, %a) : tile<f32[4]>")
    text = unary_kernel("f32", body)
    _, after = run(text, "canonicalize")
    (op,) = [op for op in after.walk() if op.name == f"arith.{kind}"]
    assert isinstance(op.lhs.type, ScalarType)
    swapped = text.replace(f"arith.{kind}(%c, %a)", f"arith.{kind}(%a, %c)")
    assert results_differ(text, swapped, D.f32)


def test_canonicalize_keeps_a_nan_constant_left():
    # With two NaN operands, which one comes out depends on the operand order (and, in numpy,
    # even on the tile size), so a NaN constant is never moved.
    text = unary_kernel("f32", "  %c = arith.constant() {dtype = f32, value = nan} : f32\n"
                               "  %r = arith.add(%c, %a) : tile<f32[4]>")
    _, after = run(text, "canonicalize")
    (op,) = [op for op in after.walk() if op.name == "arith.add"]
    assert isinstance(op.lhs.type, ScalarType)


def test_canonicalize_keeps_a_loop_with_a_zero_step():
    text = """
kernel @k(%y: tensor<i32[N]>) grid(1) {
  %zero = arith.constant() {dtype = i32, value = 0} : i32
  scf.for(%zero, %zero, %zero) ({
  ^(%i: i32):
    scf.yield()
  })
  %t = tile.full(%zero) {shape = [4]} : tile<i32[4]>
  tile.store(%y, %zero, %t)
}
"""
    _, after = run(text, "canonicalize,cse,dce")
    assert count(after, "scf.for") == 1
    assert "step" in str(run_codes(after, {"y": np.zeros(4, np.int32)}))


# ---- cse --------------------------------------------------------------------------------------
def test_cse_merges_pure_duplicates_and_keeps_signed_zeros_apart():
    before, after = run(unary_kernel("f32", """
  %c1 = arith.constant() {dtype = f32, value = 0.0} : f32
  %c2 = arith.constant() {dtype = f32, value = 0.0} : f32
  %c3 = arith.constant() {dtype = f32, value = -0.0} : f32
  %e1 = math.exp(%a) : tile<f32[4]>
  %e2 = math.exp(%a) : tile<f32[4]>
  %s1 = arith.add(%e1, %c1) : tile<f32[4]>
  %s2 = arith.add(%e2, %c2) : tile<f32[4]>
  %s3 = arith.add(%e2, %c3) : tile<f32[4]>
  %p = arith.mul(%s1, %s2) : tile<f32[4]>
  %r = arith.mul(%p, %s3) : tile<f32[4]>"""), "cse")
    assert count(before) - count(after) == 3
    assert count(after, "arith.constant") == 3 and count(after, "math.exp") == 1
    assert count(after, "arith.add") == 2


def test_cse_reuses_outer_values_inside_blocks_but_not_inner_values_outside():
    before, after = run("""
kernel @k(%x: tensor<i32[N]>, %y: tensor<i32[N]>) grid(1) {
  %zero = arith.constant() {dtype = i32, value = 0} : i32
  %one = arith.constant() {dtype = i32, value = 1} : i32
  %two = arith.constant() {dtype = i32, value = 2} : i32
  %a = tile.load(%x, %zero) {shape = [4]} : tile<i32[4]>
  %n = math.neg(%a) : tile<i32[4]>
  %l = scf.for(%zero, %two, %one, %a) ({
  ^(%i: i32, %c: tile<i32[4]>):
    %n2 = math.neg(%a) : tile<i32[4]>
    %m = math.abs(%n2) : tile<i32[4]>
    %s = arith.add(%c, %m) : tile<i32[4]>
    scf.yield(%s)
  }) : tile<i32[4]>
  %m2 = math.abs(%n) : tile<i32[4]>
  %r = arith.add(%l, %m2) : tile<i32[4]>
  tile.store(%y, %zero, %r)
}
""", "cse")
    assert count(before, "math.neg") == 2 and count(after, "math.neg") == 1
    assert count(after, "math.abs") == 2  # the one in the loop is not visible after it


def test_cse_merges_loads_only_between_stores_to_the_same_tensor():
    before, after = run("""
kernel @k(%x: tensor<i32[N]>, %y: tensor<i32[N]>) grid(1) {
  %zero = arith.constant() {dtype = i32, value = 0} : i32
  %one = arith.constant() {dtype = i32, value = 1} : i32
  %a1 = tile.load(%x, %zero) {shape = [4]} : tile<i32[4]>
  %b1 = tile.load(%y, %zero) {shape = [4]} : tile<i32[4]>
  %n = math.neg(%a1) : tile<i32[4]>
  tile.store(%x, %one, %n)
  %a2 = tile.load(%x, %zero) {shape = [4]} : tile<i32[4]>
  %b2 = tile.load(%y, %zero) {shape = [4]} : tile<i32[4]>
  scf.for(%zero, %one, %one) ({
  ^(%i: i32):
    %b3 = tile.load(%y, %zero) {shape = [4]} : tile<i32[4]>
    tile.store(%y, %one, %b3)
    scf.yield()
  })
  %b4 = tile.load(%y, %zero) {shape = [4]} : tile<i32[4]>
  %s = arith.add(%a2, %b2) : tile<i32[4]>
  %t = arith.add(%s, %b4) : tile<i32[4]>
  %u = arith.add(%t, %b1) : tile<i32[4]>
  tile.store(%y, %zero, %u)
}
""", "cse")
    # b2 reuses b1 (only x was stored to); a2 and b3, b4 stay (after stores to their tensor)
    assert count(before, "tile.load") == 6 and count(after, "tile.load") == 5


# ---- dce --------------------------------------------------------------------------------------
def test_dce_removes_dead_chains_loops_and_ifs_but_keeps_stores():
    before, after = run("""
kernel @k(%x: tensor<f32[N]>, %y: tensor<f32[N]>) grid(1) {
  %zero = arith.constant() {dtype = i32, value = 0} : i32
  %one = arith.constant() {dtype = i32, value = 1} : i32
  %a = tile.load(%x, %zero) {shape = [4]} : tile<f32[4]>
  %dead1 = math.exp(%a) : tile<f32[4]>
  %dead2 = math.log(%dead1) : tile<f32[4]>
  %dl = scf.for(%zero, %one, %one, %a) ({
  ^(%i: i32, %c: tile<f32[4]>):
    %e = math.exp(%c) : tile<f32[4]>
    scf.yield(%e)
  }) : tile<f32[4]>
  %di = scf.if(%one) ({
    scf.yield(%a)
  }, {
    scf.yield(%dead2)
  }) : tile<f32[4]>
  %kept = scf.if(%one) ({
    tile.store(%y, %one, %a)
    scf.yield(%a)
  }, {
    scf.yield(%a)
  }) : tile<f32[4]>
  tile.store(%y, %zero, %a)
}
""", "dce")
    assert count(before, "scf.for") == 1 and count(after, "scf.for") == 0
    assert count(after, "math.exp") == count(after, "math.log") == 0
    (if_op,) = [op for op in after.walk() if op.name == "scf.if"]
    assert len(if_op.results) == 0 and count(after, "tile.store") == 2


def test_dce_drops_carried_values_that_only_feed_themselves():
    before, after = run("""
kernel @k(%x: tensor<i32[N]>, %y: tensor<i32[N]>) grid(1) {
  %zero = arith.constant() {dtype = i32, value = 0} : i32
  %one = arith.constant() {dtype = i32, value = 1} : i32
  %four = arith.constant() {dtype = i32, value = 4} : i32
  %a = tile.load(%x, %zero) {shape = [4]} : tile<i32[4]>
  %l0, %l1, %l2 = scf.for(%zero, %four, %one, %a, %a, %zero) ({
  ^(%i: i32, %live: tile<i32[4]>, %self: tile<i32[4]>, %count: i32):
    %s = arith.add(%live, %a) : tile<i32[4]>
    %t = arith.mul(%self, %self) : tile<i32[4]>
    %c = arith.add(%count, %one) : i32
    tile.store(%y, %c, %s)
    scf.yield(%s, %t, %c)
  }) : tile<i32[4]>, tile<i32[4]>, i32
  tile.store(%y, %zero, %l0)
}
""", "dce")
    (loop,) = [op for op in after.walk() if op.name == "scf.for"]
    # %self only feeds its own yield: gone; %count feeds a store: kept although %l2 is unused
    assert len(loop.results) == 2 and len(loop.body.args) == 3
    assert count(before, "arith.mul") == 1 and count(after, "arith.mul") == 0


def test_dce_keeps_a_dead_loop_whose_step_may_be_zero():
    text = """
kernel @k(%y: tensor<i32[N]>, %s: i32) grid(1) {
  %zero = arith.constant() {dtype = i32, value = 0} : i32
  scf.for(%zero, %zero, %s) ({
  ^(%i: i32):
    scf.yield()
  })
  %t = tile.full(%zero) {shape = [4]} : tile<i32[4]>
  tile.store(%y, %zero, %t)
}
"""
    _, after = run(text, "dce")
    assert count(after, "scf.for") == 1


def test_full_pipeline_shrinks_random_kernels():
    """Across random kernels the pipeline removes ops (so the property tests above test
    passes that do something)."""
    sizes = {"before": 0, "after": 0}

    @settings(max_examples=30, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(kernels_with_sizes())
    def check(generated):
        after = run_pipeline(generated.kernel, "canonicalize,cse,dce", verify=True)
        sizes["before"] += count(generated.kernel)
        sizes["after"] += count(after)

    check()
    assert sizes["after"] < 0.8 * sizes["before"]
