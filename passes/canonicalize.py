"""canonicalize: constant folding and exact algebraic simplification, applied to a fixpoint.

Precondition: a verified kernel. Postcondition: a verified kernel whose interpreter results
are bit-identical to the input's (every element of every tensor, NaN payloads included), in
which no rule of :data:`RULES` applies any more. Unused ops are left behind for ``dce``.

A *constant* is a scalar ``arith.constant`` or a ``tile.full`` of one (a splat tile).

- **Folding**: an op whose operands are all constants is evaluated with the interpreter's own
  evaluator (which computes with :mod:`bittile.backends.interp.semantics`), so folding cannot
  disagree with the specification. The result becomes a constant when it is a splat whose
  bits a constant op reproduces exactly (a NaN with its sign bit set cannot be written as a
  constant: the text form has no ``-nan``); otherwise the op stays.
- **Algebra**, exact under the spec: ``x + 0``, ``x - 0``, ``x * 1``, ``x / 1``, ``x | 0``,
  ``x ^ 0``, ``x & -1``, ``x << 0``, ``x >> 0`` give ``x``; ``x * 0``, ``x & 0`` and
  ``x | -1`` give the constant (integers; wraparound does not change any of these). For floats
  ``x * 1.0``, ``x / 1.0``, ``x + (-0.0)`` and ``x - 0.0`` give ``x`` only when ``x`` cannot
  hold a NaN with a payload: arithmetic returns the canonical NaN, so the rewrite would change
  the bits of a loaded or viewed NaN. Double ``neg``/``not`` of integers; ``cast`` to the same
  dtype (floats: again only for canonical NaNs, as a cast canonicalizes them); ``reshape``,
  ``broadcast``, ``convert_layout`` to the same type and ``permute`` by the identity give
  their operand; nested reshapes, layout conversions and permutes become one;
  ``where`` with a constant condition or equal branches picks a branch; a constant operand of
  a commutative op moves to the right (comparisons swap their predicate).
- **Control flow**: a loop with constant bounds and a non-zero constant step that runs zero
  times gives its inits (a zero step stays: it is a launch error); ``scf.if`` on a constant
  condition is replaced by the taken branch.

Rejected as unsafe (tests check that they do not fire):

- ``x + 0.0 -> x`` for floats (``-0.0 + 0.0 == +0.0``), and ``x - (-0.0)`` likewise;
- ``x * 0 -> 0`` for floats (NaN, infinities and ``-0.0``);
- ``x * 1.0``, ``x / 1.0`` and a same-dtype float cast when ``x`` may hold a NaN payload
  (it comes from a load, a view, a block argument or a loop or branch result);
- moving a constant to the right of a float ``min``/``max``: with equal operands (``-0.0`` and
  ``0.0``) they return the second one, so they are not commutative bit for bit; also moving
  a float NaN constant, since which NaN an add or multiply returns depends on the order;
- removing a loop whose step is 0 or unknown, which would remove a launch error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from bittile.backends.interp.interpreter import EVALUATORS, hold, values_of
from bittile.errors import BittileError, InternalError
from bittile.ir import ops
from bittile.ir.core import Kernel, Op, Value
from bittile.ir.dtypes import DType
from bittile.ir.types import ScalarType, TileType, Type
from bittile.passes.base import Pass, register_pass
from bittile.passes.rewrite import Rewriter

__all__ = ["CanonicalizePass", "RULES"]

#: A rule rewrites a matching op (given with its already rewritten operands) and returns the
#: values that replace its results, or None when it does not apply.
RuleFn = Callable[["_Canonicalizer", Op, tuple[Value, ...]], Sequence[Value] | None]

#: More rounds than this means two rules undo each other: a bug, not a big kernel (operands
#: are rewritten before their users, so chains of folds finish in one round).
_MAX_ROUNDS = 50


@register_pass
class CanonicalizePass(Pass):
    """Fold constants and apply :data:`RULES` until none applies."""

    name: ClassVar[str] = "canonicalize"

    def run(self, kernel: Kernel) -> Kernel:
        for _ in range(_MAX_ROUNDS):
            rewriter = _Canonicalizer()
            kernel = rewriter.run(kernel)
            if not rewriter.changed:
                return kernel
        raise InternalError(f"canonicalize found no fixpoint in {_MAX_ROUNDS} rounds")


# ---- constants --------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _Constant:
    """A constant scalar or splat tile: its carrier value and held bits (see the interpreter)."""

    value: int | float
    held: np.ndarray  # the interpreter's held form of one element
    dtype: DType

    def equals(self, number: int | float) -> bool:
        """Same value, and for floats the same sign (so -0.0 and 0.0 differ)."""
        if self.dtype.is_int:
            return self.value == number
        return self.value == number and math.copysign(1.0, self.value) == math.copysign(
            1.0, number)

    @property
    def is_all_ones(self) -> bool:
        return self.dtype.is_int and self.value == int(self.dtype.wrap(np.int64(-1)))

    @property
    def is_nan(self) -> bool:
        return self.dtype.is_float and math.isnan(self.value)


class _ConstantFrame:
    """Stands in for the interpreter's frame when an op is evaluated on constants."""

    def __init__(self, held: dict[int, np.ndarray]):
        self.held = held

    def __getitem__(self, value: Value) -> np.ndarray:
        return self.held[id(value)]


