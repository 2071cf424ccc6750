"""layout-inference and vectorize: interpreter results are preserved bit for bit on random
kernels for every target, every tile gets a layout, annotations and views are left alone, and
the default-layout rule and the vector plan give what their docstrings promise."""

from __future__ import annotations

import math
import re
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

from bittile.errors import BittileError
from bittile.ir import ops
from bittile.ir.core import Block, Kernel
from bittile.ir.dtypes import f16, f32, u4, u8
from bittile.ir.layout import column_local, local, spatial
from bittile.ir.parser import parse_kernel
from bittile.passes.base import parse_pipeline
from bittile.passes.layout_inference import (
    TARGETS,
    LayoutInference,
    assert_all_tiles_have_layouts,
    default_layout,
    get_target,
    infer_layouts,
)
from bittile.passes.manager import run_pipeline
from bittile.passes.vectorize import Vectorize, contiguous_run, vector_plan
from bittile.testing.checkers import assert_pipeline_preserves
from bittile.testing.ir_strategies import kernels_with_sizes


def _ops(block: Block):
    for op in block.ops:
        yield op
        for region in op.regions:
            yield from _ops(region)


def _annotations(kernel: Kernel) -> Counter:
    return Counter(
        (op.name, str(op.layout))
        for op in _ops(kernel.body)
        if not isinstance(op, ops.ConvertLayoutOp) and getattr(op, "layout", None) is not None
    )


def _views(kernel: Kernel) -> list[ops.ViewOp]:
    return [op for op in _ops(kernel.body) if isinstance(op, ops.ViewOp)]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(kernels_with_sizes())
def test_layout_inference_preserves_results_on_every_target(generated):
    before = generated.kernel
    for name, target in TARGETS.items():
        after = assert_pipeline_preserves(generated, f"layout-inference{{target={name}}}")
        assert_all_tiles_have_layouts(after)
        # explicit layouts survive
        assert not _annotations(before) - _annotations(after)
        # views read and write exactly the layouts they did (none meaning local(*shape))
        old_views, new_views = _views(before), _views(after)
        assert len(old_views) == len(new_views)
        for old, new in zip(old_views, new_views):
            assert (new.dtype, new.shape) == (old.dtype, old.shape)
            assert new.layout == (old.layout or local(*old.shape))
            assert new.x.type.layout == (old.x.type.layout or local(*old.x.type.shape))
        # the vector plan covers every load and store with a sensible width
        plan = vector_plan(after, target)
        for op, width in plan.items():
            tile = op.out.type if isinstance(op, ops.LoadOp) else op.value.type
            assert width & (width - 1) == 0 and tile.shape[-1] % width == 0
            assert width <= target.vector_lanes(tile.dtype.bits)
        # vectorize records exactly that plan and changes nothing else
        marked = run_pipeline(after, f"vectorize{{target={name}}}", verify=True)
        widths = [op.vector_width for op in marked.walk()
                  if isinstance(op, (ops.LoadOp, ops.StoreOp))]
        assert sorted(widths) == sorted(plan.values())
        unmarked = re.sub(r" \{vector_width = \d+\}|, vector_width = \d+", "", str(marked))
        assert unmarked == str(after)


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("shape", [(16, 64), (3, 5), (128,), (7,), (2, 3, 48), (1, 1), (64, 1)])
@pytest.mark.parametrize("dtype", [f32, f16, u8, u4])
def test_default_layout_fits_shape_and_workers(target, shape, dtype):
    t = TARGETS[target]
    layout = default_layout(shape, dtype, target)
    assert layout.shape == shape
    assert layout.num_workers <= t.num_workers
    assert layout.num_workers * layout.local_size == layout.size  # no replication
    lanes = t.vector_lanes(dtype.bits)  # a power of two for every target and these dtypes
    assert contiguous_run(layout, cap=lanes) == math.gcd(shape[-1], lanes)


def test_default_layout_examples():
    assert default_layout((16, 64), f32, "cpu-avx512") == (
        local(4, 1) * spatial(4, 4) * local(1, 16))
    assert default_layout((16, 64), f32, "interp") == local(16, 64)
    assert default_layout((128,), f32, "cuda-sm90") == spatial(32) * local(4)
    # nothing of the vector width divides 5 or 3: one element per worker
    assert default_layout((3, 5), f32, "cuda-sm90") == spatial(3, 5)
    assert default_layout((7,), f32, "cpu-avx2") == spatial(7)


def test_unknown_target_is_an_error():
    with pytest.raises(BittileError, match="unknown target"):
        get_target("cpu-avx1024")
    with pytest.raises(BittileError, match="unknown target"):
        Vectorize(target="nope").run(parse_kernel("kernel @k() grid(1) {\n}"))


def test_pipeline_text_round_trips():
    (p,) = parse_pipeline("layout-inference{target=cpu-avx512}")
    assert p == LayoutInference(target="cpu-avx512")
    assert str(p) == "layout-inference{target=cpu-avx512}"
    (v,) = parse_pipeline("vectorize{target=cuda-sm90}")
    assert str(v) == "vectorize{target=cuda-sm90}"


_COPY = """kernel @copy(%x: tensor<f32[N, N]>, %y: tensor<f32[N, N]>) grid(1) {
  %zero = arith.constant() {dtype = i32, value = 0} : i32
  %a = tile.load(%x, %zero, %zero) {shape = [16, 64]} : tile<f32[16, 64]>
  tile.store(%y, %zero, %zero, %a)
}"""


@pytest.mark.parametrize("target,width", [("cpu-avx512", 16), ("cpu-avx2", 8), ("cpu-sse", 4),
                                          ("cuda-sm90", 4), ("interp", 1)])
def test_vector_plan_of_a_simple_copy(target, width):
    kernel = infer_layouts(parse_kernel(_COPY), target)
    plan = vector_plan(kernel, target)
    assert sorted(op.name for op in plan) == ["tile.load", "tile.store"]
    assert set(plan.values()) == {width}
    # before inference, the plan uses the layout inference would give: the same widths
    assert set(vector_plan(parse_kernel(_COPY), target).values()) == {width}


def test_postcondition_checker_finds_a_tile_without_layout():
    with pytest.raises(AssertionError, match="result of tile.load"):
        assert_all_tiles_have_layouts(parse_kernel(_COPY))
    assert_all_tiles_have_layouts(infer_layouts(parse_kernel(_COPY), "cpu-sse"))


def test_contiguous_run_follows_the_layout():
    assert contiguous_run(local(16, 64)) == 64
    assert contiguous_run(local(16, 64), cap=16) == 16
    assert contiguous_run(spatial(16, 64)) == 1
    assert contiguous_run(column_local(4, 8)) == 1  # consecutive elements are 4 slots apart
    assert contiguous_run(local(2, 1) * spatial(1, 4) * local(1, 4)) == 4
    assert contiguous_run(local(6), cap=8) == 2  # a power of two dividing the extent
    assert contiguous_run(local(1)) == 1
