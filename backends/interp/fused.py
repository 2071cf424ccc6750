"""Evaluators of the fused ops (``ir/ops/fused.py``).

A fused op's body is a scalar program, but every elementwise evaluator of the interpreter is
shape-agnostic (it applies NumPy ufuncs to whatever arrays it holds), so the body runs once on
whole tiles: each argument is bound to its input's held array (a 0-d array for a scalar, which
broadcasts like the splat of the unfused op). Every body op therefore computes exactly what the
tile op it came from computed, and the results are bit-identical to the unfused program.
"""

from __future__ import annotations

import numpy as np

from bittile.backends.interp import semantics
from bittile.backends.interp.interpreter import evaluates, execute_block, hold, values_of
from bittile.ir.ops import DequantDotOp, FusedElementwiseOp

__all__: list[str] = []


def _run_body(body, inputs, shape, frame) -> tuple[np.ndarray, ...]:
    frame.bind(body.args, [frame[v] for v in inputs])
    outputs = execute_block(body, frame)
    # Outputs that depend on scalar inputs only are splat to the tile, as tile.full would do.
    return tuple(o if o.shape == shape else np.broadcast_to(o, shape).copy() for o in outputs)


@evaluates(FusedElementwiseOp)
def _fused(op: FusedElementwiseOp, frame):
    return _run_body(op.body, op.inputs, op.shape, frame)


@evaluates(DequantDotOp)
def _dequant_dot(op: DequantDotOp, frame):
    (computed,) = _run_body(op.body, op.body_inputs, op.w.type.shape, frame)
    ab, acc = op.x.type.dtype, op.acc.type.dtype
    dense = values_of(frame[op.x], ab)
    computed = values_of(computed, ab)
    a, b = (dense, computed) if op.dequantized == "b" else (computed, dense)
    return (hold(semantics.dot(a, b, values_of(frame[op.acc], acc), acc), acc),)
