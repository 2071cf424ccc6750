"""Which carrier each SSA value is produced in (its *primary form*).

- ``"int"``: an integer's carrier (int32, uint32 for u32);
- ``"pred"``: an int1 (a comparison's result; its ``"int"`` form is 0 or 1);
- ``"val"``: a float's f32 value; a NaN stands for the canonical NaN;
- ``"code"``: a float's bit pattern in an int32.

Moving data (load, store, view, where, broadcast, reshape, loop-carried values) must keep every
bit, NaN payloads included (see ``backends/interp/semantics.py``), so a float that may hold a
NaN with a payload (anything loaded or viewed, and whatever data movement makes of it) stays a
code; a float computed by arithmetic, a cast or a constant is canonical and may be a value.
Sub-byte and 8-bit floats (no arithmetic) are always codes. Loop-carried values and branch
results are values only when every value flowing into them is (a fixed point over loops).
"""

from __future__ import annotations

from bittile.ir import ops
from bittile.ir.core import Block, Kernel, Value
from bittile.ir.dtypes import DType

__all__ = ["infer_forms", "natural_form"]

_MOVES = (ops.BroadcastOp, ops.ReshapeOp, ops.PermuteOp, ops.ConvertLayoutOp, ops.FullOp)


def natural_form(dtype: DType) -> str:
    """The form of a computed (canonical) value of ``dtype``."""
    if dtype.is_int:
        return "int"
    return "val" if dtype.bits >= 16 else "code"


def _data_form(dtype: DType) -> str:
    """The form of data that may carry any bits."""
    return "int" if dtype.is_int else "code"


def _join(dtype: DType, forms) -> str:
    """The form a value takes when any of ``forms`` may flow into it."""
    if dtype.is_int:
        return "int"
    return "val" if all(f == "val" for f in forms) else "code"


class _Inference:
    def __init__(self):
        self.forms: dict[int, str] = {}

    def form(self, v: Value) -> str:
        return self.forms[id(v)]

    def set(self, v: Value, form: str) -> None:
        self.forms[id(v)] = form

    def block(self, block: Block) -> list[str]:
        """Infer every op of ``block``; the forms of the values its yield gives."""
        for op in block.ops:
            if isinstance(op, ops.YieldOp):
                return [self.form(v) for v in op.values]
            self.op(op)
        return []

    def op(self, op) -> None:
        if isinstance(op, ops.ForOp):
            self._for(op)
        elif isinstance(op, ops.IfOp):
            then = self.block(op.then_body)
            other = self.block(op.else_body)
            for r, a, b in zip(op.outs, then, other):
                self.set(r, _join(r.type.dtype, (a, b)))
        elif isinstance(op, ops.FusedElementwiseOp):
            for arg, v in zip(op.body.args, op.inputs):
                self.set(arg, self.form(v))
            for r, f in zip(op.outs, self.block(op.body)):
                self.set(r, f)
        elif isinstance(op, ops.DequantDotOp):
            for arg, v in zip(op.body.args, op.body_inputs):
                self.set(arg, self.form(v))
            self.block(op.body)
            self.set(op.out, natural_form(op.out.type.dtype))
        else:
            for r in op.results:
                self.set(r, self._simple(op, r))

    def _simple(self, op, r: Value) -> str:
        dtype = r.type.dtype
        if isinstance(op, ops.CompareOp):
            return "pred"
        if isinstance(op, (ops.LoadOp, ops.ViewOp, ops.LoadWordsOp)):
            return _data_form(dtype)
        if isinstance(op, _MOVES):
            return self.form(op.value if isinstance(op, ops.FullOp) else op.x)
        if isinstance(op, ops.WhereOp):
            return _join(dtype, (self.form(op.a), self.form(op.b)))
        return natural_form(dtype)

    def _for(self, op: ops.ForOp) -> None:
        self.set(op.body.args[0], "int")
        carried = [_join(v.type.dtype, [self.form(v)]) for v in op.inits]
        while True:
            for arg, form in zip(op.body.args[1:], carried):
                self.set(arg, form)
            yielded = self.block(op.body)
            joined = [_join(v.type.dtype, (c, y)) for v, c, y in zip(op.inits, carried, yielded)]
            if joined == carried:
                break
            carried = joined
        for r, form in zip(op.outs, carried):
            self.set(r, form)


def infer_forms(kernel: Kernel) -> dict[int, str]:
    """id(value) -> primary form, for every value of ``kernel`` (parameters included)."""
    inference = _Inference()
    for p, v in zip(kernel.params, kernel.body.args):
        inference.set(v, natural_form(p.type.dtype))
    inference.block(kernel.body)
    return inference.forms
