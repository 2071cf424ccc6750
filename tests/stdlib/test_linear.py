"""linear(x, qw, bias) against float64 torch references: every weight dtype, f16/bf16/f32
activations as torch tensors and numpy arrays, bias, round and awkward sizes, on interp, llvm
(and triton when its backend imports).

Tolerances (docs/stdlib-gemm.md):

- exact paths (interp; llvm dequantize-and-FMA, float codes, exact tables): per element,
  ``|y - ref| <= 1e-6 * (|x| @ |w|.T) + u * |ref|`` with ``u`` the unit roundoff of the
  output dtype (0 for f32, 2^-11 for f16, 2^-8 for bf16);
- llvm table lookups with int8 tables (integer codes, the default): normalized MSE
  ``sum((y - ref)^2) / sum(ref^2) <= 5e-5``; 5e-4 for u1 min-max and i2 codes, whose weights
  are mostly zero while the tables' rounding error does not shrink with the weights.
"""

from __future__ import annotations

import importlib.util

import ml_dtypes
import numpy as np
import pytest
import torch

import bittile
from bittile.errors import BittileError, LaunchError
from bittile.stdlib import QuantizedWeight, kernels, linear, quantize_weight
from bittile.stdlib.linear import choose_tiles, default_backend

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
UNIT_ROUNDOFF = {F32: 0.0, F16: 2.0 ** -11, BF16: 2.0 ** -8}
SPARSE_CODES = {bittile.u1, bittile.i2}

DTYPES = [bittile.u1, bittile.u2, bittile.u3, bittile.u4, bittile.u5, bittile.u6, bittile.u7,
          bittile.u8, bittile.i2, bittile.i3, bittile.i4, bittile.i5, bittile.i6, bittile.i7,
          bittile.i8, bittile.f4e2m1, bittile.f6e3m2, bittile.f8e4m3]
#: (M, N, K, group, activation dtype, bias), cycled over the dtypes
CASES = [(1, 129, 256, 128, F32, False), (7, 257, 512, 64, F16, True),
         (33, 129, 384, 128, BF16, False), (3, 511, 256, 32, F32, True),
         (1, 257, 257, -1, F16, True), (33, 100, 511, -1, BF16, False),
         (2, 96, 1024, -1, F32, True)]


def case_for(index):
    return CASES[index % len(CASES)]


def make(dtype, m, n, k, group, xdtype, with_bias, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=gen)
    x = torch.randn(m, k, generator=gen).to(xdtype)
    bias = torch.randn(n, generator=gen).to(xdtype) if with_bias else None
    return quantize_weight(w, dtype, group), x, bias


def reference(x, qw, bias):
    w = torch.from_numpy(qw.dequantize()).double()
    ref = x.double() @ w.T
    scale = x.double().abs() @ w.abs().T
    if bias is not None:
        ref = ref + bias.double()
    return ref, scale


def assert_exact(y, x, qw, bias):
    ref, scale = reference(x, qw, bias)
    err = (y.double() - ref).abs()
    bound = 1e-6 * scale + UNIT_ROUNDOFF[y.dtype] * ref.abs() + 1e-30
    assert bool((err <= bound).all()), f"max excess {(err - bound).max().item():.3g}"


def nmse(y, x, qw, bias):
    ref, _ = reference(x, qw, bias)
    return float(((y.double() - ref) ** 2).sum() / (ref ** 2).sum())


def takes_lookup_tables(qw, m):
    """Whether linear's dot on llvm is lowered to table lookups (int8 tables)."""
    return qw.dtype.is_int and choose_tiles(qw, m, "llvm").G % 4 == 0


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_weight_dtype_on_interp(dtype):
    m, n, k, group, xdtype, with_bias = case_for(DTYPES.index(dtype))
    qw, x, bias = make(dtype, m, n, k, group, xdtype, with_bias)
    y = linear(x, qw, bias, backend="interp")
    assert y.shape == (m, n) and y.dtype == xdtype and isinstance(y, torch.Tensor)
    assert_exact(y, x, qw, bias)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_weight_dtype_on_llvm(dtype):
    m, n, k, group, xdtype, with_bias = case_for(DTYPES.index(dtype) + 1)
    qw, x, bias = make(dtype, m, n, k, group, xdtype, with_bias, seed=1)
    y = linear(x, qw, bias, backend="llvm")
    assert y.shape == (m, n) and y.dtype == xdtype
    if takes_lookup_tables(qw, m):
        assert nmse(y, x, qw, bias) <= (5e-4 if dtype in SPARSE_CODES else 5e-5)
    else:
        assert_exact(y, x, qw, bias)


def test_integer_codes_take_the_lookup_tables_on_llvm():
    from bittile.backends.llvm import backend

    qw = quantize_weight(torch.randn(64, 256), bittile.u4, 128)
    for m in (1, 33):
        tiles = choose_tiles(qw, m, "llvm")
        kernel = kernels("gemm").linear.specialize(W=bittile.u4, X=bittile.f32, BM=tiles.BM,
                                                  BN=tiles.BN, BK=tiles.BK, G=tiles.G)
        assert "w" in backend.compile_kernel(kernel).repacked_params


