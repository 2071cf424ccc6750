"""Register layouts: which worker holds each element of a tile, and at which local slot.

A tile living in registers is spread over the workers (threads) of a block: every logical
element ``index`` of the tile is stored by some worker at some position of that worker's local
array. A :class:`RegisterLayout` describes that assignment algebraically, following the design
of NVIDIA Tilus:

* every tile dimension is factored into *modes* (mixed-radix digits of the index along that
  dimension, most significant first);
* some modes are *spatial*: their digits, read in the order of ``spatial_modes``, form the
  worker id; the others are *local*: read in the order of ``local_modes`` they form the local
  index;
* a negative entry ``-k`` in ``spatial_modes`` is a *replication* digit: the element is held by
  ``k`` workers, which differ only in that digit.

Because the representation is a handful of small integer tuples, layouts can be composed
(``a * b``), divided (``a / b``), reduced, permuted and reshaped symbolically, and two layouts
can be compared by value: every layout is brought to a canonical form on construction, so ``==``
and ``hash`` agree with the element -> (worker, local) mapping.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from bittile.errors import LayoutError

__all__ = [
    "RegisterLayout",
    "spatial",
    "local",
    "column_spatial",
    "column_local",
    "replicated",
    "reduce",
    "concat",
    "parse_layout",
]


# ----------------------------------------------------------------------------------------------
# argument checking


def _ints(values: object, what: str) -> tuple[int, ...]:
    """``values`` as a tuple of Python ints, or a LayoutError naming ``what``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise LayoutError(f"{what} must be a sequence of integers, got {values!r}")
    out = []
    for v in values:
        try:
            if isinstance(v, bool):
                raise TypeError
            out.append(operator.index(v))
        except TypeError:
            raise LayoutError(f"{what} must be integers, got {v!r}") from None
    return tuple(out)


def _sizes(values: object, what: str) -> tuple[int, ...]:
    sizes = _ints(values, what)
    if any(s < 1 for s in sizes):
        raise LayoutError(
            f"{what} must be positive integers, got {list(sizes)}",
            hint="use 1 for a dimension that the layout does not split",
        )
    return sizes


def _dim_list(dims: int | Iterable[int], rank: int, what: str) -> list[int]:
    """Normalized (non-negative, duplicate-free) dimension indices for a tile of ``rank``."""
    dims = _ints([dims] if isinstance(dims, int) else dims, f"{what} dims")
    out = []
    for d in dims:
        if not -rank <= d < rank:
            raise LayoutError(f"{what}: dimension {d} is out of range for a rank-{rank} layout")
        d %= rank
        if d in out:
            raise LayoutError(f"{what}: dimension {d} is listed twice")
        out.append(d)
    return out


# ----------------------------------------------------------------------------------------------
# canonical form


