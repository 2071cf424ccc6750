"""bittile.torch: the stdlib operations as torch custom ops with fake implementations, so
torch.compile(fullgraph=True) captures functions calling them (on the CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bittile
from bittile import stdlib


@pytest.fixture(scope="module")
def model_parts():
    torch.manual_seed(0)
    w = torch.randn(64, 128)
    qw = stdlib.quantize_weight(w, dtype=bittile.u4, group_size=32)
    return qw, torch.randn(64)


def block(x, qw, bias):
    h = bittile.torch.linear(x, qw, bias)  # [B, L, 64]
    q = k = v = h.view(h.shape[0], h.shape[1], 2, 32).transpose(1, 2).contiguous()
    o = bittile.torch.attention(q, k, v, causal=True)
    return torch.relu(o).sum(dim=(1, 2))


def test_ops_match_the_stdlib_functions(model_parts):
    qw, bias = model_parts
    x = torch.randn(2, 5, 128)
    with bittile.options(BITTILE_LUT_EXACT=True):
        got = bittile.torch.linear(x, qw, bias)
        want = stdlib.linear(x, qw, bias)
    assert torch.equal(got, want)
    q = torch.randn(1, 2, 7, 32)
    assert torch.equal(bittile.torch.attention(q, q, q), stdlib.attention(q, q, q))


@pytest.mark.parametrize("backend", ["inductor"])
def test_torch_compile_fullgraph(model_parts, backend):
    qw, bias = model_parts
    x = torch.randn(2, 5, 128)
    eager = block(x, qw, bias)
    compiled = torch.compile(block, fullgraph=True, backend=backend)
    np.testing.assert_allclose(compiled(x, qw, bias).numpy(), eager.numpy(), rtol=1e-5,
                               atol=1e-5)


def test_fake_tensors_give_shapes_without_running():
    from torch._subclasses.fake_tensor import FakeTensorMode

    qw = stdlib.quantize_weight(torch.randn(48, 64), dtype=bittile.u2, group_size=32)
    codes, scales, zeros = bittile.torch.weight_tensors(qw)
    with FakeTensorMode(allow_non_fake_inputs=True):
        out = torch.ops.bittile.linear(torch.empty(3, 7, 64), codes, scales, zeros, None, "u2",
                                       32, 64)
        assert out.shape == (3, 7, 48)
