"""``layout-inference{target=...}``: give every tile value a register layout.

Rule (one pass, in program order, no fixpoint):

* **Annotations are kept.** An op whose ``layout`` attribute is set (``tile.load``,
  ``tile.full``, ``tile.arange``, ``tile.broadcast``, ``tile.reshape``, ``tile.view``,
  ``tile.convert_layout``) keeps it, and every value whose type already had a layout keeps that
  exact layout (elementwise results, ``scf.for``/``scf.if`` results, ``tile.fused`` results).
* **Seeds.** Unannotated ``load``/``full``/``arange``/``broadcast``/``reshape`` get
  :func:`default_layout` for their result shape, dtype and target.
* **Propagation.** Elementwise ops (unary, binary, comparisons, ``where``, ``cast``) take the
  layout of their result if it had one, else of their first tile operand; tile operands with
  another layout get a ``tile.convert_layout`` to it. ``permute`` gets the permuted layout,
  ``dot``/``dequant_dot`` the accumulator's, ``packed.load_words`` its index's. A
  ``tile.fused`` op's tile inputs are converted to one layout (the first result's old layout,
  else the first tile input's, else the default), which its unannotated results take.
* **Reductions.** ``tile.reduce_*`` cannot carry a layout on its result today (its verify
  builds the result type without one), so its tile result is followed by a
  ``tile.convert_layout`` to ``reduce(operand layout, axis, keepdims)``, and every use reads
  the converted value.
* **Views keep their meaning.** A view reinterprets bits through its operand's layout and its
  result layout, with ``local(*shape)`` standing for "none". So the operand is converted back
  to its old layout (``local(*shape)`` if it had none) when inference gave it another one, and
  the result layout attribute, when absent, is written out as ``local(*shape)`` -- the layout
  the view already meant. An explicit view layout is never changed.
* **Control flow.** ``scf.for`` carries the layouts of its (new) initial values; yields are
  converted to them. ``scf.if`` results take their old layout if they had one, else the layout
  the then-branch yields; the else-branch is converted to it.

Precondition: a verified kernel (any layouts, or none). Postcondition
(:func:`assert_all_tiles_have_layouts`): every tile-typed value -- op results, block arguments --
has a layout, except the raw result of a ``tile.reduce_*`` (see above), which is used only by
the ``tile.convert_layout`` that follows it. Layouts never change values in the interpreter
(``convert_layout`` is the identity there) and views see the same layouts as before, so the
results are bit-exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bittile.backends import target as _targets
from bittile.backends.target import Target
from bittile.errors import BittileError, InternalError
from bittile.ir import ops
from bittile.ir.core import Block, Kernel, Op, Value
from bittile.ir.dtypes import DType
from bittile.ir.layout import RegisterLayout, local, spatial
from bittile.ir.ops.convert import default_layout as view_default_layout
from bittile.ir.types import TileType
from bittile.passes.base import Pass, register_pass
from bittile.passes.rewrite import Rewriter

__all__ = [
    "LayoutInference",
    "TARGETS",
    "get_target",
    "default_layout",
    "infer_layouts",
    "assert_all_tiles_have_layouts",
]

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (_targets.INTERP, _targets.CPU_SSE, _targets.CPU_AVX2, _targets.CPU_AVX512,
              _targets.CUDA_SM90)
}


def get_target(target: str | Target) -> Target:
    """A :class:`Target` by name (``"interp"``, ``"cpu-sse"``, ...), or the target itself."""
    if isinstance(target, Target):
        return target
    try:
        return TARGETS[str(target)]
    except KeyError:
        raise BittileError(f"unknown target {target!r}",
                           hint=f"known targets: {', '.join(TARGETS)}") from None


def _largest_divisor_at_most(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, max(cap, 1)) + 1) if n % d == 0)


def default_layout(shape: Sequence[int], dtype: DType | int, target: str | Target
                   ) -> RegisterLayout:
    """The layout given to an unannotated tile of ``shape`` and ``dtype`` on ``target``.

    With ``v = target.vector_lanes(bits)`` and ``W = target.num_workers``:

    * each worker holds runs of ``c = gcd(n, v)`` consecutive elements of the last dimension
      (``n`` its extent; ``c`` is a power of two whenever ``v`` is);
    * ``w_last`` = the largest divisor of ``n // c`` that is at most ``W`` workers sit side by
      side along the last dimension;
    * the leftover worker budget ``W // w_last`` is spent on the other dimensions, innermost
      first, each taking the largest divisor of its extent that fits the remaining budget;
    * what is left of every dimension repeats in the worker's local array (outermost).

    The result is ``local(*outer) * spatial(*workers) * local(1, ..., 1, c)``: its shape is
    the tile's shape and it uses at most ``W`` workers. For the interpreter (``W = 1``, no
    SIMD) it is ``local(*shape)``.
    """
    t = get_target(target)
    shape = tuple(int(s) for s in shape)
    bits = dtype if isinstance(dtype, int) else dtype.bits
    n = shape[-1]
    c = math.gcd(n, t.vector_lanes(bits))
    workers = [1] * len(shape)
    workers[-1] = _largest_divisor_at_most(n // c, t.num_workers)
    budget = t.num_workers // workers[-1]
    for d in range(len(shape) - 2, -1, -1):
        workers[d] = _largest_divisor_at_most(shape[d], budget)
        budget //= workers[d]
    inner = [1] * (len(shape) - 1) + [c]
    outer = [s // (w * i) for s, w, i in zip(shape, workers, inner, strict=True)]
    return local(*outer) * spatial(*workers) * local(*inner)


def _tile_values(block: Block):
    """Every (value, producing op or None) in ``block`` and below, in program order."""
    for arg in block.args:
        yield arg, None
    for op in block.ops:
        for region in op.regions:
            yield from _tile_values(region)
        for r in op.results:
            yield r, op


def assert_all_tiles_have_layouts(kernel: Kernel) -> None:
    """The postcondition of ``layout-inference``: every tile value has a layout (the raw
    results of reductions excepted: their ops cannot carry one, see the module docstring)."""
    for value, op in _tile_values(kernel.body):
        if not isinstance(value.type, TileType) or value.type.layout is not None:
            continue
        if isinstance(op, ops.ReduceOp):
            continue
        where = f"result of {op.name}" if op is not None else "block argument"
        raise AssertionError(f"{where} {value.type} has no layout in kernel {kernel.name}")


_KEEP = "keep"  # yields of tile.fused / tile.dequant_dot bodies are cloned as they are


class _Record(list):
    """Yield mode of an scf.if's then-branch: record the types it yields."""


