"""dce: dead-code elimination, including unused loop-carried values and branch results.

Precondition: a verified kernel. Postcondition: a verified kernel with bit-identical
interpreter results that keeps only *live* ops:

- the roots are the ops with an effect: ops without results or regions other than yields
  (``tile.store``, ``packed.store_words``: an op without results exists for its effect), and
  ``scf.for`` loops whose step is not a non-zero constant (a zero step is a launch error,
  which must not disappear);
- an op is live if one of its results is used by a live op, or if it holds a live op (a loop
  or branch containing a store is kept even when its results are unused);
- a loop-carried value (init, body argument, yield operand and result) is live if its result
  is used, or if its body argument is used by a live op other than its own position of the
  yield; a dead one is removed from the loop. Likewise a branch result nobody uses is removed
  from the ``scf.if`` and from both yields;
- other ops with regions (``tile.fused``...) are opaque: removed whole when nothing uses
  them, otherwise kept whole, everything inside them live.

Liveness is computed with a worklist, which reaches the fixpoint in one sweep (a chain of dead
ops, or a value carried around a loop only to feed itself, disappears at once); the kernel is
then rebuilt without the dead ops. Loads are side-effect free (reads outside a tensor give 0).
"""

from __future__ import annotations

from typing import ClassVar

from bittile.ir import ops
from bittile.ir.core import Block, Kernel, Op, Value
from bittile.passes.base import Pass, register_pass
from bittile.passes.rewrite import Rewriter

__all__ = ["DCEPass"]

#: ops with regions whose unused results are removed; other region ops are kept whole
_PRUNABLE = (ops.ForOp, ops.IfOp)


@register_pass
class DCEPass(Pass):
    """Remove ops, loop-carried values and branch results that nothing live needs."""

    name: ClassVar[str] = "dce"

    def run(self, kernel: Kernel) -> Kernel:
        return _Rebuild(_Liveness(kernel)).run(kernel)


class _Liveness:
    """Which ops are live, and which result positions of each live loop and branch."""

    def __init__(self, kernel: Kernel):
        self.defining: dict[int, tuple[Op, int]] = {}  # result -> (op, position)
        self.carried_arg: dict[int, tuple[ops.ForOp, int]] = {}  # body argument -> position
        self.parent: dict[int, Op] = {}  # op -> the op whose region holds it
        self.live: set[int] = set()
        self.positions: dict[int, set[int]] = {}  # loop or branch -> live result positions
        self._index(kernel.body, None)
        roots = [op for op in kernel.walk() if self._has_effect(op)]
        self._work: list[tuple[str, object]] = []
        for op in roots:
            self._mark_op(op)
        while self._work:
            kind, item = self._work.pop()
            if kind == "value":
                self._visit_value(item)
            else:
                self._visit_position(*item)

    def _index(self, block: Block, parent: Op | None) -> None:
        for op in block.ops:
            if parent is not None:
                self.parent[id(op)] = parent
            for k, r in enumerate(op.results):
                self.defining[id(r)] = (op, k)
            if isinstance(op, ops.ForOp):
                for k, arg in enumerate(op.body.args[1:]):
                    self.carried_arg[id(arg)] = (op, k)
            for region in op.regions:
                self._index(region, op)

    def _has_effect(self, op: Op) -> bool:
        if not op.results and not op.regions and not isinstance(op, ops.YieldOp):
            return True
        if isinstance(op, ops.ForOp):
            step = self.defining.get(id(op.step), (None, 0))[0]
            return not (isinstance(step, ops.ConstantOp) and step.value != 0)
        return False

    # -- marking --------------------------------------------------------------------------------
    def _mark_op(self, op: Op) -> None:
        while op is not None and id(op) not in self.live:
            self.live.add(id(op))
            self.positions.setdefault(id(op), set())
            if isinstance(op, ops.ForOp):
                needed = (op.lo, op.hi, op.step)
            elif isinstance(op, ops.IfOp):
                needed = (op.cond,)
            elif isinstance(op, ops.YieldOp):
                needed = ()  # its operands are live position by position
            else:
                needed = op.operands
            self._work.extend(("value", v) for v in needed)
            if op.regions and not isinstance(op, _PRUNABLE):
                self._mark_opaque_regions(op)
            op = self.parent.get(id(op))  # running an op means running what holds it

    def _mark_opaque_regions(self, op: Op) -> None:
        for inner in (o for region in op.regions for o in region.walk()):
            if isinstance(inner, ops.YieldOp):
                self._work.extend(("value", v) for v in inner.values)
            else:
                self._mark_op(inner)
            if isinstance(inner, _PRUNABLE):
                self._work.extend(("position", (inner, k)) for k in range(len(inner.results)))

    def _visit_value(self, value: Value) -> None:
        if id(value) in self.defining:
            op, k = self.defining[id(value)]
            self._mark_op(op)
            if isinstance(op, _PRUNABLE):
                self._work.append(("position", (op, k)))
        elif id(value) in self.carried_arg:
            self._work.append(("position", self.carried_arg[id(value)]))

    def _visit_position(self, op: Op, k: int) -> None:
        self._mark_op(op)
        if k in self.positions[id(op)]:
            return
        self.positions[id(op)].add(k)
        if isinstance(op, ops.ForOp):
            self._work.append(("value", op.inits[k]))
        for region in op.regions:
            self._work.append(("value", region.ops[-1].values[k]))

    def pruned(self, op: Op) -> list[int] | None:
        """The result positions to keep, if ``op`` (a live loop or branch) loses some."""
        if not isinstance(op, _PRUNABLE) or len(self.positions[id(op)]) == len(op.results):
            return None
        return sorted(self.positions[id(op)])


