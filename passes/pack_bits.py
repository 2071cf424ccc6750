"""pack-bits: sub-byte data becomes words in memory and integer codes in registers.

Option ``word`` (8, 16 or 32, default 32): the width of the memory words that loads and stores
of sub-byte tensors move.

After this pass no op touches a value of a *sub-byte* dtype (fewer than 8 bits: ``u1..u7``,
``i1..i7``, ``f4e2m1``, ``f6e3m2``, ``f6e2m3``, any ``float_type(e, m)`` below 8 bits), so a
backend without sub-byte support needs nothing more.

Representation
--------------
- **Registers.** A sub-byte scalar or tile is carried as its *codes* (bit patterns, see
  ``ir/dtypes.py``) in ``u8``, with the same shape and layout: ``tile<u4[16, 8] @ L>`` becomes
  ``tile<u8[16, 8] @ L>`` holding values ``0..15``; an ``i3`` holding ``-1`` is carried as
  ``7``. Loop-carried values, branch results and fused-op arguments are carried the same way.
- **Memory.** A sub-byte tensor parameter keeps its type (``tensor<u4[N, K]>``): it is the same
  memory, the dense LSB-first bitstream of ``ir/bitstream.py``. Loads and stores address it as
  an array of ``word``-bit words (word ``j`` = stream bits ``[j*W, (j+1)*W)``) through the ops
  of ``ir/ops/packed.py``: ``packed.load_words`` (a gather of words; outside the tensor it
  reads 0) and ``packed.store_words`` (a masked read-modify-write of words).
- **Scalar parameters** of a sub-byte dtype change type, keeping their values: ``uN`` becomes
  ``u8``, ``iN`` becomes ``i8``, sub-byte floats become ``f32``; the body converts them to
  codes on entry. A launch that was valid stays valid and computes the same results.
- **Predicates.** Comparisons still produce ``u1``. A comparison whose result is only ever the
  condition of ``tile.where`` stays a predicate; any other use (data, a store, a yield, an
  ``scf.if``) gets the code ``where(p, 1, 0)`` in ``u8``; a ``u1`` code used as a condition
  becomes ``code != 0``.

Lowerings (element ``e`` of a tile at stream position ``p = linear(e) * n`` of an ``n``-bit
tensor; ``lin = q*W + r`` so that ``p`` never overflows i32: word ``q*n + (r*n >> log2 W)``,
bit ``r*n & (W-1)``)
- ``tile.load``: the word holding the element's low bits, shifted down; when ``n`` does not
  divide ``W`` an element may straddle two words (3-, 5-, 6- and 7-bit elements do), so the
  next word is loaded for those lanes and its low bits shifted up; then ``& (2^n - 1)``.
  Elements outside the tensor (each dimension checked, so a column past the end never reads the
  next row) load from word index ``-1``, which reads 0.
- ``tile.store``: two ``packed.store_words``, the low part of every element (``code << bit``
  under the mask ``(2^n-1) << bit``) and the high part of straddling elements (``code >>
  (W - bit)``), with mask 0 for elements outside the tensor. Bits of neighbouring elements
  that share a word are outside the mask and keep their values, and so do bits past the end
  of the tensor.
- ``tile.cast`` from a sub-byte type: integers are decoded to ``i32`` values (sign extension
  ``(c ^ 2^(n-1)) - 2^(n-1)``); floats are decoded to ``f32`` with integer ops and exact ``f32``
  multiplications by powers of two (``significand * 2^(max(biased, 1) - bias - m)``, the power
  assembled from the exponent's bits), then cast once to the target (a single rounding, so the
  result is exactly the direct cast's).
- ``tile.cast`` to a sub-byte type: integers clamp an ``i32`` value to the range and keep the
  low bits; floats go through ``f32`` (exact for every source but ``i32``/``u32`` above 2^24,
  which are first reduced to a value with the same rounding: only ``float_type(6, 0)`` reaches
  that far) and are encoded like ``ir/dtypes.py`` does it: the binade by a binary search over
  powers of two, ``floor`` of the scaled magnitude, ties to the even code, saturation, NaN to
  0 and the sign of zero kept (``1 / -0.0`` is ``-inf``).
- arithmetic, comparisons and reductions on sub-byte integers run on ``i32`` values and keep
  the low ``n`` bits (wrapping modulo 2^n, exactly the spec: shifts by amounts in ``[n, 32)``
  give the same 0 / sign fill as out-of-range shifts do); ``dot`` runs on ``f32`` (sub-byte
  floats, exact) or ``i32`` values, the operands reduced modulo the accumulator's width.
- ``tile.view`` involving a sub-byte type: each worker's codes become a row of a
  ``[workers, locals]`` tile (a byte-level ``view`` into ``spatial(W, 1).local(1, L)``, or a
  reshape for unannotated tiles); within a row, every result code is the sum of the shifted,
  masked codes that overlap it (groups of ``lcm(src bits, dst bits)`` bits, computed with
  broadcasted shifts and ``reduce_sum``); rows go back with a byte-level view into the result
  layout, replicated result workers being folded first (they hold equal codes).

Ops of other passes: ``tile.fused`` and ``tile.dequant_dot`` keep their structure, their
scalar bodies being lowered like any code (a body argument for a ``u4`` tile is a ``u8``
code). An op the pass does not know, or a ``tile.dequant_dot`` whose dense operand is
sub-byte, is refused with an error when it touches sub-byte values.

Precondition: a verified kernel whose tensors have fewer than 2^31 elements (indices are i32).

Postcondition: a verified kernel with bit-identical interpreter results in which no op has an
operand, result or block argument of a sub-byte type, except tensor parameters and ``u1``
predicates (results of ``cmp.*`` used only as conditions of ``tile.where``):
:func:`assert_no_subbyte_ops`. The cleanups may run afterwards (folding a predicate into a
``u1`` constant keeps the postcondition).

Limitation (parallel backends): stores of sub-byte data from different program instances may
share a word. The interpreter runs instances one after the other, so the masked
read-modify-write is exact. A parallel backend must either give each instance whole words
(which holds when every instance stores a multiple of ``W / gcd(n, W)`` elements at an aligned
offset) or implement ``packed.store_words`` with ``atomic_and`` / ``atomic_or`` (exact in any
order, since the masks of different elements never overlap). The pass does not check which.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from bittile.errors import BittileError
from bittile.ir import ops
from bittile.ir.builder import Builder
from bittile.ir.core import Block, Kernel, Op, Param, Value
from bittile.ir.dtypes import DType, f32, i8, i32, int_type, u1, u8, u16, u32
from bittile.ir.layout import RegisterLayout, local, spatial
from bittile.ir.ops.convert import default_layout
from bittile.ir.symbolic import BinExpr, Const, Sym, SymExpr
from bittile.ir.types import ScalarType, TileType, Type
from bittile.passes.base import Pass, register_pass
from bittile.passes.rewrite import Rewriter

__all__ = ["PackBitsPass", "carrier_type", "assert_no_subbyte_ops", "subbyte_violations"]

_WORDS = {8: u8, 16: u16, 32: u32}


@register_pass
class PackBitsPass(Pass):
    """Lower sub-byte loads, stores, casts, views and arithmetic to words and integer codes."""

    name: ClassVar[str] = "pack-bits"
    word: int = 32

    def run(self, kernel: Kernel) -> Kernel:
        if self.word not in _WORDS:
            raise BittileError(f"pack-bits: word must be 8, 16 or 32, not {self.word!r}",
                               hint="pack-bits{word=32}")
        return _PackBits(_WORDS[self.word]).run(kernel)


# ---- types --------------------------------------------------------------------------------------
def _is_subbyte(t: Type) -> bool:
    return isinstance(t, (ScalarType, TileType)) and t.dtype.is_subbyte


def carrier_type(t: Type) -> Type:
    """The type that carries values of ``t`` after the pass: ``u8`` codes for sub-byte
    scalars and tiles (same shape and layout), ``t`` itself otherwise."""
    if isinstance(t, TileType) and t.dtype.is_subbyte:
        return TileType(u8, t.shape, t.layout)
    if isinstance(t, ScalarType) and t.dtype.is_subbyte:
        return ScalarType(u8)
    return t


def _param_dtype(dtype: DType) -> DType:
    """The dtype a sub-byte scalar parameter gets: one that holds all its values exactly."""
    if dtype.is_float:
        return f32
    return i8 if dtype.kind == "int" else u8


#: ops whose u1 results may stay: predicates (splats of predicates included)
_PREDICATE_OPS = (ops.CompareOp, ops.ConstantOp, ops.FullOp, ops.BroadcastOp)


# ---- the postcondition --------------------------------------------------------------------------
def subbyte_violations(kernel: Kernel) -> list[str]:
    """Descriptions of every place where ``kernel`` still has a sub-byte scalar or tile,
    besides tensor parameters and ``u1`` predicates: results of comparisons (or, once
    folded, constants and their splats) used only as conditions of ``tile.where``."""
    found = [f"scalar parameter {p.name}: {p.type}" for p in kernel.params
             if _is_subbyte(p.type)]
    for op in kernel.walk():
        for region in op.regions:
            found += [f"{op.name}: block argument {a.type}" for a in region.args
                      if _is_subbyte(a.type)]
        predicate_op = isinstance(op, _PREDICATE_OPS) and all(
            r.type.dtype == u1 for r in op.results)
        for r in op.results:
            if _is_subbyte(r.type) and not predicate_op:
                found.append(f"{op.name}: result {r.type}")
        for k, v in enumerate(op.operands):
            if not _is_subbyte(v.type):
                continue
            if (isinstance(op, ops.WhereOp) and v is op.cond) or (
                    predicate_op and v.type.dtype == u1):
                continue
            found.append(f"{op.name}: operand {k} {v.type}")
    return found


def assert_no_subbyte_ops(kernel: Kernel) -> None:
    """Raise AssertionError unless ``kernel`` satisfies pack-bits' postcondition."""
    found = subbyte_violations(kernel)
    if found:
        raise AssertionError("sub-byte values remain after pack-bits:\n  " + "\n  ".join(found)
                             + f"\n{kernel}")


