"""attention and decode_attention against torch: float64 references, and torch's own error in the
input dtype as the yardstick (docs/stdlib-attention.md).

Accuracy rule: the root-mean-square error of bittile's result against the float64 reference is
at most twice that of ``torch.nn.functional.scaled_dot_product_attention`` run in the input
dtype (plus one unit roundoff of the dtype times the reference's RMS, for the cases that both
compute exactly, such as a single key). The RMS is used rather than the largest error: two
computations of equal quality have largest errors whose ratio swings between 0.4 and 2.5 over
random inputs (a tail statistic of a few elements), while their RMS errors agree within 10%.
A wrong mask, scale, head mapping or merge gives errors orders of magnitude above the bound.

Sizes are chosen so that the cases share compiled specializations (each costs about a second
on the llvm backend); the interpreter runs only tiny cases.
"""

from __future__ import annotations

import importlib.util

import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bittile.errors import DTypeError, LaunchError
from bittile.stdlib import attention, decode_attention
from bittile.stdlib.attention import decode_tiles, default_backend, prefill_tiles

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
UNIT_ROUNDOFF = {F32: 2.0 ** -24, F16: 2.0 ** -11, BF16: 2.0 ** -8}
HAS_TRITON = (importlib.util.find_spec("triton") is not None
              and importlib.util.find_spec("bittile.backends.triton.backend") is not None)


def rms(x: torch.Tensor) -> float:
    return x.double().pow(2).mean().sqrt().item()


def assert_as_accurate_as_torch(out, ref64, torch_out):
    """RMS error of ``out`` <= 2 x that of ``torch_out`` (+ one unit roundoff of the dtype)."""
    assert out.dtype == torch_out.dtype and out.shape == ref64.shape
    ours = rms(out.double() - ref64)
    theirs = rms(torch_out.double() - ref64)
    bound = 2 * theirs + UNIT_ROUNDOFF[torch_out.dtype] * rms(ref64)
    assert ours <= bound, f"RMS error {ours:.3g} > {bound:.3g} (torch's own: {theirs:.3g})"


def make_qkv(b, h, hkv, lq, lk, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, lq, d, generator=g).to(dtype)
    k = torch.randn(b, hkv, lk, d, generator=g).to(dtype)
    v = torch.randn(b, hkv, lk, d, generator=g).to(dtype)
    return q, k, v


def sdpa(q, k, v, causal=False, scale=None):
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale,
                                          enable_gqa=True)


def check_prefill(b, h, hkv, lq, lk, d, dtype, causal, backend, scale=None, seed=0):
    q, k, v = make_qkv(b, h, hkv, lq, lk, d, dtype, seed)
    out = attention(q, k, v, causal=causal, scale=scale, backend=backend)
    ref64 = sdpa(q.double(), k.double(), v.double(), causal, scale)
    assert_as_accurate_as_torch(out, ref64, sdpa(q, k, v, causal, scale))


# (B, H, Hkv, Lq, Lk, D, dtype, causal): L in 1, 7, 129, 257; D in 32, 64, 80, 96, 128; GQA
# ratios 1, 2, 4; causal with Lq < Lk and Lq > Lk (torch's top-left alignment)
PREFILL_CASES = [
    (1, 2, 2, 1, 1, 32, F32, False),
    (2, 4, 2, 7, 7, 64, F16, True),
    (1, 4, 1, 129, 129, 80, BF16, False),
    (1, 2, 1, 257, 257, 128, F32, True),
    (1, 8, 2, 257, 257, 64, F16, False),
    (2, 2, 2, 129, 129, 32, BF16, True),
    (1, 4, 2, 7, 129, 128, F32, True),
    (1, 2, 1, 257, 129, 80, F16, True),
    (1, 2, 2, 129, 7, 96, BF16, False),
    (1, 4, 4, 257, 257, 128, BF16, True),
    (1, 2, 1, 1, 257, 64, F32, True),
    (1, 2, 2, 129, 257, 32, F32, False),
    (1, 4, 1, 129, 129, 96, F32, False),
]


