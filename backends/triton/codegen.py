"""Tile IR to the Python source of one ``@triton.jit`` function, plus a launcher.

The generated module is self-contained: ``import triton``, the device functions of
``device_lib.py`` the kernel uses, the kernel, and ``launch(grid, args)``. Names come from the
IR's value names where they exist, else from the op that computed the value.

Tiles are Triton tensors whose every dimension is padded to a power of two (Triton's block
shapes must be); the elements of the padding hold anything. Ops that could see them mask them:
loads and stores (by the tile's real shape as well as the tensor's bounds), reductions (padding
becomes the identity), dots (zeros along K), views and reshapes (gathers read real elements
only). A scalar is a 0-d Triton tensor.

Each SSA value may exist in several *forms* (see ``forms.py``): its primary form, in which the
op that computes it produces it, and conversions made on demand (``KernelCodegen.get``),
remembered for the rest of the block that made them.

Kernel parameters, in order (:class:`ArgSpec`): per tensor parameter its pointer and its
dimensions; the sizes (``tile.size``); the scalar parameters; the extents of grid axes 1..r-1
(the grid is launched flattened, row-major, the last axis fastest, as the interpreter runs it);
the index tables of views; and a status word set to 1 when a loop's step is 0.
"""

from __future__ import annotations

import builtins
import contextlib
import keyword
import math
import re
from collections.abc import Callable

import numpy as np

from bittile.backends.triton import numerics
from bittile.backends.triton.forms import infer_forms
from bittile.backends.triton.program import (
    HELPERS,
    ArgSpec,
    TensorInfo,
    TritonProgram,
    module_source,
    padded,
    pointer_signature,
)
from bittile.errors import InternalError
from bittile.ir import ops
from bittile.ir.core import Block, Kernel, Op, Value
from bittile.ir.types import ScalarType, TensorType, TileType

__all__ = ["KernelCodegen", "EMITTERS", "emits", "generate", "WORD_OPS", "TensorInfo",
           "padded"]

Emitter = Callable[[Op, "KernelCodegen"], None]
EMITTERS: dict[type, Emitter] = {}

#: ops that address a tensor as 32-bit words of its bitstream
WORD_OPS = (ops.LoadWordsOp, ops.StoreWordsOp)


def emits(*classes: type):
    def register(fn: Emitter) -> Emitter:
        for cls in classes:
            if cls in EMITTERS:
                raise InternalError(f"{cls.__name__} has two Triton emitters")
            EMITTERS[cls] = fn
        return fn

    return register


#: names the generated module uses (or that would shadow a Python builtin)
_RESERVED = {"tl", "triton", "math", "launch", *dir(builtins)}


class _Namer:
    """Unique Python identifiers."""

    def __init__(self, reserved=()):
        self.used: set[str] = set(reserved)

    def fresh(self, hint: str | None) -> str:
        base = re.sub(r"\W", "_", hint or "v") or "v"
        if base[0].isdigit():
            base = f"v{base}"
        if keyword.iskeyword(base) or base in _RESERVED:
            base = f"{base}_"
        name, n = base, 1
        while name in self.used:
            name = f"{base}{n}"
            n += 1
        self.used.add(name)
        return name