# ---- codes and values ---------------------------------------------------------------------------
def _decode(b: Builder, code: Value, dtype: DType) -> Value:
    """``u8`` codes of ``dtype`` -> values: ``i32`` for integers, ``f32`` for floats."""
    c = b.cast(code, i32)
    if dtype.kind == "uint":
        return c
    if dtype.kind == "int":
        half = 1 << (dtype.bits - 1)
        return b.sub(b.binary("xor", c, half), half)
    return _decode_float(b, c, dtype)


def _decode_float(b: Builder, c: Value, dtype: DType) -> Value:
    """``i32`` codes of a sub-byte float -> exact ``f32`` values: the significand times
    ``2^(1 - bias - m)``, times ``2^(max(biased, 1) - 1)`` assembled bit by bit from exact
    multiplications by powers of two."""
    m, sign = dtype.mantissa, 1 << (dtype.bits - 1)
    magnitude = b.binary("and", c, sign - 1)
    biased = b.binary("shr", magnitude, m) if m else magnitude
    normal = b.compare("gt", biased, 0)
    if m:
        fraction = b.binary("and", magnitude, (1 << m) - 1)
        significand = b.where(normal, b.add(fraction, 1 << m), fraction)
    else:
        significand = b.where(normal, 1, 0)
    value = b.mul(b.cast(significand, f32), 2.0 ** (1 - dtype.bias - m))
    above_first = b.sub(b.binary("max", biased, 1), 1)  # binades above the first: 0..2^e - 2
    j = 0
    while (1 << j) <= (1 << dtype.exponent) - 2:
        bit = b.binary("and", b.binary("shr", above_first, j) if j else above_first, 1)
        value = b.where(b.compare("ne", bit, 0), b.mul(value, 2.0 ** (1 << j)), value)
        j += 1
    negative = b.compare("ne", b.binary("and", c, sign), 0)
    return b.where(negative, b.unary("neg", value), value)


