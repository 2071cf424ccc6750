"""Word-level access to a tensor's bitstream (``packed.load_words`` / ``store_words``, what the
``pack-bits`` pass produces; see ``ir/ops/packed.py``). Words are assembled from and written to
single bytes, each checked against the end of the stream, so a buffer that ends inside a word
is never read or written past its last byte; stores merge bits with atomic and/or."""

from __future__ import annotations

from llvmlite import ir

from bittile.backends.llvm.codegen import KernelCodegen, emits
from bittile.backends.llvm.tiles import I8, I64, const, linear_index, scalar_type
from bittile.ir import ops


def _stream_bits(cg: KernelCodegen, tensor) -> ir.Value:
    b = cg.b
    size = const(1)
    for d in cg.tensor_dims[id(tensor)]:
        size = b.mul(size, d)
    return b.mul(size, const(tensor.type.dtype.bits))


def _valid_bits(b: ir.IRBuilder, word_index, word_bits: int, stream_bits) -> ir.Value:
    """The mask of the word's bits that lie inside the stream (i64)."""
    start = b.mul(word_index, const(word_bits))
    remaining = b.sub(stream_bits, start)
    full = const((1 << word_bits) - 1)
    partial = b.sub(b.shl(const(1), b.select(b.icmp_signed("<", remaining, const(0)),
                                                const(0), remaining)), const(1))
    inside = b.icmp_signed(">=", remaining, const(word_bits))
    none = b.icmp_signed("<", word_index, const(0))
    mask = b.select(inside, full, partial)
    return b.select(none, const(0), mask)


@emits(ops.LoadWordsOp)
def _load_words(op: ops.LoadWordsOp, cg: KernelCodegen):
    b = cg.b
    word_bits = op.dtype.bits
    base = cg.scalar(op.tensor)
    stream = _stream_bits(cg, op.tensor)
    index = cg.tile(op.index)
    out = cg.new_buffer(op.dtype, op.index.type.shape)

    def element(idx):
        j = b.sext(index.element(b, idx), I64)
        valid = _valid_bits(b, j, word_bits, stream)
        word = const(0)
        for byte in range(word_bits // 8):
            in_stream = b.icmp_unsigned("!=", b.and_(valid, const(0xFF << (8 * byte))),
                                        const(0))
            at = b.select(in_stream, b.add(b.mul(j, const(word_bits // 8)), const(byte)),
                          const(0))
            raw = b.zext(b.load(b.gep(base, [at], source_etype=I8), typ=I8), I64)
            raw = b.select(in_stream, raw, const(0))
            word = b.or_(word, b.shl(raw, const(8 * byte)))
        word = b.and_(word, valid)
        out.store_linear(b, linear_index(b, idx, out.shape),
                         b.trunc(word, scalar_type(op.dtype)))

    cg.loops.nest(b, out.shape, element)
    cg.bind(op.out, out)


@emits(ops.StoreWordsOp)
def _store_words(op: ops.StoreWordsOp, cg: KernelCodegen):
    b = cg.b
    word_bits = op.value.type.dtype.bits
    base = cg.scalar(op.tensor)
    stream = _stream_bits(cg, op.tensor)
    shape = op.index.type.shape
    index, value, mask = (cg.tile(v, shape) for v in (op.index, op.value, op.mask))

    def entry(idx):
        j = b.sext(index.element(b, idx), I64)
        m = b.and_(b.zext(mask.element(b, idx), I64), _valid_bits(b, j, word_bits, stream))
        v = b.zext(value.element(b, idx), I64)
        for byte in range(word_bits // 8):
            byte_mask = b.trunc(b.lshr(m, const(8 * byte)), I8)
            byte_bits = b.and_(b.trunc(b.lshr(v, const(8 * byte)), I8), byte_mask)
            touched = b.icmp_unsigned("!=", byte_mask, ir.Constant(I8, 0))
            at = b.select(touched, b.add(b.mul(j, const(word_bits // 8)), const(byte)),
                          const(0))
            with b.if_then(touched):
                ptr = b.gep(base, [at], source_etype=I8)
                b.atomic_rmw("and", ptr, b.xor(byte_mask, ir.Constant(I8, 0xFF)), "monotonic")
                b.atomic_rmw("or", ptr, byte_bits, "monotonic")

    cg.loops.nest(b, shape, entry)
