"""``scf.for`` and ``scf.if`` as Python ``for`` and ``if`` in the kernel.

A loop-carried value is a variable assigned before the loop and at the end of its body, in one
form throughout (``forms.py`` chose it), so that Triton sees one type. A loop whose step is a
positive constant is ``for i in range(lo, hi, step)``; any other loop runs a trip count computed
in int64 (Python's ``range`` semantics, negative steps included) and, when its step is not a
constant, sets the status word (a launch error) and runs no iteration if the step is 0.
"""

from __future__ import annotations

from bittile.backends.triton import numerics
from bittile.backends.triton.codegen import KernelCodegen, emits
from bittile.ir import ops


def _assign_all(cg: KernelCodegen, names: list[str], values: list[str]) -> None:
    """``names[i] = values[i]`` as a simultaneous assignment (values may name the targets)."""
    if set(names) & set(values):
        values = [cg.assign(f"{n}_next", v) for n, v in zip(names, values)]
    for n, v in zip(names, values):
        cg.line(f"{n} = {v}")


@emits(ops.ForOp)
def _for(op: ops.ForOp, cg: KernelCodegen):
    iv_arg, *carried_args = op.body.args
    forms = [cg.primary(a) for a in carried_args]
    names = []
    for arg, init, form in zip(carried_args, op.inits, forms):
        names.append(cg.assign(arg.name_hint or "carried", cg.get(init, form)))
    lo, hi, step = (cg.get(v, "int") for v in (op.lo, op.hi, op.step))
    step_value = cg.constant_value(op.step)
    iv = cg.namer.fresh(iv_arg.name_hint or "i")
    carrier = numerics.int_carrier(op.lo.type.dtype)
    if isinstance(step_value, int) and step_value > 0 and carrier == "tl.int32":
        header = f"for {iv}_ in range({lo}, {hi}, {step_value}):"
        first = f"{iv} = tl.cast({iv}_, tl.int32)"
    else:
        trip = _trip_count(cg, lo, hi, step, step_value)
        header = f"for {iv}_ in range(0, {trip}):"
        first = f"{iv} = ({lo}.to(tl.int64) + {iv}_ * {step}.to(tl.int64)).to({carrier})"
    with cg.block_scope(header):
        cg.line(first)
        cg.bind(iv_arg, "int", iv)
        for arg, name, form in zip(carried_args, names, forms):
            cg.bind(arg, form, name)
        cg.emit_block(op.body)
        yielded = op.body.ops[-1].values
        _assign_all(cg, names, [cg.get(v, f) for v, f in zip(yielded, forms)])
    for out, name, form in zip(op.outs, names, forms):
        cg.bind(out, form, name)


def _trip_count(cg: KernelCodegen, lo: str, hi: str, step: str, step_value) -> str:
    """The number of iterations of ``range(lo, hi, step)`` (0 when the step is 0)."""
    if step_value is None:
        with cg.block_scope(f"if {step} == 0:"):
            cg.line(f"tl.store({cg.status_ptr()}, 1)")
    lo64, hi64, step64 = (f"{x}.to(tl.int64)" for x in (lo, hi, step))
    up = f"({hi64} - {lo64} + {step64} - 1) // tl.maximum({step64}, 1)"
    down = f"({lo64} - {hi64} - {step64} - 1) // tl.maximum(-{step64}, 1)"
    trip = f"tl.where({step64} > 0, {up}, tl.where({step64} < 0, {down}, 0))"
    return cg.assign("trips", f"tl.maximum({trip}, 0)")


@emits(ops.IfOp)
def _if(op: ops.IfOp, cg: KernelCodegen):
    forms = [cg.primary(r) for r in op.outs]
    names = [cg.namer.fresh(r.name_hint or "branch") for r in op.outs]
    cond = cg.get(op.cond, "pred") if cg.primary(op.cond) == "pred" else \
        f"{cg.get(op.cond, 'int')} != 0"
    for header, block in ((f"if {cond}:", op.then_body), ("else:", op.else_body)):
        with cg.block_scope(header):
            cg.emit_block(block)
            for name, v, form in zip(names, block.ops[-1].values, forms):
                cg.line(f"{name} = {cg.get(v, form)}")
    for out, name, form in zip(op.outs, names, forms):
        cg.bind(out, form, name)