@pytest.mark.parametrize("b, h, hkv, lq, lk, d, dtype, causal", PREFILL_CASES)
def test_prefill_llvm_matches_torch(b, h, hkv, lq, lk, d, dtype, causal):
    check_prefill(b, h, hkv, lq, lk, d, dtype, causal, "llvm")


@pytest.mark.parametrize("b, h, hkv, lq, lk, d, dtype, causal", [
    (1, 2, 1, 7, 9, 32, F16, True),
    (2, 2, 2, 5, 3, 80, F32, False),
    (1, 4, 2, 3, 20, 64, BF16, True),
])
def test_prefill_interp_matches_torch(b, h, hkv, lq, lk, d, dtype, causal):
    check_prefill(b, h, hkv, lq, lk, d, dtype, causal, "interp")


@pytest.mark.skipif(not HAS_TRITON, reason="the triton backend is not available")
@pytest.mark.parametrize(("b", "h", "hkv", "lq", "lk", "d", "dtype", "causal"), [
    (1, 2, 1, 7, 9, 80, F16, True),
    (1, 2, 2, 1, 129, 64, BF16, False),
    (1, 4, 2, 33, 40, 96, F32, True),
    (1, 1, 1, 20, 20, 128, BF16, True),
])
def test_prefill_triton_matches_torch(b, h, hkv, lq, lk, d, dtype, causal):
    check_prefill(b, h, hkv, lq, lk, d, dtype, causal, "triton")


def test_long_sequence_f32_is_as_accurate_as_torch():
    # The output accumulator is summed per key tile, then across tiles; one f32 chain over all
    # keys (acc passed to the dot as its accumulator) gave 1.8x torch's RMS error here.
    q, k, v = make_qkv(1, 1, 1, 2048, 2048, 128, F32)
    out = attention(q, k, v, backend="llvm")
    ref64 = sdpa(q.double(), k.double(), v.double())
    assert rms(out - ref64) <= 1.25 * rms(sdpa(q, k, v) - ref64)


def test_causal_is_aligned_top_left_as_torch():
    # with Lq < Lk, query 0 sees key 0 only: its output is v[0]
    q, k, v = make_qkv(1, 1, 1, 3, 8, 32, F32)
    out = attention(q, k, v, causal=True, backend="llvm")
    torch.testing.assert_close(out[0, 0, 0], v[0, 0, 0])
    assert_as_accurate_as_torch(out, sdpa(q.double(), k.double(), v.double(), True),
                                sdpa(q, k, v, True))


def test_scale():
    check_prefill(1, 2, 2, 129, 257, 32, F32, False, "llvm", scale=0.37)


def test_numpy_arguments():
    q, k, v = make_qkv(1, 2, 2, 129, 257, 32, F32)
    out = attention(q.numpy(), k.numpy(), v.numpy(), backend="llvm")
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert_as_accurate_as_torch(torch.from_numpy(out), sdpa(q.double(), k.double(), v.double()),
                                sdpa(q, k, v))


@pytest.mark.parametrize("dtype, np_dtype", [(F16, np.float16), (BF16, ml_dtypes.bfloat16)])
def test_numpy_half_arguments(dtype, np_dtype):
    q, k, v = make_qkv(2, 4, 2, 7, 7, 64, dtype)
    as_np = [x.float().numpy().astype(np_dtype) for x in (q, k, v)]
    out = attention(*as_np, causal=True, backend="llvm")
    assert out.dtype == np_dtype
    back = torch.from_numpy(out.astype(np.float32)).to(dtype)
    assert_as_accurate_as_torch(back, sdpa(q.double(), k.double(), v.double(), True),
                                sdpa(q, k, v, True))