#: a full of a constant is the form of tile constants. Ops without operands (constants, block
#: ids, sizes), ops reading memory (a tensor operand is never constant), ops with regions and
#: ops without exactly one result are not folded either.
_NOT_FOLDED = (ops.FullOp,)

#: float ops that return the canonical NaN (and copy the sign of a NaN operand)
_COMPUTING = (ops.ConstantOp, ops.UnaryOp, ops.BinaryOp, ops.CastOp, ops.ReduceOp, ops.DotOp)
#: ops that move their operands' bits unchanged
_MOVING = (ops.FullOp, ops.BroadcastOp, ops.ReshapeOp, ops.PermuteOp, ops.ConvertLayoutOp)


class _Canonicalizer(Rewriter):
    """One round: every op, in program order, goes through the first rule that applies."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = False
        self.defs: dict[int, Op] = {}  # new value -> the op defining it
        self.params: set[int] = set()
        self._canonical: dict[int, bool] = {}

    def run(self, kernel: Kernel) -> Kernel:
        self.params = {id(v) for v in kernel.body.args}
        return super().run(kernel)

    def rewrite(self, op: Op, operands: tuple[Value, ...]) -> Sequence[Value] | None:
        for pattern, fn in RULES:
            if isinstance(op, pattern):
                replacement = fn(self, op, operands)
                if replacement is not None:
                    self.changed = True
                    return replacement
        return None

    def clone(self, op: Op, operands: tuple[Value, ...]) -> Op:
        new = super().clone(op, operands)
        self._define(new)
        return new

    def _define(self, op: Op) -> None:
        for r in op.results:
            self.defs[id(r)] = op

    # -- helpers for the rules -----------------------------------------------------------------
    def emit(self, op: Op) -> Value:
        """Insert a new op (verified) at the current position; its result."""
        self.builder.insert(op)
        self._define(op)
        return op.result

    def constant(self, value: Value) -> _Constant | None:
        op = self.defs.get(id(value))
        if isinstance(op, ops.FullOp):
            op = self.defs.get(id(op.value))
        if not isinstance(op, ops.ConstantOp):
            return None
        return _Constant(op.value, hold(op.value, op.dtype), op.dtype)

    def held(self, value: Value) -> np.ndarray | None:
        """The held data of a constant value, shaped like it (None if it is not constant)."""
        c = self.constant(value)
        if c is None:
            return None
        if isinstance(value.type, TileType):
            return np.full(value.type.shape, c.held)
        return np.asarray(c.held)

    def make_constant(self, held: np.ndarray, type_: Type) -> Value | None:
        """A constant (scalar or splat ``type_``) with exactly the bits ``held``, if any."""
        flat = np.asarray(held).reshape(-1)
        if not (flat == flat[0]).all():
            return None
        dtype = type_.dtype
        value = values_of(flat[:1], dtype)[0]
        value = int(value) if dtype.is_int else float(value)
        if dtype.is_float and math.isnan(value):
            value = math.nan  # the only NaN the text form can write
        if not np.array_equal(hold(value, dtype), flat[0]):
            return None
        scalar = self.emit(ops.ConstantOp.create(value, dtype, self.builder.loc))
        return self.as_type(scalar, type_)

    def as_type(self, value: Value, type_: Type) -> Value | None:
        """``value`` as a value of ``type_``: itself, or a scalar splat to a tile."""
        if value.type == type_:
            return value
        if isinstance(value.type, ScalarType) and isinstance(type_, TileType) and (
                value.type.dtype == type_.dtype):
            return self.emit(ops.FullOp.create(value, type_.shape, type_.layout,
                                               self.builder.loc))
        return None

    def nan_canonical(self, value: Value) -> bool:
        """Whether every NaN ``value`` may hold is the canonical NaN (always true for integers):
        it comes from arithmetic, a cast, a constant or a scalar parameter, possibly moved."""
        if not value.type.dtype.is_float or id(value) in self.params:
            return True
        known = self._canonical.get(id(value))
        if known is None:
            op = self.defs.get(id(value))
            if isinstance(op, _COMPUTING):
                known = True
            elif isinstance(op, _MOVING):
                known = self.nan_canonical(op.operands[0])
            elif isinstance(op, ops.WhereOp):
                known = self.nan_canonical(op.a) and self.nan_canonical(op.b)
            else:  # loads, views, block arguments, loop and branch results
                known = False
            self._canonical[id(value)] = known
        return known

    def inline(self, block) -> tuple[Value, ...]:
        """Rewrite ``block``'s ops into the current block; the values its yield gives."""
        *body, terminator = block.ops
        for inner in body:
            self.visit_op(inner)
        return tuple(self.lookup(v) for v in terminator.values)