def _wrap(b: Builder, value: Value, dtype: DType) -> Value:
    """``i32`` integer values -> ``u8`` codes of ``dtype`` (the low bits: wraparound)."""
    return b.cast(b.binary("and", value, (1 << dtype.bits) - 1), u8)


def _to_i32(b: Builder, x: Value) -> Value:
    return x if x.type.dtype == i32 else b.cast(x, i32)


def _convert(b: Builder, x: Value, dtype: DType, value_range=None) -> Value:
    """Values ``x`` (any non-sub-byte dtype) -> ``u8`` codes of ``dtype`` with the semantics of
    ``tile.cast``. ``value_range`` (lo, hi), if known, spares clamps that cannot act."""
    src = x.type.dtype
    if dtype.is_int:
        v = _to_i32(b, x)
        lo, hi = value_range if value_range is not None else (None, None)
        if lo is None or lo < dtype.min:
            v = b.binary("max", v, dtype.min)
        if hi is None or hi > dtype.max:
            v = b.binary("min", v, dtype.max)
        return _wrap(b, v, dtype)
    if src == f32:
        as_f32 = x
    elif src.is_float or src.bits <= 24 or value_range is not None or dtype.max < 2.0 ** 24:
        as_f32 = b.cast(x, f32)  # exact, or (above 2^24) past the target's range either way
    else:
        as_f32 = _wide_int_to_f32(b, x)
    return _encode_float(b, as_f32, dtype)


def _wide_int_to_f32(b: Builder, x: Value) -> Value:
    """An ``f32`` that rounds to every sub-byte float like the integer ``x`` (up to 32 bits):
    exact below 2^24; above, the bits under 2^22 are replaced by one sticky bit at 2^21, so the
    value stays strictly between the same multiples of 2^22 (the grid and midpoints of every
    sub-byte float above 2^24 are multiples of 2^23)."""
    low = (1 << 22) - 1
    if x.type.dtype.kind == "int":
        v = _to_i32(b, x)
        negative = b.compare("lt", v, 0)
        magnitude = b.where(negative, b.unary("neg", v), v)  # -2^31 stays, its f32 is exact
        high_bits = -(1 << 22)
    else:
        magnitude = x if x.type.dtype == u32 else b.cast(x, u32)
        negative = None
        high_bits = 0xFFFFFFFF ^ low
    dtype = magnitude.type.dtype
    sticky = b.where(b.compare("ne", b.binary("and", magnitude, low), 0),
                     b.constant(1 << 21, dtype), b.constant(0, dtype))
    coarse = b.binary("or", b.binary("and", magnitude, high_bits), sticky)
    chosen = b.where(b.compare("ge", magnitude, 1 << 24), coarse, magnitude)
    value = b.unary("abs", b.cast(chosen, f32))
    return value if negative is None else b.where(negative, b.unary("neg", value), value)