def test_non_contiguous_arguments():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 7, 2, 32, generator=g).transpose(1, 2) for _ in range(3))
    assert not q.is_contiguous()  # [B, L, H, D] memory seen as [B, H, L, D]
    out = attention(q, k, v, backend="llvm")
    assert_as_accurate_as_torch(out, sdpa(q.double(), k.double(), v.double()), sdpa(q, k, v))


def test_empty_sizes():
    q, k, v = make_qkv(1, 2, 1, 5, 0, 32, F32)
    torch.testing.assert_close(attention(q, k, v, backend="llvm"), sdpa(q, k, v))  # zeros
    q, k, v = make_qkv(1, 2, 1, 0, 5, 32, F32)
    assert attention(q, k, v, backend="llvm").shape == (1, 2, 0, 32)


@pytest.mark.parametrize("args, error, match", [
    (dict(q=(1, 3, 4, 32), k=(1, 2, 4, 32)), LaunchError, "not a multiple"),
    (dict(q=(1, 2, 4, 32), k=(1, 2, 4, 64)), LaunchError, "does not match"),
    (dict(q=(2, 2, 4, 32), k=(1, 2, 4, 32)), LaunchError, "does not match"),
    (dict(q=(2, 4, 32), k=(2, 2, 4, 32)), LaunchError, "4 dimensions"),
    (dict(q=(1, 2, 4, 32), k=(1, 2, 4, 32), v=(1, 2, 5, 32)), LaunchError, "one shape"),
    (dict(q=(1, 2, 4, 32), k=(1, 2, 4, 32), kdtype=F16), DTypeError, "float16"),
    (dict(q=(1, 2, 4, 32), k=(1, 2, 4, 32), dtype=torch.float64), DTypeError, "float64"),
])
def test_prefill_errors(args, error, match):
    dtype = args.get("dtype", F32)
    q = torch.zeros(args["q"], dtype=dtype)
    k = torch.zeros(args["k"], dtype=args.get("kdtype", dtype))
    v = torch.zeros(args.get("v", args["k"]), dtype=args.get("kdtype", dtype))
    with pytest.raises(error, match=match):
        attention(q, k, v, backend="llvm")


def test_mixed_torch_and_numpy_is_an_error():
    q, k, v = make_qkv(1, 1, 1, 2, 2, 32, F32)
    with pytest.raises(LaunchError, match="all torch tensors or all numpy arrays"):
        attention(q, k.numpy(), v, backend="llvm")


# ---- decode --------------------------------------------------------------------------------
def reference_decode(q, k_cache, v_cache, seq_lens, dtype_of_computation):
    """Per sequence, SDPA of its one query over its first seq_lens[b] positions."""
    rows = []
    for b, n in enumerate(seq_lens.tolist()):
        qb = q[b:b + 1, :, None].to(dtype_of_computation)
        kb = k_cache[b:b + 1, :, :n].to(dtype_of_computation)
        vb = v_cache[b:b + 1, :, :n].to(dtype_of_computation)
        rows.append(sdpa(qb, kb, vb)[0, :, 0] if n else torch.zeros_like(qb[0, :, 0]))
    return torch.stack(rows)


def check_decode(b, h, hkv, lmax, d, dtype, lens, backend, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, d, generator=g).to(dtype)
    k_cache = torch.randn(b, hkv, lmax, d, generator=g).to(dtype)
    v_cache = torch.randn(b, hkv, lmax, d, generator=g).to(dtype)
    seq_lens = torch.tensor(lens, dtype=torch.int32)
    out = decode_attention(q, k_cache, v_cache, seq_lens, backend=backend)
    assert_as_accurate_as_torch(out, reference_decode(q, k_cache, v_cache, seq_lens,
                                                      torch.float64),
                                reference_decode(q, k_cache, v_cache, seq_lens, dtype))


