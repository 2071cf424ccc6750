"""Launching Triton kernels: argument checking (the same ``LaunchError``s as the other
backends), torch tensors and packed tensors in and out, stores of sub-byte elements from many
programs into shared words, loops and grids, views and reshapes that gather, and choosing the
backend from a kernel call."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch

import bittile
from bittile import LaunchError, PackedTensor
from bittile.backends.triton import backend
from bittile.dsl.module import load_module
from bittile.ir import dtypes as D
from bittile.ir.builder import KernelBuilder
from bittile.ir.layout import local, spatial
from bittile.testing.checkers import assert_backends_agree

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "examples"


def vector_add():
    return load_module(str(EXAMPLES / "vector_add.tile")).kernels["vector_add"].specialize()


def _copy_kernel(dtype, block=1):
    """out[i] = x[i], ``block`` elements per program (neighbouring programs share words of
    a sub-byte tensor)."""
    kb = KernelBuilder("copy")
    x = kb.tensor("x", dtype, ["N"])
    out = kb.tensor("out", dtype, ["N"])
    from bittile.ir.symbolic import cdiv, sym

    kb.grid(cdiv(sym("N"), block))
    b = kb.builder
    i = b.mul(b.block_id(0), b.constant(block, D.i32))
    b.store(out, [i], b.load(x, [i], [block]))
    return kb.finish()


# ---- argument checking -------------------------------------------------------------------------
def test_launch_errors_are_launch_errors():
    kernel = vector_add()
    x = np.zeros(8, np.float32)
    cases = [
        ((x.astype(np.float64), x, x), "must hold f32"),
        ((x, x, np.zeros(9, np.float32)), "size N"),
        ((x, x), "missing"),
        ((x, x, torch.zeros(8, dtype=torch.float16)), "must hold f32"),
        ((x, x, torch.zeros(16)[::2]), "contiguous"),
        ((x, x, PackedTensor.from_codes(np.zeros(8, np.uint8), bittile.u4)), "packed u4"),
        ((x, x, [0.0] * 8), "must be a tensor"),
    ]
    for args, message in cases:
        with pytest.raises(LaunchError, match=message):
            backend.run(kernel, *args)
    with pytest.raises(LaunchError, match="no parameter"):
        backend.run(kernel, x, x, x, w=x)
    read_only = np.zeros(8, np.float32)
    read_only.setflags(write=False)
    with pytest.raises(LaunchError, match="read-only"):
        backend.run(kernel, x, x, read_only)
    with pytest.raises(LaunchError, match="C-contiguous"):
        backend.run(kernel, x, x, np.zeros(16, np.float32)[::2])


def test_launch_errors_agree_with_the_interpreter():
    kb = KernelBuilder("scale")
    x = kb.tensor("x", D.i8, ["N"])
    s = kb.scalar("s", D.i8)
    kb.grid(1)
    b = kb.builder
    b.store(x, [0], b.mul(b.load(x, [0], [4]), s))
    kernel = kb.finish()
    data = np.arange(4, dtype=np.int8)
    for scalar in (3, 300, 2.5):  # fine, out of range, not an integer
        assert_backends_agree(kernel, backends=("interp", "triton"), args={"x": data, "s": scalar})


def test_read_only_strided_inputs_are_copied():
    out = np.zeros(64, np.float32)
    backend.run(vector_add(), np.arange(128, dtype=np.float32)[::2], np.ones(64, np.float32), out)
    np.testing.assert_array_equal(out, np.arange(0, 128, 2, dtype=np.float32) + 1)


def test_zero_loop_step_is_a_launch_error():
    kb = KernelBuilder("zero_step")
    out = kb.tensor("out", D.i32, ["N"])
    step = kb.scalar("step", D.i32)
    kb.grid(1)
    b = kb.builder
    with b.for_range(10, -1, step, [b.constant(0, D.i32)]) as loop:
        loop.yield_(b.add(b.mul(loop.carried[0], 10), loop.iv))
    b.store(out, [0], b.broadcast(loop.results[0], [1]))
    kernel = kb.finish()
    data = np.zeros(1, np.int32)
    for value in (-3, -1, 4, 11):
        assert_backends_agree(kernel, backends=("interp", "triton"),
                              args={"out": data, "step": value})
    backend.run(kernel, data, -4)
    assert data[0] == 1062  # 10, 6, 2
    with pytest.raises(LaunchError, match="step is 0"):
        backend.run(kernel, data, 0)


# ---- tensors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int8,
                                   torch.uint8, torch.int16, torch.int32])
def test_torch_tensors_are_read_and_written_in_place(dtype):
    name = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16",
            torch.int8: "i8", torch.uint8: "u8", torch.int16: "i16", torch.int32: "i32"}[dtype]
    kernel = _copy_kernel(D.dtype_from_name(name), block=16)
    bits = torch.randint(-(2**15), 2**15, (37,), dtype=torch.int16)
    x = bits.view(torch.float16).to(dtype) if dtype.is_floating_point else bits.to(dtype)
    out = torch.zeros_like(x)
    backend.run(kernel, x, out)
    assert torch.equal(out.view(torch.uint8), x.view(torch.uint8))


@pytest.mark.parametrize("dtype", [D.u1, D.u3, D.i4, D.u5, D.f6e3m2, D.int_type(12, False),
                                   D.int_type(24, True)],
                         ids=str)
@pytest.mark.parametrize("block", [1, 3])
def test_subbyte_stores_from_many_programs_keep_their_neighbours(dtype, block):
    kernel = _copy_kernel(dtype, block)
    rng = np.random.default_rng(dtype.bits)
    for n in (1, 9, 70):
        codes = rng.integers(0, 1 << dtype.bits, n).astype(np.uint64)
        out = PackedTensor.from_codes(np.zeros(n, np.uint64), dtype)
        backend.run(kernel, PackedTensor.from_codes(codes, dtype), out)
        np.testing.assert_array_equal(out.codes(), codes)


def test_packed_buffers_keep_bits_past_the_tensor():
    """A buffer longer than the tensor, and one whose last byte is shared with nothing: the
    kernel writes the tensor's bits only."""
    kernel = _copy_kernel(D.u3, 4)
    codes = np.arange(7, dtype=np.uint64) % 8
    x = PackedTensor.from_codes(codes, D.u3)
    buffer = np.full(9, 0xFF, np.uint8)  # 7 * 3 bits = 3 bytes, 6 more bytes after
    out = PackedTensor(buffer, (7,), D.u3)
    backend.run(kernel, x, out)
    np.testing.assert_array_equal(out.codes(), codes)
    assert buffer[2] >> 5 == 0b111 and (buffer[3:] == 0xFF).all()
    torch_out = PackedTensor(torch.full((3,), 0xFF, dtype=torch.uint8), (7,), D.u3)
    backend.run(kernel, x, torch_out)
    np.testing.assert_array_equal(torch_out.codes(), codes)
    assert int(torch_out.data[2]) >> 5 == 0b111


