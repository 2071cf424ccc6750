"""Evaluators of the word-level ops (``ir/ops/packed.py``).

The interpreter holds a tensor as one code per element (:class:`GlobalTensor`), so a word is
rebuilt bit by bit from the codes of the elements it overlaps, and a store is applied bit by
bit to those codes. Both are whole-tile NumPy operations on ``[entries, W]`` bit arrays.
"""

from __future__ import annotations

import numpy as np

from bittile.backends.interp.interpreter import GlobalTensor, evaluates
from bittile.ir.ops.packed import LoadWordsOp, StoreWordsOp

__all__: list[str] = []


def _bit_positions(index: np.ndarray, word_bits: int) -> np.ndarray:
    """Stream bit position of every bit of every word: ``[..., W]`` int64."""
    return index.astype(np.int64)[..., None] * word_bits + np.arange(word_bits, dtype=np.int64)


def _stream_bits(tensor: GlobalTensor) -> int:
    return int(np.prod(tensor.shape, dtype=np.int64)) * tensor.dtype.bits


@evaluates(LoadWordsOp)
def _load_words(op, frame):
    tensor = frame.tensor(op.tensor)
    n, word_bits = tensor.dtype.bits, op.dtype.bits
    positions = _bit_positions(frame[op.index], word_bits)
    inside = (positions >= 0) & (positions < _stream_bits(tensor))
    codes = tensor.codes()
    safe = np.where(inside, positions, 0)
    if codes.size == 0:
        bits = np.zeros(positions.shape, np.uint64)
    else:
        bits = (codes[safe // n] >> (safe % n).astype(np.uint64)) & np.uint64(1)
    bits = np.where(inside, bits, np.uint64(0))
    weights = np.uint64(1) << np.arange(word_bits, dtype=np.uint64)
    words = (bits * weights).sum(axis=-1, dtype=np.uint64)
    return (words.astype(np.int64),)


@evaluates(StoreWordsOp)
def _store_words(op, frame):
    tensor = frame.tensor(op.tensor)
    n, word_bits = tensor.dtype.bits, op.value.type.dtype.bits
    index = frame[op.index].reshape(-1)
    value = frame[op.value].reshape(-1).astype(np.uint64)
    mask = frame[op.mask].reshape(-1).astype(np.uint64)
    shifts = np.arange(word_bits, dtype=np.uint64)
    chosen = ((mask[:, None] >> shifts) & np.uint64(1)) != 0
    positions = _bit_positions(index, word_bits)
    chosen &= (positions >= 0) & (positions < _stream_bits(tensor))
    if not chosen.any():
        return None
    # Entries apply in row-major order: where several set one bit, the last one wins.
    pos = positions[chosen]
    bit = ((value[:, None] >> shifts) & np.uint64(1))[chosen]
    last = pos.size - 1 - np.unique(pos[::-1], return_index=True)[1]
    pos, bit = pos[last], bit[last]
    element, offset = pos // n, (pos % n).astype(np.uint64)
    size = tensor.written.size
    cleared = np.zeros(size, np.uint64)
    np.bitwise_or.at(cleared, element, np.uint64(1) << offset)
    setting = np.zeros(size, np.uint64)
    np.bitwise_or.at(setting, element, bit << offset)
    codes = (tensor.codes() & ~cleared) | setting
    touched = cleared != 0
    dtype = tensor.dtype
    held = codes if dtype.is_float else dtype.decode(codes)
    values = tensor.values.reshape(-1).copy()
    values[touched] = held[touched]
    tensor.values = values.reshape(tensor.shape)
    written = tensor.written.reshape(-1).copy()
    written[touched] = True
    tensor.written = written.reshape(tensor.shape)
    return None
