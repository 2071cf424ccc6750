"""Product quantization (MILLION style): k-means codebooks and the PQ cache's attention.

Codebooks are checked for determinism, for k-means doing its job (Lloyd steps never increase
the distortion; well-separated clusters are found) and against a brute-force nearest-centroid
encoder; the cache's attention against torch SDPA over K and V rebuilt from the stored codes
with plain indexing, on interp and llvm, at awkward lengths, with GQA and several query tokens
(tolerance ``2e-5 * max|V|``), and against full precision within the documented bound on the
relative error.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bittile.errors import LaunchError
from bittile.stdlib import PQCache, PQCodebook


def kv(b, h, t, d, seed=0):
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(b, h, t, d, generator=gen)
    k[..., 1] = 6 * k[..., 1] + 5  # an outlier channel
    return k, torch.randn(b, h, t, d, generator=gen)


def sdpa(q, k, v):
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    lq, t = q.shape[2], k.shape[2]
    mask = torch.ones(lq, t, dtype=torch.bool).tril(t - lq)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def brute_force_codes(centroids, x):
    """Nearest centroid per subspace by explicit distances: centroids [M, C, ds], x [N, D]."""
    m, _, ds = centroids.shape
    parts = x.reshape(len(x), m, ds)
    dist = ((parts[:, :, None, :] - centroids[None]) ** 2).sum(-1)  # [N, M, C]
    return dist.argmin(-1), dist


def distortion(book, x):
    codes = book.encode(x)
    return float(((book.decode(codes) - x) ** 2).mean())


def train_pair(k, v, subspaces, bits, per_head=False, iters=8):
    hkv, d = k.shape[1], k.shape[3]
    if per_head:
        shape = (hkv, -1, d)
        return (PQCodebook.train(k.transpose(0, 1).reshape(shape), subspaces, bits, iters),
                PQCodebook.train(v.transpose(0, 1).reshape(shape), subspaces, bits, iters))
    return (PQCodebook.train(k.reshape(-1, d), subspaces, bits, iters),
            PQCodebook.train(v.reshape(-1, d), subspaces, bits, iters))


def filled_cache(k, v, books, residual, prefill):
    cache = PQCache(books, residual)
    if prefill:
        cache.append(k[:, :, :prefill], v[:, :, :prefill])
    for i in range(prefill, k.shape[2]):
        cache.append(k[:, :, i:i + 1], v[:, :, i:i + 1])
    return cache


def rebuilt(cache, k, v):
    """K and V from the cache's codes with plain indexing, plus the exact window."""
    kc, vc = cache.codes()
    out = []
    for book, codes, exact in ((cache.key_codebook, kc, k), (cache.value_codebook, vc, v)):
        cents = book.centroids  # [H, M, C, ds]
        heads = np.arange(codes.shape[1]) % cents.shape[0]
        m = np.arange(codes.shape[3])
        x = cents[heads[None, :, None, None], m, codes]  # [B, Hkv, T, M, ds]
        full = exact.clone()
        full[:, :, :codes.shape[2]] = torch.from_numpy(x.reshape(*codes.shape[:3], book.dim))
        out.append(full)
    return out


# ---- codebooks -------------------------------------------------------------------------------
def test_training_is_deterministic():
    x = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    a = PQCodebook.train(x, 4, 3, 5, seed=7)
    b = PQCodebook.train(x.numpy(), 4, 3, 5, seed=7)
    c = PQCodebook.train(x, 4, 3, 5, seed=8)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert not np.array_equal(a.centroids, c.centroids)
    assert a.centroids.shape == (1, 4, 8, 4) and a.centroids.dtype == np.float32
    assert (a.subspaces, a.bits, a.dim, a.heads) == (4, 3, 16, 1)


def test_lloyd_steps_reduce_distortion_and_find_clusters():
    gen = np.random.default_rng(1)
    centers = gen.normal(0, 10, (4, 4, 2))  # 4 well-separated centers per subspace of 2 dims
    pick = gen.integers(0, 4, (800, 4))
    x = (centers[np.arange(4), pick] + gen.normal(0, 0.1, (800, 4, 2))).reshape(800, 8)
    x = x.astype(np.float32)
    errors = [distortion(PQCodebook.train(x, 4, 2, iters), x) for iters in (0, 1, 3, 10)]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.05  # the noise variance is 0.01


def test_encode_picks_the_nearest_centroid():
    x = torch.randn(300, 12, generator=torch.Generator().manual_seed(2)).numpy()
    book = PQCodebook.train(x[:200], 3, 4, 4)
    codes = book.encode(x)
    assert codes.shape == (300, 3) and codes.dtype == np.uint8
    ref, dist = brute_force_codes(book.centroids[0], x)
    picked = np.take_along_axis(dist, codes[:, :, None].astype(np.int64), -1)[..., 0]
    np.testing.assert_allclose(picked, dist.min(-1), rtol=1e-5, atol=1e-5)
    assert (codes == ref).mean() > 0.99
    np.testing.assert_array_equal(book.decode(codes)[:, :4],
                                  book.centroids[0, 0][codes[:, 0]])