def test_exact_tables_and_dequantize_and_fma_match_the_interpreter():
    qw, x, bias = make(bittile.u4, 7, 129, 256, 64, F32, True, seed=2)
    with bittile.options(BITTILE_LUT_EXACT=True):
        assert_exact(linear(x, qw, bias, backend="llvm"), x, qw, bias)
    with bittile.options(BITTILE_DOT_LOWERING="fma"):
        assert choose_tiles(qw, 7, "llvm").BK <= 128
        assert_exact(linear(x, qw, bias, backend="llvm"), x, qw, bias)


@pytest.mark.parametrize("backend", ["interp", "llvm"])
def test_leading_dimensions_are_flattened(backend):
    qw, _, _ = make(bittile.u4, 1, 48, 128, 32, F32, False, seed=3)
    x = torch.randn(2, 3, 128)
    y = linear(x, qw, backend=backend)
    assert y.shape == (2, 3, 48)
    flat = linear(x.reshape(6, 128), qw, backend=backend)
    assert torch.equal(y.reshape(6, 48), flat)
    vector = linear(x[0, 0], qw, backend=backend)
    assert vector.shape == (48,)
    assert nmse(vector[None], x[0, 0][None], qw, None) <= 5e-5


def test_numpy_activations_give_numpy_outputs():
    qw, x, bias = make(bittile.u3, 5, 70, 128, 32, F32, True, seed=4)
    for dtype in (np.float32, np.float16, ml_dtypes.bfloat16):
        xn = x.numpy().astype(dtype)
        y = linear(xn, qw, bias.numpy(), backend="interp")
        assert isinstance(y, np.ndarray) and y.dtype == dtype and y.shape == (5, 70)
        xt = torch.from_numpy(xn.astype(np.float32)).to(
            {np.float32: F32, np.float16: F16}.get(dtype, BF16))
        yt = torch.from_numpy(y.astype(np.float32)).to(xt.dtype)
        assert_exact(yt, xt, qw, bias.to(xt.dtype))


def test_bias_is_converted_to_the_activation_dtype():
    qw, x, bias = make(bittile.i4, 2, 40, 64, 32, F16, True, seed=5)
    y = linear(x, qw, bias.double().numpy(), backend="interp")
    assert_exact(y, x, qw, bias)


def test_no_rows_give_an_empty_result():
    qw, _, _ = make(bittile.u4, 1, 40, 64, 32, F32, False)
    assert linear(torch.zeros(0, 64), qw).shape == (0, 40)
    assert linear(np.zeros((2, 0, 64), np.float16), qw).shape == (2, 0, 40)


def test_the_weight_is_never_dequantized(monkeypatch):
    qw, x, _ = make(bittile.f6e3m2, 2, 40, 64, 32, F32, False)
    expected = linear(x, qw, backend="interp")
    monkeypatch.setattr(QuantizedWeight, "dequantize", lambda self: pytest.fail("dequantized"))
    assert torch.equal(linear(x, qw, backend="interp"), expected)


def test_tiles_are_powers_of_two_and_respect_the_lookup_row_limit(monkeypatch):
    qw = quantize_weight(torch.randn(300, 4096), bittile.u4, -1)
    pow2 = lambda v: v & (v - 1) == 0  # noqa: E731
    for backend in ("interp", "llvm", "triton"):
        for m in (1, 7, 33, 1000):
            t = choose_tiles(qw, m, backend)
            assert all(pow2(v) for v in (t.BM, t.BN, t.BK, t.G)) and t.BK % t.G == 0
            assert qw.group % t.G == 0
    assert choose_tiles(qw, 1, "llvm").BK == 4096
    monkeypatch.setenv("BITTILE_LUT_MAX_M", "4")
    assert choose_tiles(qw, 33, "llvm").BM == 4


def test_default_backend_follows_the_environment(monkeypatch):
    monkeypatch.setenv("BITTILE_BACKEND", "interp")
    assert default_backend() == "interp"
    monkeypatch.delenv("BITTILE_BACKEND")
    expected = "llvm" if importlib.util.find_spec("llvmlite") else "interp"
    assert default_backend() == expected


def _triton_backend_available() -> bool:
    try:
        from bittile.backends.triton import backend  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _triton_backend_available(), reason="the triton backend is not there")
@pytest.mark.parametrize("dtype", [bittile.u4, bittile.f4e2m1], ids=str)
def test_triton(dtype):
    qw, x, bias = make(dtype, 3, 40, 64, 32, F16, True, seed=6)
    assert_exact(linear(x, qw, bias, backend="triton"), x, qw, bias)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda qw: linear(torch.randn(2, 63), qw), LaunchError, r"\[\.\.\., 64\]"),
    (lambda qw: linear(torch.randn(2, 64).double(), qw), LaunchError, "float64"),
    (lambda qw: linear(torch.ones(2, 64, dtype=torch.int32), qw), LaunchError, "int32"),
    (lambda qw: linear([[1.0] * 64], qw), LaunchError, "torch tensor or a numpy array"),
    (lambda qw: linear(torch.randn(2, 64), qw, torch.randn(41)), LaunchError, r"bias .*\[40\]"),
    (lambda qw: linear(torch.randn(2, 64), qw.dequantize()), LaunchError, "QuantizedWeight"),
    (lambda qw: linear(torch.randn(2, 64), qw, backend="cuda"), LaunchError, "backend"),
])
def test_mistakes_are_reported(call, error, message):
    qw, _, _ = make(bittile.u4, 1, 40, 64, 32, F32, False)
    with pytest.raises(error, match=message):
        call(qw)
    assert issubclass(error, BittileError)