# (B, H, Hkv, Lmax, D, dtype, seq_lens): empty sequences, full caches, GQA ratios 1, 2, 4, and
# enough positions for many splits (merged by the second kernel)
DECODE_CASES = [
    (3, 4, 1, 257, 64, F32, [257, 0, 100]),
    (2, 4, 2, 129, 128, F16, [7, 129]),
    (2, 2, 2, 7, 32, BF16, [1, 7]),
    (1, 8, 2, 1000, 80, F32, [1000]),
    (2, 4, 4, 257, 96, BF16, [129, 256]),
]


@pytest.mark.parametrize("b, h, hkv, lmax, d, dtype, lens", DECODE_CASES)
def test_decode_llvm_matches_torch(b, h, hkv, lmax, d, dtype, lens):
    check_decode(b, h, hkv, lmax, d, dtype, lens, "llvm")


def test_decode_interp_matches_torch():
    check_decode(2, 4, 2, 20, 32, F32, [20, 3], "interp")


@pytest.mark.skipif(not HAS_TRITON, reason="the triton backend is not available")
@pytest.mark.parametrize(("b", "h", "hkv", "length", "d", "dtype", "lens"), [
    (2, 4, 2, 20, 80, F16, [20, 0]),
    (1, 8, 2, 257, 64, BF16, [257]),
    (3, 2, 1, 129, 128, F32, [129, 1, 7]),
])
def test_decode_triton_matches_torch(b, h, hkv, length, d, dtype, lens):
    check_decode(b, h, hkv, length, d, dtype, lens, "triton")


def test_decode_splits_the_cache():
    tiles = decode_tiles(1000, 4, 80, "llvm", programs=2)
    assert tiles.SPLITS > 1 and tiles.SP >= tiles.SPLITS and tiles.DP == 96


def test_decode_all_empty_sequences():
    q = torch.randn(2, 2, 32)
    cache = torch.randn(2, 1, 5, 32)
    out = decode_attention(q, cache, cache, torch.zeros(2, dtype=torch.int32), backend="llvm")
    assert torch.equal(out, torch.zeros_like(q))


def test_decode_numpy_arguments():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 2, 32), dtype=np.float32)
    cache = rng.standard_normal((1, 1, 9, 32), dtype=np.float32)
    out = decode_attention(q, cache, cache, np.array([9], np.int32), backend="llvm")
    expected = sdpa(*(torch.from_numpy(x).double() for x in (q[:, :, None], cache, cache)))
    np.testing.assert_allclose(out, expected[:, :, 0].numpy(), atol=1e-6)


@pytest.mark.parametrize("lens, dtype, match", [
    ([3, 9], torch.int32, r"seq_lens must lie in \[0, 5\]"),
    ([3, -1], torch.int32, r"seq_lens must lie in"),
    ([3, 3], torch.int64, "int32"),
    ([3], torch.int32, "shapes do not match"),
])
def test_decode_errors(lens, dtype, match):
    q = torch.zeros(2, 2, 32)
    cache = torch.zeros(2, 1, 5, 32)
    with pytest.raises((LaunchError, DTypeError), match=match):
        decode_attention(q, cache, cache, torch.tensor(lens, dtype=dtype), backend="llvm")


# ---- choices -------------------------------------------------------------------------------
def test_default_backend(monkeypatch):
    monkeypatch.setenv("BITTILE_BACKEND", "interp")
    assert default_backend() == "interp"
    monkeypatch.delenv("BITTILE_BACKEND")
    expected = "llvm" if importlib.util.find_spec("llvmlite") else "interp"
    assert default_backend() == expected


@pytest.mark.parametrize("d, backend, padded", [
    (32, "llvm", 32), (80, "llvm", 96), (96, "llvm", 96), (128, "llvm", 128), (8, "llvm", 16),
    (80, "triton", 128), (96, "triton", 128), (32, "triton", 32),
])
def test_head_dim_padding(d, backend, padded):
    assert prefill_tiles(100, 100, d, backend).DP == padded
