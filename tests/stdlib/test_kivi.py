"""KIVI quantization and the KIVI cache's decode attention.

The quantizer is checked against an independent numpy implementation of KIVI's formulas
(group by group); the cache's attention against torch SDPA over K and V rebuilt with that
reference (so the residual policy is checked too), on interp and llvm, at awkward lengths, with
GQA and several query tokens. Synthetic keys have outlier channels, as KIVI observed in real
models. Tolerances (docs/stdlib-kvcache.md): against SDPA over the same quantized K and V,
``|o - ref| <= 2e-5 * max|V|``; against full precision, the documented bounds on the relative
error for the test data (0.25 for 4 bits, 0.9 for 2 bits) and the a-posteriori bound
``max|v - v_hat| + (exp(2 Delta) - 1) * half the range of v`` (Delta: the largest error of a
score of the quantized keys).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bittile.errors import LaunchError
from bittile.runtime.packed import PackedTensor
from bittile.stdlib import KIVICache, kivi_quantize
from bittile.stdlib.kivi import pack_low_bits


# ---- data ------------------------------------------------------------------------------------
def outlier_keys(b, h, t, d, seed=0):
    """Gaussian keys whose channels 1 and d // 2 are large and offset (KIVI's outlier
    channels), and Gaussian values."""
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(b, h, t, d, generator=gen)
    k[..., 1] = 12 * k[..., 1] + 20
    k[..., d // 2] = 8 * k[..., d // 2] - 15
    v = torch.randn(b, h, t, d, generator=gen)
    return k, v


# ---- an independent reference of the quantizer -------------------------------------------
def reference_quantize(x, bits, group, axis):
    """Group by group along ``axis``: (codes, per-element scale, per-element min), f32."""
    x = np.asarray(x, np.float32)
    qmax = np.float32(2**bits - 1)
    codes = np.zeros(x.shape, np.int64)
    scale = np.zeros(x.shape, np.float32)
    low = np.zeros(x.shape, np.float32)
    n = x.shape[axis]
    for start in range(0, n, group):
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(start, min(n, start + group))
        idx = tuple(idx)
        part = x[idx]
        lo = part.min(axis=axis, keepdims=True)
        s = (part.max(axis=axis, keepdims=True) - lo) / qmax
        safe = np.where(s == 0, np.float32(1), s)
        codes[idx] = np.rint(np.clip((part - lo) / safe, 0, qmax))
        scale[idx] = np.broadcast_to(s, part.shape)
        low[idx] = np.broadcast_to(lo, part.shape)
    return codes, scale, low


def reference_cache(k, v, bits, group, residual):
    """K and V as a KIVI cache stores them: the oldest whole groups beyond the last
    ``residual`` tokens quantized (keys per channel, values per token), the rest exact."""
    k, v = k.numpy(), v.numpy()
    t, d = k.shape[2], k.shape[3]
    nq = max(0, (t - residual) // group) * group
    kq, vq = k.copy(), v.copy()
    if nq:
        c, s, lo = reference_quantize(k[:, :, :nq], bits, group, axis=2)
        kq[:, :, :nq] = c * s + lo
        c, s, lo = reference_quantize(v[:, :, :nq], bits, min(group, d), axis=3)
        vq[:, :, :nq] = c * s + lo
    return torch.from_numpy(kq), torch.from_numpy(vq), nq


def sdpa(q, k, v):
    """Torch SDPA with GQA and the cache's causal convention (query tokens are the last)."""
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    lq, t = q.shape[2], k.shape[2]
    mask = torch.ones(lq, t, dtype=torch.bool).tril(t - lq)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def filled_cache(k, v, bits, group, residual, pieces=(None,)):
    """A cache that got k and v in pieces (e.g. a prefill, then tokens one by one)."""
    cache = KIVICache(bits, group, residual)
    t, start = k.shape[2], 0
    for size in pieces:
        stop = t if size is None else start + size
        if stop > start:
            cache.append(k[:, :, start:stop], v[:, :, start:stop])
        start = stop
    for i in range(start, t):
        cache.append(k[:, :, i:i + 1], v[:, :, i:i + 1])
    return cache


