"""Launch-argument binding (runtime/launch.py), through the interpreter and ``bind_arguments``:
matching by position and name, tensor kinds (numpy, torch, PackedTensor), size solving and shape
checks, scalar conversion and range checks, and grid evaluation. Every error is asserted by type
and by a fragment of its message."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch

import bittile
from bittile import LaunchError, PackedTensor, PackingError
from bittile.backends import interp
from bittile.ir.builder import KernelBuilder
from bittile.ir.symbolic import Sym, cdiv
from bittile.runtime.launch import bind_arguments


def axpy_kernel(dt=bittile.f32, block=4):
    """out = alpha * x + y, one program per block of ``block``."""
    kb = KernelBuilder("axpy")
    x = kb.tensor("x", dt, ["N"])
    y = kb.tensor("y", dt, ["N"])
    out = kb.tensor("out", dt, ["N"])
    alpha = kb.scalar("alpha", dt)
    kb.grid(cdiv("N", block))
    b = kb.builder
    n0 = b.mul(b.block_id(0), block)
    r = b.add(b.mul(b.load(x, [n0], [block]), alpha), b.load(y, [n0], [block]))
    b.store(out, [n0], r)
    return kb.finish()


def vectors(n=10):
    x = np.arange(n, dtype=np.float32)
    y = np.full(n, 0.5, np.float32)
    return x, y, np.zeros(n, np.float32)


# ---- matching arguments to parameters ---------------------------------------------------------
def test_positional_keyword_and_mixed_binding():
    kernel = axpy_kernel()
    for call in (
        lambda x, y, o: interp.run(kernel, x, y, o, 2.0),
        lambda x, y, o: interp.run(kernel, alpha=2.0, out=o, y=y, x=x),
        lambda x, y, o: interp.run(kernel, x, y, alpha=2.0, out=o),
    ):
        x, y, o = vectors()
        call(x, y, o)
        np.testing.assert_array_equal(o, 2 * x + y)


def test_too_many_positional_arguments():
    x, y, o = vectors()
    with pytest.raises(LaunchError, match="takes 4 arguments, got 5 positional"):
        interp.run(axpy_kernel(), x, y, o, 1.0, 2.0)


def test_unknown_keyword_names_the_parameters():
    x, y, o = vectors()
    with pytest.raises(LaunchError, match="has no parameter 'beta'") as info:
        interp.run(axpy_kernel(), x, y, o, 1.0, beta=2.0)
    assert "x, y, out, alpha" in str(info.value)


def test_argument_given_twice():
    x, y, o = vectors()
    with pytest.raises(LaunchError, match="argument 'y' is given twice"):
        interp.run(axpy_kernel(), x, y, o, 1.0, y=y)


def test_missing_arguments_are_all_named():
    x, _, _ = vectors()
    with pytest.raises(LaunchError, match="missing argument\\(s\\) y, out, alpha"):
        interp.run(axpy_kernel(), x)


# ---- tensor arguments ---------------------------------------------------------------------------
def test_numpy_array_of_the_wrong_dtype():
    x, y, o = vectors()
    with pytest.raises(LaunchError, match="'y' must hold f32, got a numpy array of float64") as e:
        interp.run(axpy_kernel(), x, y.astype(np.float64), o, 1.0)
    assert "float32" in str(e.value)  # the hint names the numpy type to pass
    with pytest.raises(LaunchError, match="must hold f32, got a numpy array of int32"):
        interp.run(axpy_kernel(), x.astype(np.int32), y, o, 1.0)
    with pytest.raises(LaunchError, match="got a numpy array of >f4"):
        interp.run(axpy_kernel(), x.astype(">f4"), y, o, 1.0)


def test_numpy_array_for_a_type_numpy_lacks_hints_at_pack():
    kb = KernelBuilder("u4")
    kb.tensor("w", bittile.u4, ["N"])
    kernel = kb.finish()
    with pytest.raises(LaunchError, match="u4 has no numpy type") as info:
        interp.run(kernel, np.zeros(4, np.uint8))
    assert "bittile.pack" in str(info.value)


def test_packed_tensor_of_the_wrong_dtype():
    kb = KernelBuilder("u4")
    kb.tensor("w", bittile.u4, ["N"])
    kernel = kb.finish()
    with pytest.raises(LaunchError, match="'w' must hold u4, got a packed u8"):
        interp.run(kernel, bittile.pack(np.arange(4), bittile.u8))


@pytest.mark.parametrize("arg, fragment", [
    ([1.0, 2.0], "must be a tensor, got list"),
    (3, "must be a tensor, got int 3"),
    ("x", "must be a tensor, got str"),
    (None, "must be a tensor, got NoneType"),
])
def test_non_tensor_argument(arg, fragment):
    _, y, o = vectors()
    with pytest.raises(LaunchError, match=fragment):
        interp.run(axpy_kernel(), arg, y, o, 1.0)


def test_rank_mismatch():
    x, y, o = vectors()
    with pytest.raises(LaunchError, match="'x' must have rank 1"):
        interp.run(axpy_kernel(), x.reshape(2, 5), y, o, 1.0)


def test_size_mismatch_names_both_places():
    x, y, o = vectors()
    with pytest.raises(LaunchError) as info:
        interp.run(axpy_kernel(), x, y[:9].copy(), o, 1.0)
    msg = str(info.value)
    assert "size N is 10 from x.shape[0] but 9 from y.shape[0]" in msg
    assert np.all(o == 0)


def gemv_like_kernel(group=4):
    kb = KernelBuilder("grouped")
    w = kb.tensor("w", bittile.f32, ["N", "K"])
    s = kb.tensor("s", bittile.f32, ["N", Sym("K") // group])
    y = kb.tensor("y", bittile.f32, ["N"])
    b = kb.builder
    r = b.sum(b.load(w, [0, 0], [2, 8]), 1)
    b.add(r, b.sum(b.load(s, [0, 0], [2, 2]), 1))
    b.store(y, [0], r)
    return kb.finish()


def test_shape_expression_is_checked():
    w, y = np.ones((2, 8), np.float32), np.zeros(2, np.float32)
    interp.run(gemv_like_kernel(), w, np.ones((2, 2), np.float32), y)
    np.testing.assert_array_equal(y, [8, 8])
    with pytest.raises(LaunchError, match="'s' has 3 in dimension 1, but its declared size "
                                          "K // 4 is 2"):
        interp.run(gemv_like_kernel(), w, np.ones((2, 3), np.float32), y)
    # K = 10 is not a multiple of the group: K // 4 floors to 2
    w10 = np.ones((2, 10), np.float32)
    interp.run(gemv_like_kernel(), w10, np.ones((2, 2), np.float32), y)


def test_size_only_inside_expressions_cannot_be_inferred():
    kb = KernelBuilder("half")
    kb.tensor("x", bittile.f32, [Sym("M") // 2])
    kernel = kb.finish()
    with pytest.raises(LaunchError, match="size M of x cannot be inferred"):
        interp.run(kernel, np.zeros(4, np.float32))


def test_shape_expression_over_an_integer_scalar_parameter():
    """Size symbols may be integer scalar parameters (ir/symbolic.py: "Symbols are sizes bound
    at launch (from the shapes of tensor arguments) or integer scalar parameters"), so a scale
    tensor of shape [K // G] with G a scalar argument binds and is checked."""
    kb = KernelBuilder("grouped_param")
    kb.tensor("w", bittile.f32, ["K"])
    kb.scalar("G", bittile.i32)
    kb.tensor("s", bittile.f32, [Sym("K") // Sym("G")])
    kernel = kb.finish()
    bound = bind_arguments(kernel, (np.zeros(8, np.float32), 4, np.zeros(2, np.float32)), {})
    assert bound.sizes["K"] == 8
    with pytest.raises(LaunchError, match="declared size"):
        bind_arguments(kernel, (np.zeros(8, np.float32), 2, np.zeros(2, np.float32)), {})


def test_shape_expression_dividing_by_zero():
    kb = KernelBuilder("div0")
    kb.tensor("a", bittile.f32, ["M"])
    kb.tensor("b", bittile.f32, [Sym("M") // Sym("Z")])
    kb.tensor("z", bittile.f32, ["Z"])
    kernel = kb.finish()
    with pytest.raises(LaunchError, match="divides by zero"):
        interp.run(kernel, np.zeros(4, np.float32), np.zeros(1, np.float32),
                   np.zeros(0, np.float32))


def test_constant_dimension_is_checked():
    kb = KernelBuilder("fixed")
    kb.tensor("x", bittile.i32, [4, "N"])
    kernel = kb.finish()
    interp.run(kernel, np.zeros((4, 2), np.int32))
    with pytest.raises(LaunchError, match="'x' has 3 in dimension 0"):
        interp.run(kernel, np.zeros((3, 2), np.int32))


def test_written_read_only_array():
    x, y, o = vectors()
    o.setflags(write=False)
    with pytest.raises(LaunchError, match="'out' is written by the kernel but is read-only"):
        interp.run(axpy_kernel(), x, y, o, 1.0)
    assert np.all(o == 0)


def test_read_only_input_is_fine():
    x, y, o = vectors()
    x.setflags(write=False)
    y.setflags(write=False)
    interp.run(axpy_kernel(), x, y, o, 3.0)
    np.testing.assert_array_equal(o, 3 * x + y)


def test_read_only_output_error_leaves_every_argument_unwritten():
    """The launch fails, so no argument may be left half-updated: 'a' (written before the
    read-only 'c' is discovered) must keep its values."""
    kb = KernelBuilder("two")
    a = kb.tensor("a", bittile.i32, [2])
    c = kb.tensor("c", bittile.i32, [2])
    kb.builder.store(a, [0], kb.builder.full(5, [2]))
    kb.builder.store(c, [0], kb.builder.full(6, [2]))
    kernel = kb.finish()
    av, cv = np.zeros(2, np.int32), np.zeros(2, np.int32)
    cv.setflags(write=False)
    with pytest.raises(LaunchError, match="read-only"):
        interp.run(kernel, av, cv)
    assert av.tolist() == [0, 0]


def test_negative_stride_output_is_written_in_logical_order():
    kb = KernelBuilder("rev")
    y = kb.tensor("y", bittile.i32, [4])
    kb.builder.store(y, [0], kb.builder.arange(4))
    base = np.zeros(4, np.int32)
    interp.run(kb.finish(), base[::-1])
    assert base.tolist() == [3, 2, 1, 0]


def test_one_array_bound_to_two_written_parameters_keeps_both_stores():
    """The same array passed for ``a`` and ``c``; the kernel stores a[0:2] and c[2:4]. Both
    stores must land (as on any real memory); writing back each parameter's whole copy loses
    the stores made through ``a``."""
    kb = KernelBuilder("alias")
    a = kb.tensor("a", bittile.i32, [4])
    c = kb.tensor("c", bittile.i32, [4])
    kb.builder.store(a, [0], kb.builder.full(1, [2]))
    kb.builder.store(c, [2], kb.builder.full(2, [2]))
    kernel = kb.finish()
    arr = np.zeros(4, np.int32)
    interp.run(kernel, arr, arr)
    assert arr.tolist() == [1, 1, 2, 2]


# ---- torch tensors -------------------------------------------------------------------------------
def test_bf16_torch_tensors_in_and_out():
    rng = np.random.default_rng(0)
    xf = torch.from_numpy(rng.standard_normal(10).astype(np.float32)).to(torch.bfloat16)
    yf = torch.from_numpy(rng.standard_normal(10).astype(np.float32)).to(torch.bfloat16)
    out = torch.zeros(10, dtype=torch.bfloat16)
    interp.run(axpy_kernel(bittile.bf16), xf, yf, out, 1.5)
    # one bf16 rounding per op: (x * 1.5) rounded, then + y rounded
    expected = (xf.float() * 1.5).to(torch.bfloat16)
    expected = (expected.float() + yf.float()).to(torch.bfloat16)
    assert torch.equal(out.view(torch.int16), expected.view(torch.int16))


def test_bf16_numpy_ml_dtypes_array():
    x = np.arange(8, dtype=np.float32).astype(ml_dtypes.bfloat16)
    y = np.ones(8, ml_dtypes.bfloat16)
    out = np.zeros(8, ml_dtypes.bfloat16)
    interp.run(axpy_kernel(bittile.bf16), x, y, out, -1.0)
    np.testing.assert_array_equal(out.astype(np.float32), 1 - np.arange(8, dtype=np.float32))


def test_bf16_torch_tensor_for_another_dtype():
    x = torch.zeros(4, dtype=torch.bfloat16)
    y, o = np.zeros(4, np.float16), np.zeros(4, np.float16)
    with pytest.raises(LaunchError, match="'x' must hold f16, got bf16"):
        interp.run(axpy_kernel(bittile.f16), x, y, o, 1.0)


@pytest.mark.parametrize("name, tdtype", [("i8", torch.int8), ("u8", torch.uint8),
                                          ("i16", torch.int16), ("i32", torch.int32),
                                          ("f16", torch.float16), ("f32", torch.float32)])
def test_torch_tensors_of_numpy_types(name, tdtype):
    dt = bittile.dtype_from_name(name)
    x = torch.arange(8).to(tdtype)
    y = torch.full((8,), 3).to(tdtype)
    out = torch.zeros(8, dtype=tdtype)
    interp.run(axpy_kernel(dt), x, y, out, 2)
    assert torch.equal(out, (x * 2 + y).to(tdtype))


def test_torch_int_tensor_wrong_width():
    x = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(LaunchError, match="'x' must hold i32, got a numpy array of int64"):
        interp.run(axpy_kernel(bittile.i32), x, x.int(), x.int(), 1)


def test_torch_non_contiguous_tensor():
    base = torch.zeros(8, dtype=torch.float32)
    with pytest.raises(LaunchError, match="'out' must be contiguous"):
        interp.run(axpy_kernel(), torch.zeros(4), torch.zeros(4), base[::2], 1.0)


def test_torch_tensor_requiring_grad_is_read():
    x = torch.arange(4, dtype=torch.float32, requires_grad=True)
    out = torch.zeros(4)
    interp.run(axpy_kernel(), x, torch.ones(4), out, 2.0)
    assert out.tolist() == [1, 3, 5, 7]


# ---- packed tensors ------------------------------------------------------------------------------
def test_packed_buffer_too_small():
    with pytest.raises(PackingError, match="needs 4 bytes, the buffer has 2"):
        PackedTensor(np.zeros(2, np.uint8), (5,), bittile.u5)


def test_packed_buffer_must_be_bytes():
    with pytest.raises(PackingError, match="uint8"):
        PackedTensor(np.zeros(4, np.int8), (4,), bittile.u8)


def store_ones_kernel(dt, n):
    kb = KernelBuilder("ones")
    y = kb.tensor("y", dt, ["N"])
    kb.builder.store(y, [0], kb.builder.full(kb.builder.constant(1, dt), [n]))
    return kb.finish()


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_packed_non_contiguous_buffer_receives_the_stores(lib):
    """A PackedTensor over a strided 2-D byte buffer (which ``PackedTensor`` accepts): the
    kernel's stores must reach that buffer, or the launch must fail. They must not vanish."""
    base = np.zeros((4, 4), np.uint8) if lib == "numpy" else torch.zeros((4, 4),
                                                                         dtype=torch.uint8)
    try:
        packed = PackedTensor(base[:, :2], (8,), bittile.u8)
        interp.run(store_ones_kernel(bittile.u8, 8), packed)
    except (LaunchError, PackingError):
        return
    got = np.asarray(base)[:, :2] if lib == "numpy" else base[:, :2].numpy()
    assert got.tolist() == [[1, 1]] * 4


def test_packed_extra_bytes_and_tail_bits_untouched():
    buf = np.full(4, 0xFF, np.uint8)  # u3[5] uses 15 bits: one spare bit and two spare bytes
    packed = PackedTensor(buf, (5,), bittile.u3)
    kb = KernelBuilder("zeros")
    y = kb.tensor("y", bittile.u3, ["N"])
    kb.builder.store(y, [0], kb.builder.zeros([5], bittile.u3))
    interp.run(kb.finish(), packed)
    assert buf.tolist() == [0x00, 0x80, 0xFF, 0xFF]


# ---- scalar parameters ---------------------------------------------------------------------------
def scalar_kernel(dt):
    kb = KernelBuilder("scalar")
    s = kb.scalar("s", dt)
    y = kb.tensor("y", dt, [1])
    kb.builder.store(y, [0], kb.builder.broadcast(s, [1]))
    return kb.finish()


@pytest.mark.parametrize("name, value, fragment", [
    ("i8", 128, "'s' = 128 is outside the range of i8 \\[-128, 127\\]"),
    ("i8", -129, "outside the range of i8"),
    ("u4", -1, "'s' = -1 is outside the range of u4 \\[0, 15\\]"),
    ("u4", 16, "outside the range of u4"),
    ("u32", 2**32, "outside the range of u32"),
    ("i1", 1, "outside the range of i1 \\[-1, 0\\]"),
    ("i32", 2.5, "'s' must be an integer, got 2.5"),
    ("i32", float("nan"), "must be an integer"),
    ("i32", float("inf"), "must be an integer"),
    ("i32", True, "must be a i32 scalar, got True"),
    ("i32", "3", "must be a i32 scalar, got '3'"),
    ("f32", None, "must be a f32 scalar, got None"),
    ("f32", np.zeros(1, np.float32), "must be a f32 scalar"),
])
def test_scalar_range_and_type_checks(name, value, fragment):
    dt = bittile.dtype_from_name(name)
    with pytest.raises(LaunchError, match=fragment):
        bind_arguments(scalar_kernel(dt), (value,), {"y": bittile.pack(np.zeros(1), dt)})


@pytest.mark.parametrize("name, value, expected", [
    ("i8", -128, -128), ("u32", 2**32 - 1, 2**32 - 1), ("i32", 7.0, 7), ("i16", np.int64(-5), -5),
    ("u8", np.uint8(200), 200), ("f32", 3, 3.0), ("f32", np.float32(0.1), 0.1), ("i1", -1, -1),
])
def test_scalar_accepted_values(name, value, expected):
    dt = bittile.dtype_from_name(name)
    y = bittile.pack(np.zeros(1), dt)
    interp.run(scalar_kernel(dt), value, y)
    assert bittile.unpack(y)[0] == np.float64(np.float32(expected)) if dt.is_float else \
        bittile.unpack(y)[0] == expected


def test_float_scalar_is_rounded_to_its_dtype():
    y = np.zeros(1, np.float16)
    interp.run(scalar_kernel(bittile.f16), 0.1, y)
    assert y[0] == np.float16(0.1)
    bound = bind_arguments(scalar_kernel(bittile.bf16), (1 + 2 ** -9,),
                           {"y": np.zeros(1, ml_dtypes.bfloat16)})
    assert bound.scalars["s"] == 1.0


def test_float_scalar_too_large_for_a_float_is_a_launch_error():
    """Every error a user can cause is a BittileError (errors.py): a Python int too large for
    a float must not escape as OverflowError."""
    with pytest.raises(LaunchError):
        bind_arguments(scalar_kernel(bittile.f32), (10**400,), {"y": np.zeros(1, np.float32)})


def test_float_scalar_outside_the_dtype_range_is_a_launch_error():
    """Like integer scalars (and like bittile.pack without saturate=True), a float scalar
    outside its dtype's range is rejected rather than silently turned into inf or clamped."""
    with pytest.raises(LaunchError, match="outside the range of f16"):
        bind_arguments(scalar_kernel(bittile.f16), (1e6,), {"y": np.zeros(1, np.float16)})


# ---- grid ----------------------------------------------------------------------------------------
def count_kernel(grid):
    kb = KernelBuilder("count")
    c = kb.tensor("c", bittile.i32, ["N"])
    kb.scalar("p", bittile.i32)
    kb.grid(*grid)
    b = kb.builder
    b.store(c, [0], b.add(b.load(c, [0], [1]), 1))
    return kb.finish()


@pytest.mark.parametrize("grid, n, p, expected", [
    ((cdiv("N", 4),), 10, 0, (3,)), ((cdiv("N", 4),), 12, 0, (3,)), ((cdiv("N", 4),), 0, 0, (0,)),
    (("p",), 1, 5, (5,)), ((Sym("N") // Sym("p"), 2), 9, 2, (4, 2)),
    ((Sym("N") % 4 + 1,), 7, 0, (4,)), ((cdiv("N", "p"), "p"), 10, 3, (4, 3)),
])
def test_grid_evaluation(grid, n, p, expected):
    kernel = count_kernel(grid)
    c = np.zeros(n, np.int32)
    bound = bind_arguments(kernel, (c, p), {})
    assert bound.grid == expected
    assert bound.sizes == {"N": n}
    if n:
        interp.run(kernel, c, p)
        assert c[0] == int(np.prod(expected))


def test_grid_negative_and_dividing_by_zero():
    with pytest.raises(LaunchError, match="grid dimension p is -3"):
        bind_arguments(count_kernel(("p",)), (np.zeros(1, np.int32), -3), {})
    with pytest.raises(LaunchError, match="divides by zero"):
        bind_arguments(count_kernel((cdiv("N", "p"),)), (np.zeros(4, np.int32), 0), {})


def test_scalar_parameter_named_like_a_size_must_agree():
    """A scalar parameter N and a tensor dimension N: the grid and the size must not disagree
    silently (here the grid would use the scalar 3 while size('N') is 10)."""
    kb = KernelBuilder("clash")
    kb.tensor("x", bittile.i32, ["N"])
    kb.scalar("N", bittile.i32)
    kb.grid("N")
    try:
        kernel = kb.finish()
        bound = bind_arguments(kernel, (np.zeros(10, np.int32), 3), {})
    except (LaunchError, bittile.IRError):
        return
    assert bound.grid == (bound.sizes["N"],)