class _Inference(Rewriter):
    def __init__(self, target: Target) -> None:
        super().__init__()
        self.target = target
        self.yields: list = []  # per region being rebuilt: _KEEP, a list to record, or types

    # ---- helpers --------------------------------------------------------------------------
    def default(self, shape, dtype: DType) -> RegisterLayout:
        return default_layout(shape, dtype, self.target)

    def convert(self, value: Value, layout: RegisterLayout | None) -> Value:
        t = value.type
        if layout is None or not isinstance(t, TileType) or t.layout == layout:
            return value
        op = self.builder.insert(ops.ConvertLayoutOp.create(value, layout, self.builder.loc))
        return op.result

    def emit(self, op: Op, operands, attributes=None, result_types=None, regions=()):
        attributes = op.attributes if attributes is None else attributes
        if result_types is None:
            result_types = [r.type for r in op.results]
        results = tuple(Value(t, r.name_hint) for t, r in zip(result_types, op.results,
                                                              strict=True))
        new = type(op).from_generic(tuple(operands), attributes, results, tuple(regions),
                                    self.builder.loc)
        self.builder.insert(new)
        return results

    def region(self, block: Block, arg_types, yields) -> Block:
        new = Block(args=[Value(t, a.name_hint) for t, a in zip(arg_types, block.args,
                                                                 strict=True)])
        for old, fresh in zip(block.args, new.args):
            self.mapping[id(old)] = fresh
        self.yields.append(yields)
        try:
            with self.builder.inside(new):
                self.visit_block(block)
        finally:
            self.yields.pop()
        return new

    def clone_region(self, block: Block) -> Block:
        self.yields.append(_KEEP)
        try:
            return super().clone_region(block)
        finally:
            self.yields.pop()

    # ---- the hook -------------------------------------------------------------------------
    def rewrite(self, op: Op, operands: tuple[Value, ...]):
        for cls, method in _HANDLERS:
            if isinstance(op, cls):
                return method(self, op, operands)
        if any(isinstance(r.type, TileType) for r in op.results):
            raise InternalError(f"layout-inference does not know the tile op {op.name}")
        return None  # scalar ops and ops without results: clone

    def source(self, op, operands):
        shape = op.out.type.shape
        layout = op.layout if op.layout is not None else self.default(shape, op.out.type.dtype)
        attrs = {**op.attributes, "layout": layout}
        return self.emit(op, operands, attrs, [op.out.type.with_(layout=layout)])

    def view(self, op, operands):
        old_src = op.x.type
        x = self.convert(operands[0], old_src.layout or view_default_layout(old_src.shape))
        layout = op.layout if op.layout is not None else view_default_layout(op.shape)
        attrs = {**op.attributes, "layout": layout}
        return self.emit(op, (x,), attrs, [op.out.type.with_(layout=layout)])

    def convert_layout(self, op, operands):
        return self.emit(op, operands)

    def elementwise(self, op, operands):
        tiles = [v for v in operands if isinstance(v.type, TileType)]
        if not tiles:
            return None
        layout = op.out.type.layout or tiles[0].type.layout
        new_operands = [self.convert(v, layout) for v in operands]
        return self.emit(op, new_operands, None, [op.out.type.with_(layout=layout)])

    def reduce(self, op, operands):
        (out,) = self.emit(op, operands)
        if not isinstance(out.type, TileType):
            return (out,)
        layout = operands[0].type.layout.reduce(op.axis, keepdims=op.keepdims)
        return (self.convert(out, layout),)

    def permute(self, op, operands):
        layout = operands[0].type.layout.permute(op.dims)
        return self.emit(op, operands, None, [op.out.type.with_(layout=layout)])

    def like_acc(self, op, operands):
        # dot / dequant_dot: the result has the accumulator's type
        acc = operands[[v is op.acc for v in op.operands].index(True)]
        regions = [self.clone_region(r) for r in op.regions]
        return self.emit(op, operands, None, [acc.type], regions)

    def load_words(self, op, operands):
        index = operands[1]
        return self.emit(op, operands, None, [op.out.type.with_(layout=index.type.layout)])

    def fused(self, op, operands):
        tiles = [v for v in operands if isinstance(v.type, TileType)]
        olds = [r.type.layout for r in op.outs if r.type.layout is not None]
        if olds:
            layout = olds[0]
        elif tiles:
            layout = tiles[0].type.layout
        else:
            layout = self.default(op.shape, op.outs[0].type.dtype)
        new_operands = [self.convert(v, layout) for v in operands]
        regions = [self.clone_region(r) for r in op.regions]
        types = [r.type.with_(layout=r.type.layout or layout) for r in op.outs]
        return self.emit(op, new_operands, None, types, regions)

    def for_loop(self, op, operands):
        carried = [v.type for v in operands[3:]]
        body = self.region(op.body, [operands[0].type, *carried], carried)
        return self.emit(op, operands, None, carried, [body])

    def if_op(self, op, operands):
        olds = [r.type for r in op.outs]
        recorded = _Record()
        then_targets = olds if all(_settled(t) for t in olds) else recorded
        then_body = self.region(op.then_body, [], then_targets)
        targets = olds if then_targets is olds else [
            old if _settled(old) else new for old, new in zip(olds, recorded, strict=True)]
        else_body = self.region(op.else_body, [], targets)
        return self.emit(op, operands, None, targets, [then_body, else_body])

    def yield_op(self, op, operands):
        mode = self.yields[-1] if self.yields else _KEEP
        if mode is _KEEP:
            return None
        if isinstance(mode, _Record):
            # recording the then-branch of an scf.if: keep annotated layouts, record the rest
            olds = [v.type for v in op.values]
            new = [self.convert(v, o.layout) if isinstance(o, TileType) else v
                   for v, o in zip(operands, olds, strict=True)]
            mode.extend(v.type for v in new)
            self.emit(op, new, None, [])
            return ()
        new = [self.convert(v, t.layout) if isinstance(t, TileType) else v
               for v, t in zip(operands, mode, strict=True)]
        self.emit(op, new, None, [])
        return ()