class _Rebuild(Rewriter):
    """Clone the live ops; rebuild loops and branches that lose results."""

    def __init__(self, liveness: _Liveness):
        super().__init__()
        self.liveness = liveness

    def visit_op(self, op: Op) -> None:
        if isinstance(op, ops.YieldOp):
            super().visit_op(op)  # the yield of a block whose op keeps every result
        elif id(op) in self.liveness.live:
            keep = self.liveness.pruned(op)
            if keep is None:
                super().visit_op(op)
            else:
                self.prune(op, keep)

    def prune(self, op: Op, keep: list[int]) -> None:
        with self.builder.at(op.loc):
            if isinstance(op, ops.ForOp):
                body = self.pruned_block(op.body, keep, carried=True)
                new = ops.ForOp(
                    lo=self.lookup(op.lo), hi=self.lookup(op.hi), step=self.lookup(op.step),
                    inits=tuple(self.lookup(op.inits[k]) for k in keep), body=body,
                    outs=tuple(_fresh(op.outs[k]) for k in keep), loc=op.loc,
                )
            else:
                new = ops.IfOp(
                    cond=self.lookup(op.cond),
                    then_body=self.pruned_block(op.then_body, keep, carried=False),
                    else_body=self.pruned_block(op.else_body, keep, carried=False),
                    outs=tuple(_fresh(op.outs[k]) for k in keep), loc=op.loc,
                )
            self.builder.insert(new)
        for k, value in zip(keep, new.outs):
            self.mapping[id(op.outs[k])] = value

    def pruned_block(self, block: Block, keep: list[int], carried: bool) -> Block:
        """``block`` with the live ops, the kept carried arguments and the kept yield values."""
        args = [block.args[0], *(block.args[1 + k] for k in keep)] if carried else []
        new = Block(args=[_fresh(a) for a in args])
        for old, fresh in zip(args, new.args):
            self.mapping[id(old)] = fresh
        *body, terminator = block.ops
        with self.builder.inside(new):
            for inner in body:
                self.visit_op(inner)
            values = tuple(self.lookup(terminator.values[k]) for k in keep)
            with self.builder.at(terminator.loc):
                self.builder.insert(ops.YieldOp(values=values, loc=terminator.loc))
        return new


def _fresh(value: Value) -> Value:
    return Value(value.type, value.name_hint)