def _encode_float(b: Builder, x: Value, dtype: DType) -> Value:
    """``f32`` values -> ``u8`` codes of a sub-byte float, rounding to nearest even and
    saturating (the algorithm of ``ir/dtypes.py``: magnitude code ``(k - emin) * 2^m + n``)."""
    m, emin, sign = dtype.mantissa, 1 - dtype.bias, 1 << (dtype.bits - 1)
    # 1 / -0.0 is -inf: the sign of a zero becomes visible to a comparison
    signed = b.where(b.compare("eq", x, 0.0), b.div(1.0, x), x)
    negative = b.compare("lt", signed, 0.0)
    magnitude = b.unary("abs", x)
    # binary search for the binade: index = k - emin, scale = 2^k
    index: Value = b.constant(0, i32)
    scale: Value = b.constant(2.0 ** emin, f32)
    for j in reversed(range(dtype.exponent)):
        step = 1 << j
        above = b.mul(scale, 2.0 ** step)
        reached = b.compare("ge", magnitude, above)
        index = b.where(reached, b.add(index, step), index)
        scale = b.where(reached, above, scale)
    scaled = b.binary("min", b.mul(b.div(magnitude, scale), 2.0 ** m), 2.0 ** (m + 2))
    lower = b.unary("floor", scaled)
    rest = b.sub(scaled, lower)
    code = b.add(b.mul(index, 1 << m), b.cast(lower, i32))
    tie = b.where(b.compare("eq", rest, 0.5), b.binary("and", code, 1), 0)
    code = b.add(code, b.where(b.compare("gt", rest, 0.5), 1, tie))
    code = b.binary("min", code, dtype.max_code)
    code = b.where(negative, b.binary("or", code, sign), code)
    code = b.where(b.compare("ne", x, x), 0, code)  # NaN: these types have none, it becomes 0
    return b.cast(code, u8)


# ---- the rewriter -------------------------------------------------------------------------------
def _where_only_values(kernel: Kernel) -> set[int]:
    """Ids of comparison results whose only uses are as conditions of ``tile.where``."""
    uses: dict[int, int] = {}
    cond_uses: dict[int, int] = {}
    results: set[int] = set()
    for op in kernel.walk():
        if isinstance(op, ops.CompareOp):
            results.add(id(op.out))
        for v in op.operands:
            uses[id(v)] = uses.get(id(v), 0) + 1
        if isinstance(op, ops.WhereOp):
            cond_uses[id(op.cond)] = cond_uses.get(id(op.cond), 0) + 1
    return {v for v in results if uses.get(v, 0) == cond_uses.get(v, 0)}


#: op names cloned with carrier types: they move values without looking at their bits
_STRUCTURAL = {
    "tile.broadcast", "tile.reshape", "tile.permute", "tile.convert_layout", "tile.full",
    "scf.yield", "scf.for", "scf.if", "tile.fused",
}