def _settled(t) -> bool:
    return not isinstance(t, TileType) or t.layout is not None


_HANDLERS = (
    (ops.YieldOp, _Inference.yield_op),
    (ops.ForOp, _Inference.for_loop),
    (ops.IfOp, _Inference.if_op),
    ((ops.LoadOp, ops.FullOp, ops.ArangeOp, ops.BroadcastOp, ops.ReshapeOp), _Inference.source),
    (ops.ViewOp, _Inference.view),
    (ops.ConvertLayoutOp, _Inference.convert_layout),
    ((ops.UnaryOp, ops.BinaryOp, ops.WhereOp, ops.CastOp), _Inference.elementwise),
    (ops.ReduceOp, _Inference.reduce),
    (ops.PermuteOp, _Inference.permute),
    ((ops.DotOp, ops.DequantDotOp), _Inference.like_acc),
    (ops.LoadWordsOp, _Inference.load_words),
    (ops.FusedElementwiseOp, _Inference.fused),
)


def infer_layouts(kernel: Kernel, target: str | Target = "interp") -> Kernel:
    """``kernel`` with a layout on every tile value (see the module docstring)."""
    return _Inference(get_target(target)).run(kernel)


@register_pass
class LayoutInference(Pass):
    """Give every tile value a register layout for ``target`` (see the module docstring)."""

    name = "layout-inference"
    target: str = "interp"

    def run(self, kernel: Kernel) -> Kernel:
        return infer_layouts(kernel, self.target)
