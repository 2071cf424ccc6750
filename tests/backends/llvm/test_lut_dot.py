"""The table-lookup lowering of dequantizing dots inside kernels: when it is chosen, that the
weights are repacked once and cached, and its accuracy (int8 tables: NMSE against float64
dequantize-then-matmul at most 5e-5 on Gaussian activations; float tables: the interpreter's
results within the float tolerance)."""

from __future__ import annotations

import numpy as np
import pytest

import bittile
from bittile.backends.llvm import backend
from bittile.dsl.module import load_source
from bittile.testing.checkers import assert_backends_agree

LINEAR = """
// y[M, N] = x[M, K] @ ((w - z) * s).T with per-group scales s and zero points z
kernel linear[W: dtype, BM: int = 1, BN: int = 64, BK: int = 128, G: int = 32](
    x: f32[M, K], w: W[N, K], s: f32[N, K / G], z: f32[N, K / G], y: f32[M, N],
) grid(cdiv(M, BM), cdiv(N, BN)) {
    let m0 = block_id(0) * BM
    let n0 = block_id(1) * BN
    var acc = zeros(f32, [BN, BM])
    for k0 in range(0, K, BK) {
        let sc = reshape(broadcast(load(s, [n0, k0 / G], [BN, BK / G])[:, :, None],
                                   [BN, BK / G, G]), [BN, BK])
        let zp = reshape(broadcast(load(z, [n0, k0 / G], [BN, BK / G])[:, :, None],
                                   [BN, BK / G, G]), [BN, BK])
        let wf = (cast(load(w, [n0, k0], [BN, BK]), f32) - zp) * sc
        acc = dot(wf, permute(load(x, [m0, k0], [BM, BK]), [1, 0]), acc)
    }
    store(y, [m0, n0], permute(acc, [1, 0]))
}
"""


def linear_kernel(**consts):
    return load_source(LINEAR, "linear.tile").linear.specialize(**consts)


