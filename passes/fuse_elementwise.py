"""``fuse-elementwise``: chains of elementwise tile ops become one ``tile.fused`` op.

Precondition: a verified kernel.

Postcondition: a verified kernel with the same interpreter results, in which every *group* of
at least ``min_ops`` elementwise tile ops (unary, binary, comparison, ``where``, ``cast``) of one
block is replaced by a single ``tile.fused`` whose body is the group's scalar program. A group
is a set of such ops connected by their def-use edges (all of one tile shape, since elementwise
operands share their result's shape); its inputs are the values it reads from outside (tiles
and scalars: constants, loads, broadcasts, ... stay where they are), and its results are the
values of its ops used outside the group, in program order (values used only inside the group
are never materialized as tiles). The fused op sits where the group's last op was.

Groups are grown greedily in program order and never cross nested blocks: an op joins the
groups of the elementwise ops it reads, unless a value of one of them is already used by an op
outside that group (the fused op could not then be placed before that user and after the
joining op). Ops in nested blocks are fused within their own block. Existing ``tile.fused``
ops are left as they are, so the pass is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bittile.ir.core import Block, Kernel, Op, Value
from bittile.ir.ops import FusedElementwiseOp
from bittile.ir.ops.fused import build_scalar_body, is_elementwise_tile_op
from bittile.passes.base import Pass, register_pass
from bittile.passes.rewrite import Rewriter

__all__ = ["FuseElementwisePass"]


@register_pass
class FuseElementwisePass(Pass):
    """Fuse groups of at least ``min_ops`` elementwise tile ops (fusing one op gains nothing)."""

    name = "fuse-elementwise"
    min_ops: int = 2

    def run(self, kernel: Kernel) -> Kernel:
        plans: dict[int, _Group] = {}
        _plan(kernel.body, self.min_ops, plans)
        return _Fuser(plans).run(kernel)


@dataclass(eq=False)
class _Group:
    ops: list[Op]
    #: an op outside the group uses one of its values: it can no longer grow
    sealed: bool = False
    inputs: list[Value] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)


def _used_values(op: Op):
    """The values ``op`` reads, its nested blocks included."""
    yield from op.operands
    for block in op.regions:
        for inner in block.walk():
            yield from inner.operands


def _plan(block: Block, min_ops: int, plans: dict[int, _Group]) -> None:
    """Choose the groups of ``block`` (and, recursively, of its nested blocks); record each
    kept group under the id of every op in it."""
    position = {id(op): i for i, op in enumerate(block.ops)}
    group_of: dict[int, _Group] = {}  # id(value) -> the group computing it
    for op in block.ops:
        for inner in op.regions:
            _plan(inner, min_ops, plans)
        joined = _join(op, group_of, position) if is_elementwise_tile_op(op) else None
        for v in _used_values(op):
            g = group_of.get(id(v))
            if g is not None and g is not joined:
                g.sealed = True
    groups = {id(g): g for g in group_of.values()}.values()
    users = _users(block)
    for g in groups:
        if len(g.ops) < min_ops:
            continue
        members = {id(op) for op in g.ops}
        g.inputs = _inputs(g.ops)
        g.outputs = [r for op in g.ops for r in op.results
                     if any(id(u) not in members for u in users.get(id(r), ()))]
        if g.outputs:  # a group with no live value is dead code, not ours to remove
            plans.update((id(op), g) for op in g.ops)


def _join(op: Op, group_of: dict[int, _Group], position: dict[int, int]) -> _Group:
    """Put ``op`` in a group: the union of the open groups it reads from, or a new one."""
    found: list[_Group] = []
    for v in op.operands:
        g = group_of.get(id(v))
        if g is not None and not g.sealed and g not in found:
            found.append(g)
    group = found[0] if found else _Group([])
    for other in found[1:]:
        group.ops += other.ops
        for member in other.ops:
            group_of.update((id(r), group) for r in member.results)
    group.ops.append(op)
    group.ops.sort(key=lambda o: position[id(o)])
    group_of.update((id(r), group) for r in op.results)
    return group


def _users(block: Block) -> dict[int, list[Op]]:
    """id(value) -> the ops of ``block`` that use it (directly or in their nested blocks)."""
    users: dict[int, list[Op]] = {}
    for op in block.ops:
        for v in _used_values(op):
            users.setdefault(id(v), []).append(op)
    return users


def _inputs(ops: list[Op]) -> list[Value]:
    """Values the ops read that none of them computes, in order of first use."""
    computed = {id(r) for op in ops for r in op.results}
    inputs: dict[int, Value] = {}
    for op in ops:
        for v in op.operands:
            if id(v) not in computed:
                inputs.setdefault(id(v), v)
    return list(inputs.values())


class _Fuser(Rewriter):
    """Emits each planned group as one ``tile.fused`` at the place of its last op."""

    def __init__(self, plans: dict[int, _Group]):
        super().__init__()
        self.plans = plans

    def visit_op(self, op: Op) -> None:
        group = self.plans.get(id(op))
        if group is None:
            super().visit_op(op)
        elif op is group.ops[-1]:
            self.emit(group)
        # other members: their values are only read by the group, or after its last op

    def emit(self, group: _Group) -> None:
        last = group.ops[-1]
        body = build_scalar_body(group.ops, group.inputs, group.outputs)
        fused = FusedElementwiseOp(
            inputs=tuple(self.lookup(v) for v in group.inputs),
            shape=last.results[0].type.shape,
            body=body,
            outs=tuple(Value(v.type, v.name_hint) for v in group.outputs),
            loc=last.loc,
        )
        self.builder.insert(fused)
        for old, new in zip(group.outputs, fused.outs):
            self.mapping[id(old)] = new