def test_per_head_codebooks():
    x = torch.randn(2, 100, 8, generator=torch.Generator().manual_seed(3))
    x[1] += 50  # the second head lives elsewhere
    book = PQCodebook.train(x, 2, 2, 5)
    assert book.centroids.shape == (2, 2, 4, 4)
    assert book.centroids[1].mean() > 40 > book.centroids[0].mean()
    codes = book.encode(x)
    assert codes.shape == (2, 100, 2)
    for h in range(2):
        ref, _ = brute_force_codes(book.centroids[h], x[h].numpy())
        assert (codes[h] == ref).mean() > 0.99


def test_training_rejects_bad_arguments():
    x = np.zeros((10, 8), np.float32)
    with pytest.raises(LaunchError, match="divide"):
        PQCodebook.train(x, 3, 2)
    with pytest.raises(LaunchError, match="bits"):
        PQCodebook.train(x, 2, 9)
    with pytest.raises(LaunchError, match="samples"):
        PQCodebook.train(np.zeros((2, 3, 4, 8), np.float32), 2, 2)


# ---- the cache -------------------------------------------------------------------------------
#: (backend, B, Hkv, H, T, D, Lq, subspaces, bits, residual, prefill, per-head codebooks)
CASES = [
    ("llvm", 1, 2, 2, 129, 16, 1, 8, 4, 16, 100, False),
    ("llvm", 2, 1, 2, 7, 8, 2, 4, 3, 0, 3, True),
    ("triton", 1, 2, 2, 129, 16, 1, 8, 4, 16, 100, False),
    ("triton", 2, 1, 2, 7, 8, 2, 4, 3, 0, 3, True),
    ("triton", 1, 1, 2, 257, 32, 1, 16, 4, 8, 250, False),
    ("interp", 1, 1, 1, 1, 8, 1, 2, 2, 4, 0, False),
    ("interp", 1, 2, 4, 150, 8, 3, 4, 3, 5, 140, True),
    ("interp", 2, 2, 2, 70, 12, 1, 3, 5, 0, 65, False),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_attention_matches_sdpa_over_the_stored_codes(case):
    backend, b, hkv, h, t, d, lq, subspaces, bits, residual, prefill, per_head = case
    k, v = kv(b, hkv, t, d, seed=t)
    books = train_pair(k, v, subspaces, bits, per_head)
    cache = filled_cache(k, v, books, residual, prefill)
    assert cache.quantized_length == max(0, t - residual) and len(cache) == t
    kq, vq = rebuilt(cache, k, v)
    q = torch.randn(b, h, lq, d, generator=torch.Generator().manual_seed(4))
    out = cache.attention(q, backend=backend)
    assert out.shape == q.shape and out.dtype == q.dtype
    assert (out - sdpa(q, kq, vq)).abs().max().item() <= 2e-5 * vq.abs().max().item()
    keys, values = cache.dequantize()
    np.testing.assert_allclose(keys, kq.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(values, vq.numpy(), rtol=1e-6, atol=1e-6)
    # the stored codes are the nearest centroids (a shared codebook here)
    if not per_head and cache.quantized_length:
        codes, _ = cache.codes()
        ref, _ = brute_force_codes(books[0].centroids[0], k.numpy()[:, :, :codes.shape[2]]
                                   .reshape(-1, d))
        assert (codes.reshape(-1, subspaces) == ref).mean() > 0.99


#: documented bounds on the relative error ||o - o_fp|| / ||o_fp|| (Frobenius, over heads)
#: against full precision, for kv() data with 8 heads, T = 300, D = 16, 8 subspaces of two
#: channels, residual 16, codebooks trained on the same tokens (docs/stdlib-kvcache.md); 8-bit
#: codes store 4 bits per channel, 4-bit codes 2
FULL_PRECISION_BOUND = {8: 0.3, 4: 0.9}


def test_attention_within_the_documented_bound_of_full_precision():
    k, v = kv(1, 8, 300, 16, seed=9)
    q = torch.randn(1, 8, 1, 16, generator=torch.Generator().manual_seed(10))
    full = sdpa(q, k, v)
    errors = {}
    for bits in (4, 8):
        cache = filled_cache(k, v, train_pair(k, v, 8, bits, iters=4), 16, 300)
        out = cache.attention(q, backend="interp")
        errors[bits] = ((out - full).norm() / full.norm()).item()
        assert errors[bits] <= FULL_PRECISION_BOUND[bits], errors
    assert errors[8] < errors[4] / 2


def test_cache_rejects_bad_arguments():
    book = PQCodebook.train(np.random.default_rng(0).normal(size=(50, 8)), 2, 2, 2)
    with pytest.raises(LaunchError, match="codebooks"):
        PQCache("nope")
    with pytest.raises(LaunchError, match="dimensions"):
        PQCache((book, PQCodebook.train(np.ones((50, 4)), 2, 2, 1)))
    cache = PQCache(book, 2)
    with pytest.raises(LaunchError, match="empty"):
        cache.attention(torch.ones(1, 1, 1, 8))
    with pytest.raises(LaunchError, match="D = 8"):
        cache.append(torch.ones(1, 1, 2, 4), torch.ones(1, 1, 2, 4))
    two_heads = PQCodebook(np.zeros((2, 2, 4, 4), np.float32))
    with pytest.raises(LaunchError, match="heads"):
        PQCache(two_heads).append(torch.ones(1, 3, 1, 8), torch.ones(1, 3, 1, 8))
