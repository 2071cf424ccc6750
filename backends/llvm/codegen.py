"""Tile IR to LLVM IR: one function per kernel that runs a range of grid blocks.

The module holds

- ``i32 @bittile_block(ptr tensors, ptr ints, i64 bid0, ...)``: one program instance;
- ``i32 @bittile_worker(ptr tensors, ptr ints, i64 begin, i64 end)``: the blocks with linear ids
  in ``[begin, end)`` (row-major over the grid, the last axis fastest, as the interpreter runs
  them); a worker thread makes one call;
- ``i64 @bittile_stack_bytes(ptr ints)``: an estimate of the stack one worker call needs;
- ``void @bittile_job(ptr tensors, i64 begin, ptr ints, ptr status, ptr done, 4 x ptr, i64 end,
  i64)``: ``bittile_worker`` in the argument order of the persistent worker threads
  (``lut.py``'s ``_DRIVER_ARGS``); it stores the worker's status in ``*status`` and then adds
  one to ``*done`` (a release), by which the launching thread learns that the range is done.

``tensors`` holds the data pointer of each tensor parameter, in parameter order. ``ints`` holds
i64s: the grid's extents, then every dimension of every tensor parameter (parameter order), then
the sizes (``Kernel.size_symbols()`` order), then each scalar parameter (an integer's value, a
float's code). The functions return 0, or an error code from :data:`ERRORS`.

Each op class has one emitter, registered in :data:`EMITTERS` (``emit_*.py``); an emitter gets
the op and the :class:`KernelCodegen` and binds the op's results.
"""

from __future__ import annotations

from collections.abc import Callable

from llvmlite import ir

from bittile.backends.llvm.tiles import (
    I32,
    I64,
    PTR,
    BufferTile,
    LazyTile,
    Loops,
    ScalarSplat,
    Tile,
    const,
    scalar_type,
    storage_type,
)
from bittile.errors import InternalError
from bittile.ir.core import Block, Kernel, Op, Value
from bittile.ir.dtypes import DType
from bittile.ir.types import ScalarType, TensorType, TileType

__all__ = ["KernelCodegen", "EMITTERS", "emits", "ERRORS", "generate"]

Emitter = Callable[[Op, "KernelCodegen"], None]
EMITTERS: dict[type, Emitter] = {}

#: status codes the native functions return
ERRORS = {1: "a loop's step is 0"}


def emits(*classes: type):
    def register(fn: Emitter) -> Emitter:
        for cls in classes:
            if cls in EMITTERS:
                raise InternalError(f"{cls.__name__} has two LLVM emitters")
            EMITTERS[cls] = fn
        return fn

    return register


