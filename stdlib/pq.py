"""Product-quantized KV cache in the style of MILLION (Wang et al., *MILLION: Mastering
Long-Context LLM Inference Via Outlier-Immunized KV Product Quantization*, 2025).

A vector of D channels is cut into M subspaces of D / M channels; each subspace has a codebook
of 2^bits centroids learned by k-means (:meth:`PQCodebook.train`), and a vector is stored as
the M indices of its nearest centroids. :class:`PQCache` keeps keys and values so, the most
recent tokens in full precision, and computes decode attention with a query-centroid table
built once per step (``pq_lut`` in ``stdlib/kvcache.tile``): a key's score is a sum of M table
entries, read by the ``pq_attend`` kernel. docs/stdlib-kvcache.md describes both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bittile.errors import LaunchError
from bittile.stdlib.kivi import (
    DecodeStep,
    ResidualWindow,
    _kernels,
    as_f32_numpy,
    carried_over,
    checked_kv,
    quantized_splits,
)

__all__ = ["PQCodebook", "PQCache"]

#: float32 distances computed at once while training / encoding (memory bound)
_CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class PQCodebook:
    """Centroids ``[H, M, C, D / M]`` (f32): per head (H = 1: shared by all heads), per
    subspace, C = 2^bits centroids of D / M channels."""

    centroids: np.ndarray

    @property
    def heads(self) -> int:
        return self.centroids.shape[0]

    @property
    def subspaces(self) -> int:
        return self.centroids.shape[1]

    @property
    def bits(self) -> int:
        return int(self.centroids.shape[2]).bit_length() - 1

    @property
    def dim(self) -> int:
        return self.subspaces * self.centroids.shape[3]

    @classmethod
    def train(cls, samples, subspaces: int, bits: int, iters: int = 25, *,
              seed: int = 0) -> PQCodebook:
        """k-means per subspace on ``samples`` ``[N, D]`` (one shared codebook) or
        ``[H, N, D]`` (one per head): k-means++ seeding from ``numpy.random.default_rng(seed)``,
        then ``iters`` Lloyd steps (a cluster that empties keeps its centroid). The same
        samples, arguments and seed give the same codebook."""
        x = as_f32_numpy(samples, "samples")
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1] == 0:
            raise LaunchError(f"samples must be [N, D] or [H, N, D] with N >= 1, got "
                              f"{list(x.shape)}")
        if not 1 <= bits <= 8:
            raise LaunchError(f"bits must be 1..8 (codes are bytes), got {bits}")
        h, n, d = x.shape
        if subspaces < 1 or d % subspaces:
            raise LaunchError(f"subspaces must divide the dimension {d}, got {subspaces}")
        if not np.isfinite(x).all():
            raise LaunchError("samples hold NaN or infinite values")
        ds = d // subspaces
        # [H * M, N, ds]: every subspace of every head is one k-means problem
        data = x.reshape(h, n, subspaces, ds).transpose(0, 2, 1, 3).reshape(-1, n, ds)
        rng = np.random.default_rng(seed)
        centroids = _kmeans_pp(data, 1 << bits, rng)
        for _ in range(iters):
            centroids = _lloyd_step(data, centroids)
        return cls(np.ascontiguousarray(centroids.reshape(h, subspaces, 1 << bits, ds),
                                        np.float32))

    def encode(self, x) -> np.ndarray:
        """The nearest centroid of every subspace: ``x [..., N, D]`` with a leading head axis
        of H (per-head codebooks, ``[H, N, D]``) or any leading axes (shared codebook) ->
        uint8 codes ``[..., N, M]``."""
        x = as_f32_numpy(x, "x")
        h, m, c, ds = self.centroids.shape
        if x.shape[-1] != self.dim or (h > 1 and (x.ndim != 3 or x.shape[0] != h)):
            want = f"[{h}, N, {self.dim}]" if h > 1 else f"[..., {self.dim}]"
            raise LaunchError(f"encode takes {want}, got {list(x.shape)}")
        heads = x.reshape(h, -1, m, ds).transpose(0, 2, 1, 3).reshape(h * m, -1, ds)
        codes = _assign(heads, self.centroids.reshape(h * m, c, ds))
        return codes.reshape(h, m, -1).transpose(0, 2, 1).reshape(*x.shape[:-1], m)

    def decode(self, codes) -> np.ndarray:
        """The centroids that ``codes`` (as :meth:`encode` gives them) name: f32 ``[..., D]``."""
        codes = np.asarray(codes)
        h, m, c, ds = self.centroids.shape
        flat = codes.reshape(h, -1, m).astype(np.int64)
        out = np.take_along_axis(self.centroids[:, None], flat[:, :, :, None, None], 3)
        return out.reshape(*codes.shape[:-1], self.dim)


def _sq_distances(data: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``[S, N, C]`` squared distances of every point to every centroid, per subspace."""
    if data.shape[2] > 8:
        cross = np.einsum("snd,scd->snc", data, centroids)
        return ((data * data).sum(-1)[:, :, None] - 2 * cross
                + (centroids * centroids).sum(-1)[:, None, :])
    dist = np.zeros((data.shape[0], data.shape[1], centroids.shape[1]), np.float32)
    for j in range(data.shape[2]):  # narrow subspaces: coordinate by coordinate
        dist += (data[:, :, j, None] - centroids[:, None, :, j]) ** 2
    return dist


