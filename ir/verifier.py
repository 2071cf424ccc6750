"""Whole-kernel verification: every op's own ``verify`` plus the rules no single op can check.

- SSA: every value is defined once, before its uses, in an enclosing block (a value defined
  inside a loop or branch is not visible after it);
- structure: nested blocks end with exactly one yield, the kernel body has none;
- names: block ids address an existing grid axis, size ops name a size of some tensor
  parameter, grid expressions use only sizes and integer scalar parameters.
"""

from __future__ import annotations

from bittile.errors import IRError
from bittile.ir.core import Block, Kernel, Op, Value
from bittile.ir.ops import BlockIdOp, SizeOp, YieldOp
from bittile.ir.types import ScalarType, TensorType

__all__ = ["verify_kernel"]


def verify_kernel(kernel: Kernel) -> None:
    """Raise :class:`IRError` (located at the offending op) if ``kernel`` is malformed."""
    if len(kernel.body.args) != len(kernel.params):
        raise IRError(f"kernel {kernel.name}: the body has {len(kernel.body.args)} arguments "
                      f"for {len(kernel.params)} parameters", kernel.loc)
    names = [p.name for p in kernel.params]
    if len(set(names)) != len(names):
        raise IRError(f"kernel {kernel.name}: duplicate parameter names", kernel.loc)
    for p, v in zip(kernel.params, kernel.body.args):
        if p.type != v.type:
            raise IRError(f"parameter {p.name} is declared {p.type} but its value is {v.type}",
                          kernel.loc)
    sizes = set(kernel.size_symbols())
    for p in kernel.params:
        if isinstance(p.type, ScalarType) and p.name in sizes:
            raise IRError(
                f"scalar parameter {p.name!r} has the name of a tensor size", kernel.loc,
                hint="sizes are bound from tensor shapes; rename the scalar",
            )
    int_scalars = {p.name for p in kernel.params
                   if isinstance(p.type, ScalarType) and p.type.dtype.is_int}
    # A name used only inside shape expressions (K // G with G bound nowhere) is reported at
    # launch, where the arguments show which tensor it came from.
    shape_names = kernel.shape_symbols()
    for dim in kernel.grid:
        unknown = dim.symbols() - shape_names - int_scalars
        if unknown:
            raise IRError(
                f"grid dimension {dim} uses {sorted(unknown)[0]!r}, which is neither a tensor "
                "size nor an integer scalar parameter", kernel.loc,
            )
    if not kernel.grid:
        raise IRError(f"kernel {kernel.name} has an empty grid", kernel.loc)
    _Checker(kernel, sizes).block(kernel.body, set(), nested=False)


class _Checker:
    def __init__(self, kernel: Kernel, sizes: set[str]):
        self.kernel = kernel
        self.sizes = sizes
        self.defined: set[int] = set()

    def define(self, value: Value, op: Op | None, visible: set[int]) -> None:
        if id(value) in self.defined:
            where = op.error if op is not None else None
            message = f"value {value!r} is defined twice"
            raise where(message) if where else IRError(message, self.kernel.loc)
        self.defined.add(id(value))
        visible.add(id(value))

    def block(self, block: Block, outer: set[int], nested: bool) -> None:
        visible = set(outer)
        for arg in block.args:
            self.define(arg, None, visible)
        for i, op in enumerate(block.ops):
            if not isinstance(op, Op):
                raise IRError(f"a block holds a {type(op).__name__}, not an op", self.kernel.loc)
            op.verify()
            for v in op.operands:
                if id(v) not in visible:
                    raise op.error(
                        f"uses {v!r} outside the scope where it is defined, or before it"
                    )
            is_last = i == len(block.ops) - 1
            if isinstance(op, YieldOp) and not (nested and is_last):
                raise op.error("a yield must be the last op of a loop body or branch")
            self.names(op)
            for r in op.regions:
                self.block(r, visible, nested=True)
            for r in op.results:
                self.define(r, op, visible)
        if nested and (not block.ops or not isinstance(block.ops[-1], YieldOp)):
            raise IRError("a nested block must end with a yield", self.kernel.loc)

    def names(self, op: Op) -> None:
        if isinstance(op, BlockIdOp) and op.axis >= len(self.kernel.grid):
            raise op.error(
                f"axis {op.axis} does not exist: the grid has {len(self.kernel.grid)} axes"
            )
        if isinstance(op, SizeOp) and op.symbol not in self.sizes:
            raise op.error(
                f"{op.symbol!r} is not a size of any tensor parameter",
                hint=f"sizes are {', '.join(sorted(self.sizes)) or 'none'}",
            )
        for v in op.operands:
            if isinstance(v.type, TensorType) and v not in self.kernel.body.args:
                raise op.error("a tensor operand must be a kernel parameter")
