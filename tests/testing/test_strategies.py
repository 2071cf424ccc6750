"""bittile.testing's public strategies: what they draw is valid and covers edge values, and
generated programs written as .tile source compile to kernels with the same results as the IR
they came from (which tests the parser and lowering on every generated program)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bittile
from bittile import testing
from bittile.ir import dtypes as D
from bittile.testing.checkers import _first_difference, _salted, run_codes

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck),
                    derandomize=True)


@SETTINGS
@given(testing.dtypes("arith"))
def test_dtypes_filter_by_kind(dtype):
    assert dtype.supports_arithmetic


@SETTINGS
@given(st.data())
def test_tensors_hold_values_of_their_dtype(data):
    dtype = data.draw(testing.dtypes())
    shape = data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
    values = data.draw(testing.tensors(dtype, shape))
    assert values.shape == tuple(shape)
    codes = dtype.encode(values, saturate=False)
    np.testing.assert_array_equal(dtype.decode(codes), values)  # exactly representable
    packed = data.draw(testing.packed_tensors(dtype, shape))
    assert packed.dtype == dtype and packed.shape == tuple(shape)


def test_tensors_include_edge_values():
    seen = set()

    @settings(max_examples=60, derandomize=True)
    @given(testing.tensors(D.f8e5m2, (64,)))
    def draw(values):
        seen.update(np.unique(values[np.isfinite(values)]).tolist())
        if np.isnan(values).any():
            seen.add("nan")
        if np.isinf(values).any():
            seen.add("inf")

    draw()
    assert {"nan", "inf", D.f8e5m2.max, -D.f8e5m2.max, 0.0} <= seen


@SETTINGS
@given(testing.layouts((4, 8)))
def test_layouts_have_the_shape(layout):
    assert layout.shape == (4, 8)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(testing.kernels(max_ops=16))
def test_generated_tile_source_computes_what_its_ir_computes(program):
    compiled = program.compile()
    rng = np.random.default_rng(0)
    args = _salted(program.kernel, program.random_arguments(rng, nonfinite=True), rng)
    difference = _first_difference(run_codes(program.kernel, args), run_codes(compiled, args),
                                   program.kernel)
    assert difference is None, f"{difference}\n{program.source}"


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(testing.kernels(max_ops=10))
def test_programs_agree_on_every_backend(bittile_backend, program):
    """The pytest plugin's fixture runs this once per backend (--bittile-backends)."""
    with bittile.options(BITTILE_LUT_EXACT=True):
        testing.assert_backends_agree(program, backends=("interp", bittile_backend))