# ---- folding ----------------------------------------------------------------------------------
def fold_constant_operands(rw: _Canonicalizer, op: Op, operands):
    evaluate = EVALUATORS.get(type(op))
    if (isinstance(op, _NOT_FOLDED) or op.regions or len(op.results) != 1 or not operands
            or evaluate is None):
        return None
    held = [rw.held(v) for v in operands]
    if any(h is None for h in held):
        return None
    frame = _ConstantFrame({id(old): h for old, h in zip(op.operands, held)})
    try:
        (result,) = evaluate(op, frame)
    except BittileError:  # it fails at launch too: leave it there
        return None
    value = rw.make_constant(result, op.result.type)
    return None if value is None else (value,)


# ---- control flow -----------------------------------------------------------------------------
def zero_trip_loop(rw: _Canonicalizer, op: ops.ForOp, operands):
    lo, hi, step = (rw.constant(v) for v in operands[:3])
    if lo is None or hi is None or step is None or step.value == 0:
        return None
    if len(range(lo.value, hi.value, step.value)) != 0:
        return None
    return operands[3:]


def constant_condition_if(rw: _Canonicalizer, op: ops.IfOp, operands):
    cond = rw.constant(operands[0])
    if cond is None:
        return None
    return rw.inline(op.then_body if cond.value != 0 else op.else_body)


# ---- commutative ops: constants on the right --------------------------------------------------
_SWAPPED_COMPARISON = {"eq": "eq", "ne": "ne", "lt": "gt", "gt": "lt", "le": "ge", "ge": "le"}
_COMMUTATIVE = ("add", "mul", "min", "max", "and", "or", "xor")
#: float min/max return their second operand when both compare equal (-0.0 and 0.0)
_COMMUTATIVE_FOR_FLOATS = ("add", "mul")


def constant_to_the_right(rw: _Canonicalizer, op: ops.BinaryOp, operands):
    lhs, rhs = operands
    c = rw.constant(lhs)
    if c is None or rw.constant(rhs) is not None:
        return None
    if isinstance(op, ops.CompareOp):
        cls = ops.compare_op_class(_SWAPPED_COMPARISON[op.kind])
    elif op.kind in (_COMMUTATIVE_FOR_FLOATS if c.dtype.is_float else _COMMUTATIVE):
        if c.is_nan:  # a NaN operand decides which NaN comes out
            return None
        cls = type(op)
    else:
        return None
    return (rw.emit(cls.create(rhs, lhs, rw.builder.loc)),)


# ---- algebraic identities ---------------------------------------------------------------------
#: x OP c -> x for the constants c accepted (floats: only when x's NaNs are canonical)
_RIGHT_IDENTITY: dict[str, Callable[[_Constant], bool]] = {
    "add": lambda c: c.equals(0 if c.dtype.is_int else -0.0),
    "sub": lambda c: c.equals(0),
    "mul": lambda c: c.equals(1),
    "div": lambda c: c.equals(1),
    "or": lambda c: c.equals(0),
    "xor": lambda c: c.equals(0),
    "shl": lambda c: c.equals(0),
    "shr": lambda c: c.equals(0),
    "and": lambda c: c.is_all_ones,
}
#: x OP c -> c for integers, for the constants c accepted
_RIGHT_ABSORBING: dict[str, Callable[[_Constant], bool]] = {
    "mul": lambda c: c.equals(0),
    "and": lambda c: c.equals(0),
    "or": lambda c: c.is_all_ones,
}