def make_args(dtype, m, n, k, group, rng):
    codes = rng.integers(0, 1 << dtype.bits, (n, k))
    values = dtype.decode(codes.astype(np.uint64))
    s = (rng.random((n, k // group)) * 0.02 + 0.001).astype(np.float32)
    z = rng.integers(-2, 3, (n, k // group)).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    args = {"x": x, "w": bittile.pack(values, dtype), "s": s, "z": z,
            "y": np.zeros((m, n), np.float32)}
    deq = (values - np.repeat(z, group, axis=1)) * np.repeat(s.astype(np.float64), group, axis=1)
    return args, x.astype(np.float64) @ deq.T


def nmse(got, ref):
    return float(np.sum((got - ref) ** 2) / np.sum(ref ** 2))


@pytest.mark.parametrize("dtype", [bittile.u1, bittile.u2, bittile.u3, bittile.u4, bittile.i4,
                                   bittile.u8])
@pytest.mark.parametrize(("m", "n", "k"), [(1, 129, 256), (3, 64, 384), (1, 7, 128)])
def test_int8_tables_are_accurate(dtype, m, n, k, monkeypatch):
    monkeypatch.setenv("BITTILE_DOT_LOWERING", "lut")
    kernel = linear_kernel(W=dtype, BM=m)
    compiled = backend.compile_kernel(kernel)
    assert "w" in compiled.repacked_params, "the table-lookup lowering was not chosen"
    args, ref = make_args(dtype, m, n, k, 32, np.random.default_rng(dtype.bits + n))
    compiled(**args)
    assert nmse(args["y"], ref) <= 5e-5


@pytest.mark.parametrize("dtype", [bittile.u2, bittile.u4, bittile.i4])
def test_float_tables_match_the_interpreter(dtype, monkeypatch):
    monkeypatch.setenv("BITTILE_DOT_LOWERING", "lut")
    monkeypatch.setenv("BITTILE_LUT_EXACT", "1")
    kernel = linear_kernel(W=dtype, BM=2)
    assert backend.compile_kernel(kernel).repacked_params
    args, ref = make_args(dtype, 2, 70, 256, 32, np.random.default_rng(7))
    assert_backends_agree(kernel, args=args)
    backend.run(kernel, **args)
    assert nmse(args["y"], ref) <= 1e-10


def test_auto_picks_lookup_for_small_m_only(monkeypatch):
    assert backend.compile_kernel(linear_kernel(W=bittile.u4, BM=1)).repacked_params
    assert not backend.compile_kernel(linear_kernel(W=bittile.u4, BM=32)).repacked_params
    monkeypatch.setenv("BITTILE_DOT_LOWERING", "fma")
    assert not backend.compile_kernel(linear_kernel(W=bittile.u4, BM=1)).repacked_params


def test_weights_are_repacked_once_and_cached_with_the_weight(monkeypatch):
    from bittile.backends.llvm import lut

    calls = []
    original = lut.repack
    monkeypatch.setattr(lut, "repack", lambda *a, **k: calls.append(1) or original(*a, **k))
    kernel = linear_kernel(W=bittile.u4)
    args, ref = make_args(bittile.u4, 1, 64, 256, 32, np.random.default_rng(0))
    for _ in range(3):
        backend.run(kernel, **args)
    assert len(calls) == 1
    other, _ = make_args(bittile.u4, 1, 64, 256, 32, np.random.default_rng(1))
    backend.run(kernel, **{**args, "w": other["w"]})
    assert len(calls) == 2


def test_gemv_example_takes_the_lookup_path():
    kernel = bittile.load_module("examples/gemv_u4.tile").gemv_u4.specialize(BN=64, BK=128)
    compiled = backend.compile_kernel(kernel)
    assert "w" in compiled.repacked_params
    rng = np.random.default_rng(3)
    n, k = 200, 512
    codes = rng.integers(0, 16, (n, k))
    s = rng.random((n, k // 32)).astype(np.float32)
    x = rng.standard_normal(k).astype(np.float32)
    y = np.zeros(n, np.float32)
    compiled(bittile.pack(codes, bittile.u4), s, x, y)
    ref = ((codes - 8) * np.repeat(s.astype(np.float64), 32, axis=1)) @ x
    assert nmse(y, ref) <= 5e-5


def test_exact_tables_can_be_chosen_for_one_call():
    kernel = linear_kernel(W=bittile.u4)
    args, ref = make_args(bittile.u4, 1, 64, 256, 32, np.random.default_rng(4))
    with bittile.options(BITTILE_LUT_EXACT=True):
        backend.run(kernel, **args)
    assert nmse(args["y"], ref) <= 1e-10
    backend.run(kernel, **args)
    assert 1e-10 < nmse(args["y"], ref) <= 5e-5


def test_bench_command_runs_bittile_against_the_baselines(tmp_path, capsys):
    from bittile.runtime.cli import main

    out = tmp_path / "gemv.json"
    code = main(["bench", "gemv", "--quick", "--bits", "u4", "--m", "1", "--no-plot",
                 "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "bittile_lut" in text and "torch_int4" in text and "numpy_fp32" in text
    import json

    results = json.loads(out.read_text())
    assert any(r["contender"] == "bittile_lut" and r["status"] == "ok"
               for r in results["results"])


@pytest.mark.parametrize("lanes", [4, 8, 16])
def test_register_transpose_of_coefficient_blocks(lanes):
    """``transposed_vectors`` (the shuffle network that lays the scales out for the lookup
    kernel) against numpy's transpose, compiled and run."""
    import ctypes

    from llvmlite import ir

    from bittile.backends.llvm import jit
    from bittile.backends.llvm.lut_dot import transposed_vectors

    f32, vec = ir.FloatType(), ir.VectorType(ir.FloatType(), lanes)
    module = ir.Module(name="t")
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ir.PointerType()] * 2), "t")
    b = ir.IRBuilder(fn.append_basic_block())
    src, dst = fn.args

    def row(ptr, i):
        at = b.gep(ptr, [ir.Constant(ir.IntType(64), i * lanes)], source_etype=f32)
        return b.bitcast(at, vec.as_pointer())

    rows = [b.load(row(src, i), typ=vec, align=4) for i in range(lanes)]
    for i, v in enumerate(transposed_vectors(b, rows, lanes)):
        b.store(v, row(dst, i), align=4)
    b.ret_void()
    compiled = jit.JitModule(str(module))
    run = compiled.function("t", None, ctypes.c_void_p, ctypes.c_void_p)
    a = np.arange(lanes * lanes, dtype=np.float32).reshape(lanes, lanes)
    out = np.zeros_like(a)
    run(a.ctypes.data, out.ctypes.data)
    np.testing.assert_array_equal(out, a.T)


def test_linear_with_transposed_coefficient_blocks_is_exact(monkeypatch):
    """A lookup dot whose coefficient tile is transposed in registers (K/G and BN multiples of
    the vector lanes), with float tables, against float64 dequantize-then-matmul."""
    from bittile import stdlib
    from bittile.backends.llvm import lut_dot

    calls = []
    real = lut_dot.transposed_vectors
    monkeypatch.setattr(lut_dot, "transposed_vectors",
                        lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(3)
    n, k, g = 96, 1024, 32
    codes = rng.integers(0, 16, (n, k))
    s = rng.random((n, k // g)).astype(np.float32) + 0.5
    z = rng.integers(0, 16, (n, k // g)).astype(np.float32)
    x = rng.standard_normal((1, k)).astype(np.float32)
    y = np.zeros((1, n), np.float32)
    with bittile.options(BITTILE_LUT_EXACT=True, BITTILE_DOT_LOWERING="lut",
                         BITTILE_DISABLE_CACHE=True):
        stdlib.kernels("gemm").linear(x, bittile.pack(codes, bittile.u4), s, z, y,
                                      backend="llvm", W=bittile.u4, G=g, BM=1, BN=32, BK=k)
    assert calls, "the register transpose was not used"
    w = (codes - np.repeat(z, g, 1)) * np.repeat(s, g, 1)
    np.testing.assert_allclose(y[0], w @ x[0].astype(np.float64), rtol=1e-4, atol=1e-3)
