"""bittile's standard library as torch custom ops (``torch.library``), with fake (meta)
implementations, so that ``torch.compile(fullgraph=True)`` traces functions that call them.

Reach it as ``bittile.torch`` (the file is not called ``torch.py``: the repository root is the
package, and a ``torch.py`` there would shadow the real torch for scripts run from it)::

    from bittile import torch as bt
    y = bt.linear(x, qw, bias)          # torch.ops.bittile.linear
    o = bt.attention(q, k, v)           # torch.ops.bittile.attention

Quantized weights enter the ops as plain tensors (the packed code bytes, scales, zero points)
plus the dtype name and group size; the op finds the QuantizedWeight they came from (so its
prepared launch arguments and repacked weights are reused), or rebuilds one.
"""

from __future__ import annotations

import weakref

import torch

from bittile.stdlib.quant import QuantizedWeight

__all__ = ["linear", "attention", "weight_tensors"]

# id(codes tensor) -> (weakref to it, the QuantizedWeight it belongs to)
_weights: dict[int, tuple] = {}


def weight_tensors(qw: QuantizedWeight) -> tuple:
    """The tensors a QuantizedWeight enters a custom op as (cached on it)."""
    cached = getattr(qw, "_torch_tensors", None)
    if cached is None:
        import numpy as np

        codes = torch.from_numpy(np.asarray(qw.codes.bytes_view()))
        scales = torch.from_numpy(qw.scales)
        zeros = None if qw.zeros is None else torch.from_numpy(qw.zeros)
        cached = (codes, scales, zeros)
        qw._torch_tensors = cached
        _weights[id(codes)] = (weakref.ref(codes), qw)
    return cached


def _weight(codes, scales, zeros, dtype: str, group_size: int, k: int) -> QuantizedWeight:
    entry = _weights.get(id(codes))
    if entry is not None and entry[0]() is codes:
        return entry[1]
    from bittile.runtime.packed import PackedTensor

    packed = PackedTensor(codes.numpy(), (scales.shape[0], k), dtype)
    return QuantizedWeight(packed, scales.numpy(), None if zeros is None else zeros.numpy(),
                           group_size=group_size)


@torch.library.custom_op("bittile::linear", mutates_args=())
def _linear(x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor,
            zeros: torch.Tensor | None, bias: torch.Tensor | None, dtype: str,
            group_size: int, k: int) -> torch.Tensor:
    from bittile import stdlib

    qw = _weight(codes, scales, zeros, dtype, group_size, k)
    return stdlib.linear(x.contiguous(), qw, bias)


@_linear.register_fake
def _linear_fake(x, codes, scales, zeros, bias, dtype, group_size, k):
    return x.new_empty((*x.shape[:-1], scales.shape[0]))


@torch.library.custom_op("bittile::attention", mutates_args=())
def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
               scale: float | None) -> torch.Tensor:
    from bittile import stdlib

    return stdlib.attention(q.contiguous(), k.contiguous(), v.contiguous(), causal=causal,
                            scale=scale)


@_attention.register_fake
def _attention_fake(q, k, v, causal, scale):
    return torch.empty_like(q)


def linear(x: torch.Tensor, qw: QuantizedWeight, bias: torch.Tensor | None = None):
    """``bittile.stdlib.linear`` as the custom op ``torch.ops.bittile.linear``."""
    codes, scales, zeros = weight_tensors(qw)
    return torch.ops.bittile.linear(x, codes, scales, zeros, bias, qw.dtype.name,
                                    qw.group_size, qw.shape[1])


def attention(q, k, v, *, causal: bool = False, scale: float | None = None):
    """``bittile.stdlib.attention`` as the custom op ``torch.ops.bittile.attention``."""
    return torch.ops.bittile.attention(q, k, v, causal, scale)
