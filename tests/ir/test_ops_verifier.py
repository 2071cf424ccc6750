"""Type inference of the builder and the errors of op verifiers and the kernel verifier."""

import pytest

import bittile
from bittile.errors import IRError, Loc, register_source
from bittile.ir import ops
from bittile.ir.builder import KernelBuilder
from bittile.ir.core import OP_REGISTRY, Block, Kernel, Param, Value
from bittile.ir.dtypes import f16, f32, i32, u1, u4, u8, u32
from bittile.ir.layout import local, spatial
from bittile.ir.symbolic import Sym, cdiv
from bittile.ir.types import ScalarType, TensorType, TileType
from bittile.ir.verifier import verify_kernel


def _kb(*tensors):
    kb = KernelBuilder("k")
    values = [kb.tensor(name, dt, shape) for name, dt, shape in tensors]
    kb.grid(cdiv("N", 16))
    return kb, kb.builder, values


def test_registry_has_one_class_per_op_name():
    names = list(OP_REGISTRY)
    assert len(names) == len(set(names))
    for expected in ["tile.load", "tile.store", "arith.add", "math.exp", "cmp.lt", "tile.dot",
                     "scf.for", "scf.if", "scf.yield", "tile.view", "tile.reduce_sum"]:
        assert expected in OP_REGISTRY
    assert all(cls.name == name for name, cls in OP_REGISTRY.items())


def test_type_inference():
    kb, b, (x, y) = _kb(("x", f16, ["N", "K"]), ("y", f32, ["N"]))
    t = b.load(x, [0, 0], [16, 32])
    assert t.type == TileType(f16, (16, 32))
    c = b.cast(t, f32)
    assert c.type == TileType(f32, (16, 32))
    s = b.sum(c, axis=1)
    assert s.type == TileType(f32, (16,))
    assert b.sum(s, axis=0).type == ScalarType(f32)
    assert b.reduce("max", c, axis=0, keepdims=True).type == TileType(f32, (1, 32))
    assert b.compare("lt", c, 0.0).type == TileType(u1, (16, 32))
    assert b.permute(c, [1, 0]).type == TileType(f32, (32, 16))
    assert b.mul(b.block_id(0), 16).type == ScalarType(i32)
    d = b.dot(c, b.permute(c, [1, 0]), b.zeros([16, 16], f32))
    assert d.type == TileType(f32, (16, 16))


def test_view_infers_the_last_dimension():
    kb, b, (w,) = _kb(("w", u4, ["N", "K"]))
    t = b.load(w, [0, 0], [4, 8])
    assert b.view(t, u32).type == TileType(u32, (4, 1))
    assert b.view(t, u8).type == TileType(u8, (4, 4))


def test_layout_propagates_through_elementwise_ops():
    kb, b, (x,) = _kb(("x", f32, ["N"]))
    layout = spatial(4).local(4)
    t = b.load(x, [0], [16], layout=layout)
    assert b.add(t, 1.0).type.layout == layout
    assert b.add(t, b.load(x, [0], [16])).type.layout is None


@pytest.mark.parametrize(
    "build, fragment",
    [
        (lambda b, x, w: b.add(b.load(x, [0, 0], [4, 4]), b.load(x, [0, 0], [4, 8])),
         "operand shapes differ"),
        (lambda b, x, w: b.add(b.load(x, [0, 0], [4, 4]), b.load(w, [0, 0], [4, 4])),
         "different dtypes"),
        (lambda b, x, w: b.unary("exp", b.cast(b.load(w, [0, 0], [4, 4]), i32)),
         "needs a float operand"),
        (lambda b, x, w: b.unary("neg", b.cast(b.load(x, [0, 0], [4, 4]), bittile.f8e4m3)),
         "storage format"),
        (lambda b, x, w: b.load(x, [0], [4, 4]), "needs 2 offsets"),
        (lambda b, x, w: b.load(x, [0, 0], [4]), "has rank 1"),
        (lambda b, x, w: b.store(x, [0, 0], b.load(w, [0, 0], [4, 4])), "cast the tile"),
        (lambda b, x, w: b.view(b.load(w, [0, 0], [4, 4]), u32, [4, 2]), "bits"),
        (lambda b, x, w: b.view(b.load(w, [0, 0], [4, 3]), u8), "multiple of 8"),
        (lambda b, x, w: b.dot(b.load(x, [0, 0], [4, 8]), b.load(x, [0, 0], [4, 8]),
                               b.zeros([4, 8], f32)), "do not chain"),
        (lambda b, x, w: b.dot(b.load(x, [0, 0], [4, 8]), b.load(w, [0, 0], [8, 4]),
                               b.zeros([4, 4], f32)), "cast both operands"),
        (lambda b, x, w: b.broadcast(b.load(x, [0, 0], [4, 2]), [4, 8]), "cannot broadcast"),
        (lambda b, x, w: b.reshape(b.load(x, [0, 0], [4, 2]), [3, 3]), "cannot reshape"),
        (lambda b, x, w: b.constant(300, u8), "outside the range"),
        (lambda b, x, w: b.constant(0.1, f16), "not exactly representable"),
        (lambda b, x, w: b.reduce("prod", b.load(x, [0, 0], [4, 2]), 0), "unknown reduction"),
        (lambda b, x, w: b.binary("pow2", 1, 2), "unknown binary op"),
        (lambda b, x, w: b.where(b.load(x, [0, 0], [2, 2]), 1.0, 2.0), "must be u1"),
        (lambda b, x, w: b.load(x, [0, 0], [4, 4], layout=spatial(2, 2)), "has shape"),
    ],
)
def test_builder_rejects_misuse(build, fragment):
    kb, b, (x, w) = _kb(("x", f16, ["N", "K"]), ("w", u4, ["N", "K"]))
    with pytest.raises(IRError) as info:
        build(b, x, w)
    assert fragment in str(info.value)