def _assign_dims(shape: tuple[int, ...], mode_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The dimension each mode belongs to.

    Modes are listed dimension by dimension, so the split is found greedily; it is unique for
    modes larger than one (size-one modes carry no digit, their dimension is irrelevant).
    """
    bad = LayoutError(
        f"mode sizes {list(mode_shape)} do not factor the shape {list(shape)}",
        hint="list the modes of dimension 0 first, then dimension 1, ...; the modes of each "
        "dimension must multiply to its extent",
    )
    dims, d, acc = [], 0, 1
    for m in mode_shape:
        if m == 1:
            dims.append(d)
            continue
        while d < len(shape) and acc == shape[d]:
            d, acc = d + 1, 1
        if d == len(shape) or shape[d] % (acc * m):
            raise bad
        acc *= m
        dims.append(d)
    while d < len(shape) and acc == shape[d]:
        d, acc = d + 1, 1
    if d != len(shape):
        raise bad
    return tuple(dims)


def _canonicalize(shape, mode_shape, spatial_modes, local_modes):
    """Validate a raw layout and return its canonical ``(mode_shape, spatial, local, dims)``.

    Canonical means: no size-one modes or replication digits; no two modes that could be one
    (same dimension, adjacent in it, consecutive in the same digit list and in that order); no
    two consecutive replication digits. Merging such pairs never changes the mapping, and once
    nothing can be merged the representation is determined by the mapping.
    """
    n = len(mode_shape)
    dims = _assign_dims(shape, mode_shape)
    if any(x < 0 for x in local_modes):
        raise LayoutError(
            f"local_modes {list(local_modes)} contains a negative entry",
            hint="replication digits (-k) are only allowed in spatial_modes",
        )
    listed = sorted([x for x in spatial_modes if x >= 0] + list(local_modes))
    if listed != list(range(n)):
        raise LayoutError(
            f"spatial_modes {list(spatial_modes)} and local_modes {list(local_modes)} must "
            f"together list every mode index 0..{n - 1} exactly once",
        )
    keep = [i for i in range(n) if mode_shape[i] > 1]
    new = {old: k for k, old in enumerate(keep)}
    sizes = [mode_shape[i] for i in keep]
    mdims = [dims[i] for i in keep]
    sp = [x if x < 0 else new[x] for x in spatial_modes if x < -1 or x in new]
    lo = [new[x] for x in local_modes if x in new]
    changed = True
    while changed:
        changed = False
        for lst in (sp, lo):
            for k in range(len(lst) - 1):
                a, b = lst[k], lst[k + 1]
                if a < 0 and b < 0:
                    lst[k : k + 2] = [-(a * b)]
                elif a >= 0 and b == a + 1 and mdims[a] == mdims[b]:
                    sizes[a] *= sizes[b]
                    del sizes[b], mdims[b]
                    lst[k : k + 2] = [a]
                    sp[:] = [x - 1 if x > b else x for x in sp]
                    lo[:] = [x - 1 if x > b else x for x in lo]
                else:
                    continue
                changed = True
                break
    return tuple(sizes), tuple(sp), tuple(lo), tuple(mdims)


# ----------------------------------------------------------------------------------------------
# the layout


@dataclass(frozen=True, repr=False)
class RegisterLayout:
    """A tile layout over workers; see the module docstring for the meaning of the fields.

    The constructor accepts any valid (possibly non-canonical) description and stores the
    canonical one, so equal mappings give equal, equally hashed objects.
    """

    shape: tuple[int, ...]
    mode_shape: tuple[int, ...]
    spatial_modes: tuple[int, ...]
    local_modes: tuple[int, ...]
    mode_dims: tuple[int, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        shape = _sizes(self.shape, "layout shape")
        modes = _sizes(self.mode_shape, "mode sizes")
        sp = _ints(self.spatial_modes, "spatial_modes")
        lo = _ints(self.local_modes, "local_modes")
        modes, sp, lo, dims = _canonicalize(shape, modes, sp, lo)
        for name, value in [
            ("shape", shape),
            ("mode_shape", modes),
            ("spatial_modes", sp),
            ("local_modes", lo),
            ("mode_dims", dims),
        ]:
            object.__setattr__(self, name, value)

    # -- sizes ----------------------------------------------------------------------------------

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of logical elements."""
        return math.prod(self.shape)

    def _digit_size(self, x: int) -> int:
        return -x if x < 0 else self.mode_shape[x]

    @property
    def num_workers(self) -> int:
        """Number of workers, replication digits included."""
        return math.prod(self._digit_size(x) for x in self.spatial_modes)

    @property
    def local_size(self) -> int:
        """Number of elements each worker stores."""
        return math.prod(self.mode_shape[x] for x in self.local_modes)

    @cached_property
    def dim_modes(self) -> tuple[tuple[int, ...], ...]:
        """The mode indices of each dimension, most significant first."""
        return tuple(
            tuple(i for i, d in enumerate(self.mode_dims) if d == dim) for dim in range(self.rank)
        )

    @cached_property
    def _flat_strides(self) -> tuple[int, ...]:
        # All modes, in order, are the mixed-radix digits of the row-major flat element index.
        return _strides(self.mode_shape)

    @cached_property
    def _worker_strides(self) -> tuple[int, ...]:
        return _strides([self._digit_size(x) for x in self.spatial_modes])

    @cached_property
    def _local_strides(self) -> tuple[int, ...]:
        return _strides([self.mode_shape[x] for x in self.local_modes])

    # -- algebra --------------------------------------------------------------------------------

    def __mul__(self, other: RegisterLayout) -> RegisterLayout:
        """Composition: every element of ``self`` becomes a whole tile laid out by ``other``."""
        if not isinstance(other, RegisterLayout):
            return NotImplemented
        if self.rank != other.rank:
            raise LayoutError(
                f"cannot compose {self} (rank {self.rank}) with {other} (rank {other.rank})",
                hint="both layouts need the same rank; add size-1 dimensions (e.g. spatial(4, 1))",
            )
        order = []
        for d in range(self.rank):
            order += [(0, i) for i in self.dim_modes[d]] + [(1, i) for i in other.dim_modes[d]]
        pos = {key: k for k, key in enumerate(order)}
        parts = (self, other)
        modes = tuple(parts[p].mode_shape[i] for p, i in order)

        def remap(p: int, xs: tuple[int, ...]) -> list[int]:
            return [x if x < 0 else pos[p, x] for x in xs]

        sp = remap(0, self.spatial_modes) + remap(1, other.spatial_modes)
        lo = remap(0, self.local_modes) + remap(1, other.local_modes)
        shape = tuple(a * b for a, b in zip(self.shape, other.shape, strict=True))
        return RegisterLayout(shape, modes, tuple(sp), tuple(lo))

    def __truediv__(self, other: RegisterLayout) -> RegisterLayout:
        """The layout ``c`` with ``c * other == self`` (LayoutError if there is none)."""
        if not isinstance(other, RegisterLayout):
            return NotImplemented
        return _divide(self, other)

    def spatial(self, *shape: int) -> RegisterLayout:
        return self * spatial(*shape)

    def local(self, *shape: int) -> RegisterLayout:
        return self * local(*shape)

    def column_spatial(self, *shape: int) -> RegisterLayout:
        return self * column_spatial(*shape)

    def column_local(self, *shape: int) -> RegisterLayout:
        return self * column_local(*shape)

    def replicated(self, n: int) -> RegisterLayout:
        """``self * replicated(n, self.rank)``: every worker becomes ``n`` workers."""
        return self * replicated(n, self.rank)

    def reduce(self, dims: int | Iterable[int], keepdims: bool = False) -> RegisterLayout:
        return reduce(self, dims, keepdims)

    def permute(self, dims: Sequence[int]) -> RegisterLayout:
        """Reorder the dimensions: dimension ``k`` of the result is ``dims[k]`` of ``self``."""
        perm = _dim_list(dims, self.rank, "permute")
        if len(perm) != self.rank:
            raise LayoutError(f"permute needs a permutation of all {self.rank} dims, got {dims}")
        w = _Work(self)
        w.shape = [w.shape[p] for p in perm]
        w.dims = [w.dims[p] for p in perm]
        return w.build()

    def reshape(self, *new_shape: int | Sequence[int]) -> RegisterLayout:
        """The same layout seen with another shape, keeping row-major element order.

        One entry may be -1 (inferred). Modes are split where a new dimension boundary falls
        inside one; a LayoutError is raised when that split would be uneven.
        """
        if len(new_shape) == 1 and not isinstance(new_shape[0], int):
            new_shape = tuple(new_shape[0])  # type: ignore[arg-type]
        shape = list(_ints(new_shape, "reshape sizes"))
        known = math.prod(s for s in shape if s != -1)
        if shape.count(-1) == 1 and known > 0 and self.size % known == 0:
            shape[shape.index(-1)] = self.size // known
        if -1 in shape or math.prod(_sizes(shape, "reshape sizes")) != self.size:
            raise LayoutError(
                f"cannot reshape {self} of shape {list(self.shape)} ({self.size} elements) to "
                f"{list(new_shape)}",
                hint="the new shape must have the same number of elements",
            )
        w = _Work(self)
        seq = [t for d in w.dims for t in d]
        dims = []
        for n in shape:
            k = w.cut(seq, n)
            if k is None:
                raise LayoutError(
                    f"cannot reshape {self} to {shape}: its modes {list(self.mode_shape)} cannot "
                    f"be regrouped into those dimensions without splitting a mode unevenly",
                    hint="choose a shape whose dimension boundaries fall between whole modes",
                )
            dims.append(seq[:k])
            del seq[:k]
        w.shape, w.dims = shape, dims
        return w.build()

    def flatten(self) -> RegisterLayout:
        return self.reshape(self.size)

    def squeeze(self, dim: int) -> RegisterLayout:
        """Remove dimension ``dim``, which must have extent 1."""
        (d,) = _dim_list(dim, self.rank, "squeeze")
        if self.shape[d] != 1:
            raise LayoutError(
                f"cannot squeeze dimension {d} of {self}: its extent is {self.shape[d]}, not 1"
            )
        return self.reshape(self.shape[:d] + self.shape[d + 1 :])

    def unsqueeze(self, dim: int) -> RegisterLayout:
        """Insert a dimension of extent 1 at position ``dim`` (negative counts from the end)."""
        (d,) = _dim_list(dim, self.rank + 1, "unsqueeze")
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    # -- mapping --------------------------------------------------------------------------------

    def _flat_index(self, index: Sequence[int]) -> int:
        idx = _ints(index, "element index")
        if len(idx) != self.rank or any(
            not 0 <= i < n for i, n in zip(idx, self.shape, strict=True)
        ):
            raise LayoutError(
                f"element index {list(idx)} is out of range for a layout of shape "
                f"{list(self.shape)}"
            )
        flat = 0
        for i, n in zip(idx, self.shape, strict=True):
            flat = flat * n + i
        return flat

    def map(self, index: Sequence[int]) -> tuple[int, int]:
        """(worker, local) of the element ``index``; replication digits are taken as 0."""
        flat = self._flat_index(index)
        digit = [(flat // s) % m for s, m in zip(self._flat_strides, self.mode_shape, strict=True)]
        worker = sum(
            digit[x] * s
            for x, s in zip(self.spatial_modes, self._worker_strides, strict=True)
            if x >= 0
        )
        loc = sum(digit[x] * s for x, s in zip(self.local_modes, self._local_strides, strict=True))
        return worker, loc

    def workers_of(self, index: Sequence[int]) -> list[int]:
        """Every worker holding the element ``index``, sorted."""
        base, _ = self.map(index)
        reps = [
            range(0, -x * s, s)
            for x, s in zip(self.spatial_modes, self._worker_strides, strict=True)
            if x < 0
        ]
        return sorted(base + sum(c) for c in itertools.product(*reps))

    def logical_index(self, worker: int, local: int) -> tuple[int, ...]:
        """The element that ``worker`` stores at local slot ``local``."""
        if not (0 <= worker < self.num_workers and 0 <= local < self.local_size):
            raise LayoutError(
                f"(worker {worker}, local {local}) is out of range for {self}: it has "
                f"{self.num_workers} workers with {self.local_size} local elements each"
            )
        flat = 0
        for x, s in zip(self.spatial_modes, self._worker_strides, strict=True):
            if x >= 0:
                flat += (worker // s) % self.mode_shape[x] * self._flat_strides[x]
        for x, s in zip(self.local_modes, self._local_strides, strict=True):
            flat += (local // s) % self.mode_shape[x] * self._flat_strides[x]
        index = []
        for n in reversed(self.shape):
            flat, i = divmod(flat, n)
            index.append(i)
        return tuple(reversed(index))

    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """(worker, local) of every element, as two int64 arrays of the tile's shape."""
        flat = np.arange(self.size, dtype=np.int64)
        worker = np.zeros(self.size, dtype=np.int64)
        loc = np.zeros(self.size, dtype=np.int64)
        digit = [(flat // s) % m for s, m in zip(self._flat_strides, self.mode_shape, strict=True)]
        for x, s in zip(self.spatial_modes, self._worker_strides, strict=True):
            if x >= 0:
                worker += digit[x] * s
        for x, s in zip(self.local_modes, self._local_strides, strict=True):
            loc += digit[x] * s
        return worker.reshape(self.shape), loc.reshape(self.shape)

    def inverse_table(self) -> np.ndarray:
        """``[num_workers, local_size]`` int64 array of row-major flat element indices."""
        w = np.arange(self.num_workers, dtype=np.int64)[:, None]
        lo = np.arange(self.local_size, dtype=np.int64)[None, :]
        out = np.zeros((self.num_workers, self.local_size), dtype=np.int64)
        for x, s in zip(self.spatial_modes, self._worker_strides, strict=True):
            if x >= 0:
                out += (w // s) % self.mode_shape[x] * self._flat_strides[x]
        for x, s in zip(self.local_modes, self._local_strides, strict=True):
            out += (lo // s) % self.mode_shape[x] * self._flat_strides[x]
        return out

    # -- text -----------------------------------------------------------------------------------

    def __str__(self) -> str:
        factors = _factorize(self)
        if factors is not None:
            return _format_factors(factors, self.shape)
        return (
            f"RegisterLayout(shape={list(self.shape)}, mode_shape={list(self.mode_shape)}, "
            f"spatial_modes={list(self.spatial_modes)}, local_modes={list(self.local_modes)})"
        )

    __repr__ = __str__


def _strides(sizes: Sequence[int]) -> tuple[int, ...]:
    """Mixed-radix place values, first digit most significant."""
    out, acc = [], 1
    for s in reversed(sizes):
        out.append(acc)
        acc *= s
    return tuple(reversed(out))


# ----------------------------------------------------------------------------------------------
# primitives and module-level operations


def _primitive(name: str, shape: tuple[int, ...], is_spatial: bool, column: bool):
    sizes = _sizes(shape, f"{name}() sizes")
    order = tuple(range(len(sizes)))[:: -1 if column else 1]
    if is_spatial:
        return RegisterLayout(sizes, sizes, order, ())
    return RegisterLayout(sizes, sizes, (), order)


def spatial(*shape: int) -> RegisterLayout:
    """One element per worker; workers numbered row-major over the tile."""
    return _primitive("spatial", shape, True, False)


def local(*shape: int) -> RegisterLayout:
    """The whole tile in one worker, stored row-major."""
    return _primitive("local", shape, False, False)


def column_spatial(*shape: int) -> RegisterLayout:
    """Like :func:`spatial`, but workers numbered column-major (dimension 0 fastest)."""
    return _primitive("column_spatial", shape, True, True)


def column_local(*shape: int) -> RegisterLayout:
    """Like :func:`local`, but stored column-major (dimension 0 fastest)."""
    return _primitive("column_local", shape, False, True)


def replicated(n: int, rank: int = 1) -> RegisterLayout:
    """A single element (shape ``[1] * rank``) held by ``n`` workers."""
    (n,) = _sizes([n], "replicated() count")
    (rank,) = _ints([rank], "replicated() rank")
    if rank < 0:
        raise LayoutError(f"replicated() rank must be non-negative, got {rank}")
    return RegisterLayout((1,) * rank, (), (-n,), ())


def reduce(
    layout: RegisterLayout, dims: int | Iterable[int], keepdims: bool = False
) -> RegisterLayout:
    """The layout of the result of reducing ``layout`` over ``dims``.

    The workers that shared the reduced dimensions all end up with the result, so those spatial
    digits become replication digits; local digits of the reduced dimensions disappear.
    """
    ds = _dim_list(dims, layout.rank, "reduce")
    w = _Work(layout)
    gone = {t for d in ds for t in w.dims[d]}
    w.sp = [-w.size[t] if t in gone else t for t in w.sp]
    w.lo = [t for t in w.lo if t not in gone]
    for d in ds:
        w.dims[d], w.shape[d] = [], 1
    if not keepdims:
        w.dims = [m for d, m in enumerate(w.dims) if d not in ds]
        w.shape = [n for d, n in enumerate(w.shape) if d not in ds]
    return w.build()


def concat(a: RegisterLayout, b: RegisterLayout) -> RegisterLayout:
    """Side-by-side dimensions: shape ``a.shape + b.shape``, ``a``'s digits more significant."""
    n = len(a.mode_shape)
    sp = a.spatial_modes + tuple(x if x < 0 else x + n for x in b.spatial_modes)
    lo = a.local_modes + tuple(x + n for x in b.local_modes)
    return RegisterLayout(a.shape + b.shape, a.mode_shape + b.mode_shape, sp, lo)


def parse_layout(text: str) -> RegisterLayout:
    """Parse the text form printed by ``str(layout)`` (see :mod:`bittile.ir.layout_parse`)."""
    from bittile.ir.layout_parse import parse_layout as parse

    return parse(text)


# ----------------------------------------------------------------------------------------------
# symbolic manipulation helpers


class _Work:
    """A mutable copy of a layout whose modes are named by stable tokens.

    Division, reshape and printing need to split modes and regroup them; naming modes by tokens
    (instead of positions) lets them do so without renumbering at every step. Replication digits
    stay negative sizes, as in the layout.
    """

    def __init__(self, layout: RegisterLayout):
        self.shape = list(layout.shape)
        self.size = dict(enumerate(layout.mode_shape))
        self.dims = [list(m) for m in layout.dim_modes]
        self.sp = list(layout.spatial_modes)
        self.lo = list(layout.local_modes)

    def split(self, tok: int, outer: int) -> list[int]:
        """Replace mode ``tok`` everywhere by an outer mode of size ``outer`` and the rest."""
        a = max(self.size) + 1
        self.size[a], self.size[a + 1] = outer, self.size[tok] // outer
        for lst in (*self.dims, self.sp, self.lo):
            if tok in lst:
                k = lst.index(tok)
                lst[k : k + 1] = [a, a + 1]
        return [a, a + 1]

    def cut(self, seq: list[int], n: int) -> int | None:
        """Split entries of ``seq`` so that its first ``k`` have product ``n``; return ``k``.

        ``None`` means a mode (or replication digit) would have to be split unevenly.
        """
        k, acc = 0, 1
        while acc < n:
            if k == len(seq):
                return None
            tok = seq[k]
            s = -tok if tok < 0 else self.size[tok]
            need = n // acc
            if need % s:
                if s % need:
                    return None
                if tok < 0:
                    seq[k : k + 1] = [-need, -(s // need)]
                else:
                    parts = self.split(tok, need)
                    if seq[k] == tok:  # seq is a private list, not one of ours
                        seq[k : k + 1] = parts
                s = need
            acc *= s
            k += 1
        return k

    def build(self, shape=None, dims=None, sp=None, lo=None) -> RegisterLayout:
        """Assemble a layout from (by default, all of) the working state."""
        shape = self.shape if shape is None else shape
        dims = self.dims if dims is None else dims
        order = [t for d in dims for t in d]
        pos = {t: k for k, t in enumerate(order)}
        return RegisterLayout(
            tuple(shape),
            tuple(self.size[t] for t in order),
            tuple(t if t < 0 else pos[t] for t in (self.sp if sp is None else sp)),
            tuple(pos[t] for t in (self.lo if lo is None else lo)),
        )


def _divide(a: RegisterLayout, b: RegisterLayout) -> RegisterLayout:
    """``c`` with ``c * b == a``.

    In ``c * b`` the modes of ``b`` are the least significant ones of each dimension and its
    digits the least significant ones of the worker and local indices. So: cut each dimension
    of ``a`` where the inner part has ``b``'s extent, cut the worker and local digit lists where
    the inner part has ``b``'s sizes, check that inner digits come from inner modes only, and
    that they form ``b``.
    """

    def fail(why: str) -> LayoutError:
        return LayoutError(
            f"cannot divide {a} by {b}: {why}",
            hint="a / b exists only when a == c * b for some c, i.e. b is the innermost "
            "factor of a",
        )

    if a.rank != b.rank:
        raise fail(f"their ranks differ ({a.rank} and {b.rank})")
    if any(x % y for x, y in zip(a.shape, b.shape, strict=True)):
        raise fail(f"shape {list(b.shape)} does not divide shape {list(a.shape)}")
    if a.num_workers % b.num_workers or a.local_size % b.local_size:
        raise fail(
            f"{b.num_workers} workers x {b.local_size} local elements does not divide "
            f"{a.num_workers} workers x {a.local_size} local elements"
        )
    w = _Work(a)
    outer_dims, inner_dims = [], []
    for d in range(a.rank):
        k = w.cut(w.dims[d], a.shape[d] // b.shape[d])
        if k is None:
            raise fail(f"dimension {d} has no mode boundary at inner extent {b.shape[d]}")
        outer_dims.append(w.dims[d][:k])
        inner_dims.append(w.dims[d][k:])
    outer = {t for m in outer_dims for t in m}
    ks = w.cut(w.sp, a.num_workers // b.num_workers)
    kl = w.cut(w.lo, a.local_size // b.local_size)
    if (
        ks is None
        or kl is None
        or any(t >= 0 and t not in outer for t in w.sp[:ks] + w.lo[:kl])
        or any(t >= 0 and t in outer for t in w.sp[ks:] + w.lo[kl:])
    ):
        raise fail("the least significant worker/local digits do not match the inner modes")
    inner_shape = list(b.shape)
    outer_shape = [x // y for x, y in zip(a.shape, b.shape, strict=True)]
    rest = w.build(inner_shape, inner_dims, w.sp[ks:], w.lo[kl:])
    if rest != b:
        raise fail(f"the innermost factor of the first layout is {rest}")
    c = w.build(outer_shape, outer_dims, w.sp[:ks], w.lo[:kl])
    if c * b != a:
        raise fail(f"{c} * {b} does not give back the first layout")
    return c


# ----------------------------------------------------------------------------------------------
# printing as a composition of primitives


def _factorize(layout: RegisterLayout) -> list[tuple[str, tuple[int, ...]]] | None:
    """Primitives whose composition is ``layout``, or None if the greedy search finds none.

    Peels primitives off the inner end: the last digits of the worker (or local) index form an
    innermost primitive when each is the least significant remaining mode of its dimension and
    their dimensions are in row-major (or column-major) order. The result is checked.
    """
    w = _Work(layout)
    dim_of = {t: d for d, m in enumerate(w.dims) for t in m}
    factors: list[tuple[str, tuple[int, ...]]] = []
    while w.sp or w.lo:
        if w.sp and w.sp[-1] < 0:
            factors.append(("replicated", (-w.sp.pop(),)))
            continue
        for kind, lst in (("spatial", w.sp), ("local", w.lo)):
            best = (0, False)
            for column in (False, True):
                k, prev = len(lst), None
                while k and lst[k - 1] >= 0:
                    d = dim_of[lst[k - 1]]
                    in_order = prev is None or (d > prev if column else d < prev)
                    if w.dims[d][-1] != lst[k - 1] or not in_order:
                        break
                    prev, k = d, k - 1
                if len(lst) - k > best[0]:  # on a tie, prefer the row-major primitive
                    best = (len(lst) - k, column)
            if best[0]:
                args = [1] * layout.rank
                for t in lst[-best[0] :]:
                    args[dim_of[t]] = w.size[t]
                    w.dims[dim_of[t]].pop()
                del lst[-best[0] :]
                factors.append((("column_" if best[1] else "") + kind, tuple(args)))
                break
        else:
            return None
    factors.reverse()
    rebuilt = local(*layout.shape) if not factors else None
    for name, args in factors:
        f = replicated(args[0], layout.rank) if name == "replicated" else _BUILDERS[name](*args)
        rebuilt = f if rebuilt is None else rebuilt * f
    return factors if rebuilt == layout else None


_BUILDERS = {
    "spatial": spatial,
    "local": local,
    "column_spatial": column_spatial,
    "column_local": column_local,
}


def _format_factors(factors: list[tuple[str, tuple[int, ...]]], shape: tuple[int, ...]) -> str:
    if not factors:
        return f"local({', '.join(map(str, shape))})"
    parts = []
    for k, (name, args) in enumerate(factors):
        text = f"{name}({', '.join(map(str, args))})"
        if k == 0 and name == "replicated" and len(shape) != 1:
            text = f"replicated({args[0]}, rank={len(shape)})"
        parts.append(text if k == 0 else "." + text)
    return "".join(parts)
