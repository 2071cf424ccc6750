"""Word-level access to the packed bitstream of a tensor (what ``pack-bits`` lowers to).

A tensor of an n-bit dtype is a dense little-endian bitstream (``ir/bitstream.py``): element
``i`` of the flattened tensor occupies bits ``[i*n, (i+1)*n)``. Seen as an array of W-bit words
(W in 8, 16, 32), word ``j`` is bits ``[j*W, (j+1)*W)`` of that stream, bit 0 of the word being
the stream's bit ``j*W``; there are ``cdiv(size * n, W)`` words. These ops read and write such
words, whatever the tensor's dtype, so that no op touches a sub-byte element directly.

- ``packed.load_words(tensor, index) {dtype = uW}``: a tile shaped like the i32 tile ``index``,
  holding word ``index[k]`` at each position ``k``. An index outside ``[0, words)`` reads 0, and
  so do the bits of the last word past the tensor's last element.
- ``packed.store_words(tensor, index, value, mask)``: for every position ``k`` of the tiles,
  in row-major order, ``word[index[k]] = (word & ~mask[k]) | (value[k] & mask[k])``. Entries
  whose mask is 0 do nothing (their index is not looked at), as do indices outside the words;
  bits of the mask past the tensor's last element are ignored, so nothing outside the tensor
  changes. Bits outside the mask keep their value: neighbouring elements that share a word
  survive.

Backends: a load is a gather of words (a backend whose buffers are not padded to a whole word
must load the last word's bytes separately); a store is, per entry, an ``atomic_and(~mask)``
then an ``atomic_or(value & mask)`` on the word, which is exact in any order as long as no two
entries that run concurrently have overlapping masks (``pack-bits`` never creates such entries:
the bits of distinct elements are disjoint). A backend that gives every program instance whole
words may use plain read-modify-write instead.
"""

from __future__ import annotations

from typing import ClassVar

from bittile.ir.core import Op, Value, attr, operand, register_op, result
from bittile.ir.dtypes import DType, i32, u8, u16, u32
from bittile.ir.ops._util import _check_result, _check_value_type
from bittile.ir.types import TensorType, TileType

__all__ = ["LoadWordsOp", "StoreWordsOp", "WORD_DTYPES"]

#: the word types: unsigned integers of 8, 16 and 32 bits
WORD_DTYPES: tuple[DType, ...] = (u8, u16, u32)


def _check_word_index(op: Op, tensor: Value, index: Value) -> None:
    _check_value_type(op, tensor, "the tensor", TensorType)
    _check_value_type(op, index, "the word index", TileType)
    if index.type.dtype != i32:
        raise op.error(f"the word index must be an i32 tile, got {index.type}")


def _check_word_dtype(op: Op, dtype: DType) -> None:
    if dtype not in WORD_DTYPES:
        raise op.error(f"words are u8, u16 or u32, not {dtype}")


@register_op
class LoadWordsOp(Op):
    """The W-bit words ``index`` of ``tensor``'s bitstream (0 outside it)."""

    name: ClassVar[str] = "packed.load_words"
    tensor: Value = operand()
    index: Value = operand()
    dtype: DType = attr()
    out: Value = result()

    @classmethod
    def create(cls, tensor: Value, index: Value, dtype: DType, loc=None) -> LoadWordsOp:
        t = index.type
        out = Value(TileType(dtype, t.shape, t.layout))
        return cls(tensor=tensor, index=index, dtype=dtype, out=out, loc=loc)

    def verify(self):
        _check_word_index(self, self.tensor, self.index)
        _check_word_dtype(self, self.dtype)
        t = self.index.type
        _check_result(self, TileType(self.dtype, t.shape, t.layout))


@register_op
class StoreWordsOp(Op):
    """Replace the bits ``mask`` of the words ``index`` of ``tensor`` by those of ``value``."""

    name: ClassVar[str] = "packed.store_words"
    #: the op writes memory: passes that remove unused ops must keep it
    writes_memory: ClassVar[bool] = True
    tensor: Value = operand()
    index: Value = operand()
    value: Value = operand()
    mask: Value = operand()

    @classmethod
    def create(cls, tensor: Value, index: Value, value: Value, mask: Value,
               loc=None) -> StoreWordsOp:
        return cls(tensor=tensor, index=index, value=value, mask=mask, loc=loc)

    def verify(self):
        _check_word_index(self, self.tensor, self.index)
        for what, v in (("value", self.value), ("mask", self.mask)):
            _check_value_type(self, v, f"the {what}", TileType)
            if v.type.shape != self.index.type.shape:
                raise self.error(
                    f"the {what} has shape {list(v.type.shape)}, the index "
                    f"{list(self.index.type.shape)}"
                )
        _check_word_dtype(self, self.value.type.dtype)
        if self.mask.type.dtype != self.value.type.dtype:
            raise self.error(
                f"the mask is {self.mask.type.dtype} but the value {self.value.type.dtype}",
                hint="value and mask are words of one type",
            )
