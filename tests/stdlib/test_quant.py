"""quantize_weight and QuantizedWeight: the quantization rules of every weight dtype and group
size, checked against bounds and independent references (ml_dtypes rounding for float codes),
constant groups, and the errors users can cause."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch

import bittile
from bittile.errors import BittileError
from bittile.stdlib import QuantizedWeight, quantize_weight

UNSIGNED = [bittile.u1, bittile.u2, bittile.u3, bittile.u4, bittile.u5, bittile.u6, bittile.u7,
            bittile.u8]
SIGNED = [bittile.i2, bittile.i3, bittile.i4, bittile.i5, bittile.i6, bittile.i7, bittile.i8]
#: bittile float code dtypes and the ml_dtypes type that rounds the same way
FLOATS = [(bittile.f4e2m1, ml_dtypes.float4_e2m1fn), (bittile.f6e3m2, ml_dtypes.float6_e3m2fn),
          (bittile.f6e2m3, ml_dtypes.float6_e2m3fn), (bittile.f8e4m3, ml_dtypes.float8_e4m3fn)]


def weight(n=24, k=256, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(np.float32)
    w[0] *= 30  # rows of very different magnitudes
    w[1] = np.abs(w[1])  # a row with no negative value
    return w


def per_weight(qw, values):
    return np.repeat(values, qw.group, axis=1).astype(np.float64)


def test_the_result_describes_itself():
    w = weight()
    qw = quantize_weight(w, bittile.u4, 64)
    assert isinstance(qw.codes, bittile.PackedTensor)
    assert qw.codes.dtype == bittile.u4 and qw.codes.shape == (24, 256)
    assert qw.shape == (24, 256) and qw.dtype == bittile.u4 and qw.group_size == 64
    assert qw.scales.dtype == np.float32 and qw.scales.shape == (24, 4)
    assert qw.zeros.dtype == np.float32 and qw.zeros.shape == (24, 4)
    assert qw.nbytes == 24 * 256 // 2 + 2 * 24 * 4 * 4
    deq = qw.dequantize()
    assert isinstance(deq, np.ndarray) and deq.dtype == np.float32 and deq.shape == (24, 256)
    assert "u4[24, 256]" in repr(qw)


@pytest.mark.parametrize("dtype", UNSIGNED + SIGNED, ids=str)
@pytest.mark.parametrize("group", [32, 64, 128, -1])
def test_integer_codes_are_within_half_a_step(dtype, group):
    w = weight(seed=dtype.bits)
    qw = quantize_weight(w, dtype, group)
    g = 256 if group == -1 else group
    assert qw.scales.shape == (24, 256 // g)
    values = bittile.unpack(qw.codes)
    assert values.min() >= dtype.min and values.max() <= dtype.max
    err = np.abs(qw.dequantize() - w)
    bound = per_weight(qw, qw.scales) / 2
    assert np.all(err <= bound * (1 + 1e-5) + 1e-6)
    # the dequantization is (q - z) * s in f32
    expected = ((values.astype(np.float32) - np.repeat(qw.zeros, g, axis=1))
                * np.repeat(qw.scales, g, axis=1))
    assert np.array_equal(qw.dequantize(), expected)


@pytest.mark.parametrize("dtype", UNSIGNED[1:], ids=str)
def test_asymmetric_codes_span_the_range_including_zero(dtype):
    w = weight()
    qw = quantize_weight(w, dtype, 128)
    qmax = (1 << dtype.bits) - 1
    lo = np.minimum(w.reshape(24, 2, 128).min(-1), 0)
    hi = np.maximum(w.reshape(24, 2, 128).max(-1), 0)
    assert np.allclose(qw.scales, (hi - lo) / qmax, rtol=1e-6)
    assert np.array_equal(qw.zeros, np.rint(qw.zeros))  # integer zero points in the code range
    assert qw.zeros.min() >= 0 and qw.zeros.max() <= qmax
    assert np.all(qw.zeros[1] == 0)  # the non-negative row: zero maps to code 0
    values = bittile.unpack(qw.codes).reshape(24, 2, 128)
    assert np.all(values.max(-1) == qmax)  # every group reaches its maximum (all have max > 0)


def test_symmetric_unsigned_codes_are_centred():
    w = weight()
    qw = quantize_weight(w, bittile.u4, 128, symmetric=True)
    assert np.all(qw.zeros == 8)
    absmax = np.abs(w.reshape(24, 2, 128)).max(-1)
    assert np.allclose(qw.scales, absmax / 7, rtol=1e-6)
    values = bittile.unpack(qw.codes)
    assert values.min() >= 1  # code 0 (-8 s) lies beyond -absmax
    one = quantize_weight(w, bittile.u1, 128, symmetric=True)
    assert np.all(one.zeros == 0.5)
    deq = one.dequantize().reshape(24, 2, 128)
    assert np.allclose(np.abs(deq), absmax[..., None], rtol=1e-6)  # sign times absmax


def test_signed_codes_are_symmetric_by_default():
    w = weight()
    qw = quantize_weight(w, bittile.i4, 64)
    assert np.all(qw.zeros == 0)
    assert np.allclose(qw.scales, np.abs(w.reshape(24, 4, 64)).max(-1) / 7, rtol=1e-6)
    assert np.abs(bittile.unpack(qw.codes)).max() == 7
    ternary = bittile.unpack(quantize_weight(w, bittile.i2, 64).codes)
    assert set(np.unique(ternary)) <= {-1, 0, 1}
    shifted = quantize_weight(w, bittile.i4, 64, symmetric=False)
    unsigned = quantize_weight(w, bittile.u4, 64)
    assert np.array_equal(bittile.unpack(shifted.codes), bittile.unpack(unsigned.codes) - 8)
    assert np.array_equal(shifted.dequantize(), unsigned.dequantize())


@pytest.mark.parametrize(("dtype", "reference"), FLOATS, ids=[str(d) for d, _ in FLOATS])
@pytest.mark.parametrize("group", [32, -1])
def test_float_codes_round_like_ml_dtypes(dtype, reference, group):
    w = weight(seed=5)
    qw = quantize_weight(w, dtype, group)
    assert qw.zeros is None
    g = 256 if group == -1 else group
    absmax = np.abs(w.reshape(24, 256 // g, g)).max(-1)
    assert np.allclose(qw.scales, absmax / dtype.max, rtol=1e-6)
    s = per_weight(qw, qw.scales)
    expected = (w / s).astype(reference).astype(np.float64)
    assert np.array_equal(bittile.unpack(qw.codes), expected)
    assert np.array_equal(qw.dequantize(), expected.astype(np.float32) * s.astype(np.float32))


@pytest.mark.parametrize("dtype", [bittile.u1, bittile.u4, bittile.u8, bittile.i2, bittile.i8,
                                   bittile.f4e2m1, bittile.f8e4m3], ids=str)
@pytest.mark.parametrize("symmetric", [None, True, False])
def test_constant_groups_dequantize_exactly(dtype, symmetric):
    if dtype.is_float and symmetric is False:
        return
    w = weight(n=4, k=128)
    w[0] = 0.0
    w[1] = 0.7
    w[2] = -3.3
    w[3, :64] = 1e-3
    qw = quantize_weight(w, dtype, 64, symmetric=symmetric)
    deq = qw.dequantize()
    assert np.all(qw.scales[0] == 0) and np.all(deq[0] == 0)
    sign_codes = dtype == bittile.u1 and symmetric  # value ±1/2
    assert np.all(qw.scales[1] == np.float32(0.7) * (2 if sign_codes else 1))
    assert np.array_equal(deq[1:3], w[1:3])
    assert np.array_equal(deq[3, :64], w[3, :64])


def test_torch_and_numpy_weights_give_the_same_codes():
    w = weight()
    a = quantize_weight(w, bittile.u3, 32)
    b = quantize_weight(torch.from_numpy(w), bittile.u3, 32)
    assert np.array_equal(a.codes.codes(), b.codes.codes())
    assert np.array_equal(a.scales, b.scales) and np.array_equal(a.zeros, b.zeros)
    half = quantize_weight(torch.from_numpy(w).bfloat16(), "u3", 32)
    assert half.shape == (24, 256) and half.dtype == bittile.u3


def test_the_constructor_checks_its_parts():
    qw = quantize_weight(weight(), bittile.u4, 128)
    with pytest.raises(BittileError, match="shape"):
        QuantizedWeight(qw.codes, qw.scales[:, :1], qw.zeros, group_size=128)
    with pytest.raises(BittileError, match="zero points"):
        QuantizedWeight(qw.codes, qw.scales, None, group_size=128)
    with pytest.raises(BittileError, match="permutation"):
        QuantizedWeight(qw.codes, qw.scales, qw.zeros, group_size=128, perm=np.zeros(256))
    rebuilt = QuantizedWeight(qw.codes, qw.scales, qw.zeros, group_size=128,
                              perm=np.arange(256)[::-1])
    assert np.array_equal(rebuilt.dequantize(), qw.dequantize()[:, ::-1])


@pytest.mark.parametrize(("args", "message"), [
    ((np.ones((4, 96), np.float32), bittile.u4, 64), "does not divide K = 96"),
    ((np.ones((4, 96), np.float32), bittile.u4, 0), "does not divide"),
    ((np.ones(96, np.float32), bittile.u4, 32), "2-D weight"),
    ((np.ones((4, 96), np.int32), bittile.u4, 32), "float weights"),
    ((np.full((4, 96), np.nan, np.float32), bittile.u4, 32), "NaN"),
    ((np.ones((4, 96), np.float32), bittile.i1, 32), "not i1"),
    ((np.ones((4, 96), np.float32), bittile.u16, 32), "not u16"),
    ((np.ones((4, 96), np.float32), bittile.f16, 32), "not f16"),
])
def test_mistakes_are_reported(args, message):
    with pytest.raises(BittileError, match=message):
        quantize_weight(*args)
    with pytest.raises(BittileError, match="scales only"):
        quantize_weight(np.ones((4, 96), np.float32), bittile.f4e2m1, 32, symmetric=False)
