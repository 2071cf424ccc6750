"""Hypothesis strategies drawing random, well-typed IR kernels.

``kernels_with_sizes()`` draws a :class:`GeneratedKernel`: a verified kernel built with
:class:`~bittile.ir.builder.KernelBuilder`, plus launch sizes and scalar arguments, so tests of
the printer, the interpreter and the passes can all run on the same random programs.
``kernels()`` draws just the kernel.

Shape of a generated kernel:

- 1 to 3 tensor parameters of any of the ``dtypes`` (sub-byte ints and floats included), of
  rank 1 or 2, with symbolic shapes such as ``[N]``, ``[cdiv(N, 2), 3]``, ``[2 * N, M]``. The
  first use of every size symbol is the bare symbol, so sizes can be bound from the shapes.
  At least one tensor is an *output* (only stored to), the others are *inputs* (only loaded);
- sometimes a scalar parameter (``i32`` or a float);
- a grid of one or two axes: ``cdiv(N, BLOCK)`` (or a small constant) and optionally a second
  axis of constant or symbolic extent;
- a prologue computing the linear program id ``pid = block_id(0)`` (or
  ``block_id(0) * extent1 + block_id(1)`` on a two-axis grid) and ``off = pid * BLOCK``;
- a random sequence of ops: constants, block ids, sizes, arange, full, loads at offsets
  derived from the program id (edge programs read past the end of the tensors), casts between
  any dtypes, views (with and without layouts, e.g. ``u4[.., 8] -> u32[.., 1]``), unary,
  binary and comparison ops on arithmetic dtypes, where, reductions, broadcast, reshape,
  permute, dot, convert_layout, ``scf.for`` loops carrying values and ``scf.if`` with results;
- stores into the outputs at row offset ``off``, of tiles with at most ``BLOCK`` rows.

So every program writes a disjoint set of rows of each output and never reads an output:
the result of a launch does not depend on the order in which programs run. Tiles have at most
64 elements per dimension and kernels at most about ``max_ops`` ops, so interpreting one is
fast. Sizes are ``N`` (from :data:`SIZE_VALUES`) and sometimes ``M`` (1 to 5).

Every op the verifier accepts may appear, with any operand values: integer division by zero,
large shifts, NaN-producing float ops... Tests whose reference cannot handle some of them pass
``exclude_ops`` (e.g. ``{"arith.div", "arith.rem"}``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from bittile.errors import Loc
from bittile.ir import dtypes as D
from bittile.ir.builder import Builder, KernelBuilder
from bittile.ir.core import Kernel, Value
from bittile.ir.dtypes import DType
from bittile.ir.layout import (
    RegisterLayout,
    column_local,
    column_spatial,
    local,
    replicated,
    spatial,
)
from bittile.ir.ops import BINARY_OPS, COMPARE_OPS, UNARY_OPS
from bittile.ir.symbolic import Const, SymExpr, cdiv, make_binary, sym
from bittile.ir.types import ScalarType, TensorType, TileType

__all__ = [
    "GeneratedKernel",
    "kernels",
    "kernels_with_sizes",
    "register_layouts",
    "source_locs",
    "random_values",
    "DEFAULT_DTYPES",
    "SIZE_VALUES",
]

#: dtypes of tensors and casts when ``dtypes`` is not given
DEFAULT_DTYPES: tuple[DType, ...] = (
    D.u1, D.u2, D.u3, D.u4, D.u8, D.u16, D.u32,
    D.i1, D.i3, D.i4, D.i8, D.i16, D.i32,
    D.f16, D.bf16, D.f32, D.f8e4m3, D.f8e5m2, D.f6e3m2, D.f6e2m3, D.f4e2m1,
)
#: values drawn for the main size symbol (awkward ones included)
SIZE_VALUES: tuple[int, ...] = (1, 2, 3, 5, 7, 8, 13, 16, 24, 33)
_SECOND_SIZE_VALUES = (1, 2, 3, 4, 5)
_BLOCKS = (1, 2, 3, 4, 8, 16, 32)
_SMALL_DIMS = (1, 2, 3, 4, 5, 8, 16)
_MAX_DIM = 64
_PRIMITIVES = (spatial, local, column_spatial, column_local)


# ---- the result ---------------------------------------------------------------------------------
@dataclass(eq=False)
class GeneratedKernel:
    """A random kernel with everything needed to launch it."""

    kernel: Kernel
    #: a value for every size symbol of the tensor shapes
    sizes: dict[str, int]
    #: a value for every scalar parameter
    scalars: dict[str, int | float] = field(default_factory=dict)
    #: tensor parameters that are only loaded
    inputs: tuple[str, ...] = ()
    #: tensor parameters that are only stored to (each program writes its own rows)
    outputs: tuple[str, ...] = ()

    @property
    def env(self) -> dict[str, int]:
        """Sizes and integer scalars: what symbolic shapes and grids are evaluated in."""
        env = dict(self.sizes)
        env.update({k: v for k, v in self.scalars.items() if isinstance(v, int)})
        return env

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """The concrete shape of every tensor parameter."""
        env = self.env
        return {
            p.name: tuple(d.evaluate(env) for d in p.type.shape)
            for p in self.kernel.params
            if isinstance(p.type, TensorType)
        }

    def grid_shape(self) -> tuple[int, ...]:
        env = self.env
        return tuple(d.evaluate(env) for d in self.kernel.grid)

    def random_arguments(self, rng: np.random.Generator, nonfinite: bool = False) -> dict[str, Any]:
        """Random values for every parameter: tensors as carrier arrays (int64 or float64,
        see :meth:`DType.decode`) of their concrete shapes, scalars as given in ``scalars``."""
        shapes = self.tensor_shapes()
        args: dict[str, Any] = {}
        for p in self.kernel.params:
            if p.name in shapes:
                args[p.name] = random_values(p.type.dtype, shapes[p.name], rng, nonfinite)
            else:
                args[p.name] = self.scalars[p.name]
        return args

    def __repr__(self) -> str:
        from bittile.ir.printer import print_kernel

        return (
            f"GeneratedKernel(sizes={self.sizes}, scalars={self.scalars}, inputs={self.inputs},"
            f" outputs={self.outputs})\n{print_kernel(self.kernel)}"
        )

    def _repr_pretty_(self, printer, cycle) -> None:
        """Hypothesis (and IPython) show falsifying examples with this, as the IR text."""
        printer.text(repr(self))


def random_values(dtype: DType, shape: Iterable[int], rng: np.random.Generator,
                  nonfinite: bool = False) -> np.ndarray:
    """Uniformly random codes of ``dtype`` as values (``dtype.carrier``); without
    ``nonfinite``, infinities and NaNs are replaced by zeros."""
    shape = tuple(shape)
    codes = rng.integers(0, 1 << dtype.bits, size=shape, dtype=np.uint64)
    values = dtype.decode(codes).reshape(shape)
    if dtype.is_float and not nonfinite:
        values = np.where(np.isfinite(values), values, 0.0)
    return values


# ---- public strategies --------------------------------------------------------------------------
def kernels_with_sizes(
    max_ops: int = 20,
    dtypes: Iterable[DType] | None = None,
    *,
    control_flow: bool = True,
    layouts: bool = True,
    nonfinite: bool = True,
    locs: bool = False,
    exclude_ops: Iterable[str] = (),
) -> st.SearchStrategy[GeneratedKernel]:
    """Random kernels with launch sizes.

    - ``max_ops``: about how many ops the kernel has (the prologue and the final stores
      included; they may exceed it by a few);
    - ``dtypes``: dtypes of the tensors and of casts (default :data:`DEFAULT_DTYPES`);
      ``i32`` is always used for indices;
    - ``control_flow``: generate ``scf.for`` and ``scf.if``;
    - ``layouts``: give some tiles register layouts (and generate ``convert_layout``);
    - ``nonfinite``: allow inf and NaN float constants;
    - ``locs``: attach random source locations (some ops get none);
    - ``exclude_ops``: op names that the random part does not generate (the prologue and the
      final stores still use ``tile.block_id``, ``arith.constant``, ``arith.mul``,
      ``arith.add``, ``tile.size``, ``tile.cast``, ``tile.reshape``, ``tile.broadcast`` and
      ``tile.store``).
    """
    options = _Options(
        max_ops=max_ops,
        dtypes=tuple(dtypes) if dtypes is not None else DEFAULT_DTYPES,
        control_flow=control_flow,
        layouts=layouts,
        nonfinite=nonfinite,
        locs=locs,
        exclude=frozenset(exclude_ops),
    )
    if not options.dtypes:
        raise ValueError("kernels_with_sizes needs at least one dtype")

    @st.composite
    def generated_kernels(draw) -> GeneratedKernel:
        return _Generator(draw, options).run()

    return generated_kernels()


def kernels(max_ops: int = 20, dtypes: Iterable[DType] | None = None,
            **options) -> st.SearchStrategy[Kernel]:
    """Random kernels (see :func:`kernels_with_sizes` for the options)."""
    return kernels_with_sizes(max_ops, dtypes, **options).map(lambda g: g.kernel)


@st.composite
def register_layouts(draw, shape: tuple[int, ...], replication: bool = True) -> RegisterLayout:
    """A random register layout of ``shape``: a composition of up to three primitives
    (spatial, local and their column-major variants), sometimes replicated."""
    return _draw_layout(lambda lo, hi: draw(_ints(lo, hi)), tuple(shape), replication)


@st.composite
def source_locs(draw) -> Loc:
    """Random source locations, with and without their end, in files with odd names."""
    return _draw_loc(lambda lo, hi: draw(_ints(lo, hi)))


# Strategies are built once: drawing from a cached ``integers`` strategy is much cheaper for
# hypothesis than building a new ``sampled_from`` for every choice.
@functools.cache
def _ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.integers(lo, hi)


def _draw_layout(integer, shape: tuple[int, ...], replication: bool) -> RegisterLayout:
    rank = len(shape)
    levels = integer(1, 3)
    factors = [[1] * levels for _ in range(rank)]
    for d, extent in enumerate(shape):
        rest = extent
        for k in range(levels - 1):
            divisors = _divisors(rest)
            f = divisors[integer(0, len(divisors) - 1)]
            factors[d][k] = f
            rest //= f
        factors[d][levels - 1] = rest
    layout = None
    for k in range(levels):
        prim = _PRIMITIVES[integer(0, len(_PRIMITIVES) - 1)](*[factors[d][k] for d in range(rank)])
        layout = prim if layout is None else layout * prim
    if replication and integer(0, 9) == 0:
        layout = replicated(2 << integer(0, 1), rank) * layout
    return layout


_FILES = ("kernel.py", "dir/gemv.tile", 'odd "name" \\ file.py', "ünïcode.tile", "<string>")


def _draw_loc(integer) -> Loc:
    file = _FILES[integer(0, len(_FILES) - 1)]
    line, col = integer(1, 400), integer(1, 120)
    kind = integer(0, 3)
    if kind == 0:
        return Loc(file, line, col)
    if kind == 1:
        return Loc(file, line, col, line + integer(0, 3), integer(1, 120))
    if kind == 2:
        return Loc(file, line, col, None, col + integer(1, 20))
    return Loc(file, line, col, line + integer(0, 3), None)


# ---- the generator ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Options:
    max_ops: int
    dtypes: tuple[DType, ...]
    control_flow: bool
    layouts: bool
    nonfinite: bool
    locs: bool
    exclude: frozenset[str]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


class _Generator:
    def __init__(self, draw, options: _Options):
        self.draw = draw
        self.o = options
        self.dtypes = options.dtypes
        # dtypes for computing: the arithmetic ones asked for, else i32 and f32
        self.arith = [d for d in options.dtypes if d.supports_arithmetic] or [D.i32, D.f32]
        self.scopes: list[list[Value]] = [[]]
        self.constants: dict[Value, tuple[DType, str]] = {}
        self.n_ops = 0
        self.depth = 0

    # -- drawing helpers ------------------------------------------------------------------------
    def integer(self, lo: int, hi: int) -> int:
        return self.draw(_ints(lo, hi))

    def pick(self, seq):
        """An element of ``seq`` (None if it is empty)."""
        seq = list(seq)
        return seq[self.integer(0, len(seq) - 1)] if seq else None

    def pick_operand(self, values: list[Value]) -> Value | None:
        """A value, preferring tiles and recently defined values."""
        tiles = [v for v in values if isinstance(v.type, TileType)]
        if tiles and not self.chance(4):
            values = tiles
        if len(values) > 4 and self.chance(2):
            values = values[-4:]
        return self.pick(values)

    def loc_or_none(self) -> Loc | None:
        return None if self.chance(5) else _draw_loc(self.integer)

    def chance(self, k: int) -> bool:
        """True with probability 1/k."""
        return self.integer(0, k - 1) == 0

    def visible(self) -> list[Value]:
        return [v for scope in self.scopes for v in scope]

    def candidates(self, pred) -> list[Value]:
        return [v for v in self.visible() if pred(v)]

    def add(self, value: Value) -> Value:
        self.scopes[-1].append(value)
        return value

    # -- emitting ops ---------------------------------------------------------------------------
    def emit(self, method: str, *args, **kwargs) -> Value | None:
        """Call ``Builder.<method>``, counting the op and drawing its location."""
        if self.o.locs:
            self.b.loc = self.loc_or_none()
        out = getattr(self.b, method)(*args, **kwargs)
        self.n_ops += 1
        if isinstance(out, Value):
            self.add(out)
        return out

    def const(self, value, dtype: DType) -> Value:
        """A constant, reusing a visible one of the same dtype and value."""
        value = int(value) if dtype.is_int else float(value)
        key = (dtype, repr(value))
        for v in self.visible():
            if self.constants.get(v) == key:
                return v
        v = self.emit("constant", value, dtype)
        self.constants[v] = key
        return v

    def scalar_value(self, dtype: DType):
        """A value exactly representable in ``dtype`` (an int for integer types)."""
        if dtype.is_int:
            special = [v for v in (0, 1, 2, -1, dtype.max, dtype.min)
                       if dtype.min <= v <= dtype.max]
            return self.pick(special) if self.chance(2) else self.integer(dtype.min, dtype.max)
        choices = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 3.0, dtype.max, -dtype.max,
                   dtype.smallest_subnormal]
        if self.o.nonfinite:
            if dtype.has_inf:
                choices += [math.inf, -math.inf]
            if dtype.has_nan:
                choices += [math.nan]
        mode = self.integer(0, 2)
        if mode == 0:
            code = self.integer(0, (1 << dtype.bits) - 1)
            value = float(dtype.decode(np.array([code], np.uint64))[0])
            if math.isfinite(value) or self.o.nonfinite:
                return value
        return float(dtype.round([self.pick(choices)])[0])

    def new_constant(self, dtype: DType) -> Value:
        return self.const(self.scalar_value(dtype), dtype)

    def layout_or_none(self, shape: tuple[int, ...]) -> RegisterLayout | None:
        if not self.o.layouts or not self.chance(3):
            return None
        return _draw_layout(self.integer, tuple(shape), True)

    def tile_shape(self, rank: int | None = None) -> tuple[int, ...]:
        rank = rank or self.integer(1, 2)
        return tuple(self.pick((self.block, *_SMALL_DIMS)) for _ in range(rank))

    def index(self) -> Value:
        """An i32 offset: mostly the program's row offset, sometimes a small constant or
        another visible integer scalar."""
        mode = self.integer(0, 5)
        if mode <= 2:
            return self.off
        if mode == 3:
            return self.const(self.integer(0, 3), D.i32)
        if mode == 4:
            return self.emit("add", self.off, self.const(self.integer(1, 5), D.i32))
        ints = self.candidates(lambda v: isinstance(v.type, ScalarType) and v.type.dtype.is_int)
        return self.pick(ints) or self.off

    # -- structure ------------------------------------------------------------------------------
    def run(self) -> GeneratedKernel:
        name = self.pick(("k", "kernel", "gemv", "scale_add", "_tile0"))
        kernel_loc = self.loc_or_none() if self.o.locs else None
        self.kb = KernelBuilder(name, kernel_loc)
        self.b: Builder = self.kb.builder
        self.block = self.pick(_BLOCKS)

        # tensors: the first dimension of the first tensor is N itself
        n_tensors = self.pick((1, 2, 2, 3, 3))
        n_outputs = 2 if n_tensors == 3 and self.chance(3) else 1
        n_inputs = n_tensors - n_outputs
        want_m = self.integer(0, 1) == 1
        used: list[str] = []
        tensors = []
        for t in range(n_tensors):
            arith = [d for d in self.dtypes if d.supports_arithmetic]
            dtype = self.pick(arith if arith and self.chance(3) else self.dtypes)
            rank = self.integer(1, 2)
            shape = [self.dim_expr(used, want_m, first=(t == 0 and d == 0)) for d in range(rank)]
            tensors.append((dtype, shape))
        sizes = {"N": self.pick(SIZE_VALUES)}
        if "M" in used:
            sizes["M"] = self.pick(_SECOND_SIZE_VALUES)

        self.inputs, self.outputs = [], []
        for t, (dtype, shape) in enumerate(tensors):
            is_input = t < n_inputs
            pname = f"in{t}" if is_input else f"out{t - n_inputs}"
            value = self.kb.tensor(pname, dtype, shape)
            (self.inputs if is_input else self.outputs).append(value)
        scalars: dict[str, int | float] = {}
        if self.integer(0, 2) == 0:
            dtype = self.pick([D.i32, D.f32, *self.arith])
            sname = self.pick(("alpha", "n", "scale"))
            scalars[sname] = self.scalar_value(dtype)
            if isinstance(scalars[sname], float) and not math.isfinite(scalars[sname]):
                scalars[sname] = 1.0
            self.add(self.kb.scalar(sname, dtype))

        # grid and prologue: pid (linear program id) and off = pid * BLOCK
        if self.integer(0, 4):
            axis0: SymExpr = cdiv(sym("N"), self.block)
        else:
            axis0 = Const(self.integer(1, 3))
        second = self.pick((None, None, 1, 2, 3) + (("M",) if "M" in used else ()))
        grid = [axis0] + ([sym(second) if isinstance(second, str) else Const(second)]
                          if second is not None else [])
        self.kb.grid(*grid)
        self.grid_rank = len(grid)
        pid = self.emit("block_id", 0)
        if len(grid) == 2:
            extent = self.emit("size", second) if isinstance(second, str) else self.const(
                second, D.i32)
            pid = self.emit("add", self.emit("mul", pid, extent), self.emit("block_id", 1))
        self.off = self.emit("mul", pid, self.const(self.block, D.i32))

        self.budget = self.integer(self.o.max_ops // 2, self.o.max_ops) - 2 * len(self.outputs)
        # seed the pool with tiles: most inputs are loaded (and sometimes cast to a float)
        for tensor in self.inputs:
            if self.n_ops < self.budget and not self.chance(4):
                self.gen_load(tensor)
                if "tile.cast" not in self.o.exclude and self.chance(3):
                    floats = [d for d in self.arith if d.is_float]
                    if floats:
                        self.emit("cast", self.scopes[-1][-1], self.pick(floats))
        attempts = 0
        while self.n_ops < self.budget and attempts < 4 * self.o.max_ops:
            attempts += 1
            self.random_op()
        for out in self.outputs:
            self.final_store(out)
        kernel = self.kb.finish()
        return GeneratedKernel(
            kernel=kernel,
            sizes=sizes,
            scalars=scalars,
            inputs=tuple(f"in{t}" for t in range(len(self.inputs))),
            outputs=tuple(f"out{t}" for t in range(len(self.outputs))),
        )

    def dim_expr(self, used: list[str], want_m: bool, first: bool) -> SymExpr:
        """A tensor dimension: a constant or an expression of a size symbol; the first use of
        each symbol is the bare symbol."""
        if first:
            used.append("N")
            return sym("N")
        kind = self.integer(0, 3)
        if kind == 0:
            return Const(self.pick((1, 2, 3, 4, 8)))
        name = "M" if want_m and kind == 1 else "N"
        if name not in used:
            used.append(name)
            return sym(name)
        c = self.integer(1, 4)
        form = self.integer(0, 5)
        s = sym(name)
        if form == 0:
            return s
        if form == 1:
            return s + c
        if form == 2:
            return c * s
        if form == 3:
            return cdiv(s, c)
        return make_binary(self.pick(("min", "max")), s, c)

    # -- random ops -----------------------------------------------------------------------------
    def random_op(self) -> None:
        kinds = [
            ("arith.constant", self.gen_constant, 1),
            ("tile.block_id", self.gen_block_id, 1),
            ("tile.size", self.gen_size, 1),
            ("tile.arange", self.gen_arange, 2),
            ("tile.full", self.gen_full, 2),
            ("tile.load", self.gen_load, 6),
            ("tile.cast", self.gen_cast, 5),
            ("tile.view", self.gen_view, 3),
            ("unary", self.gen_unary, 3),
            ("binary", self.gen_binary, 6),
            ("compare", self.gen_compare, 2),
            ("tile.where", self.gen_where, 2),
            ("reduce", self.gen_reduce, 2),
            ("tile.broadcast", self.gen_broadcast, 2),
            ("tile.reshape", self.gen_reshape, 2),
            ("tile.permute", self.gen_permute, 2),
            ("tile.dot", self.gen_dot, 2),
            ("tile.convert_layout", self.gen_convert_layout, 1 if self.o.layouts else 0),
            ("tile.store", self.gen_store, 3),
        ]
        if self.o.control_flow and self.depth < 2 and self.budget - self.n_ops >= 3:
            kinds += [("scf.for", self.gen_for, 2), ("scf.if", self.gen_if, 2)]
        menu = [gen for name, gen, weight in kinds if name not in self.o.exclude
                for _ in range(weight)]
        if menu:
            self.pick(menu)()

    def values(self, pred=lambda v: True, tiles_only=False) -> list[Value]:
        def ok(v: Value) -> bool:
            t = v.type
            if isinstance(t, TensorType) or (tiles_only and not isinstance(t, TileType)):
                return False
            return pred(v)

        return self.candidates(ok)

    def gen_constant(self):
        dtype = self.pick(self.dtypes + (D.i32, D.f32))
        self.emit("constant", self.scalar_value(dtype), dtype)

    def gen_block_id(self):
        self.emit("block_id", self.integer(0, self.grid_rank - 1))

    def gen_size(self):
        symbols = self.kb_size_symbols()
        self.emit("size", self.pick(symbols))

    def kb_size_symbols(self) -> list[str]:
        seen: list[str] = []
        for p in self.kb.params:
            if isinstance(p.type, TensorType):
                for d in p.type.shape:
                    seen += [s for s in sorted(d.symbols()) if s not in seen]
        return seen

    def gen_arange(self):
        size = self.pick((1, 2, 3, 4, 5, 8, 16, 32, 64))
        ints = [d for d in (*self.dtypes, D.i32) if d.is_int and size - 1 <= d.max]
        dtype = self.pick(ints)
        self.emit("arange", size, dtype, self.layout_or_none((size,)))

    def gen_full(self):
        scalars = self.values(lambda v: isinstance(v.type, ScalarType))
        if scalars and self.chance(2):
            scalar = self.pick(scalars)
        else:
            scalar = self.new_constant(self.pick(self.dtypes))
        shape = self.tile_shape()
        self.emit("full", scalar, shape, None, self.layout_or_none(shape))

    def gen_load(self, tensor: Value | None = None):
        if not self.inputs:
            return
        tensor = tensor or self.pick(self.inputs)
        rank = tensor.type.rank
        shape = self.tile_shape(rank)
        offsets = [self.index()] + [
            self.const(self.integer(0, 2), D.i32) for _ in range(rank - 1)
        ]
        self.emit("load", tensor, offsets, shape, self.layout_or_none(shape))

    def gen_cast(self):
        x = self.pick_operand(self.values())
        if x is None:
            return
        floats = [d for d in self.arith if d.is_float]
        targets = floats if floats and self.chance(2) else self.dtypes
        self.emit("cast", x, self.pick(targets))

    def gen_view(self):
        x = self.pick_operand(self.values(tiles_only=True))
        if x is None:
            return
        t: TileType = x.type
        src = t.layout or local(*t.shape)
        targets = list(dict.fromkeys((*self.dtypes, D.u8, D.u32, D.i32, D.f16)))
        if src.num_workers == 1 and self.chance(2):
            # no result layout: the row-major bitstream of the last dimension, reinterpreted
            last_bits = t.shape[-1] * t.dtype.bits
            ok = [d for d in targets if last_bits % d.bits == 0
                  and last_bits // d.bits <= _MAX_DIM]
            if ok:
                self.emit("view", x, self.pick(ok))
            return
        workers, bits = src.num_workers, src.local_size * t.dtype.bits
        ok = [d for d in targets if bits % d.bits == 0]
        dtype = self.pick(ok)
        if dtype is None:
            return
        n = bits // dtype.bits
        options = []
        if workers * n <= _MAX_DIM:
            options += [spatial(workers) * local(n), local(n) * spatial(workers)]
        if workers <= _MAX_DIM and n <= _MAX_DIM:
            options += [spatial(workers, 1) * local(1, n), local(n, 1) * spatial(1, workers)]
        layout = self.pick(options)
        if layout is not None:
            self.emit("view", x, dtype, layout.shape, layout)

    def arithmetic_values(self) -> list[Value]:
        """Values with arithmetic, half of the time only the float ones if there are any."""
        found = self.values(lambda v: v.type.dtype.supports_arithmetic)
        floats = [v for v in found if v.type.dtype.is_float]
        return floats if floats and self.chance(2) else found

    def partner(self, a: Value, dtype: DType | None = None) -> Value:
        """A value combinable elementwise with ``a`` (same dtype, a scalar or a tile of the
        same shape), or a new constant."""
        dtype = dtype or a.type.dtype
        shape = a.type.shape if isinstance(a.type, TileType) else None

        def fits(v: Value) -> bool:
            if v.type.dtype != dtype:
                return False
            return shape is None or not isinstance(v.type, TileType) or v.type.shape == shape

        found = self.values(fits)
        if found and not self.chance(3):
            return self.pick(found)
        return self.new_constant(dtype)

    def gen_unary(self):
        x = self.pick_operand(self.arithmetic_values())
        if x is None:
            return
        kind = "float" if x.type.dtype.is_float else "int"
        kinds = [k for k, acc in UNARY_OPS.items() if acc in (kind, "num")
                 and f"math.{k}" not in self.o.exclude]
        if kinds:
            self.emit("unary", self.pick(kinds), x)

    def gen_binary(self, table=BINARY_OPS, prefix="arith", method="binary"):
        a = self.pick_operand(self.arithmetic_values())
        if a is None:
            return
        kind = "float" if a.type.dtype.is_float else "int"
        kinds = [k for k, acc in table.items() if acc in (kind, "num")
                 and f"{prefix}.{k}" not in self.o.exclude]
        if not kinds:
            return
        op = self.pick(kinds)
        b = self.partner(a)
        if self.chance(2):
            a, b = b, a
        self.emit(method, op, a, b)

    def gen_compare(self):
        self.gen_binary(COMPARE_OPS, "cmp", "compare")

    def gen_where(self):
        a = self.pick_operand(self.values())
        if a is None:
            return
        b = self.partner(a)
        shape = next((v.type.shape for v in (a, b) if isinstance(v.type, TileType)), None)

        def fits(v: Value) -> bool:
            if v.type.dtype != D.u1:
                return False
            return shape is None or not isinstance(v.type, TileType) or v.type.shape == shape

        conds = self.values(fits)
        cond = self.pick(conds) if conds else None
        if cond is None:
            x = self.pick(self.arithmetic_values())
            if x is None or (shape is not None and isinstance(x.type, TileType)
                             and x.type.shape != shape):
                return
            cond = self.emit("compare", self.pick(list(COMPARE_OPS)), x,
                             self.new_constant(x.type.dtype))
        self.emit("where", cond, a, b)

    def gen_reduce(self):
        x = self.pick_operand(
            self.values(lambda v: v.type.dtype.supports_arithmetic, tiles_only=True))
        if x is None:
            return
        kinds = [k for k in ("sum", "max", "min") if f"tile.reduce_{k}" not in self.o.exclude]
        if not kinds:
            return
        rank = x.type.rank
        self.emit("reduce", self.pick(kinds), x, self.integer(-rank, rank - 1),
                  self.integer(0, 1) == 1)

    def gen_broadcast(self):
        expandable = self.values(lambda v: 1 in v.type.shape, tiles_only=True)
        if expandable and not self.chance(2):
            x = self.pick(expandable)
            shape = tuple(self.pick(_SMALL_DIMS) if s == 1 else s for s in x.type.shape)
        else:
            x = self.pick(self.values(lambda v: isinstance(v.type, ScalarType)))
            if x is None:
                return
            shape = self.tile_shape()
        self.emit("broadcast", x, shape, self.layout_or_none(shape))

    def reshapes(self, size: int) -> list[tuple[int, ...]]:
        shapes = []
        if size <= _MAX_DIM:
            shapes.append((size,))
        for a in _divisors(size):
            if a <= _MAX_DIM and size // a <= _MAX_DIM:
                shapes.append((a, size // a))
                for b in _divisors(size // a):
                    if b > 1 and size // a // b > 1 and len(shapes) < 12:
                        shapes.append((a, b, size // a // b))
        return shapes

    def gen_reshape(self):
        x = self.pick_operand(self.values(tiles_only=True))
        if x is None:
            return
        shape = self.pick(self.reshapes(x.type.size))
        self.emit("reshape", x, shape, self.layout_or_none(shape))

    def gen_permute(self):
        x = self.pick_operand(self.values(lambda v: v.type.rank >= 2, tiles_only=True))
        if x is None:
            return
        rest = list(range(x.type.rank))
        dims = [rest.pop(self.integer(0, len(rest) - 1)) for _ in range(x.type.rank)]
        self.emit("permute", x, dims)

    def gen_dot(self):
        a = self.pick_operand(self.values(lambda v: v.type.rank == 2, tiles_only=True))
        if a is None:
            return
        (m, k), dtype = a.type.shape, a.type.dtype
        bs = self.values(lambda v: v.type.rank == 2 and v.type.shape[0] == k
                         and v.type.dtype == dtype, tiles_only=True)
        mode = self.integer(0, 2)
        if bs and mode == 0:
            b = self.pick(bs)
        elif mode == 1:
            b = self.emit("permute", a, (1, 0))
        else:
            b = self.emit("full", self.new_constant(dtype), (k, self.pick(_SMALL_DIMS)))
        n = b.type.shape[1]
        acc_dtypes = [d for d in self.arith if d.is_float == dtype.is_float] or [
            D.f32 if dtype.is_float else D.i32
        ]
        accs = self.values(lambda v: v.type.rank == 2 and v.type.shape == (m, n)
                           and v.type.dtype in acc_dtypes, tiles_only=True)
        if accs and self.chance(2):
            acc = self.pick(accs)
        else:
            acc_dtype = self.pick(acc_dtypes)
            zero = 0 if acc_dtype.is_int else 0.0
            acc = self.emit("full", self.const(zero, acc_dtype), (m, n),
                            None, self.layout_or_none((m, n)))
        self.emit("dot", a, b, acc)

    def gen_convert_layout(self):
        x = self.pick_operand(self.values(tiles_only=True))
        if x is None:
            return
        self.emit("convert_layout", x, _draw_layout(self.integer, x.type.shape, True))

    def storable(self, tensor: Value) -> list[Value]:
        rank = tensor.type.rank
        return self.values(lambda v: v.type.rank == rank and v.type.shape[0] <= self.block,
                           tiles_only=True)

    def store(self, tensor: Value, x: Value) -> None:
        if x.type.dtype != tensor.type.dtype:
            x = self.emit("cast", x, tensor.type.dtype)
        offsets = [self.off] + [
            self.const(self.integer(0, 2), D.i32) for _ in range(tensor.type.rank - 1)
        ]
        self.emit("store", tensor, offsets, x)

    def gen_store(self):
        tensor = self.pick(self.outputs)
        x = self.pick_operand(self.storable(tensor))
        if x is not None:
            self.store(tensor, x)

    def final_store(self, tensor: Value) -> None:
        rank = tensor.type.rank
        x = self.pick(self.storable(tensor))
        if x is None:
            # reshape some tile to at most BLOCK rows, or broadcast a scalar
            fitting = []
            for v in self.values(tiles_only=True):
                shapes = [s for s in self.reshapes(v.type.size)
                          if len(s) == rank and s[0] <= self.block]
                if shapes:
                    fitting.append((v, shapes))
            if fitting:
                v, shapes = fitting[self.integer(0, len(fitting) - 1)]
                x = self.emit("reshape", v, self.pick(shapes))
            else:
                scalar = self.pick(self.values(lambda v: isinstance(v.type, ScalarType)))
                if scalar is None:
                    scalar = self.new_constant(tensor.type.dtype)
                shape = (self.pick(_divisors(self.block)),) + tuple(
                    self.pick(_SMALL_DIMS) for _ in range(rank - 1))
                x = self.emit("broadcast", scalar, shape)
        self.store(tensor, x)

    # -- control flow ---------------------------------------------------------------------------
    def ops_in_block(self, budget: int) -> None:
        """Up to ``budget`` (at most 4) random ops in the current block."""
        n = self.integer(0, max(0, min(4, budget)))
        for _ in range(n):
            self.random_op()

    def matching(self, type_) -> Value:
        """A visible value of exactly ``type_``, preferring the innermost ones."""
        for scope in reversed(self.scopes):
            found = [v for v in scope if v.type == type_]
            if found and not self.chance(4):
                return self.pick(found)
        return self.pick(v for v in self.visible() if v.type == type_)

    def gen_for(self):
        mode = self.integer(0, 3)
        dtype = D.i32 if mode != 3 else self.pick((D.i8, D.i16, D.i32))
        if mode == 0 and "N" in self.kb_size_symbols():
            lo = self.const(0, D.i32)
            hi = self.emit("size", "N")
            step = self.const(self.pick((8, 16)), D.i32)
        elif mode == 1:
            lo = self.const(self.integer(1, 3), dtype)
            hi = self.const(0, dtype)
            step = self.const(-1, dtype)
        else:
            lo = self.const(0, dtype)
            hi = self.const(self.integer(0, 3), dtype)
            step = self.const(self.pick((1, 2)), dtype)
        pool = self.values()
        inits = [self.pick_operand(pool) for _ in range(self.integer(0, 2))] if pool else []
        remaining = self.budget - self.n_ops - 2
        with self.b.for_range(lo, hi, step, inits) as loop:
            self.scopes.append([loop.iv, *loop.carried])
            self.depth += 1
            self.ops_in_block(remaining)
            yields = [self.matching(c.type) for c in loop.carried]
            if self.o.locs:
                self.b.loc = self.loc_or_none()
            loop.yield_(*yields)
            self.depth -= 1
            self.scopes.pop()
        self.n_ops += 2
        for r in loop.results:
            self.add(r)

    def gen_if(self):
        conds = self.values(lambda v: isinstance(v.type, ScalarType) and v.type.dtype.is_int)
        if conds and self.chance(2):
            cond = self.pick(conds)
        else:
            cond = self.emit("compare", self.pick(list(COMPARE_OPS)), self.off,
                             self.const(self.integer(0, 40), D.i32))
        pool = self.values()
        types = [self.pick(pool).type for _ in range(self.integer(0, 2))] if pool else []
        remaining = (self.budget - self.n_ops - 3) // 2
        with self.b.if_(cond) as branch:
            for which in (branch.then_, branch.else_):
                with which():
                    self.scopes.append([])
                    self.depth += 1
                    self.ops_in_block(remaining)
                    yields = [self.matching(t) for t in types]
                    if self.o.locs:
                        self.b.loc = self.loc_or_none()
                    branch.yield_(*yields)
                    self.depth -= 1
                    self.scopes.pop()
        self.n_ops += 3
        for r in branch.results:
            self.add(r)
