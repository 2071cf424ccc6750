"""Checkpoint loaders: GPTQ (v1/v2, 2/3/4/8 bits, act-order g_idx) and AutoAWQ GEMM tensors,
built here from known codes with each format's published packing rules (AutoGPTQ's
``QuantLinear.pack``, AutoAWQ's ``WQLinear_GEMM.from_linear``), written independently of
bittile's bitstream code; ``dequantize()`` and ``linear`` are checked against the known codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bittile
from bittile.errors import BittileError
from bittile.stdlib import QuantizedWeight, linear


# ---- the formats' packing rules ----------------------------------------------------------------
def gptq_pack_rows(codes: np.ndarray, bits: int) -> np.ndarray:
    """AutoGPTQ packs axis 0 of ``codes`` [R, C]: 32 / bits codes per int32 for 2, 4, 8 bits; for
    3 bits 32 codes in 3 words, codes 10 and 21 straddling two words."""
    codes = codes.astype(np.uint64)
    rows = codes.shape[0] * bits // 32
    out = np.zeros((rows, codes.shape[1]), np.uint64)
    if bits in (2, 4, 8):
        per = 32 // bits
        for r in range(rows):
            for j in range(per):
                out[r] |= codes[r * per + j] << np.uint64(bits * j)
    else:
        for block in range(rows // 3):
            c, w = codes[32 * block:32 * block + 32], 3 * block
            for j in range(10):
                out[w] |= c[j] << np.uint64(3 * j)
            out[w] |= (c[10] << np.uint64(30)) & np.uint64(0xFFFFFFFF)
            out[w + 1] |= (c[10] >> np.uint64(2)) & np.uint64(1)
            for j in range(10):
                out[w + 1] |= c[11 + j] << np.uint64(3 * j + 1)
            out[w + 1] |= (c[21] << np.uint64(31)) & np.uint64(0xFFFFFFFF)
            out[w + 2] |= (c[21] >> np.uint64(1)) & np.uint64(3)
            for j in range(10):
                out[w + 2] |= c[22 + j] << np.uint64(3 * j + 2)
    return out.astype(np.uint32).view(np.int32)


def gptq_tensors(codes, zeros, scales, bits, fmt="gptq"):
    """codes [K, N], zeros [groups, N] (true zero points), scales [groups, N] -> the checkpoint's
    qweight, qzeros (v1 stores zero - 1, masked to ``bits``), scales (f16)."""
    stored = (zeros - 1) & ((1 << bits) - 1) if fmt == "gptq" else zeros
    return (gptq_pack_rows(codes, bits), gptq_pack_rows(stored.T, bits).T.copy(),
            scales.astype(np.float16))


AWQ_PACK_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def awq_pack_columns(codes: np.ndarray) -> np.ndarray:
    """AutoAWQ packs axis 1 of ``codes`` [R, C]: word c holds column 8c + order[i] at 4i."""
    out = np.zeros((codes.shape[0], codes.shape[1] // 8), np.uint32)
    for col in range(codes.shape[1] // 8):
        for i in range(8):
            out[:, col] |= codes[:, col * 8 + AWQ_PACK_ORDER[i]].astype(np.uint32) << (4 * i)
    return out.view(np.int32)


def reference(codes, zeros, scales, group_of_k):
    """w [N, K] from known codes [K, N], zero points and f16 scales [groups, N]."""
    s = scales.astype(np.float16).astype(np.float64)[group_of_k]
    z = zeros.astype(np.float64)[group_of_k]
    return ((codes - z) * s).T.astype(np.float32)


def known(k, n, groups, bits, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 1 << bits, (k, n))
    zeros = rng.integers(1, 1 << bits, (groups, n))
    scales = rng.random((groups, n)) * 0.01 + 0.001
    return codes, zeros, scales


# ---- GPTQ --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("fmt", ["gptq", "gptq_v2"])
def test_gptq_matches_the_known_codes(bits, fmt):
    k, n, group = 256, 64, 64
    codes, zeros, scales = known(k, n, k // group, bits, seed=bits)
    qweight, qzeros, s16 = gptq_tensors(codes, zeros, scales, bits, fmt)
    qw = QuantizedWeight.from_gptq(torch.from_numpy(qweight), torch.from_numpy(qzeros),
                                   torch.from_numpy(s16), bits=bits, checkpoint_format=fmt)
    assert qw.shape == (n, k) and qw.dtype == bittile.int_type(bits, signed=False)
    assert qw.group_size == group and qw.perm is None
    assert np.array_equal(qw.dequantize(), reference(codes, zeros, scales, np.arange(k) // group))
    # the transposed qweight's bytes are bittile's packed [N, K] codes
    transposed = np.ascontiguousarray(qweight.T).view(np.uint8).reshape(-1)
    assert np.array_equal(qw.codes.bytes_view(), transposed)


def test_gptq_v1_zero_points_do_not_wrap():
    k, n = 64, 16
    codes, zeros, scales = known(k, n, 1, 4, seed=1)
    zeros[:] = 16  # stored as 15 in v1, read back as 16 (AutoGPTQ adds one after unpacking)
    qweight, qzeros, s16 = gptq_tensors(codes, zeros, scales, 4)
    assert np.all(qzeros.view(np.uint32) == 0xFFFFFFFF)
    qw = QuantizedWeight.from_gptq(qweight, qzeros, s16, bits=4)
    assert qw.group_size == -1 and np.all(qw.zeros == 16)
    assert np.array_equal(qw.dequantize(), reference(codes, zeros, scales, np.zeros(k, int)))


def act_order_g_idx(k, group, rng):
    """The g_idx of an act-order checkpoint: channels quantized in a permuted order, groups of
    ``group`` consecutive channels of that order."""
    order = rng.permutation(k)
    g_idx = np.empty(k, np.int32)
    g_idx[order] = np.arange(k) // group
    return g_idx


@pytest.mark.parametrize("backend", ["interp", "llvm"])
def test_gptq_act_order_is_exact_and_linear_gathers_x(backend):
    rng = np.random.default_rng(5)
    k, n, group = 256, 96, 64
    codes, zeros, scales = known(k, n, k // group, 4, seed=5)
    g_idx = act_order_g_idx(k, group, rng)
    qw = QuantizedWeight.from_gptq(*gptq_tensors(codes, zeros, scales, 4), g_idx=g_idx, bits=4)
    assert qw.perm is not None and qw.group_size == group
    ref = reference(codes, zeros, scales, g_idx)
    assert np.array_equal(qw.dequantize(), ref)
    x = torch.randn(3, k)
    y = linear(x, qw, backend=backend)
    expected = x.double() @ torch.from_numpy(ref).double().T
    nmse = float(((y.double() - expected) ** 2).sum() / (expected ** 2).sum())
    assert nmse <= (1e-12 if backend == "interp" else 5e-5)


def test_gptq_g_idx_with_unequal_groups_uses_their_gcd():
    rng = np.random.default_rng(2)
    k, n = 256, 32
    sizes = [96, 32, 128]
    g_idx = rng.permutation(np.repeat(np.arange(3), sizes)).astype(np.int32)
    codes, zeros, scales = known(k, n, 3, 8, seed=2)
    qw = QuantizedWeight.from_gptq(*gptq_tensors(codes, zeros, scales, 8, "gptq_v2"),
                                   g_idx=torch.from_numpy(g_idx), bits=8,
                                   checkpoint_format="gptq_v2")
    assert qw.group == 32
    assert np.array_equal(qw.dequantize(), reference(codes, zeros, scales, g_idx))


def test_gptq_trivial_g_idx_keeps_the_order():
    k, n, group = 128, 32, 32
    codes, zeros, scales = known(k, n, k // group, 2, seed=3)
    qw = QuantizedWeight.from_gptq(*gptq_tensors(codes, zeros, scales, 2),
                                   g_idx=np.arange(k) // group, bits=2)
    assert qw.perm is None and qw.group_size == group


def test_gptq_mistakes_are_reported():
    codes, zeros, scales = known(64, 32, 2, 4, seed=0)
    qweight, qzeros, s16 = gptq_tensors(codes, zeros, scales, 4)
    with pytest.raises(BittileError, match="2, 3, 4 or 8 bits"):
        QuantizedWeight.from_gptq(qweight, qzeros, s16, bits=5)
    with pytest.raises(BittileError, match="checkpoint_format"):
        QuantizedWeight.from_gptq(qweight, qzeros, s16, checkpoint_format="v3")
    with pytest.raises(BittileError, match="qzeros must have shape"):
        QuantizedWeight.from_gptq(qweight, qzeros[:, :2], s16)
    with pytest.raises(BittileError, match="scales must have shape"):
        QuantizedWeight.from_gptq(qweight, qzeros, s16[:, :8])
    with pytest.raises(BittileError, match="int32"):
        QuantizedWeight.from_gptq(qweight.astype(np.float32), qzeros, s16)
    with pytest.raises(BittileError, match="g_idx"):
        QuantizedWeight.from_gptq(qweight, qzeros, s16, g_idx=np.full(64, 7))


# ---- AWQ ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("group", [32, 128, -1])
def test_awq_matches_the_known_codes(group):
    k, n = 256, 48
    g = k if group == -1 else group
    codes, zeros, scales = known(k, n, k // g, 4, seed=g)
    qw = QuantizedWeight.from_awq(torch.from_numpy(awq_pack_columns(codes)),
                                  torch.from_numpy(awq_pack_columns(zeros)),
                                  torch.from_numpy(scales.astype(np.float16)), group)
    assert qw.shape == (n, k) and qw.dtype == bittile.u4 and qw.group_size == group
    assert np.array_equal(qw.dequantize(), reference(codes, zeros, scales, np.arange(k) // g))


def test_awq_interleave_puts_even_columns_first():
    codes = np.tile(np.arange(8), (4, 1))  # column c holds code c
    assert awq_pack_columns(codes).view(np.uint32)[0, 0] == 0x75316420
    qw = QuantizedWeight.from_awq(awq_pack_columns(codes), awq_pack_columns(np.zeros((1, 8), int)),
                                  np.ones((1, 8), np.float16), -1)
    assert np.array_equal(qw.dequantize()[:, 0], np.arange(8))


def test_awq_linear_on_llvm():
    k, n, group = 256, 40, 64
    codes, zeros, scales = known(k, n, k // group, 4, seed=9)
    qw = QuantizedWeight.from_awq(awq_pack_columns(codes), awq_pack_columns(zeros),
                                  scales.astype(np.float16), group)
    x = np.random.default_rng(0).standard_normal((1, k)).astype(np.float32)
    y = linear(x, qw, backend="llvm")
    expected = x.astype(np.float64) @ reference(codes, zeros, scales, np.arange(k) // group).T
    assert float(((y - expected) ** 2).sum() / (expected ** 2).sum()) <= 5e-5


def test_awq_mistakes_are_reported():
    codes, zeros, scales = known(64, 16, 2, 4, seed=0)
    qweight, qzeros = awq_pack_columns(codes), awq_pack_columns(zeros)
    with pytest.raises(BittileError, match="does not divide"):
        QuantizedWeight.from_awq(qweight, qzeros, scales, 48)
    with pytest.raises(BittileError, match="qzeros must have shape"):
        QuantizedWeight.from_awq(qweight, qzeros[:1], scales, 32)