def _assign(data: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid, ``[S, N]`` uint8, in chunks of points."""
    s, n, _ = data.shape
    step = max(1, _CHUNK_ELEMENTS // max(1, s * centroids.shape[1]))
    out = np.empty((s, n), np.uint8)
    for i in range(0, n, step):
        out[:, i:i + step] = _sq_distances(data[:, i:i + step], centroids).argmin(-1)
    return out


def _kmeans_pp(data: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding for every subspace at once: [S, k, ds]."""
    s, n, ds = data.shape
    rows = np.arange(s)
    chosen = np.empty((s, k, ds), np.float32)
    chosen[:, 0] = data[rows, rng.integers(0, n, s)]
    best = ((data - chosen[:, :1]) ** 2).sum(-1)
    for j in range(1, k):
        total = best.sum(-1, keepdims=True)
        # proportional to the squared distance; uniform where every point is already a centroid
        weights = np.where(total > 0, best / np.where(total > 0, total, 1), 1.0 / n)
        pick = (weights.cumsum(-1) < rng.random((s, 1))).sum(-1).clip(0, n - 1)
        chosen[:, j] = data[rows, pick]
        best = np.minimum(best, ((data - chosen[:, j:j + 1]) ** 2).sum(-1))
    return chosen


def _lloyd_step(data: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    s, n, ds = data.shape
    k = centroids.shape[1]
    nearest = _assign(data, centroids).astype(np.int64) + (np.arange(s) * k)[:, None]
    flat = nearest.ravel()
    counts = np.bincount(flat, minlength=s * k).reshape(s, k)
    sums = np.stack([np.bincount(flat, weights=data[..., j].ravel(), minlength=s * k)
                     for j in range(ds)], -1).reshape(s, k, ds)
    means = sums / np.maximum(counts, 1)[:, :, None]
    return np.where(counts[:, :, None] > 0, means, centroids).astype(np.float32)


# ---- the cache -------------------------------------------------------------------------------
#: tokens per block of the stored codes (one step of pq_attend's loop; rows of at least 64
#: bytes keep LLVM's vectorization of the one-hot operand along the tokens)
PQ_BLOCK = 64


class PQCache:
    """A decoder layer's KV cache with product-quantized keys and values.

    ``codebooks`` is a :class:`PQCodebook` for both keys and values, or a pair ``(keys,
    values)``; a codebook with H heads must have ``H == Hkv`` (one per kv head), else H = 1.
    ``append(k, v)`` takes ``[B, Hkv, T, D]``; the last ``residual_length`` tokens stay in full
    precision, older ones are stored as codes. ``attention(q)`` is softmax attention of q
    ``[B, H, Lq, D]`` over the cache (H a multiple of Hkv, the Lq query tokens being the last
    tokens, causal among themselves).
    """

    def __init__(self, codebooks, residual_length: int = 128, *, backend: str | None = None):
        if isinstance(codebooks, PQCodebook):
            codebooks = (codebooks, codebooks)
        if not (isinstance(codebooks, (tuple, list)) and len(codebooks) == 2
                and all(isinstance(c, PQCodebook) for c in codebooks)):
            raise LaunchError("codebooks must be a PQCodebook or a pair (keys, values) of them")
        keys, values = codebooks
        if keys.dim != values.dim:
            raise LaunchError(f"the key and value codebooks have dimensions {keys.dim} and "
                              f"{values.dim}")
        if not isinstance(residual_length, int) or residual_length < 0:
            raise LaunchError(f"residual_length must be an int >= 0, got {residual_length!r}")
        self.key_codebook, self.value_codebook = keys, values
        self.residual_length = residual_length
        self.backend = backend
        self.quantized_length = 0
        self._window: ResidualWindow | None = None
        self._blocks = 0

    @property
    def residual(self) -> int:
        return 0 if self._window is None else self._window.length

    def __len__(self) -> int:
        return self.quantized_length + self.residual

    def _start(self, b: int, hkv: int, d: int) -> None:
        if d != self.key_codebook.dim:
            raise LaunchError(f"the codebooks are for D = {self.key_codebook.dim}, got D = {d}")
        for book in (self.key_codebook, self.value_codebook):
            if book.heads not in (1, hkv):
                raise LaunchError(f"a codebook has {book.heads} heads; the cache has {hkv}")
        self.dims = (b, hkv, d)
        self._window = ResidualWindow(b, hkv, d, self.residual_length + 1)
        self._grow(1)

    def _grow(self, need: int) -> None:
        blocks = -(-need // PQ_BLOCK)
        if blocks <= self._blocks:
            return
        blocks = max(blocks, 2 * self._blocks)
        b, hkv, _ = self.dims
        arrays = {
            "kc": np.zeros((b, hkv, blocks, self.key_codebook.subspaces, PQ_BLOCK), np.uint8),
            "vc": np.zeros((b, hkv, blocks, self.value_codebook.subspaces, PQ_BLOCK), np.uint8),
        }
        self._arrays = carried_over(arrays, self._arrays if self._blocks else None)
        self._blocks = blocks

    def append(self, k, v) -> None:
        """Add ``T`` tokens: ``k`` and ``v`` are ``[B, Hkv, T, D]``."""
        k, v = checked_kv(k, v, None if self._window is None else self.dims)
        if self._window is None:
            self._start(k.shape[0], k.shape[1], k.shape[3])
        moved_k, moved_v = self._window.push(k, v, self.residual_length, 1)
        if moved_k.shape[2]:
            self._store(moved_k, moved_v)

    def _encode(self, book: PQCodebook, x: np.ndarray) -> np.ndarray:
        """[B, Hkv, T, D] -> codes [B, Hkv, T, M]."""
        b, hkv, t, d = x.shape
        if book.heads == 1:
            return book.encode(x)
        per_head = x.transpose(1, 0, 2, 3).reshape(hkv, b * t, d)
        return book.encode(per_head).reshape(hkv, b, t, -1).transpose(1, 0, 2, 3)

    def _store(self, k: np.ndarray, v: np.ndarray) -> None:
        n, t = self.quantized_length, k.shape[2]
        self._grow(n + t)
        for name, book, x in (("kc", self.key_codebook, k), ("vc", self.value_codebook, v)):
            codes = self._encode(book, x)  # [B, Hkv, T, M]
            blocks = self._arrays[name]
            for blk in range(n // PQ_BLOCK, -(-(n + t) // PQ_BLOCK)):
                lo, hi = max(n, blk * PQ_BLOCK), min(n + t, (blk + 1) * PQ_BLOCK)
                cols = slice(lo - blk * PQ_BLOCK, hi - blk * PQ_BLOCK)
                blocks[:, :, blk, :, cols] = codes[:, :, lo - n:hi - n].transpose(0, 1, 3, 2)
        self.quantized_length = n + t

    def codes(self) -> tuple[np.ndarray, np.ndarray]:
        """The stored key and value codes, uint8 ``[B, Hkv, quantized_length, M]`` each."""
        out = []
        for name in ("kc", "vc"):
            a = self._arrays[name]
            out.append(a.transpose(0, 1, 2, 4, 3).reshape(*a.shape[:2], -1, a.shape[3])
                       [:, :, :self.quantized_length])
        return out[0], out[1]

    def dequantize(self) -> tuple[np.ndarray, np.ndarray]:
        """The keys and values the attention sees, f32 ``[B, Hkv, len(self), D]`` each."""
        if self._window is None:
            raise LaunchError("the cache is empty")
        kc, vc = self.codes()
        w = self._window
        out = []
        for book, codes, full in ((self.key_codebook, kc, w.k), (self.value_codebook, vc, w.v)):
            if book.heads == 1:
                x = book.decode(codes)
            else:
                x = book.decode(codes.transpose(1, 0, 2, 3).reshape(book.heads, -1,
                                                                    codes.shape[3]))
                x = x.reshape(book.heads, codes.shape[0], -1, self.dims[2]).transpose(1, 0, 2, 3)
            out.append(np.concatenate([x, full[:, :, :w.length]], 2))
        return out[0], out[1]

    @property
    def nbytes(self) -> int:
        """Bytes of the codes (one byte each) and of the window (codebooks not counted)."""
        if self._window is None:
            return 0
        b, hkv, d = self.dims
        per_token = self.key_codebook.subspaces + self.value_codebook.subspaces
        return b * hkv * (self.quantized_length * per_token + 8 * self.residual * d)

    def attention(self, q, *, scale: float | None = None, backend: str | None = None):
        """Attention of ``q [B, H, Lq, D]`` over the cache; ``scale`` defaults to
        ``1 / sqrt(D)``. The result has q's shape, type and dtype."""
        if len(self) == 0:
            raise LaunchError("attention over an empty cache")
        b, hkv, d = self.dims
        step = DecodeStep.start(q, hkv, d, len(self), scale, backend or self.backend)
        blocks = -(-self.quantized_length // PQ_BLOCK)
        splits = quantized_splits(b * hkv, blocks) if blocks else 0
        step.allocate(splits + (self.residual > 0))
        if splits:
            kb, vb = self.key_codebook, self.value_codebook
            mk, ck, dsk = kb.centroids.shape[1:]
            mv, cv, dsv = vb.centroids.shape[1:]
            kern = _kernels()
            lut = np.empty((b, hkv, step.rows, mk * ck), np.float32)
            kern.pq_lut(step.q, kb.centroids, lut, step.qk_scale, backend=step.backend,
                        R=step.rows, MK=mk, CK=ck, DSK=dsk)
            nb = self._blocks
            kern.pq_attend(lut, self._arrays["kc"].reshape(b, hkv, nb, -1),
                           self._arrays["vc"].reshape(b, hkv, nb, -1), vb.centroids,
                           *step.partials(), self.quantized_length, step.first, splits,
                           backend=step.backend, R=step.rows, LQ=step.lq, MK=mk, CK=ck,
                           MV=mv, CV=cv, DSV=dsv, BN=PQ_BLOCK,
                           **pq_steps(mk, ck, mv, cv, step.backend))
        step.residual(self._window, self.quantized_length, splits)
        return step.finish(q)


def _subspaces_per_step(m: int, c: int, rows: int) -> int:
    """The largest divisor of m whose one-hot rows (subspaces x centroids) fit in ``rows``."""
    return max(s for s in range(1, m + 1) if m % s == 0 and (s * c <= rows or s == 1))


def pq_steps(mk: int, ck: int, mv: int, cv: int, backend: str) -> dict[str, int]:
    """Subspaces per step of ``pq_attend``'s loops: keys ``MS`` (one-hot operands of at most
    128 rows), values ``VS`` (all at once on the CPU; on triton at most 64 rows of one-hot
    tiles for both, as larger tiles spill registers on sm_80/sm_90, checked by the tests)."""
    if backend == "triton":
        return {"MS": _subspaces_per_step(mk, ck, 64), "VS": _subspaces_per_step(mv, cv, 64)}
    return {"MS": _subspaces_per_step(mk, ck, 128), "VS": mv}
