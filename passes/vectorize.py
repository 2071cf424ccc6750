"""``vectorize{target=...}``: choose a vector width for every ``tile.load`` / ``tile.store``.

The pass records the width as the op's ``vector_width`` attribute (a hint for backends; the
interpreter ignores it, so results cannot change); :func:`vector_plan` computes the same plan
for backends that want it without rewriting.

The width of a load (of its result) or a store (of its stored value) is the largest power of
two ``p`` such that

* ``p`` divides the last dimension ``n`` of the tile,
* every aligned group of ``p`` consecutive elements along the last dimension (the tensor's
  contiguous dimension) sits in **one** worker at ``p`` consecutive local slots, in order,
* ``p <= target.vector_lanes(bits)`` (rounded down to a power of two).

It uses the tile's layout; a tile without one (the pass was not preceded by
``layout-inference``) is planned with the layout ``layout-inference`` would give it. Nothing
is assumed about the alignment of the tensor offsets: the width says how many elements one
vector instruction may move, not that the access is aligned.

Precondition: a verified kernel. Postcondition: every load and store carries the
``vector_width`` of :func:`vector_plan` (1 where no vector access is possible); nothing else
changes.
"""

from __future__ import annotations

import numpy as np

from bittile.backends.target import Target
from bittile.ir import ops
from bittile.ir.core import Block, Kernel, Op, Value
from bittile.ir.layout import RegisterLayout
from bittile.ir.types import TileType
from bittile.passes.base import Pass, register_pass
from bittile.passes.layout_inference import default_layout, get_target
from bittile.passes.rewrite import Rewriter

__all__ = ["Vectorize", "vector_plan", "contiguous_run"]


def contiguous_run(layout: RegisterLayout, cap: int | None = None) -> int:
    """The largest power of two ``p`` (at most ``cap``) dividing the last dimension such that
    every aligned group of ``p`` elements along it is held by one worker at consecutive local
    slots, in order."""
    n = layout.shape[-1]
    worker, loc = layout.tables()
    same = (worker[..., 1:] == worker[..., :-1]) & (loc[..., 1:] == loc[..., :-1] + 1)
    flat = same.reshape(-1, n - 1) if n > 1 else None
    p = 1
    while n % (2 * p) == 0 and (cap is None or 2 * p <= cap):
        q = 2 * p
        # the steps j-1 -> j inside each group of q: every j with j % q != 0
        inside = np.array([j % q != 0 for j in range(1, n)])
        if not flat[:, inside].all():
            break
        p = q
    return p


def _power_of_two_at_most(n: int) -> int:
    return 1 << (max(n, 1).bit_length() - 1)


def _memory_ops(block: Block):
    for op in block.ops:
        if isinstance(op, (ops.LoadOp, ops.StoreOp)):
            yield op
        for region in op.regions:
            yield from _memory_ops(region)


def vector_plan(kernel: Kernel, target: str | Target) -> dict[Op, int]:
    """Every ``tile.load`` and ``tile.store`` of ``kernel`` (nested ones included) -> its
    vector width in elements (see the module docstring)."""
    t = get_target(target)
    plan: dict[Op, int] = {}
    for op in _memory_ops(kernel.body):
        tile: TileType = op.out.type if isinstance(op, ops.LoadOp) else op.value.type
        layout = tile.layout or default_layout(tile.shape, tile.dtype, t)
        cap = _power_of_two_at_most(t.vector_lanes(tile.dtype.bits))
        plan[op] = contiguous_run(layout, cap)
    return plan


@register_pass
class Vectorize(Pass):
    """An analysis: the kernel is returned unchanged; see :func:`vector_plan`."""

    name = "vectorize"
    target: str = "interp"

    def run(self, kernel: Kernel) -> Kernel:
        plan = vector_plan(kernel, self.target)

        class Mark(Rewriter):
            def rewrite(self, op, operands):
                if op not in plan or plan[op] == getattr(op, "vector_width", None):
                    return None
                attributes = {**op.attributes, "vector_width": plan[op]}
                regions = tuple(self.clone_region(r) for r in op.regions)
                results = tuple(Value(r.type, r.name_hint) for r in op.results)
                new = type(op).from_generic(operands, attributes, results, regions, op.loc)
                self.builder.insert(new)
                return results

        return Mark().run(kernel)