def right_identity(rw: _Canonicalizer, op: ops.BinaryOp, operands):
    x, rhs = operands
    c = rw.constant(rhs)
    accepts = _RIGHT_IDENTITY.get(op.kind)
    if c is None or accepts is None or not accepts(c) or not rw.nan_canonical(x):
        return None
    return _one(rw.as_type(x, op.out.type))


def right_absorbing(rw: _Canonicalizer, op: ops.BinaryOp, operands):
    c = rw.constant(operands[1])
    accepts = _RIGHT_ABSORBING.get(op.kind)
    if c is None or not c.dtype.is_int or accepts is None or not accepts(c):
        return None
    return _one(rw.as_type(operands[1], op.out.type))


def double_negation(rw: _Canonicalizer, op: ops.UnaryOp, operands):
    inner = rw.defs.get(id(operands[0]))
    if type(inner) is not type(op) or not op.x.type.dtype.is_int:
        return None
    return _one(rw.as_type(inner.x, op.out.type))


def same_dtype_cast(rw: _Canonicalizer, op: ops.CastOp, operands):
    (x,) = operands
    if op.dtype != x.type.dtype or not rw.nan_canonical(x):
        return None
    return _one(rw.as_type(x, op.out.type))


def same_type_move(rw: _Canonicalizer, op: Op, operands):
    """reshape, broadcast and convert_layout to the operand's own type are no-ops."""
    (x,) = operands
    return (x,) if x.type == op.result.type else None


def identity_permute(rw: _Canonicalizer, op: ops.PermuteOp, operands):
    (x,) = operands
    if tuple(op.dims) != tuple(range(len(op.dims))) or x.type != op.out.type:
        return None
    return (x,)


def nested_move(rw: _Canonicalizer, op: Op, operands):
    """reshape(reshape(x)) and convert_layout(convert_layout(x)): only the outer one counts."""
    inner = rw.defs.get(id(operands[0]))
    if type(inner) is not type(op):
        return None
    x = inner.x
    if x.type == op.result.type:
        return (x,)
    attributes = dict(op.attributes)
    return (rw.emit(type(op).create(x, **attributes, loc=rw.builder.loc)),)


def nested_permute(rw: _Canonicalizer, op: ops.PermuteOp, operands):
    inner = rw.defs.get(id(operands[0]))
    if not isinstance(inner, ops.PermuteOp):
        return None
    dims = tuple(inner.dims[d] for d in op.dims)
    new = ops.PermuteOp.create(inner.x, dims, rw.builder.loc)
    if new.out.type != op.out.type:  # layouts that do not compose back: leave them
        return None
    return (rw.emit(new),)


def where_constant_condition(rw: _Canonicalizer, op: ops.WhereOp, operands):
    cond, a, b = operands
    c = rw.constant(cond)
    if c is None:
        return None
    return _one(rw.as_type(a if c.value != 0 else b, op.out.type))


def where_same_branches(rw: _Canonicalizer, op: ops.WhereOp, operands):
    _, a, b = operands
    return _one(rw.as_type(a, op.out.type)) if a is b else None


def _one(value: Value | None):
    return None if value is None else (value,)


#: (op classes, rule), tried in order; the first rule that returns values wins
RULES: list[tuple[type | tuple[type, ...], RuleFn]] = [
    (Op, fold_constant_operands),
    (ops.ForOp, zero_trip_loop),
    (ops.IfOp, constant_condition_if),
    (ops.BinaryOp, constant_to_the_right),
    (ops.BinaryOp, right_identity),
    (ops.BinaryOp, right_absorbing),
    ((ops.NegOp, ops.NotOp), double_negation),
    (ops.CastOp, same_dtype_cast),
    ((ops.ReshapeOp, ops.BroadcastOp, ops.ConvertLayoutOp), same_type_move),
    ((ops.ReshapeOp, ops.ConvertLayoutOp), nested_move),
    (ops.PermuteOp, identity_permute),
    (ops.PermuteOp, nested_permute),
    (ops.WhereOp, where_constant_condition),
    (ops.WhereOp, where_same_branches),
]
