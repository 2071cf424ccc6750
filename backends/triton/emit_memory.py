"""Loads and stores of tiles, and the word ops of ``ir/ops/packed.py``.

A tile at ``offsets`` covers coordinates ``offset + arange`` per dimension; each offset is first
clamped to ``[-P, dim]`` (P the padded extent), which keeps every coordinate in int32 without
changing which elements are inside. An element is inside when every coordinate is in
``[0, dim)`` (one unsigned comparison) and, in padded dimensions, its index is below the tile's
extent. Outside elements load as 0 and are not stored.

Tensors of 8, 16 and 32-bit dtypes are addressed by element. Other dtypes are dense LSB-first
bitstreams passed as int32 words (the launcher pads the buffer to whole words): an n-bit element
at stream bit ``p`` is read from word ``p >> 5`` and, when it straddles, the next one; it is
written with ``atomic_and`` / ``atomic_or`` on the words, since another program may own the
other bits of a word. The stream position is computed as ``q * n * 32 + r * n`` with
``lin = 32 q + r`` so that no intermediate overflows int32.
"""

from __future__ import annotations

from bittile.backends.triton import numerics
from bittile.backends.triton.codegen import KernelCodegen, TensorInfo, emits, padded
from bittile.ir import ops
from bittile.ir.dtypes import DType


def arange(extent: int, axis: int, rank: int) -> str:
    """``tl.arange(0, extent)`` laid along ``axis`` of a rank-``rank`` tile."""
    expr = f"tl.arange(0, {extent})"
    if rank > 1:
        expr += "[" + ", ".join(":" if d == axis else "None" for d in range(rank)) + "]"
    return expr


def real_elements(shape) -> str | None:
    """A mask of a padded tile's real elements (None when nothing is padded)."""
    pshape = padded(shape)
    terms = [f"({arange(p, axis, len(shape))} < {real})"
             for axis, (p, real) in enumerate(zip(pshape, shape)) if p != real]
    return " & ".join(terms) if terms else None


def window(cg: KernelCodegen, t: TensorInfo, offsets, shape) -> tuple[str, str]:
    """Names of the row-major element index (int32) and the inside mask of a tile of real
    shape ``shape`` at ``offsets`` of ``t``."""
    pshape = padded(shape)
    rank = len(shape)
    coords, terms = [], []
    for axis, (off_value, extent, real, dim) in enumerate(zip(offsets, pshape, shape, t.dims)):
        off = cg.get(off_value, "int")
        if numerics.int_carrier(off_value.type.dtype) == "tl.uint32":
            base = f"tl.minimum({off}, {dim}).to(tl.int32)"
        else:
            base = f"tl.minimum(tl.maximum({off}, {-extent}), {dim})"
        base = cg.assign(f"{t.param}_start{axis}", base)
        ar = arange(extent, axis, rank)
        coord = cg.assign(f"{t.param}_i{axis}", f"{base} + {ar}")
        coords.append(coord)
        terms.append(f"({coord}.to(tl.uint32) < {dim})")
        if extent != real:
            terms.append(f"({ar} < {real})")
    lin = coords[0]
    for coord, dim in zip(coords[1:], t.dims[1:]):
        lin = f"({lin}) * {dim} + {coord}" if lin != coords[0] else f"{lin} * {dim} + {coord}"
    if rank > 1:
        lin = cg.assign(f"{t.param}_index", lin)
    return lin, cg.assign(f"{t.param}_mask", " & ".join(terms))


def _from_memory(dtype: DType, raw: str) -> str:
    """A loaded element (memory type, see ``numerics.memory_type``) as its carrier."""
    if dtype.bits == 32:
        return f"{raw}.to(tl.uint32, bitcast=True)" if dtype.kind == "uint" else raw
    wide = f"{raw}.to(tl.int32)"
    if dtype.bits == 16 and dtype.kind != "int":
        return f"({wide} & 0xFFFF)"
    return wide


def _to_memory(dtype: DType, carrier: str) -> str:
    memory = numerics.memory_type(dtype)
    if dtype.bits == 32:
        return f"{carrier}.to(tl.int32, bitcast=True)" if dtype.kind == "uint" else carrier
    return f"{carrier}.to({memory})"


def _bit_position(cg: KernelCodegen, lin: str, n: int, hint: str) -> tuple[str, str]:
    """(word index, bit in word) of element ``lin`` of an ``n``-bit stream."""
    if 32 % n == 0:
        per = 32 // n
        word = f"{lin} >> {per.bit_length() - 1}"
        bit = f"({lin} & {per - 1}) * {n}"
    else:
        word = f"({lin} >> 5) * {n} + ((({lin} & 31) * {n}) >> 5)"
        bit = f"(({lin} & 31) * {n}) & 31"
    return cg.assign(f"{hint}_word", word), cg.assign(f"{hint}_bit", bit)


def _code_to_carrier(dtype: DType, code: str) -> str:
    """An n-bit code (uint32, upper bits clear) as the dtype's carrier."""
    n = dtype.bits
    if dtype.kind == "int":
        return f"((({code}) << {32 - n}).to(tl.int32, bitcast=True) >> {32 - n})"
    return f"({code}).to(tl.int32)"


def _carrier_to_code(dtype: DType, carrier: str) -> str:
    """A carrier (int, or float code) as the uint32 code of its n bits."""
    code = f"{carrier}.to(tl.uint32, bitcast=True)"
    if dtype.kind == "int":
        code = f"({code} & {(1 << dtype.bits) - 1})"
    return code


