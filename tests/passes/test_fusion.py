"""fuse-elementwise and fuse-dequant-dot: where they fire, where they must not, and that the
interpreter gives bit-identical results before and after them, on hand-written kernels (the
gemv and W4 matmul examples) and on generated ones. Also the fused ops themselves: verifier,
interpreter and textual round trip."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bittile
from bittile.backends import interp
from bittile.errors import BittileError, IRError
from bittile.ir import dtypes as D
from bittile.ir.builder import KernelBuilder
from bittile.ir.core import Block, Kernel, Value
from bittile.ir.ops import CastOp, DequantDotOp, FusedElementwiseOp, YieldOp
from bittile.ir.parser import parse_kernel
from bittile.ir.types import ScalarType, TensorType, TileType
from bittile.ir.verifier import verify_kernel
from bittile.passes.base import parse_pipeline
from bittile.passes.fuse_dequant_dot import FuseDequantDotPass
from bittile.passes.fuse_elementwise import FuseElementwisePass
from bittile.passes.manager import run_pipeline
from bittile.testing.ir_strategies import kernels_with_sizes, random_values

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HYPOTHESIS = settings(max_examples=80, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])

W4_MATMUL = """
kernel matmul_w4[BM: int = 16, BN: int = 16, BK: int = 32, G: int = 32](
    x: f32[M, K], w: u4[K, N], s: f32[K / G, N], y: f32[M, N],
) grid(cdiv(M, BM), cdiv(N, BN)) {
    let m0 = block_id(0) * BM
    let n0 = block_id(1) * BN
    var acc = zeros(f32, [BM, BN])
    for k0 in range(0, K, BK) {
        let a = load(x, [m0, k0], [BM, BK])
        let wq = load(w, [k0, n0], [BK, BN])
        let sc = broadcast(load(s, [k0 / G, n0], [1, BN]), [BK, BN])
        acc = dot(a, cast(wq, f32) * sc, acc)
    }
    store(y, [m0, n0], acc)
}
"""


# ---- helpers ------------------------------------------------------------------------------------
def op_names(kernel: Kernel) -> list[str]:
    return [op.name for op in kernel.walk()]


def top_ops(kernel: Kernel, name: str) -> list:
    return [op for op in kernel.walk() if op.name == name]


def outer_op_names(kernel: Kernel) -> list[str]:
    """Op names, not looking into the bodies of fused ops."""
    names: list[str] = []

    def visit(block: Block) -> None:
        for op in block.ops:
            names.append(op.name)
            if not isinstance(op, (FusedElementwiseOp, DequantDotOp)):
                for inner in op.regions:
                    visit(inner)

    visit(kernel.body)
    return names


def run_codes(kernel: Kernel, values: dict, outputs) -> dict[str, np.ndarray] | str:
    """Launch on packed copies of ``values``; the codes of ``outputs`` (or the error kind)."""
    args = {}
    for p in kernel.params:
        v = values[p.name]
        args[p.name] = bittile.pack(v, p.type.dtype) if isinstance(p.type, TensorType) else v
    try:
        interp.run(kernel, **args)
    except BittileError as exc:
        return type(exc).__name__
    return {name: args[name].codes() for name in outputs}


def assert_same_results(before: Kernel, after: Kernel, values: dict, outputs) -> None:
    expected, got = run_codes(before, values, outputs), run_codes(after, values, outputs)
    if isinstance(expected, str):
        assert got == expected
        return
    for name in outputs:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def check_pass(pass_, kernel: Kernel, values: dict, outputs) -> Kernel:
    """Run the pass (verifying), check the round trip of the printed IR and the results."""
    text_before = str(kernel)
    after = run_pipeline(kernel, [pass_], verify=True)
    assert str(kernel) == text_before, "the pass changed its input"
    text = str(after)
    assert str(parse_kernel(text)) == text
    assert_same_results(kernel, after, values, outputs)
    return after


def tensor_values(kernel: Kernel, shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {p.name: random_values(p.type.dtype, shapes[p.name], rng, nonfinite=True)
            for p in kernel.params}


# ---- fuse-elementwise on the gemv example ---------------------------------------------------
#: a u4 GEMV written as a reduction of products (examples/gemv_u4.tile writes it as a dot)
GEMV_BY_SUM = """
fn dequant(wq, scale) {
    return (cast(wq, f32) - 8.0) * scale
}