def test_tensors_sharing_memory_see_each_others_stores():
    kernel = _copy_kernel(D.f32, 4)
    data = np.arange(8, dtype=np.float32)
    backend.run(kernel, data[:4], data[4:])
    np.testing.assert_array_equal(data, [0, 1, 2, 3, 0, 1, 2, 3])


# ---- views, reshapes, grids --------------------------------------------------------------------
def _view_kernel(src, dst, shape, src_layout=None, dst_layout=None):
    kb = KernelBuilder("view")
    x = kb.tensor("x", src, list(shape))
    out_shape = dst_layout.shape if dst_layout is not None else None
    kb.grid(1)
    b = kb.builder
    tile = b.load(x, [0] * len(shape), shape, src_layout)
    viewed = b.view(tile, dst, out_shape, dst_layout)
    out = kb.tensor("out", dst, list(viewed.type.shape))
    b.store(out, [0] * viewed.type.rank, viewed)
    return kb.finish()


@pytest.mark.parametrize(("src", "dst", "shape", "src_layout", "dst_layout"), [
    (D.u4, D.u32, (3, 8), None, None),  # packs along the last dimension
    (D.u16, D.u2, (5, 3), None, None),  # unpacks
    (D.f16, D.i16, (6, 5), None, None),  # same bits
    (D.u3, D.u32, (2, 32), None, None),  # 3 bits straddle words: a table
    (D.u4, D.u8, (4, 8), spatial(4, 2).local(1, 4), spatial(8).local(2)),
    (D.f32, D.u8, (4, 2), local(2, 2).spatial(2, 1), spatial(2).local(16)),
], ids=["pack", "unpack", "bits", "straddle", "layouts-1", "layouts-2"])
def test_views_match_the_interpreter(src, dst, shape, src_layout, dst_layout):
    kernel = _view_kernel(src, dst, shape, src_layout, dst_layout)
    assert_backends_agree(kernel, backends=("interp", "triton"))


