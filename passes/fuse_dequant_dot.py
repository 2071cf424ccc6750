"""``fuse-dequant-dot``: dequantization chains move into the ``dot`` that consumes them.

Precondition: a verified kernel.

Postcondition: a verified kernel with the same interpreter results, in which every
``tile.dot(a, b, acc)`` whose ``b`` (else ``a``) is computed by a *dequantization chain* is a
``tile.dequant_dot`` whose body is that chain's scalar program, so that no backend needs to
materialize the full-precision operand.

A dequantization chain of an operand is the largest set of elementwise tile ops (casts,
arithmetic, comparisons, ``where``, and ``tile.fused`` ops, whose bodies are inlined) in the
dot's block such that the operand is computed by one of them and every value they compute is
used only by the chain itself, the operand only once, by the dot. It must read a *low-bit
tile*: a tile of at most 8 bits per element, narrower than the operand's dtype (the first such
tile found walking the chain backwards from the operand is ``w``). Everything else the chain
reads (scales, zero points, broadcasts and reshapes of them, constants) stays outside as side
inputs. Dots whose operands have no such chain are left unchanged.

Run it before ``fuse-elementwise``: that pass may merge a chain with ops whose values are used
elsewhere into one ``tile.fused``, which can then no longer move into the dot as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from bittile.ir.core import Block, Kernel, Op, Value
from bittile.ir.ops import DequantDotOp, DotOp, FusedElementwiseOp
from bittile.ir.ops.fused import build_scalar_body, is_elementwise_tile_op
from bittile.ir.types import TileType
from bittile.passes.base import Pass, register_pass
from bittile.passes.rewrite import Rewriter

__all__ = ["FuseDequantDotPass", "LOW_BIT_MAX"]

#: the widest element, in bits, of a tile that counts as quantized
LOW_BIT_MAX = 8


@register_pass
class FuseDequantDotPass(Pass):
    """Fuse the dequantization of a low-bit dot operand into the dot."""

    name = "fuse-dequant-dot"

    def run(self, kernel: Kernel) -> Kernel:
        users: dict[int, list[Op]] = {}
        for op in kernel.walk():
            for v in op.operands:
                users.setdefault(id(v), []).append(op)
        plans: dict[int, _Chain] = {}
        _plan(kernel.body, users, plans)
        return _Fuser(plans).run(kernel)


@dataclass(eq=False)
class _Chain:
    dot: DotOp
    dequantized: str  # "a" or "b"
    ops: list[Op]  # in program order
    w: Value
    params: list[Value]


def _plan(block: Block, users: dict[int, list[Op]], plans: dict[int, _Chain]) -> None:
    """Find the chains of the dots of ``block`` and of its nested blocks; record each chain
    under the ids of the dot and of every op in it."""
    producer = {id(r): op for op in block.ops for r in op.results}
    position = {id(op): i for i, op in enumerate(block.ops)}
    for op in block.ops:
        for inner in op.regions:
            _plan(inner, users, plans)
        if not isinstance(op, DotOp):
            continue
        for side in ("b", "a"):
            chain = _chain(op, side, producer, position, users)
            if chain is not None:
                plans.update((id(o), chain) for o in (*chain.ops, op))
                break


def _fusable(op: Op | None) -> bool:
    return op is not None and (is_elementwise_tile_op(op) or isinstance(op, FusedElementwiseOp))


def _chain(dot: DotOp, side: str, producer: dict[int, Op], position: dict[int, int],
           users: dict[int, list[Op]]) -> _Chain | None:
    operand = getattr(dot, side)
    root = producer.get(id(operand))
    if not _fusable(root) or users.get(id(operand)) != [dot]:
        return None
    members = _closed_chain(root, operand, producer, users)
    if members is None:
        return None
    leaves = _leaves(root, members)
    w = next((v for v in leaves if _is_low_bit(v, operand)), None)
    if w is None:
        return None
    ops = sorted(members.values(), key=lambda o: position[id(o)])
    return _Chain(dot, side, ops, w, [v for v in leaves if v is not w])


def _closed_chain(root: Op, operand: Value, producer: dict[int, Op],
                  users: dict[int, list[Op]]) -> dict[int, Op] | None:
    """The fusable ops ``operand`` depends on whose values only the chain uses (None if the
    root's other values are used elsewhere)."""
    # Everything fusable the operand depends on, in this block...
    members: dict[int, Op] = {}
    stack = [root]
    while stack:
        op = stack.pop()
        if id(op) not in members:
            members[id(op)] = op
            stack.extend(p for v in op.operands if _fusable(p := producer.get(id(v))))

    # ...minus the ops whose values are also used outside the chain, and what feeds only them.
    def used_outside(op: Op) -> bool:
        return any(id(u) not in members for r in op.results if r is not operand
                   for u in users.get(id(r), ()))

    changed = True
    while changed:
        changed = False
        for key, op in list(members.items()):
            if used_outside(op):
                if op is root:
                    return None
                del members[key]
                changed = True
    return members


def _leaves(root: Op, members: dict[int, Op]) -> list[Value]:
    """The values the chain reads from outside, in depth-first order of use from ``root``."""
    producers = {id(r): op for op in members.values() for r in op.results}
    found: dict[int, Value] = {}
    seen = {id(root)}
    stack = [iter(root.operands)]
    while stack:
        v = next(stack[-1], None)
        if v is None:
            stack.pop()
            continue
        p = producers.get(id(v))
        if p is None:
            found.setdefault(id(v), v)
        elif id(p) not in seen:
            seen.add(id(p))
            stack.append(iter(p.operands))
    return list(found.values())


def _is_low_bit(value: Value, operand: Value) -> bool:
    t = value.type
    return (isinstance(t, TileType) and t.dtype.bits <= LOW_BIT_MAX
            and t.dtype.bits < operand.type.dtype.bits)


class _Fuser(Rewriter):
    """Drops the chains' ops and rebuilds each planned dot as a ``tile.dequant_dot``."""

    def __init__(self, plans: dict[int, _Chain]):
        super().__init__()
        self.plans = plans

    def visit_op(self, op: Op) -> None:
        chain = self.plans.get(id(op))
        if chain is None:
            super().visit_op(op)
        elif op is chain.dot:
            self.emit(chain)
        # chain ops: their values are read only by the chain, which the dot now computes

    def emit(self, chain: _Chain) -> None:
        dot = chain.dot
        inputs = [chain.w, *chain.params]
        body = build_scalar_body(chain.ops, inputs, [getattr(dot, chain.dequantized)])
        dense = dot.a if chain.dequantized == "b" else dot.b
        fused = DequantDotOp.create(
            self.lookup(dense), self.lookup(dot.acc), self.lookup(chain.w),
            [self.lookup(v) for v in chain.params], body, chain.dequantized, dot.loc,
        )
        self.builder.insert(fused)
        self.mapping[id(dot.out)] = fused.out