# ---- the quantizer ------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("shape, group, axis", [
    ((2, 3, 64, 16), 32, 2), ((2, 3, 64, 16), 8, 3), ((1, 1, 129, 8), 32, -2),
    ((5, 7), 3, 1), ((7,), 4, 0), ((3, 1, 1), 2, 0),
])
def test_quantize_matches_the_reference(bits, shape, group, axis):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1)) * 3 + 1
    got = kivi_quantize(x, bits, group, axis)
    codes, scale, low = reference_quantize(x.numpy(), bits, group, axis % len(shape))
    assert isinstance(got.codes, PackedTensor) and got.codes.dtype.name == f"u{bits}"
    assert got.shape == tuple(shape)
    groups = -(-shape[axis] // group)
    assert got.scales.shape == got.mins.shape == tuple(
        groups if i == axis % len(shape) else n for i, n in enumerate(shape))
    np.testing.assert_array_equal(got.codes.codes(), codes)
    ax, n = axis % len(shape), shape[axis]
    per_element = [np.repeat(a, group, axis=ax).take(np.arange(n), axis=ax)
                   for a in (got.scales, got.mins)]
    np.testing.assert_array_equal(per_element[0], scale)
    np.testing.assert_array_equal(per_element[1], low)
    deq = got.dequantize()
    assert deq.dtype == np.float32
    err = np.abs(deq - x.numpy())
    assert (err <= scale / 2 * (1 + 1e-5) + 1e-5 * np.abs(x.numpy())).all()


def test_constant_groups_are_exact():
    # max == min: scale 0, codes 0, the value back exactly, no division by zero
    x = np.ones((4, 12), np.float32) * np.float32(-3.25)
    x[1] = np.linspace(-1, 1, 12)  # one varying row among constant ones
    x[2, :4] = 7.0  # a constant group next to a varying one
    with np.errstate(all="raise"):
        got = kivi_quantize(x, 2, 4, axis=1)
    assert got.scales[0].tolist() == [0.0, 0.0, 0.0] and got.mins[0].tolist() == [-3.25] * 3
    assert got.scales[2, 0] == 0 and (got.codes.codes()[[0, 3]] == 0).all()
    np.testing.assert_array_equal(got.dequantize()[[0, 3]], x[[0, 3]])
    np.testing.assert_array_equal(got.dequantize()[2, :4], x[2, :4])
    zeros = kivi_quantize(np.zeros((3, 5), np.float32), 4, 32, axis=0)
    assert (zeros.dequantize() == 0).all() and (zeros.scales == 0).all()


def test_pack_low_bits_is_the_bitstream():
    gen = np.random.default_rng(2)
    for bits in (2, 4):
        for shape in [(7,), (3, 5), (2, 3, 129)]:
            codes = gen.integers(0, 2**bits, shape).astype(np.uint8)
            ours, ref = pack_low_bits(codes, bits), PackedTensor.from_codes(codes, f"u{bits}")
            assert ours.shape == ref.shape
            np.testing.assert_array_equal(ours.bytes_view()[:ref.nbytes],
                                          ref.bytes_view()[:ref.nbytes])


@pytest.mark.parametrize("bits", [2, 4])
def test_plane_major_bytes_hold_runs_of_consecutive_codes(bits):
    """Field c of byte j is code c * (n / per) + j; from_plane_major inverts it."""
    from bittile.stdlib.kivi import from_plane_major, plane_major

    per, n = 8 // bits, 24
    codes = np.random.default_rng(bits).integers(0, 1 << bits, (3, n)).astype(np.uint8)
    packed = plane_major(codes, bits)
    assert packed.shape == (3, n // per)
    for c in range(per):
        field = (packed.astype(np.int64) >> (c * bits)) & ((1 << bits) - 1)
        np.testing.assert_array_equal(field, codes[:, c * (n // per):(c + 1) * (n // per)])
    np.testing.assert_array_equal(from_plane_major(packed, bits), codes)


def test_quantize_rejects_bad_arguments():
    x = np.zeros((4, 4), np.float32)
    with pytest.raises(LaunchError, match="bits"):
        kivi_quantize(x, 3, 4, 0)
    with pytest.raises(LaunchError, match="group_size"):
        kivi_quantize(x, 4, 0, 0)
    with pytest.raises(LaunchError, match="axis"):
        kivi_quantize(x, 4, 4, 2)
    with pytest.raises(LaunchError, match="NaN"):
        kivi_quantize(np.array([1.0, np.nan], np.float32), 4, 2, 0)


# ---- KIVI's findings on outlier channels --------------------------------------------------
def test_per_channel_keys_beat_per_token_keys():
    k, _ = outlier_keys(1, 4, 256, 64)
    for bits in (2, 4):
        per_channel = kivi_quantize(k, bits, 32, axis=2).dequantize()
        per_token = kivi_quantize(k, bits, 32, axis=3).dequantize()
        err_channel = np.mean((per_channel - k.numpy()) ** 2)
        err_token = np.mean((per_token - k.numpy()) ** 2)
        assert err_channel < err_token / 4, (bits, err_channel, err_token)


def test_four_bits_beat_two_bits():
    k, v = outlier_keys(1, 2, 300, 64, seed=3)
    q = torch.randn(1, 2, 1, 64, generator=torch.Generator().manual_seed(4))
    full = sdpa(q, k, v)
    errors = {}
    for bits in (2, 4):
        key = kivi_quantize(k, bits, 32, axis=2).dequantize() - k.numpy()
        value = kivi_quantize(v, bits, 32, axis=3).dequantize() - v.numpy()
        out = filled_cache(k, v, bits, 32, 32).attention(q, backend="interp")
        errors[bits] = (np.mean(key**2), np.mean(value**2), (out - full).abs().max().item())
    assert all(a < b / 8 for a, b in zip(errors[4][:2], errors[2][:2])), errors
    assert errors[4][2] < errors[2][2], errors


# ---- the cache's attention -------------------------------------------------------------------
#: (backend, B, Hkv, H, T, D, Lq, bits, group, residual, append pieces)
CASES = [
    ("llvm", 1, 2, 2, 129, 64, 1, 4, 32, 32, (100,)),
    ("llvm", 2, 2, 4, 7, 16, 2, 2, 4, 0, (3,)),
    ("llvm", 1, 1, 2, 300, 40, 3, 2, 12, 20, (None,)),
    ("llvm", 1, 2, 2, 511, 128, 1, 4, 128, 128, (257,)),
    ("triton", 1, 2, 2, 129, 64, 1, 4, 32, 32, (100,)),
    ("triton", 2, 2, 4, 7, 16, 2, 2, 4, 0, (3,)),
    ("triton", 1, 1, 2, 300, 40, 3, 2, 12, 20, (None,)),
    ("interp", 1, 1, 1, 1, 8, 1, 4, 8, 4, ()),
    ("interp", 1, 2, 2, 129, 32, 1, 4, 32, 16, (64,)),
    ("interp", 2, 1, 3, 150, 24, 2, 4, 16, 5, (140,)),
    ("interp", 1, 2, 4, 200, 16, 1, 2, 8, 16, (195,)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c[:10])))
def test_attention_matches_sdpa_over_the_quantized_cache(case):
    backend, b, hkv, h, t, d, lq, bits, group, residual, pieces = case
    k, v = outlier_keys(b, hkv, t, d, seed=t)
    cache = filled_cache(k, v, bits, group, residual, pieces)
    kq, vq, nq = reference_cache(k, v, bits, group, residual)
    assert (cache.quantized_length, len(cache)) == (nq, t)
    assert nq == 0 or cache.residual >= residual
    q = torch.randn(b, h, lq, d, generator=torch.Generator().manual_seed(5))
    out = cache.attention(q, backend=backend)
    ref = sdpa(q, kq, vq)
    assert out.shape == q.shape and out.dtype == q.dtype
    assert (out - ref).abs().max().item() <= 2e-5 * vq.abs().max().item()
    keys, values = cache.dequantize()
    np.testing.assert_allclose(keys, kq.numpy(), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(values, vq.numpy(), rtol=1e-6, atol=1e-5)


#: documented bounds on the relative error ||o - o_fp|| / ||o_fp|| (Frobenius, over heads) of
#: attention over the cache against full precision, for outlier_keys data with 8 heads,
#: T = 257, D = 32, group 32, residual 16 (docs/stdlib-kvcache.md)
FULL_PRECISION_BOUND = {4: 0.25, 2: 0.9}


@pytest.mark.parametrize("seed", [11, 12])
def test_attention_within_the_documented_bound_of_full_precision(seed):
    b, hkv, t, d, group, residual = 1, 8, 257, 32, 32, 16
    k, v = outlier_keys(b, hkv, t, d, seed=seed)
    q = torch.randn(b, hkv, 1, d, generator=torch.Generator().manual_seed(seed))
    full = sdpa(q, k, v)
    errors = {}
    for bits in (2, 4):
        out = filled_cache(k, v, bits, group, residual).attention(q, backend="interp")
        errors[bits] = ((out - full).norm() / full.norm()).item()
        assert errors[bits] <= FULL_PRECISION_BOUND[bits], (bits, errors)
        # the a-posteriori bound on the largest error: with Delta the largest error of a
        # score of the quantized keys, max|v - v_hat| + (exp(2 Delta) - 1) * half range of v
        kq, vq, _ = reference_cache(k, v, bits, group, residual)
        delta = torch.einsum("bhqd,bhtd->bhqt", q, kq - k).abs().max().item() / math.sqrt(d)
        half_range = (v.amax(2) - v.amin(2)).max().item() / 2
        bound = (vq - v).abs().max().item() + (math.exp(2 * delta) - 1) * half_range
        assert (out - full).abs().max().item() <= bound * (1 + 1e-4)
    assert errors[4] < errors[2] / 3


def test_outputs_keep_the_query_type_and_dtype():
    k, v = outlier_keys(1, 1, 40, 16)
    cache = filled_cache(k, v, 4, 8, 8)
    ref = cache.attention(torch.ones(1, 1, 1, 16), backend="interp")
    for dtype in (torch.float16, torch.bfloat16):
        out = cache.attention(torch.ones(1, 1, 1, 16, dtype=dtype), backend="interp")
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)
    out = cache.attention(np.ones((1, 1, 1, 16), np.float32), backend="interp")
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-6)


def test_cache_rejects_bad_arguments():
    with pytest.raises(LaunchError, match="bits"):
        KIVICache(3)
    with pytest.raises(LaunchError, match="group_size"):
        KIVICache(2, group_size=6)
    with pytest.raises(LaunchError, match="residual_length"):
        KIVICache(4, 32, -1)
    cache = KIVICache(4, 8, 4)
    with pytest.raises(LaunchError, match="empty"):
        cache.attention(torch.ones(1, 1, 1, 8))
    with pytest.raises(LaunchError, match="head dimension"):
        cache.append(torch.ones(1, 1, 2, 7), torch.ones(1, 1, 2, 7))
    cache.append(torch.ones(1, 2, 3, 8), torch.ones(1, 2, 3, 8))
    with pytest.raises(LaunchError, match="like the cache"):
        cache.append(torch.ones(1, 1, 1, 8), torch.ones(1, 1, 1, 8))
    with pytest.raises(LaunchError, match="multiple"):
        cache.attention(torch.ones(1, 3, 1, 8))
    with pytest.raises(LaunchError, match="query tokens"):
        cache.attention(torch.ones(1, 2, 4, 8))


def test_benchmark_runs_and_checks_its_results(tmp_path):
    from bittile.benchmarks import kvcache

    config = kvcache.config_from_args(kvcache.build_parser().parse_args(
        ["--quick", "--contexts", "300", "--contenders", "kivi4_g128", "--rounds", "1"]))
    results = kvcache.run_benchmark(config, log=None)
    entries = {e["contender"]: e for e in results["results"]}
    assert set(entries) == {"torch_sdpa_fp32", "kivi4_g128"}
    kivi = entries["kivi4_g128"]
    assert kivi["status"] == "ok" and kivi["max_error_vs_dequantized"] <= kivi["error_bound"]
    assert kivi["median_ms"] > 0 and kivi["bytes_read"] < entries["torch_sdpa_fp32"]["bytes_read"]
    assert "kivi4_g128" in kvcache.format_report(results)