class _PackBits(Rewriter):
    def __init__(self, word: DType):
        super().__init__()
        self.word = word
        self.shapes: dict[int, tuple[list[Value], list[Value | None]]] = {}

    # ---- machinery --------------------------------------------------------------------------
    def run(self, kernel: Kernel) -> Kernel:
        self.mapping = {}
        self.where_only = _where_only_values(kernel)
        params, args, entry = [], [], []
        for p, v in zip(kernel.params, kernel.body.args):
            if _is_subbyte(p.type):
                new_type = ScalarType(_param_dtype(p.type.dtype))
                new = Value(new_type, v.name_hint)
                params.append(Param(p.name, new_type))
                entry.append((v, new))
            else:
                params.append(p)
                new = v
                self.mapping[id(v)] = v
            args.append(new)
        body = Block(args=args)
        self.builder = Builder(body)
        with self.builder.at(kernel.loc):
            for old, new in entry:
                self.mapping[id(old)] = self._param_codes(new, old.type.dtype)
            self._emit_shapes(kernel)
        self.visit_block(kernel.body)
        return Kernel(kernel.name, tuple(params), kernel.grid, body, kernel.loc)

    def _param_codes(self, value: Value, dtype: DType) -> Value:
        if dtype.kind == "uint":
            return value
        if dtype.kind == "int":
            return _wrap(self.builder, self.builder.cast(value, i32), dtype)
        return _convert(self.builder, value, dtype)

    def clone_region(self, block: Block) -> Block:
        new = Block(args=[Value(carrier_type(a.type), a.name_hint) for a in block.args])
        for old, fresh in zip(block.args, new.args):
            self.mapping[id(old)] = fresh
        with self.builder.inside(new):
            self.visit_block(block)
        return new

    def clone(self, op: Op, operands: tuple[Value, ...]) -> Op:
        regions = tuple(self.clone_region(r) for r in op.regions)
        results = tuple(Value(carrier_type(r.type), r.name_hint) for r in op.results)
        new = type(op).from_generic(operands, op.attributes, results, regions, op.loc)
        self.builder.block.ops.append(new)
        for old, fresh in zip(op.results, results):
            self.mapping[id(old)] = fresh
        return new

    # ---- dispatch -----------------------------------------------------------------------------
    def rewrite(self, op: Op, operands: tuple[Value, ...]):
        b = self.builder
        if isinstance(op, ops.ConstantOp):
            if not op.dtype.is_subbyte:
                return None
            code = int(op.dtype.encode(np.array([op.value]))[0])
            return (b.constant(code, u8),)
        if isinstance(op, ops.ArangeOp):
            return (b.arange(op.size, u8, op.layout),) if op.dtype.is_subbyte else None
        if isinstance(op, (ops.LoadOp, ops.StoreOp)):
            return self._memory(op, operands)
        if isinstance(op, ops.CastOp):
            return self._cast(op, operands[0])
        if isinstance(op, ops.ViewOp):
            if not (op.x.type.dtype.is_subbyte or op.dtype.is_subbyte):
                return None
            return (self._view(op, operands[0]),)
        if isinstance(op, ops.CompareOp):
            return self._compare(op, operands)
        if isinstance(op, ops.WhereOp):
            return (b.where(self._predicate(operands[0]), operands[1], operands[2]),)
        if isinstance(op, (ops.UnaryOp, ops.BinaryOp)):
            return self._arith(op, operands)
        if isinstance(op, ops.ReduceOp):
            if not op.x.type.dtype.is_subbyte:
                return None
            values = _decode(b, operands[0], op.x.type.dtype)
            reduced = b.reduce(op.kind, values, op.axis, op.keepdims)
            return (_wrap(b, reduced, op.x.type.dtype),)
        if isinstance(op, ops.DotOp):
            return self._dot(op, *operands)
        if isinstance(op, ops.ForOp) and _is_subbyte(op.lo.type):
            return self._for_small_counter(op, operands)
        if op.name == "tile.dequant_dot":
            if _is_subbyte(op.out.type) or _is_subbyte(op.x.type):
                self._unsupported(op)
            return None
        if op.name not in _STRUCTURAL and any(
            _is_subbyte(v.type) for v in (*op.operands, *op.results)
        ):
            self._unsupported(op)
        return None

    def _unsupported(self, op: Op):
        raise BittileError(f"pack-bits cannot lower {op.name} on sub-byte values", op.loc,
                           hint="cast the values to u8/i8/f16 before this op")

    # ---- values -------------------------------------------------------------------------------
    def _predicate(self, cond: Value) -> Value:
        """A ``u1`` condition for ``tile.where`` from a rewritten condition."""
        if cond.type.dtype == u1:  # a comparison kept as a predicate
            return cond
        return self.builder.compare("ne", cond, 0)  # a u8 code

    def _index(self, old: Value, new: Value) -> Value:
        """An index operand as an ``i32`` value."""
        if _is_subbyte(old.type):
            return _decode(self.builder, new, old.type.dtype)
        return _to_i32(self.builder, new)

    def _compare(self, op: Op, operands):
        b = self.builder
        lhs, rhs = operands
        dtype = op.lhs.type.dtype
        if dtype.is_subbyte:
            lhs, rhs = _decode(b, lhs, dtype), _decode(b, rhs, dtype)
        predicate = b.compare(op.kind, lhs, rhs)
        if id(op.out) in self.where_only:
            return (predicate,)
        return (b.where(predicate, b.constant(1, u8), b.constant(0, u8)),)

    def _arith(self, op: Op, operands):
        dtype = op.out.type.dtype
        if not dtype.is_subbyte:
            return None
        b = self.builder
        values = [_decode(b, x, dtype) for x in operands]
        if isinstance(op, ops.UnaryOp):
            result = b.unary(op.kind, values[0])
        else:
            result = b.binary(op.kind, *values)
        return (_wrap(b, result, dtype),)

    def _cast(self, op: ops.CastOp, x: Value):
        src, dst = op.x.type.dtype, op.dtype
        if not (src.is_subbyte or dst.is_subbyte):
            return None
        b = self.builder
        value_range = None
        if src.is_subbyte:
            x = _decode(b, x, src)
            value_range = (src.min, src.max)
        if dst.is_subbyte:
            return (_convert(b, x, dst, value_range),)
        return (x if x.type.dtype == dst else b.cast(x, dst),)

    def _dot(self, op: ops.DotOp, a: Value, bb: Value, acc: Value):
        ab, acc_dtype = op.a.type.dtype, op.acc.type.dtype
        if not (ab.is_subbyte or acc_dtype.is_subbyte):
            return None
        b = self.builder
        if ab.is_float:  # sub-byte floats: exact in f32, and dot computes exactly
            return (b.dot(_decode(b, a, ab), _decode(b, bb, ab), acc),)
        if acc_dtype.is_subbyte:
            a32, b32 = self._int_values_mod(a, ab), self._int_values_mod(bb, ab)
            return (_wrap(b, b.dot(a32, b32, _decode(b, acc, acc_dtype)), acc_dtype),)
        a32, b32 = _decode(b, a, ab), _decode(b, bb, ab)
        return (b.dot(self._mod_width(a32, acc_dtype), self._mod_width(b32, acc_dtype), acc),)

    def _int_values_mod(self, x: Value, dtype: DType) -> Value:
        """Integer tile -> ``i32`` congruent values (mod 2^32)."""
        if dtype.is_subbyte:
            return _decode(self.builder, x, dtype)
        if dtype == u32:
            return self.builder.view(x, i32, x.type.shape, x.type.layout)
        return _to_i32(self.builder, x)

    def _mod_width(self, v: Value, dtype: DType) -> Value:
        """Small ``i32`` values (|v| <= 128) -> ``dtype`` values congruent mod 2^bits."""
        b = self.builder
        if dtype == i32:
            return v
        if dtype.kind == "int":
            return b.cast(v, dtype)
        if dtype.bits == 32:
            return b.view(v, dtype, v.type.shape, v.type.layout)
        return b.cast(b.binary("and", v, (1 << dtype.bits) - 1), dtype)

    def _for_small_counter(self, op: ops.ForOp, operands):
        """A loop counting in a sub-byte type counts in i32; its body sees the codes."""
        b = self.builder
        dtype = op.lo.type.dtype
        lo, hi, step = (_decode(b, v, dtype) for v in operands[:3])
        inits = operands[3:]
        body = Block(args=[Value(ScalarType(i32), op.body.args[0].name_hint)]
                      + [Value(carrier_type(a.type), a.name_hint) for a in op.body.args[1:]])
        for old, fresh in zip(op.body.args[1:], body.args[1:]):
            self.mapping[id(old)] = fresh
        with b.inside(body):
            self.mapping[id(op.body.args[0])] = _wrap(b, body.args[0], dtype)
            self.visit_block(op.body)
        outs = tuple(Value(carrier_type(r.type), r.name_hint) for r in op.outs)
        b.insert(ops.ForOp(lo=lo, hi=hi, step=step, inits=tuple(inits), body=body, outs=outs,
                       loc=op.loc))
        return outs

    # ---- memory -------------------------------------------------------------------------------
    def _emit_shapes(self, kernel: Kernel) -> None:
        """Dimensions and row-major strides (i32) of every sub-byte tensor that is loaded or
        stored, computed once at the top of the kernel."""
        wanted = {id(op.tensor) for op in kernel.walk()
                  if isinstance(op, (ops.LoadOp, ops.StoreOp))
                  and op.tensor.type.dtype.is_subbyte}
        symbols: dict[str, Value] = {}
        scalars = {p.name: v for p, v in zip(kernel.params, kernel.body.args)
                   if isinstance(p.type, ScalarType)}
        for value in kernel.body.args:
            if id(value) not in wanted:
                continue
            dims = [self._size(d, symbols, scalars) for d in value.type.shape]
            strides: list[Value | None] = [None] * len(dims)
            for d in range(len(dims) - 2, -1, -1):
                following = dims[d + 1]
                strides[d] = following if strides[d + 1] is None else self.builder.mul(
                    strides[d + 1], following)
            self.shapes[id(value)] = (dims, strides)

    def _size(self, expr: SymExpr, symbols: dict[str, Value], scalars: dict[str, Value]) -> Value:
        b = self.builder
        if isinstance(expr, Const):
            return b.constant(expr.value, i32)
        if isinstance(expr, Sym):
            if expr.name not in symbols:
                if expr.name in scalars:
                    old = scalars[expr.name]
                    symbols[expr.name] = self._index(old, self.mapping[id(old)])
                else:
                    symbols[expr.name] = b.size(expr.name)
            return symbols[expr.name]
        assert isinstance(expr, BinExpr)
        x, y = self._size(expr.lhs, symbols, scalars), self._size(expr.rhs, symbols, scalars)
        if expr.op in ("add", "sub", "mul", "min", "max"):
            return b.binary(expr.op, x, y)
        simple = (_non_negative(expr.lhs, scalars) and isinstance(expr.rhs, Const)
                  and expr.rhs.value > 0)
        if expr.op == "floordiv":
            return b.div(x, y) if simple else _floor_div(b, x, y)
        if expr.op == "cdiv":
            if simple:
                return b.div(b.add(x, expr.rhs.value - 1), y)
            return b.unary("neg", _floor_div(b, b.unary("neg", x), y))
        assert expr.op == "mod", expr.op
        return b.sub(x, b.mul(_floor_div(b, x, y), y))

    def _memory(self, op: Op, operands):
        tensor, offsets = operands[0], operands[1:1 + len(op.offsets)]
        offsets = [self._index(old, new) if _is_subbyte(old.type) else new
                   for old, new in zip(op.offsets, offsets)]
        b = self.builder
        if not op.tensor.type.dtype.is_subbyte:
            if all(new is old for new, old in zip(offsets, operands[1:])):
                return None
            if isinstance(op, ops.LoadOp):
                return (b.load(tensor, offsets, op.shape, op.layout),)
            b.store(tensor, offsets, operands[-1])
            return ()
        offsets = [_to_i32(b, o) for o in offsets]
        if isinstance(op, ops.LoadOp):
            return (self._load(op, tensor, offsets),)
        self._store(op, tensor, offsets, operands[-1])
        return ()

    def _element_positions(self, tensor: Value, offsets, shape):
        """(word index, bit in word, in-bounds predicate) of every element of the tile."""
        b = self.builder
        dims, strides = self.shapes[id(tensor)]
        rank = len(shape)
        linear = inside = None
        for d, (offset, extent) in enumerate(zip(offsets, shape)):
            index = b.arange(extent, i32)
            if rank > 1:
                index = b.reshape(index, [extent if k == d else 1 for k in range(rank)])
                index = b.broadcast(index, shape)
            index = b.add(index, offset)
            for cond in (b.compare("ge", index, 0), b.compare("lt", index, dims[d])):
                inside = b.where(cond, 1 if inside is None else inside, 0)
            term = index if strides[d] is None else b.mul(index, strides[d])
            linear = term if linear is None else b.add(linear, term)
        n, w = tensor.type.dtype.bits, self.word.bits
        log_w = w.bit_length() - 1
        # linear = q * W + r, so linear * n = (q * n) * W + r * n never overflows
        within = b.binary("and", linear, w - 1)
        word = b.binary("shr", linear, log_w)
        if n > 1:
            within, word = b.mul(within, n), b.mul(word, n)
        word = b.add(word, b.binary("shr", within, log_w))
        bit = b.binary("and", within, w - 1)
        return word, bit, b.compare("ne", inside, 0)

    def _load(self, op: ops.LoadOp, tensor: Value, offsets) -> Value:
        b = self.builder
        word, bit, inside = self._element_positions(tensor, offsets, op.shape)
        n, w = tensor.type.dtype.bits, self.word.bits
        first = b.where(inside, word, -1)
        words = b.insert(ops.LoadWordsOp.create(tensor, first, self.word, b.loc)).result
        value = b.binary("shr", words, b.cast(bit, self.word))
        if w % n:
            straddles = b.compare("gt", bit, w - n)
            second = b.where(inside, b.where(straddles, b.add(word, 1), -1), -1)
            high = b.insert(ops.LoadWordsOp.create(tensor, second, self.word, b.loc)).result
            up = b.cast(b.where(straddles, b.sub(w, bit), 0), self.word)
            value = b.binary("or", value, b.binary("shl", high, up))
        code = b.binary("and", value, (1 << n) - 1)
        if self.word != u8:
            code = b.cast(code, u8)
        if op.layout is not None:
            code = b.convert_layout(code, op.layout)
        return code

    def _store(self, op: ops.StoreOp, tensor: Value, offsets, value: Value) -> None:
        b = self.builder
        word, bit, inside = self._element_positions(tensor, offsets, op.value.type.shape)
        n, w = tensor.type.dtype.bits, self.word.bits
        code = value if self.word == u8 else b.cast(value, self.word)
        ones = b.constant((1 << n) - 1, self.word)
        shift = b.cast(bit, self.word)
        low_mask = b.where(inside, b.binary("shl", ones, shift), 0)
        b.insert(ops.StoreWordsOp.create(tensor, word, b.binary("shl", code, shift), low_mask,
                                         b.loc))
        if w % n:
            straddles = b.compare("gt", bit, w - n)
            down = b.cast(b.where(straddles, b.sub(w, bit), 0), self.word)
            high_mask = b.where(inside, b.where(straddles, b.binary("shr", ones, down), 0), 0)
            b.insert(ops.StoreWordsOp.create(tensor, b.add(word, 1), b.binary("shr", code, down),
                                             high_mask, b.loc))

    # ---- views --------------------------------------------------------------------------------
    def _view(self, op: ops.ViewOp, x: Value) -> Value:
        b = self.builder
        src_t: TileType = op.x.type
        sb, db = src_t.dtype.bits, op.dtype.bits
        if sb == db:  # both sub-byte, one width: the codes stay, only their places change
            if op.shape == src_t.shape and op.layout == src_t.layout:
                return x
            return b.view(x, u8, op.shape, op.layout)
        src_layout = src_t.layout or default_layout(src_t.shape)
        dst_layout = op.layout or default_layout(op.shape)
        workers, n_src = src_layout.num_workers, src_layout.local_size
        n_dst = dst_layout.local_size
        rows = self._worker_rows(x, src_t, workers, n_src)
        rows = b.cast(rows, u32)
        group = math.lcm(sb, db)
        per_src, per_dst = group // sb, group // db
        groups = n_src // per_src
        full = [workers, groups, per_dst, per_src]
        codes = b.reshape(rows, [workers, groups, 1, per_src])
        if per_dst > 1:
            codes = b.broadcast(codes, full)
        src_bit = b.reshape(b.mul(b.arange(per_src, i32), sb), [1, 1, 1, per_src])
        dst_bit = b.reshape(b.mul(b.arange(per_dst, i32), db), [1, 1, per_dst, 1])
        offset = b.sub(b.broadcast(src_bit, [1, 1, per_dst, per_src]),
                       b.broadcast(dst_bit, [1, 1, per_dst, per_src]))
        if workers * groups > 1:
            offset = b.broadcast(offset, full)
        up = b.cast(b.binary("max", offset, 0), u32)
        down = b.cast(b.binary("max", b.unary("neg", offset), 0), u32)
        pieces = b.binary("shr", b.binary("shl", codes, up), down)
        if db < 32:
            pieces = b.binary("and", pieces, (1 << db) - 1)
        rows = b.reshape(b.sum(pieces, axis=3), [workers, n_dst])
        code_dtype = u8 if db < 8 else int_type(db, False)
        if code_dtype != u32:
            rows = b.cast(rows, code_dtype)
        return self._from_worker_rows(rows, op, dst_layout)

    def _worker_rows(self, x: Value, src_t: TileType, workers: int, n_src: int) -> Value:
        """``[workers, locals]``: row ``w`` holds worker ``w``'s codes in local order, as
        unsigned integers of the source's width (``u8`` for sub-byte sources)."""
        b = self.builder
        sb = src_t.dtype.bits
        code_dtype = u8 if sb < 8 else int_type(sb, False)
        if src_t.layout is None and x.type.dtype == code_dtype:
            return b.reshape(x, [1, n_src])
        return b.view(x, code_dtype, [workers, n_src], _rows_layout(workers, n_src))

    def _from_worker_rows(self, rows: Value, op: ops.ViewOp,
                          dst_layout: RegisterLayout) -> Value:
        b = self.builder
        n_dst = rows.type.shape[1]
        digits = dst_layout.spatial_modes
        base = dst_layout
        if any(x < 0 for x in digits):
            # replicated workers hold equal codes: keep one of each
            sizes = [-x if x < 0 else dst_layout.mode_shape[x] for x in digits]
            folded = b.reshape(rows, [*sizes, n_dst])
            for axis in reversed([k for k, x in enumerate(digits) if x < 0]):
                folded = b.reduce("max", folded, axis)
            base = RegisterLayout(dst_layout.shape, dst_layout.mode_shape,
                                  tuple(x for x in digits if x >= 0), dst_layout.local_modes)
            rows = b.reshape(folded, [base.num_workers, n_dst])
        result_dtype = u8 if op.dtype.is_subbyte else op.dtype
        if op.layout is None and rows.type.dtype == result_dtype:
            return b.reshape(rows, op.shape)
        if base.num_workers > 1:
            rows = b.convert_layout(rows, _rows_layout(base.num_workers, n_dst))
        out = b.view(rows, result_dtype, op.shape, base if op.layout is not None else None)
        if op.layout is not None and base != op.layout:
            out = b.convert_layout(out, op.layout)
        return out


def _rows_layout(workers: int, n: int) -> RegisterLayout:
    return spatial(workers, 1) * local(1, n)


def _non_negative(expr: SymExpr, scalars) -> bool:
    """Whether a size expression is >= 0 whatever its symbols (sizes are, scalars may not)."""
    if isinstance(expr, Const):
        return expr.value >= 0
    if isinstance(expr, Sym):
        return expr.name not in scalars
    if isinstance(expr, BinExpr) and expr.op in ("add", "mul", "min", "max", "floordiv",
                                                 "cdiv", "mod"):
        return _non_negative(expr.lhs, scalars) and _non_negative(expr.rhs, scalars)
    return False


def _floor_div(b: Builder, x: Value, y: Value) -> Value:
    """Floor division of i32 values (``arith.div`` truncates toward zero)."""
    quotient, remainder = b.div(x, y), b.binary("rem", x, y)
    opposite = b.where(b.compare("lt", b.binary("xor", remainder, y), 0), 1, 0)
    return b.sub(quotient, b.where(b.compare("ne", remainder, 0), opposite, 0))