class KernelCodegen:
    """The state of generating one kernel's source."""

    def __init__(self, kernel: Kernel):
        self.kernel = kernel
        self.forms = infer_forms(kernel)
        self.namer = _Namer(HELPERS)
        self.lines: list[str] = []
        self._indent = 1
        #: memo of forms made available, per open block: (id(value), form) -> name
        self._scopes: list[dict[tuple[int, str], str]] = [{}]
        self._shapes: dict[int, tuple[int, ...] | None] = {}
        self._alias: dict[int, Value] = {}
        self._defining: dict[int, Op] = {id(r): op for op in kernel.walk() for r in op.results}
        self.args: list[ArgSpec] = []
        self.tables: list[np.ndarray] = []
        self.tensors: dict[int, TensorInfo] = {}
        self.sizes: dict[str, str] = {}
        self.block_ids: list[str] = []
        self.status: str | None = None
        self.max_tile = 1

    # ---- values ----------------------------------------------------------------------------
    def _resolve(self, v: Value) -> Value:
        while id(v) in self._alias:
            v = self._alias[id(v)]
        return v

    def _key(self, v: Value) -> int:
        return id(self._resolve(v))

    def primary(self, v: Value) -> str:
        return self.forms[self._key(v)]

    def shape(self, v: Value) -> tuple[int, ...] | None:
        """The padded Triton shape of ``v``, or None for a scalar."""
        v = self._resolve(v)
        if id(v) in self._shapes:
            return self._shapes[id(v)]
        t = v.type
        return padded(t.shape) if isinstance(t, TileType) else None

    def _lookup(self, key: tuple[int, str]) -> str | None:
        for scope in reversed(self._scopes):
            if key in scope:
                return scope[key]
        return None

    def bind(self, v: Value, form: str, name: str, shape=...) -> None:
        self._scopes[-1][(self._key(v), form)] = name
        if shape is not ...:
            self._shapes[self._key(v)] = shape
        t = v.type
        if isinstance(t, TileType):
            self.max_tile = max(self.max_tile, math.prod(padded(t.shape)))

    def alias(self, v: Value, target: Value) -> None:
        """Make ``v`` another name of ``target`` (fused bodies' arguments)."""
        self._alias[id(v)] = target

    def define(self, v: Value, expr: str, form: str | None = None, hint: str | None = None,
               shape=...) -> str:
        """Emit ``name = expr`` as ``v``'s value in ``form`` (default: its primary form)."""
        name = self.assign(hint or self.hint(v), expr)
        self.bind(v, form or self.primary(v), name, shape)
        return name

    def get(self, v: Value, form: str) -> str:
        """The name of ``v`` in ``form``, converting (once per block) when needed."""
        key = (self._key(v), form)
        name = self._lookup(key)
        if name is not None:
            return name
        have = self.primary(v)
        source = self._lookup((self._key(v), have))
        if source is None:
            raise InternalError(f"{v!r} is used before it is defined")
        if have == form:
            return source
        dtype = v.type.dtype
        conversions = {
            ("int", "pred"): lambda x: f"{x} != 0",
            ("pred", "int"): lambda x: f"{x}.to(tl.int32)",
            ("code", "val"): lambda x: numerics.decode(dtype, x),
            ("val", "code"): lambda x: numerics.encode(dtype, x, saturate=False),
        }
        convert = conversions.get((have, form))
        if convert is None:
            raise InternalError(f"cannot convert a {dtype} value from {have} to {form}")
        name = self.assign(f"{self.hint(v)}_{form}", convert(source))
        self._scopes[-1][key] = name
        return name

    def hint(self, v: Value) -> str:
        if v.name_hint:
            return v.name_hint
        op = self._defining.get(id(v))
        if op is None:
            return "arg"
        if isinstance(op, ops.LoadOp):
            return f"{self.tensor(op.tensor).param}_tile"
        if isinstance(op, ops.ConstantOp):
            return "c"
        return op.name.split(".")[-1]

    def tensor(self, v: Value) -> TensorInfo:
        return self.tensors[id(v)]

    def constant_value(self, v: Value):
        """The value of ``v`` if an ``arith.constant`` defines it, else None."""
        op = self._defining.get(id(v))
        return op.value if isinstance(op, ops.ConstantOp) else None

    # ---- text ------------------------------------------------------------------------------
    def line(self, text: str) -> None:
        self.lines.append("    " * self._indent + text)

    def assign(self, hint: str, expr: str) -> str:
        name = self.namer.fresh(hint)
        self.line(f"{name} = {expr}")
        return name

    @contextlib.contextmanager
    def block_scope(self, header: str | None = None):
        """An indented block (after ``header``, e.g. ``for ...:``) whose conversions are
        forgotten when it ends."""
        if header is not None:
            self.line(header)
        self._indent += 1
        self._scopes.append({})
        start = len(self.lines)
        try:
            yield
        finally:
            if len(self.lines) == start:
                self.line("pass")
            self._scopes.pop()
            self._indent -= 1

    def emit_block(self, block: Block) -> None:
        for op in block.ops:
            if isinstance(op, ops.YieldOp):
                continue
            emitter = EMITTERS.get(type(op))
            if emitter is None:
                raise InternalError(f"the Triton backend has no emitter for {op.name}")
            emitter(op, self)

    def add_table(self, table: np.ndarray, hint: str) -> str:
        """A kernel parameter pointing to the int32 ``table`` (passed at launch)."""
        name = self.namer.fresh(f"{hint}_table")
        self.args.append(ArgSpec(name, "table", "*i32", len(self.tables)))
        self.tables.append(np.ascontiguousarray(table, dtype=np.int32))
        return name

    def status_ptr(self) -> str:
        if self.status is None:
            self.status = self.namer.fresh("status_ptr")
        return self.status

    # ---- generation ------------------------------------------------------------------------
    def generate(self) -> TritonProgram:
        from bittile.backends.triton import (  # noqa: F401  (they register the emitters)
            emit_compute,
            emit_control,
            emit_memory,
            emit_shape,
            emit_view,
        )

        kernel = self.kernel
        self.kernel_name = self.namer.fresh(kernel.name)
        self._declare_params()
        self._prologue()
        self.emit_block(kernel.body)
        if self.status is not None:
            self.args.append(ArgSpec(self.status, "status", "*i32"))
        return self._program()

    def _declare_params(self) -> None:
        kernel = self.kernel
        word_params = _word_params(kernel)
        self.namer.used.update(p.name for p in kernel.params)
        for p, v in zip(kernel.params, kernel.body.args):
            if not isinstance(p.type, TensorType):
                continue
            words = p.name in word_params
            ptr = self.namer.fresh(f"{p.name}_ptr")
            element = "*i32" if words else pointer_signature(numerics.memory_type(p.type.dtype))
            self.args.append(ArgSpec(ptr, "tensor", element, p.name))
            dims = []
            for axis in range(p.type.rank):
                dim = self.namer.fresh(f"{p.name}_shape{axis}")
                self.args.append(ArgSpec(dim, "dim", "i32", p.name, axis))
                dims.append(dim)
            self.tensors[id(v)] = TensorInfo(p.name, p.type.dtype, ptr, tuple(dims), words)
        for symbol in sorted({op.symbol for op in kernel.walk() if isinstance(op, ops.SizeOp)}):
            name = self.namer.fresh(symbol)
            self.args.append(ArgSpec(name, "size", "i32", symbol))
            self.sizes[symbol] = name
        for p in kernel.params:
            if isinstance(p.type, ScalarType):
                sig = "i32" if p.type.dtype.is_int else "fp32"
                self.args.append(ArgSpec(p.name, "scalar", sig, p.name))
        self.grid_extents = []
        for axis in range(1, len(kernel.grid)):
            name = self.namer.fresh(f"grid{axis}")
            self.args.append(ArgSpec(name, "grid", "i32", None, axis))
            self.grid_extents.append(name)

    def _prologue(self) -> None:
        kernel = self.kernel
        rank = len(kernel.grid)
        if rank <= 1:
            self.block_ids = [self.assign("bid0", "tl.program_id(0)")]
        else:
            rest = self.assign("pid", "tl.program_id(0)")
            ids = []
            for axis in range(rank - 1, 0, -1):
                extent = self.grid_extents[axis - 1]
                ids.append(self.assign(f"bid{axis}", f"{rest} % {extent}"))
                if axis > 1:
                    rest = self.assign("pid", f"{rest} // {extent}")
            ids.append(self.assign("bid0", f"{rest} // {self.grid_extents[0]}"))
            self.block_ids = list(reversed(ids))
        for name in self.sizes.values():
            self.line(f"{name} = tl.cast({name}, tl.int32)")
        for p, v in zip(kernel.params, kernel.body.args):
            if isinstance(p.type, TensorType):
                info = self.tensors[id(v)]
                info.element_ptr = info.ptr
                memory = numerics.memory_type(p.type.dtype)
                if info.words and memory is not None:
                    info.element_ptr = self.assign(
                        f"{p.name}_elements", f"{info.ptr}.to(tl.pointer_type({memory}), "
                        "bitcast=True)")
                continue
            dtype = p.type.dtype
            if dtype.is_int:
                expr = f"tl.cast({p.name}, tl.int32)"
                if numerics.int_carrier(dtype) == "tl.uint32":
                    expr += ".to(tl.uint32, bitcast=True)"
                self.line(f"{p.name} = {expr}")
                self.bind(v, "int", p.name)
            else:
                self.line(f"{p.name} = tl.cast({p.name}, tl.float32)")
                self.bind(v, "val", p.name)
                if self.primary(v) == "code":
                    self.bind(v, "code", self.assign(
                        f"{p.name}_code", numerics.encode(dtype, p.name, saturate=True)))

    def _program(self) -> TritonProgram:
        num_warps = min(8, max(1, 1 << max(0, (self.max_tile // 256 - 1).bit_length())))
        source = module_source(self.kernel_name, self.kernel.name, [a.name for a in self.args],
                               self.lines, num_warps)
        word_params = frozenset(info.param for info in self.tensors.values() if info.words)
        return TritonProgram(self.kernel_name, source, tuple(self.args), self.tables,
                             len(self.kernel.grid), num_warps, word_params)


def _word_params(kernel: Kernel) -> set[str]:
    names = {id(v): p.name for p, v in zip(kernel.params, kernel.body.args)}
    out = {p.name for p in kernel.params
           if isinstance(p.type, TensorType) and numerics.memory_type(p.type.dtype) is None}
    out |= {names[id(op.tensor)] for op in kernel.walk() if isinstance(op, WORD_OPS)}
    return out


def generate(kernel: Kernel) -> TritonProgram:
    """The Triton module of ``kernel`` (already lowered by the backend's passes)."""
    return KernelCodegen(kernel).generate()
