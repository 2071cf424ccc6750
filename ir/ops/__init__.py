"""Every op of the tile IR. One small class each, with a registered name, a ``create`` that
infers the result type, and a ``verify``; the interpreter defines what each one means."""

from bittile.ir.ops.control import ForOp, IfOp, YieldOp
from bittile.ir.ops.convert import CastOp, ConvertLayoutOp, ViewOp, default_layout
from bittile.ir.ops.elementwise import *  # noqa: F403  (one class per elementwise kind)
from bittile.ir.ops.elementwise import (
    BINARY_OPS,
    COMPARE_OPS,
    UNARY_OPS,
    BinaryOp,
    CompareOp,
    UnaryOp,
    WhereOp,
    binary_op_class,
    compare_op_class,
    unary_op_class,
)
from bittile.ir.ops.fused import ELEMENTWISE_OPS, DequantDotOp, FusedElementwiseOp
from bittile.ir.ops.memory import LoadOp, StoreOp
from bittile.ir.ops.packed import WORD_DTYPES, LoadWordsOp, StoreWordsOp
from bittile.ir.ops.shape import (
    REDUCE_OPS,
    BroadcastOp,
    DotOp,
    PermuteOp,
    ReduceMaxOp,
    ReduceMinOp,
    ReduceOp,
    ReduceSumOp,
    ReshapeOp,
)
from bittile.ir.ops.sources import ArangeOp, BlockIdOp, ConstantOp, FullOp, SizeOp