def test_reshapes_between_unpadded_shapes_gather():
    kb = KernelBuilder("reshape")
    x = kb.tensor("x", D.i16, [6, 5])
    out = kb.tensor("out", D.i16, [3, 10])
    kb.grid(1)
    b = kb.builder
    tile = b.load(x, [0, 0], [6, 5])
    b.store(out, [0, 0], b.reshape(b.reshape(tile, [30]), [3, 10]))
    kernel = kb.finish()
    assert "tl.gather" in backend.source(kernel)
    data = np.arange(30, dtype=np.int16).reshape(6, 5)
    result = np.zeros((3, 10), np.int16)
    backend.run(kernel, data, result)
    np.testing.assert_array_equal(result, data.reshape(3, 10))


def test_three_dimensional_grids_run_in_row_major_order():
    kb = KernelBuilder("grid3")
    out = kb.tensor("out", D.i32, ["N"])
    kb.grid(2, 3, 4)
    b = kb.builder
    ids = [b.block_id(a) for a in range(3)]
    linear = b.add(b.mul(b.add(b.mul(ids[0], 3), ids[1]), 4), ids[2])
    b.store(out, [linear], b.broadcast(b.add(b.mul(ids[0], 100), b.add(b.mul(ids[1], 10),
                                                                       ids[2])), [1]))
    kernel = kb.finish()
    data = np.zeros(24, np.int32)
    backend.run(kernel, data)
    expected = [100 * i + 10 * j + k for i in range(2) for j in range(3) for k in range(4)]
    np.testing.assert_array_equal(data, expected)
    empty = KernelBuilder("empty")
    out = empty.tensor("out", D.i32, ["N"])
    empty.grid("N")
    empty.builder.store(out, [0], empty.builder.broadcast(7, [1]))
    backend.run(empty.finish(), np.zeros(0, np.int32))  # an empty grid runs nothing


def test_float_and_subbyte_scalar_parameters():
    kb = KernelBuilder("axpy")
    x = kb.tensor("x", D.f16, ["N"])
    out = kb.tensor("out", D.f4e2m1, ["N"])
    a = kb.scalar("a", D.f16)
    c = kb.scalar("c", D.f4e2m1)
    kb.grid(1)
    b = kb.builder
    tile = b.add(b.mul(b.load(x, [0], [8]), a), b.cast(c, D.f16))
    b.store(out, [0], b.cast(tile, D.f4e2m1))
    kernel = kb.finish()
    x_data = np.linspace(-3, 3, 8).astype(np.float16)
    for scalars in ((0.5, 1.5), (-2.0, -6.0)):
        assert_backends_agree(kernel, backends=("interp", "triton"),
                              args={"x": x_data, "out": np.zeros(8), "a": scalars[0],
                                    "c": scalars[1]})


# ---- choosing the backend ----------------------------------------------------------------------
def test_kernels_choose_the_triton_backend_by_name(monkeypatch):
    module = load_module(str(EXAMPLES / "vector_add.tile"))
    x = np.arange(300, dtype=np.float32)
    z = np.zeros_like(x)
    module.vector_add(x, x, z, backend="triton")
    np.testing.assert_array_equal(z, 2 * x)
    monkeypatch.setenv("BITTILE_BACKEND", "triton")
    z[:] = 0
    module.vector_add(x, x, z)
    np.testing.assert_array_equal(z, 2 * x)


def test_without_cuda_the_default_backend_stays_the_interpreter(monkeypatch):
    from bittile.backends import interp
    from bittile.backends.triton import device

    monkeypatch.setattr(device, "cuda_available", lambda: False)  # as on this CPU machine
    called = []
    monkeypatch.setattr(interp, "run", lambda *a, **k: called.append(True))
    monkeypatch.delenv("BITTILE_BACKEND", raising=False)
    x = np.zeros(4, np.float32)
    load_module(str(EXAMPLES / "vector_add.tile")).vector_add(x, x, x)
    assert called