class KernelCodegen:
    """The state of generating one kernel's module."""

    def __init__(self, kernel: Kernel, lut_dots: dict | None = None, vector_bits: int = 256):
        self.kernel = kernel
        #: the widest vectors the target has (explicit vector code is sized by it)
        self.vector_bits = vector_bits
        #: id(dequant_dot op) -> (LutDot, LutSpec): dots lowered to table lookups
        self.lut_dots = lut_dots or {}
        #: ids of the loads that only those dots read (not emitted: the weights are repacked)
        self.lut_loads = {id(plan.load) for plan, _ in self.lut_dots.values()}
        self.lut_functions: dict = {}
        self._zero_globals: dict[int, ir.GlobalVariable] = {}
        self.scratch_regions: list = []
        self.frame_bytes = 0  # the buffers of the block function (see bittile_stack_bytes)
        self.scalar_region_cache: dict = {}
        self.dims_slot: dict[int, int] = {}  # id(tensor param) -> index of its dims in ints
        self.module = ir.Module(name=kernel.name)
        self.env: dict[int, object] = {}  # id(Value) -> ir.Value (scalar) or Tile
        self.uses = _use_info(kernel)
        self.tensor_index: dict[int, int] = {}
        self.tensor_dims: dict[int, list[ir.Value]] = {}
        self.sizes: dict[str, ir.Value] = {}

    # ---- values ----------------------------------------------------------------------------
    def scalar(self, v: Value) -> ir.Value:
        return self.env[id(v)]

    def index(self, v: Value) -> ir.Value:
        """Integer scalar ``v`` as an i64 (offsets, loop bounds), extended by its signedness."""
        value = self.env[id(v)]
        if value.type.width >= 64:
            return value
        return self.b.sext(value, I64) if v.type.dtype.is_signed else self.b.zext(value, I64)

    def tile(self, v: Value, shape=None) -> Tile:
        """``v`` as a tile (a scalar splats to ``shape``)."""
        got = self.env[id(v)]
        if isinstance(got, Tile):
            return got
        return ScalarSplat(v.type.dtype, shape or (), got)

    def bind(self, v: Value, value) -> None:
        self.env[id(v)] = value

    def bind_lazy(self, v: Value, tile: LazyTile) -> None:
        """Bind a lazily computed tile, materializing it if laziness would recompute it."""
        if self.uses.must_materialize(v):
            tile = self.materialize(tile)
        self.bind(v, tile)

    # ---- buffers and loops -----------------------------------------------------------------
    def alloca(self, ty: ir.Type, count: int, name: str = "buf") -> ir.Value:
        """A stack array in the function's entry block (so loops reuse it)."""
        self.frame_bytes += max(count, 1) * _type_bytes(ty) + 63
        with self.b.goto_block(self.entry):
            self.b.position_at_start(self.entry)
            ptr = self.b.alloca(ty, size=const(max(count, 1)), name=name)
            ptr.align = 64
        return ptr

    def new_buffer(self, dtype: DType, shape) -> BufferTile:
        tile = BufferTile(dtype, shape, None)
        tile.ptr = self.alloca(storage_type(dtype), tile.numel, name="tile")
        return tile

    def materialize(self, tile: Tile, into: BufferTile | None = None) -> BufferTile:
        """``tile`` in a buffer (``into``, or a new one)."""
        if into is None and isinstance(tile, BufferTile):
            return tile
        out = into or self.new_buffer(tile.dtype, tile.shape)
        b = self.b

        def body(idx):
            from bittile.backends.llvm.tiles import linear_index

            out.store_linear(b, linear_index(b, idx, tile.shape), tile.element(b, idx))

        self.loops.nest(b, tile.shape, body)
        return out

    def zero_bytes(self, nbytes: int) -> ir.GlobalVariable:
        """A constant global of ``nbytes`` zero bytes (one per size)."""
        gv = self._zero_globals.get(nbytes)
        if gv is None:
            ty = ir.ArrayType(ir.IntType(8), nbytes)
            gv = ir.GlobalVariable(self.module, ty, name=f"bittile_zeros{nbytes}")
            gv.global_constant = True
            gv.linkage = "internal"
            gv.initializer = ir.Constant(ty, None)
            gv.align = 64
            self._zero_globals[nbytes] = gv
        return gv

    def copy_buffer(self, dst: BufferTile, src: BufferTile) -> None:
        nbytes = dst.numel * storage_type(dst.dtype).width // 8
        memmove = self.module.declare_intrinsic("llvm.memmove", [PTR, PTR, I64])
        self.b.call(memmove, [dst.ptr, src.ptr, const(nbytes), ir.Constant(ir.IntType(1), 0)])

    # ---- generation ------------------------------------------------------------------------
    def generate(self) -> ir.Module:
        self._block_function()
        self._worker_function()
        self._job_function()
        self._stack_function()
        return self.module

    def _block_function(self) -> None:
        k = self.kernel
        grid_args = [I64] * len(k.grid)
        fnty = ir.FunctionType(I32, [PTR, PTR, PTR, *grid_args])
        fn = ir.Function(self.module, fnty, name="bittile_block")
        fn.linkage = "internal"
        vector_attributes(fn, self.vector_bits)
        self.fn = fn
        self.loops = Loops(fn)
        self.entry = fn.append_basic_block("entry")
        start = fn.append_basic_block("start")
        self.b = ir.IRBuilder(self.entry)
        self.b.branch(start)
        self.b.position_at_end(start)
        self.status_fail = None
        tensors_ptr, ints_ptr, self.scratch, *bids = fn.args
        self.block_ids = bids
        self._ints_ptr = ints_ptr
        self._bind_params(tensors_ptr, ints_ptr)
        self.emit_block(k.body)
        self.b.ret(const(0, I32))

    def _load_int(self, ints_ptr, index: int, b: ir.IRBuilder | None = None) -> ir.Value:
        b = b or self.b
        return b.load(b.gep(ints_ptr, [const(index)], source_etype=I64), typ=I64)

    def _bind_params(self, tensors_ptr, ints_ptr) -> None:
        b, k = self.b, self.kernel
        slot = len(k.grid)
        tensor_params = [(p, v) for p, v in zip(k.params, k.body.args)
                         if isinstance(p.type, TensorType)]
        for i, (p, v) in enumerate(tensor_params):
            ptr = b.load(b.gep(tensors_ptr, [const(i)], source_etype=PTR), typ=PTR)
            self.env[id(v)] = ptr
            self.tensor_index[id(v)] = i
            self.dims_slot[id(v)] = slot
            dims = []
            for _ in p.type.shape:
                dims.append(self._load_int(ints_ptr, slot))
                slot += 1
            self.tensor_dims[id(v)] = dims
        for name in k.size_symbols():
            self.sizes[name] = self._load_int(ints_ptr, slot)
            slot += 1
        for p, v in zip(k.params, k.body.args):
            if isinstance(p.type, ScalarType):
                raw = self._load_int(ints_ptr, slot)
                slot += 1
                self.env[id(v)] = b.trunc(raw, scalar_type(p.type.dtype))

    def _worker_function(self) -> None:
        k = self.kernel
        fnty = ir.FunctionType(I32, [PTR, PTR, I64, I64])
        fn = ir.Function(self.module, fnty, name="bittile_worker")
        vector_attributes(fn, self.vector_bits)
        tensors_ptr, ints_ptr, begin, end = fn.args
        entry = fn.append_basic_block("entry")
        head = fn.append_basic_block("head")
        body = fn.append_basic_block("body")
        fail = fn.append_basic_block("fail")
        done = fn.append_basic_block("done")
        b = ir.IRBuilder(entry)
        extents = [b.load(b.gep(ints_ptr, [const(i)], source_etype=I64), typ=I64)
                   for i in range(len(k.grid))]
        scratch = self._worker_scratch(b, ints_ptr)
        pre = b.block
        b.branch(head)
        b.position_at_end(head)
        lin = b.phi(I64, name="lin")
        lin.add_incoming(begin, pre)
        b.cbranch(b.icmp_signed("<", lin, end), body, done)
        b.position_at_end(body)
        bids, rest = [], lin
        for extent in reversed(extents):
            bids.append(b.urem(rest, extent))
            rest = b.udiv(rest, extent)
        status = b.call(self.fn, [tensors_ptr, ints_ptr, scratch, *reversed(bids)])
        nxt = b.add(lin, const(1))
        lin.add_incoming(nxt, body)
        b.cbranch(b.icmp_unsigned("!=", status, const(0, I32)), fail, head)
        b.position_at_end(fail)
        b.ret(status)
        b.position_at_end(done)
        b.ret(const(0, I32))

    def _stack_function(self) -> None:
        """``i64 @bittile_stack_bytes(ptr ints)``: an estimate of the stack a worker call takes:
        the block function's buffers, the per-thread scratch for these sizes, and a margin for
        the rest (spills, the lookup kernels' frames)."""
        fn = ir.Function(self.module, ir.FunctionType(I64, [PTR]), name="bittile_stack_bytes")
        (ints_ptr,) = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        total = const(self.frame_bytes + STACK_MARGIN)
        for count_fn, nbytes in self.scratch_regions:
            total = b.add(total, b.mul(count_fn(b, ints_ptr), const(nbytes + 8)))
        b.ret(total)

    def _job_function(self) -> None:
        fnty = ir.FunctionType(ir.VoidType(), [PTR, I64, PTR, PTR, PTR, PTR, PTR, PTR, PTR, I64,
                                               I64])
        fn = ir.Function(self.module, fnty, name="bittile_job")
        tensors_ptr, begin, ints_ptr, status_ptr, done_ptr = fn.args[:5]
        end = fn.args[9]
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        worker = self.module.globals["bittile_worker"]
        status = b.call(worker, [tensors_ptr, ints_ptr, begin, end])
        b.store(b.sext(status, I64), status_ptr)
        b.atomic_rmw("add", done_ptr, const(1), "release")
        b.ret_void()

    # ---- per-thread scratch -----------------------------------------------------------------
    def scratch_region(self, b: ir.IRBuilder, ints_ptr, count_fn, slot_bytes: int):
        """Reserve, in the scratch memory each worker thread keeps for its whole range of
        blocks, ``count_fn(b, ints_ptr)`` slots of ``slot_bytes`` (64-byte aligned) plus one i64
        key per slot initialized to -1. Returns a function giving (slots, keys) pointers in the
        block function."""
        index = len(self.scratch_regions)
        self.scratch_regions.append((count_fn, -(-slot_bytes // 64) * 64))

        def pointers(bb: ir.IRBuilder):
            return self._region_pointers(bb, self.scratch, self._ints_ptr, index)

        return pointers

    def _region_pointers(self, b: ir.IRBuilder, base, ints_ptr, index: int):
        offset = const(0)
        for i, (count_fn, nbytes) in enumerate(self.scratch_regions):
            count = count_fn(b, ints_ptr)
            slots = b.gep(base, [offset], source_etype=ir.IntType(8))
            keys = b.gep(slots, [b.mul(count, const(nbytes))], source_etype=ir.IntType(8))
            keys = b.bitcast(keys, I64.as_pointer())
            if i == index:
                return slots, keys, count
            offset = b.add(offset, b.mul(count, const(nbytes + 8)))
        raise InternalError("no such scratch region")

    def _worker_scratch(self, b: ir.IRBuilder, ints_ptr):
        if not self.scratch_regions:
            return ir.Constant(PTR, None)
        total = const(0)
        for count_fn, nbytes in self.scratch_regions:
            total = b.add(total, b.mul(count_fn(b, ints_ptr), const(nbytes + 8)))
        base = b.alloca(ir.IntType(8), size=total, name="scratch")
        base.align = 64
        for i in range(len(self.scratch_regions)):
            _, keys, count = self._region_pointers(b, base, ints_ptr, i)
            fn = b.function

            def clear(j, keys=keys):
                b.store(const(-1), b.gep(keys, [j], source_etype=I64))

            Loops(fn).range(b, const(0), count, clear, name="keys")
        return base

    def fail(self, code: int) -> None:
        """Return error ``code`` from the block function (the builder continues in a fresh,
        unreachable block)."""
        self.b.ret(const(code, I32))
        self.b.position_at_end(self.fn.append_basic_block("after_fail"))

    def emit_block(self, block: Block) -> None:
        from bittile.ir.ops import YieldOp

        for op in block.ops:
            if isinstance(op, YieldOp):
                continue
            emitter = EMITTERS.get(type(op))
            if emitter is None:
                raise InternalError(f"the llvm backend has no emitter for {op.name}")
            emitter(op, self)


def vector_attributes(fn: ir.Function, bits: int) -> None:
    """Let LLVM use vectors as wide as the target has. Functions that are inlined into each
    other must agree: a 512-bit function inlined into one limited to 256 bits gets its
    vectors split in two."""
    from bittile.backends.llvm.lut_emit import _vector_attrs

    _vector_attrs(fn, bits)


class _UseInfo:
    """How each value is used: how many times, and whether from inside a nested region (a
    lazily computed tile used there would be recomputed every iteration)."""

    def __init__(self):
        self.count: dict[int, int] = {}
        self.nested: set[int] = set()

    def must_materialize(self, v: Value) -> bool:
        return self.count.get(id(v), 0) > 1 or id(v) in self.nested


def _use_info(kernel: Kernel) -> _UseInfo:
    info = _UseInfo()
    defined_in: dict[int, int] = {}

    def walk(block: Block, depth: int) -> None:
        for a in block.args:
            defined_in[id(a)] = depth
        for op in block.ops:
            for v in op.operands:
                if isinstance(v.type, TileType):
                    info.count[id(v)] = info.count.get(id(v), 0) + 1
                    if defined_in.get(id(v), depth) < depth:
                        info.nested.add(id(v))
            for r in op.results:
                defined_in[id(r)] = depth
            if type(op).__name__ in ("ForOp", "IfOp"):
                for region in op.regions:
                    walk(region, depth + 1)

    walk(kernel.body, 0)
    return info


#: bytes added to the sum of a kernel's buffers in ``bittile_stack_bytes``
STACK_MARGIN = 256 << 10


def _type_bytes(ty: ir.Type) -> int:
    if isinstance(ty, ir.IntType):
        return -(-ty.width // 8)
    if isinstance(ty, ir.ArrayType):
        return ty.count * _type_bytes(ty.element)
    if isinstance(ty, ir.VectorType):
        return ty.count * _type_bytes(ty.element)
    return {"float": 4, "double": 8, "half": 2}.get(str(ty), 8)


def generate(kernel: Kernel, lut_dots: dict | None = None,
             vector_bits: int = 256) -> ir.Module:
    """The LLVM module of ``kernel`` (see the module docstring); ``lut_dots`` maps the
    dequantizing dots that take the table-lookup lowering to their plan and spec."""
    from bittile.backends.llvm import (  # noqa: F401  (they register the emitters)
        emit_compute,
        emit_control,
        emit_memory,
        emit_reduce,
        emit_view,
        emit_words,
    )

    return KernelCodegen(kernel, lut_dots, vector_bits).generate()