@emits(ops.LoadOp)
def _load(op: ops.LoadOp, cg: KernelCodegen):
    t = cg.tensor(op.tensor)
    lin, mask = window(cg, t, op.offsets, op.shape)
    dtype = t.dtype
    if numerics.memory_type(dtype) is not None:
        raw = f"tl.load({t.element_ptr} + {lin}, mask={mask}, other=0)"
        cg.define(op.out, _from_memory(dtype, raw))
        return
    n = dtype.bits
    word, bit = _bit_position(cg, lin, n, t.param)
    code = f"tl.load({t.ptr} + {word}, mask={mask}, other=0).to(tl.uint32, bitcast=True)"
    code = cg.assign(f"{t.param}_low", f"{code} >> {bit}")
    if 32 % n:
        straddles = f"{mask} & ({bit} > {32 - n})"
        high = (f"tl.load({t.ptr} + {word} + 1, mask={straddles}, other=0)"
                ".to(tl.uint32, bitcast=True)")
        # the high word is 0 unless the element straddles, when the shift is below 32
        code = cg.assign(f"{t.param}_bits", f"{code} | ({high} << ((32 - {bit}) & 31))")
    code = f"{code} & {(1 << n) - 1}"
    cg.define(op.out, _code_to_carrier(dtype, code))


@emits(ops.StoreOp)
def _store(op: ops.StoreOp, cg: KernelCodegen):
    t = cg.tensor(op.tensor)
    lin, mask = window(cg, t, op.offsets, op.value.type.shape)
    dtype = t.dtype
    carrier = cg.get(op.value, "int" if dtype.is_int else "code")
    if numerics.memory_type(dtype) is not None:
        cg.line(f"tl.store({t.element_ptr} + {lin}, {_to_memory(dtype, carrier)}, mask={mask})")
        return
    n = dtype.bits
    word, bit = _bit_position(cg, lin, n, t.param)
    code = cg.assign(f"{t.param}_code", _carrier_to_code(dtype, carrier))
    ones = cg.assign(f"{t.param}_ones", f"tl.full([], {(1 << n) - 1}, tl.uint32)")
    _merge_bits(cg, f"{t.ptr} + {word}", f"{ones} << {bit}", f"{code} << {bit}", mask)
    if 32 % n:
        shift = f"((32 - {bit}) & 31)"
        straddles = cg.assign(f"{t.param}_straddles", f"{mask} & ({bit} > {32 - n})")
        _merge_bits(cg, f"{t.ptr} + {word} + 1", f"{ones} >> {shift}", f"{code} >> {shift}",
                    straddles)


def _merge_bits(cg: KernelCodegen, ptr: str, field: str, bits: str, mask: str) -> None:
    """word = (word & ~field) | bits, atomically (``field`` and ``bits`` are uint32)."""
    cg.line(f"tl.atomic_and({ptr}, ~({field}).to(tl.int32, bitcast=True), mask={mask}, "
            'sem="relaxed")')
    cg.line(f"tl.atomic_or({ptr}, ({bits}).to(tl.int32, bitcast=True), mask={mask}, "
            'sem="relaxed")')


# ---- word ops ----------------------------------------------------------------------------------


def _word_view(cg: KernelCodegen, op, t: TensorInfo, index: str, width: int):
    """(32-bit word, shift, valid-bits mask) of the ``width``-bit words ``index``."""
    numel = " * ".join(f"tl.cast({d}, tl.int64)" for d in t.dims)
    stream_bits = cg.assign(f"{t.param}_stream_bits", f"{numel} * {t.dtype.bits}")
    start = cg.assign(f"{t.param}_start", f"{index}.to(tl.int64) * {width}")
    inside = cg.assign(f"{t.param}_inside", f"({index} >= 0) & ({start} < {stream_bits})")
    per = 32 // width
    word = f"{index} >> {per.bit_length() - 1}" if per > 1 else index
    shift = f"({index} & {per - 1}) * {width}" if per > 1 else "0"
    # bits of the last word past the tensor's end are not part of it
    left = f"tl.minimum(tl.maximum({stream_bits} - {start}, 0), {width})"
    valid = cg.assign(f"{t.param}_valid",
                      f"((tl.cast(1, tl.int64) << {left}) - 1).to(tl.uint32)")
    return cg.assign(f"{t.param}_word", word), shift, valid, inside


@emits(ops.LoadWordsOp)
def _load_words(op: ops.LoadWordsOp, cg: KernelCodegen):
    t = cg.tensor(op.tensor)
    width = op.dtype.bits
    index = cg.get(op.index, "int")
    word, shift, valid, inside = _word_view(cg, op, t, index, width)
    raw = f"tl.load({t.ptr} + {word}, mask={inside}, other=0).to(tl.uint32, bitcast=True)"
    value = f"(({raw} >> {shift}) & {valid})"
    if width < 32:
        value = f"{value}.to(tl.int32)"
    cg.define(op.out, value, hint="words")


@emits(ops.StoreWordsOp)
def _store_words(op: ops.StoreWordsOp, cg: KernelCodegen):
    t = cg.tensor(op.tensor)
    width = op.value.type.dtype.bits
    index = cg.get(op.index, "int")
    word, shift, valid, inside = _word_view(cg, op, t, index, width)
    value = cg.get(op.value, "int")
    mask = cg.get(op.mask, "int")
    field = cg.assign("field", f"{mask}.to(tl.uint32, bitcast=True) & {valid}")
    bits = f"{value}.to(tl.uint32, bitcast=True) & {field}"
    entries = f"{inside} & ({field} != 0)"
    real = real_elements(op.index.type.shape)
    if real is not None:  # the padding of the tiles holds no entries
        entries = f"{entries} & {real}"
    _merge_bits(cg, f"{t.ptr} + {word}", f"{field} << {shift}", f"({bits}) << {shift}",
                cg.assign("entries", entries))