def test_errors_carry_the_builder_location():
    source = "let a = 1\nlet t = load(x, [0, 0], [4, 4]) + load(x, [0, 0], [4, 8])\n"
    register_source("demo.tile", source)
    kb, b, (x,) = _kb(("x", f16, ["N", "K"]))
    with b.at(Loc("demo.tile", 2, 9, 2, 60)), pytest.raises(IRError) as info:
        b.add(b.load(x, [0, 0], [4, 4]), b.load(x, [0, 0], [4, 8]))
    text = str(info.value)
    assert text.startswith("demo.tile:2:9: IR error:")
    assert "let t = load" in text and "^^^^" in text


def _kernel(body_ops, args=(), grid=None):
    grid = grid or (Sym("N"),)
    params = tuple(Param(f"p{i}", a.type) for i, a in enumerate(args))
    return Kernel("k", params, grid, Block(list(args), body_ops))


def test_verifier_rejects_use_before_definition():
    t = Value(TensorType(f32, (Sym("N"),)))
    late = ops.BlockIdOp.create(0)
    load = ops.LoadOp(tensor=t, offsets=(late.out,), shape=(4,), out=Value(TileType(f32, (4,))))
    with pytest.raises(IRError, match="outside the scope"):
        verify_kernel(_kernel([load, late], [t]))


def test_verifier_rejects_values_escaping_a_loop():
    kb, b, (x,) = _kb(("x", f32, ["N"]))
    with b.for_range(0, 4) as loop:
        inner = b.mul(loop.iv, 2)
    b.store(x, [inner], b.zeros([4], f32))
    with pytest.raises(IRError, match="outside the scope"):
        kb.finish()


def test_verifier_checks_grid_axes_and_sizes():
    kb, b, (x,) = _kb(("x", f32, ["N"]))
    b.block_id(1)
    with pytest.raises(IRError, match="axis 1 does not exist"):
        kb.finish()
    kb, b, (x,) = _kb(("x", f32, ["N"]))
    b.size("M")
    with pytest.raises(IRError, match="not a size"):
        kb.finish()
    kb = KernelBuilder("k")
    kb.tensor("x", f32, ["N"])
    kb.grid(cdiv("M", 4))
    with pytest.raises(IRError, match="neither a tensor size"):
        kb.finish()


def test_loop_carried_type_must_not_change():
    kb, b, (x,) = _kb(("x", f32, ["N"]))
    with pytest.raises(IRError, match="keeps its type"):
        with b.for_range(0, 4, 1, [b.zeros([4], f32)]) as loop:
            loop.yield_(b.zeros([8], f32))


def test_if_branches_yield_matching_types():
    kb, b, (x,) = _kb(("x", f32, ["N"]))
    cond = b.compare("lt", b.block_id(0), 3)
    with pytest.raises(IRError, match="else branch"):
        with b.if_(cond) as br:
            with br.then_():
                br.yield_(b.zeros([4], f32))
            with br.else_():
                br.yield_(b.zeros([4], f16))


def test_yield_in_kernel_body_is_rejected():
    kb, b, (x,) = _kb(("x", f32, ["N"]))
    b.yield_()
    with pytest.raises(IRError, match="last op of a loop body"):
        kb.finish()


def test_tile_type_checks_its_layout_shape():
    with pytest.raises(IRError, match="has shape"):
        TileType(f32, (4, 4), local(2, 2))
    with pytest.raises(IRError, match="positive"):
        TileType(f32, (0, 4))
