"""Every stdlib kernel compiles ahead of time for sm_80 and sm_90, without a GPU, at the tile
sizes its wrapper chooses on the triton backend, and does not spill registers."""

from __future__ import annotations

import pytest

import bittile
from bittile import stdlib
from bittile.backends.triton import aot
from bittile.stdlib.attention import decode_tiles, prefill_tiles
from bittile.stdlib.kivi import kivi_groups_per_block
from bittile.stdlib.pq import pq_steps


def cases():
    out = []
    for d in (64, 128):
        for dtype in (bittile.f32, bittile.f16):
            t = prefill_tiles(512, 512, d, "triton")
            out.append(("attention", "attention", dict(T=dtype, BM=t.BM, BN=t.BN, DP=t.DP)))
        t = decode_tiles(4096, 4, d, "triton", programs=8)
        out.append(("attention", "decode_split", dict(T=bittile.f32, GP=t.GP, BN=t.BN, DP=t.DP)))
        out.append(("attention", "decode_merge", dict(T=bittile.f32, SP=t.SP, DP=t.DP)))
    out.append(("gemm", "linear", dict(W=bittile.u4, X=bittile.f32, BM=32, BN=64, BK=128,
                                       G=128)))
    out.append(("gemm", "linear_bias", dict(W=bittile.i4, X=bittile.f16, BM=16, BN=64, BK=128,
                                            G=128)))
    out.append(("gemm", "linear_float", dict(W=bittile.f4e2m1, X=bittile.bf16, BM=16, BN=64,
                                             BK=128, G=128)))
    # quantized KV caches at a Llama-shaped head (D = 128), one decode token per kv head
    for bits, group in ((4, 32), (4, 128), (2, 32)):
        out.append(("kvcache", "kivi_attend", dict(BITS=bits, R=1, LQ=1, D=128, G=group,
                                                   VG=min(group, 128),
                                                   NG=kivi_groups_per_block(group))))
    out.append(("kvcache", "pq_lut", dict(R=1, MK=32, CK=16, DSK=4)))
    out.append(("kvcache", "pq_attend", dict(R=1, LQ=1, MK=32, CK=16, MV=32, CV=16, DSV=4,
                                             BN=64, **pq_steps(32, 16, 32, 16, "triton"))))
    out.append(("kvcache", "residual_attend", dict(R=1, LQ=1, D=128, BN=32)))
    out.append(("kvcache", "attend_merge", dict(SP=4, D=128)))
    return out


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize(("family", "name", "consts"), cases(),
                         ids=[f"{c[1]}-{i}" for i, c in enumerate(cases())])
def test_stdlib_kernels_compile_without_spills(family, name, consts, arch, record_property):
    kernel = getattr(stdlib.kernels(family), name).specialize(**consts)
    compiled = aot.compile_ahead(kernel, arch)
    record_property("registers", compiled.n_regs)
    assert compiled.n_spills == 0, f"{name} {consts} spills {compiled.n_spills} bytes on {arch}"