kernel gemv_u4[BN: int = 16, BK: int = 64, G: int = 32](
    w: u4[N, K], s: f32[N, K / G], x: f32[K], y: f32[N],
) grid(cdiv(N, BN)) {
    let n0 = block_id(0) * BN
    var acc = zeros(f32, [BN])
    for k0 in range(0, K, BK) {
        let sc = load(s, [n0, k0 / G], [BN, BK / G])
        let sc_full = reshape(broadcast(sc[:, :, None], [BN, BK / G, G]), [BN, BK])
        let wf = dequant(load(w, [n0, k0], [BN, BK]), sc_full)
        let xs = broadcast(load(x, [k0], [BK])[None, :], [BN, BK])
        acc += sum(wf * xs, 1)
    }
    store(y, [n0], acc)
}
"""


def gemv_kernel() -> Kernel:
    from bittile.dsl.module import load_source

    return load_source(GEMV_BY_SUM, "gemv_by_sum.tile").gemv_u4.specialize()


def test_gemv_dequant_chain_becomes_one_fused_op():
    kernel = gemv_kernel()
    n, k = 37, 160
    values = tensor_values(kernel, {"w": (n, k), "s": (n, k // 32), "x": (k,), "y": (n,)})
    fused = check_pass(FuseElementwisePass(), kernel, values, ["y"])
    (op,) = top_ops(fused, "tile.fused")
    # cast, - 8.0, * scale, * x: one op, one result, read by the reduction
    assert [o.name for o in op.body.ops] == [
        "tile.cast", "arith.sub", "arith.mul", "arith.mul", "scf.yield"]
    assert len(op.outs) == 1 and op.shape == (16, 64)
    assert [v.type.dtype.name for v in op.inputs] == ["u4", "f32", "f32", "f32"]
    assert isinstance(op.inputs[1].type, ScalarType)  # the constant 8.0 splats
    outer = outer_op_names(fused)
    assert len(outer) == len(outer_op_names(kernel)) - 3
    assert "tile.cast" not in outer and "arith.sub" not in outer


def test_gemv_fused_results_match_numpy_reference():
    kernel = run_pipeline(gemv_kernel(), "fuse-elementwise", verify=True)
    rng = np.random.default_rng(1)
    n, k = 19, 96
    w = rng.integers(0, 16, (n, k))
    s = rng.standard_normal((n, k // 32)).astype(np.float32)
    x = rng.standard_normal(k).astype(np.float32)
    y = np.zeros(n, np.float32)
    interp.run(kernel, bittile.pack(w, bittile.u4), s, x, y)
    ref = ((w - 8.0) * np.repeat(s, 32, axis=1).astype(np.float64) * x).sum(axis=1)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


# ---- fuse-dequant-dot on a W4 matmul ----------------------------------------------------------
def w4_kernel() -> Kernel:
    return bittile.load_source(W4_MATMUL, "w4.tile").matmul_w4.specialize()


W4_SHAPES = {"x": (33, 96), "w": (96, 40), "s": (3, 40), "y": (33, 40)}


def test_w4_matmul_dot_takes_the_dequantization():
    kernel = w4_kernel()
    values = tensor_values(kernel, W4_SHAPES)
    fused = check_pass(FuseDequantDotPass(), kernel, values, ["y"])
    names = outer_op_names(fused)
    assert "tile.dot" not in names and "tile.cast" not in names
    assert names.count("arith.mul") == outer_op_names(kernel).count("arith.mul") - 1
    (op,) = top_ops(fused, "tile.dequant_dot")
    assert op.dequantized == "b" and op.w.type.dtype == D.u4
    assert [o.name for o in op.body.ops] == ["tile.cast", "arith.mul", "scf.yield"]
    assert [p.type for p in op.params] == [TileType(D.f32, (32, 16))]  # the broadcast scale
    assert "tile.broadcast" in names  # stays outside, as a side input
    assert len(names) == len(outer_op_names(kernel)) - 2  # dot, cast, mul -> dequant_dot


def test_w4_matmul_dequant_dot_matches_numpy_reference():
    kernel = run_pipeline(w4_kernel(), "fuse-dequant-dot", verify=True)
    rng = np.random.default_rng(2)
    m, k, n = 21, 96, 40
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.integers(0, 16, (k, n))
    s = rng.standard_normal((k // 32, n)).astype(np.float32)
    y = np.zeros((m, n), np.float32)
    interp.run(kernel, x, bittile.pack(w, bittile.u4), s, y)
    # the loop accumulates one 32-deep block at a time, rounding to f32 after each
    b = (w * np.repeat(s, 32, axis=0)).astype(np.float32).astype(np.float64)
    ref = np.zeros((m, n), np.float32)
    for k0 in range(0, k, 32):
        ref = (ref + x[:, k0:k0 + 32].astype(np.float64) @ b[k0:k0 + 32]).astype(np.float32)
    np.testing.assert_array_equal(y, ref)


def test_dequant_dot_after_fuse_elementwise_is_the_same():
    kernel = w4_kernel()
    direct = FuseDequantDotPass().run(kernel)
    values = tensor_values(kernel, W4_SHAPES, seed=3)
    staged = check_pass(FuseDequantDotPass(), FuseElementwisePass().run(kernel), values, ["y"])
    assert str(staged) == str(direct)
    assert_same_results(kernel, staged, values, ["y"])


def test_pipeline_text_runs_both_passes():
    passes = parse_pipeline("fuse-dequant-dot,fuse-elementwise{min-ops=3}")
    assert [str(p) for p in passes] == ["fuse-dequant-dot", "fuse-elementwise{min-ops=3}"]
    kernel = w4_kernel()
    out = run_pipeline(kernel, passes, verify=True)
    assert "tile.dequant_dot" in op_names(out) and "tile.fused" not in op_names(out)


def _dequant_a_kernel(extra_use: bool = False) -> Kernel:
    """y = dot((cast(w) - z) * s, x) with the low-bit operand on the left."""
    kb = KernelBuilder("dq_a")
    x = kb.tensor("x", D.f16, [8, 4])
    w = kb.tensor("w", D.i4, [6, 8])
    s = kb.tensor("s", D.f16, [6, 1])
    y = kb.tensor("y", D.f32, [6, 4])
    e = kb.tensor("e", D.f16, [6, 8])
    b = kb.builder
    wf = b.cast(b.load(w, [0, 0], [6, 8]), D.f16)
    zero_point = b.sub(wf, b.constant(1.5, D.f16))
    scaled = b.mul(zero_point, b.broadcast(b.load(s, [0, 0], [6, 1]), [6, 8]))
    if extra_use:
        b.store(e, [0, 0], zero_point)
    acc = b.zeros([6, 4], D.f32)
    b.store(y, [0, 0], b.dot(scaled, b.load(x, [0, 0], [8, 4]), acc))
    return kb.finish()


DQ_A_SHAPES = {"x": (8, 4), "w": (6, 8), "s": (6, 1), "y": (6, 4), "e": (6, 8)}


def test_dequantized_left_operand():
    kernel = _dequant_a_kernel()
    fused = check_pass(FuseDequantDotPass(), kernel, tensor_values(kernel, DQ_A_SHAPES),
                       ["y", "e"])
    (op,) = top_ops(fused, "tile.dequant_dot")
    assert op.dequantized == "a" and op.w.type.dtype == D.i4 and op.x.type.dtype == D.f16
    assert [v.type.dtype for v in op.params] == [D.f16, D.f16]  # 1.5 and the scale


def test_dequant_dot_does_not_fire_when_an_intermediate_is_used_elsewhere():
    kernel = _dequant_a_kernel(extra_use=True)
    after = check_pass(FuseDequantDotPass(), kernel, tensor_values(kernel, DQ_A_SHAPES),
                       ["y", "e"])
    assert str(after) == str(kernel)


def test_dequant_dot_needs_a_low_bit_source():
    kb = KernelBuilder("wide")
    x = kb.tensor("x", D.f32, [4, 4])
    w = kb.tensor("w", D.u16, [4, 4])
    y = kb.tensor("y", D.f32, [4, 4])
    b = kb.builder
    a = b.load(x, [0, 0], [4, 4])
    wf = b.mul(b.cast(b.load(w, [0, 0], [4, 4]), D.f32), 0.5)
    b.store(y, [0, 0], b.dot(a, wf, b.zeros([4, 4], D.f32)))
    kernel = kb.finish()
    assert str(FuseDequantDotPass().run(kernel)) == str(kernel)  # u16 is not low-bit


# ---- fuse-elementwise: boundaries ---------------------------------------------------------------
def _chain_kernel(use_before_end: bool = False, in_loop: bool = False) -> Kernel:
    kb = KernelBuilder("chain")
    x = kb.tensor("x", D.f32, [16])
    y = kb.tensor("y", D.f32, [16])
    z = kb.tensor("z", D.f32, [16])
    b = kb.builder
    t = b.load(x, [0], [16])
    u = b.mul(t, 2.0)
    v = b.unary("exp", u)
    if use_before_end:
        b.store(z, [0], v)  # v is read outside the chain before w is computed
    if in_loop:
        with b.for_range(0, 2, 1, [v]) as loop:
            loop.yield_(b.add(loop.carried[0], b.unary("abs", u)))
        v = loop.results[0]
    w = b.where(b.compare("gt", v, 1.0), v, u)
    b.store(y, [0], w)
    if not use_before_end:
        b.store(z, [0], b.add(u, 1.0))  # u is used after the chain: an extra result
    return kb.finish()


CHAIN_VALUES = {"x": np.linspace(-3, 3, 16), "y": np.zeros(16), "z": np.zeros(16)}


def test_value_used_after_the_chain_is_an_extra_result():
    kernel = _chain_kernel()
    fused = check_pass(FuseElementwisePass(min_ops=2), kernel, CHAIN_VALUES, ["y", "z"])
    ops = top_ops(fused, "tile.fused")
    assert len(ops) == 1
    # mul, exp, gt, where: the chain; u (the mul) is also read by the final add
    body = [o.name for o in ops[0].body.ops]
    assert body == ["arith.mul", "math.exp", "cmp.gt", "tile.where", "scf.yield"]
    assert len(ops[0].outs) == 2
    assert op_names(fused).count("arith.add") == 1  # the add after the chain is a single op


def test_use_outside_seals_the_chain():
    kernel = _chain_kernel(use_before_end=True)
    fused = check_pass(FuseElementwisePass(), kernel, CHAIN_VALUES, ["y", "z"])
    bodies = [[o.name for o in op.body.ops] for op in top_ops(fused, "tile.fused")]
    # the store of v ends the first group; cmp and where read it from outside
    assert bodies == [["arith.mul", "math.exp", "scf.yield"], ["cmp.gt", "tile.where",
                                                                "scf.yield"]]


def test_fusion_does_not_cross_nested_blocks():
    kernel = _chain_kernel(in_loop=True)
    fused = check_pass(FuseElementwisePass(), kernel, CHAIN_VALUES, ["y", "z"])
    (loop,) = top_ops(fused, "scf.for")
    inner = [op.name for op in loop.body.ops]
    # abs and add in the loop fuse with each other, never with the ops outside
    assert inner == ["tile.fused", "scf.yield"]
    assert all(v.type.shape == (16,) for v in loop.body.ops[0].inputs
               if isinstance(v.type, TileType))


def test_single_ops_are_not_fused_and_min_ops_is_honoured():
    kernel = _chain_kernel()
    assert "tile.fused" not in op_names(FuseElementwisePass(min_ops=5).run(kernel))
    once = FuseElementwisePass().run(kernel)
    assert str(FuseElementwisePass().run(once)) == str(once)  # idempotent


# ---- the fused ops ----------------------------------------------------------------------------
FUSED_IR = """
kernel @k(%x: tensor<u4[4, 8]>, %y: tensor<f32[4, 8]>, %z: tensor<f32[4, 8]>, %a: f32) grid(1) {
  %0 = arith.constant() {dtype = i32, value = 0} : i32
  %1 = tile.load(%x, %0, %0) {shape = [4, 8]} : tile<u4[4, 8]>
  %2, %3 = tile.fused(%1, %a) ({
  ^(%4: u4, %5: f32):
    %6 = tile.cast(%4) {dtype = f32} : f32
    %7 = arith.constant() {dtype = f32, value = 0.5} : f32
    %8 = arith.mul(%6, %7) : f32
    %9 = arith.add(%5, %7) : f32
    scf.yield(%8, %9)
  }) {shape = [4, 8]} : tile<f32[4, 8]>, tile<f32[4, 8] @ spatial(4, 8)>
  tile.store(%y, %0, %0, %2)
  %10 = tile.convert_layout(%3) {layout = layout<local(4, 8)>} : tile<f32[4, 8] @ local(4, 8)>
  tile.store(%z, %0, %0, %10)
}
"""


def test_fused_op_round_trips_and_runs_on_whole_tiles():
    kernel = parse_kernel(FUSED_IR)
    assert str(parse_kernel(str(kernel))) == str(kernel)
    w = np.arange(32).reshape(4, 8) % 16
    y, z = np.zeros((4, 8), np.float32), np.zeros((4, 8), np.float32)
    interp.run(kernel, bittile.pack(w, bittile.u4), y, z, 2.0)
    np.testing.assert_array_equal(y, w * 0.5)
    np.testing.assert_array_equal(z, np.full((4, 8), 2.5))  # scalar-only yield splats


def _fused_op(inputs, arg_types, ops_fn, shape=(4,), result_types=None):
    body = Block(args=[Value(t) for t in arg_types])
    yielded = ops_fn(body)
    body.ops.append(YieldOp(values=tuple(yielded)))
    return FusedElementwiseOp.create(inputs, shape, body, result_types)


def _cast_body(dtype):
    def build(body):
        op = CastOp.create(body.args[0], dtype)
        body.ops.append(op)
        return [op.out]
    return build


TILE_U4 = Value(TileType(D.u4, (4,)))


@pytest.mark.parametrize("make,message", [
    (lambda: _fused_op([TILE_U4], [ScalarType(D.u8)], _cast_body(D.f32)), "arguments are (u8)"),
    (lambda: _fused_op([Value(TileType(D.u4, (2,)))], [ScalarType(D.u4)], _cast_body(D.f32)),
     "input 0 has shape [2]"),
    (lambda: _fused_op([TILE_U4], [ScalarType(D.u4)], _cast_body(D.f32),
                       result_types=[TileType(D.f16, (4,))]), "result 0 is tile<f16[4]>"),
    (lambda: _fused_op([TILE_U4], [ScalarType(D.u4)],
                       lambda body: [CastOp.create(TILE_U4, D.f32).out]),
     "not defined in the body"),
    (lambda: _fused_op([TILE_U4], [ScalarType(D.u4)], lambda body: [], result_types=[
        TileType(D.u4, (4,))]), "yields 0 values for 1 results"),
])
def test_fused_op_verifier(make, message):
    with pytest.raises(IRError, match=re.escape(message)):
        make().verify()


@pytest.mark.parametrize("text,message", [
    # a tile op in the body
    ("""%2 = tile.fused(%1) ({
  ^(%3: u4):
    %4 = tile.full(%3) {shape = [4, 8]} : tile<u4[4, 8]>
    scf.yield(%4)
  }) {shape = [4, 8]} : tile<u4[4, 8]>""", "only hold elementwise ops, not tile.full"),
    # the body reads a value from outside instead of an input
    ("""%2 = tile.fused(%1) ({
  ^(%3: u4):
    %4 = arith.add(%3, %3) : u4
    %5 = arith.add(%4, %1) : tile<u4[4, 8]>
    scf.yield(%5)
  }) {shape = [4, 8]} : tile<u4[4, 8]>""", "not defined in the body"),
])
def test_fused_op_parse_errors(text, message):
    ir = ("kernel @k(%x: tensor<u4[4, 8]>) grid(1) {\n"
          "  %0 = arith.constant() {dtype = i32, value = 0} : i32\n"
          "  %1 = tile.load(%x, %0, %0) {shape = [4, 8]} : tile<u4[4, 8]>\n"
          f"  {text}\n}}\n")
    with pytest.raises(IRError, match=message):
        parse_kernel(ir)


def test_dequant_dot_verifier_checks_the_dot():
    kernel = FuseDequantDotPass().run(w4_kernel())
    (op,) = top_ops(kernel, "tile.dequant_dot")
    bad_acc = Value(TileType(D.f32, (16, 8)))
    with pytest.raises(IRError, match="tile.dequant_dot: as a dot: shapes do not chain"):
        DequantDotOp.create(op.x, bad_acc, op.w, op.params, op.body).verify()
    with pytest.raises(IRError, match='dequantized must be "a" or "b"'):
        DequantDotOp.create(op.x, op.acc, op.w, op.params, op.body, "c").verify()
    with pytest.raises(IRError, match="side input 0 has shape"):
        DequantDotOp.create(op.x, op.acc, op.w, [op.x, op.params[0]], op.body).verify()
    with pytest.raises(IRError, match="arguments are"):
        DequantDotOp.create(op.x, op.acc, op.w, [], op.body).verify()


# ---- generated kernels ------------------------------------------------------------------------
def _check_generated(pass_, generated) -> Kernel:
    values = generated.random_arguments(np.random.default_rng(0), nonfinite=True)
    after = check_pass(pass_, generated.kernel, values, generated.outputs)
    verify_kernel(after)
    return after


@HYPOTHESIS
@given(kernels_with_sizes(max_ops=30))
def test_fuse_elementwise_preserves_random_kernels(generated):
    _check_generated(FuseElementwisePass(), generated)


@HYPOTHESIS
@given(kernels_with_sizes(max_ops=30))
def test_fuse_dequant_dot_preserves_random_kernels(generated):
    _check_generated(FuseDequantDotPass(), generated)


# Random dequantization chains feeding a dot, the low-bit operand on either side, sometimes
# with an intermediate used elsewhere (the pass must then leave the chain alone or fuse only
# its closed part), sometimes inside a loop.
FLOAT_SOURCES = (D.u1, D.u2, D.u4, D.u8, D.i3, D.i4, D.i8, D.f4e2m1, D.f6e3m2, D.f6e2m3,
                 D.f8e4m3, D.f8e5m2)
INT_SOURCES = (D.u1, D.u2, D.u4, D.u8, D.i2, D.i4, D.i8)
FLOAT_STEPS = ("sub_const", "mul_scale", "sub_zero", "neg", "where", "max", "recast")
INT_STEPS = ("sub_const", "mul_scale", "sub_zero", "neg", "where", "max", "shr")


@st.composite
def dequant_programs(draw):
    is_float = draw(st.booleans())
    compute = draw(st.sampled_from((D.f16, D.bf16, D.f32) if is_float else (D.i16, D.i32)))
    acc_dtype = draw(st.sampled_from((D.f32, compute) if is_float else (D.i32,)))
    source = draw(st.sampled_from(FLOAT_SOURCES if is_float else INT_SOURCES))
    side = draw(st.sampled_from("ab"))
    m, k, n = (draw(st.sampled_from((1, 2, 3, 5, 8))) for _ in range(3))
    steps = draw(st.lists(st.sampled_from(FLOAT_STEPS if is_float else INT_STEPS),
                          min_size=0, max_size=5))
    extra_use = draw(st.sampled_from((None, None, "root", "middle")))
    in_loop = draw(st.booleans())

    kb = KernelBuilder("dequant")
    w_shape = (k, n) if side == "b" else (m, k)
    x_shape = (m, k) if side == "b" else (k, n)
    scale_shape = (1, n) if side == "b" else (m, 1)
    x = kb.tensor("x", compute, x_shape)
    w = kb.tensor("w", source, w_shape)
    s = kb.tensor("s", compute, scale_shape)
    z = kb.tensor("z", source, w_shape)
    y = kb.tensor("y", acc_dtype, (m, n))
    e = kb.tensor("e", compute, w_shape)
    b = kb.builder

    def body(acc):
        dense = b.load(x, [0, 0], x_shape)
        v = b.cast(b.load(w, [0, 0], w_shape), compute)
        values = [v]
        for step in steps:
            if step == "sub_const":
                v = b.sub(v, b.constant(draw(st.sampled_from((1, 2, 8))), compute))
            elif step == "mul_scale":
                v = b.mul(v, b.broadcast(b.load(s, [0, 0], scale_shape), w_shape))
            elif step == "sub_zero":
                v = b.sub(v, b.cast(b.load(z, [0, 0], w_shape), compute))
            elif step == "neg":
                v = b.unary("neg", v)
            elif step == "where":
                v = b.where(b.compare("lt", v, b.constant(0, compute)), b.constant(0, compute), v)
            elif step == "max":
                v = b.binary("max", v, b.constant(-3, compute))
            elif step == "recast":
                v = b.cast(b.cast(v, D.f16), compute)
            else:
                v = b.binary("shr", v, b.constant(1, compute))
            values.append(v)
        if extra_use is not None:
            used = v if extra_use == "root" else values[draw(st.integers(0, len(values) - 1))]
            b.store(e, [0, 0], used)
        a_, b_ = (dense, v) if side == "b" else (v, dense)
        return b.dot(a_, b_, acc)

    acc0 = b.load(y, [0, 0], (m, n))
    if in_loop:
        with b.for_range(0, 2, 1, [acc0]) as loop:
            loop.yield_(body(loop.carried[0]))
        out = loop.results[0]
    else:
        out = body(acc0)
    b.store(y, [0, 0], out)
    kernel = kb.finish()
    shapes = {"x": x_shape, "w": w_shape, "s": scale_shape, "z": w_shape, "y": (m, n),
              "e": w_shape}
    seed = draw(st.integers(0, 2**16))
    return kernel, tensor_values(kernel, shapes, seed), extra_use


@HYPOTHESIS
@given(dequant_programs())
def test_fuse_dequant_dot_on_random_dequantization_chains(program):
    kernel, values, extra_use = program
    after = check_pass(FuseDequantDotPass(), kernel, values, ["y", "e"])
    fired = "tile.dequant_dot" in op_names(after)
    if extra_use is None:
        assert fired and "tile.dot" not in op_names(after)
    if extra_use == "root":
        assert not fired
    # after fuse-elementwise: a closed chain is one tile.fused, which the dot absorbs (a chain
    # merged with values used elsewhere may no longer be separable, hence only when closed)
    staged = check_pass(FuseDequantDotPass(), FuseElementwisePass().run(kernel), values,
                        ["y", "e"])
    if extra_use is None:
        assert str(staged) == str(after)


@HYPOTHESIS
@given(dequant_programs())
def test_fuse_elementwise_on_random_dequantization_chains(program):
    kernel, values, _ = program
    check_pass(FuseElementwisePass(), kernel, values, ["y", "e"])
