"""Generated programs (``kernels_with_sizes``) on the Triton backend against the interpreter:
as the backend's pipeline leaves them, without any pass (every op reaches the code generator),
after ``pack-bits`` (word loads and stores) and after the fusion passes (fused elementwise
regions and dequantizing dots)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bittile.backends.triton import backend
from bittile.errors import BittileError
from bittile.ir.types import TensorType
from bittile.passes.manager import run_pipeline
from bittile.runtime.packed import PackedTensor
from bittile.testing.checkers import (
    _codes,
    _first_difference,
    _salted,
    _tensor_copy,
    assert_backends_agree,
    run_codes,
)
from bittile.testing.ir_strategies import kernels_with_sizes

_SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def _agree_after(generated, pipeline: str) -> None:
    """The interpreter on the kernel as generated, Triton on it after ``pipeline``."""
    rng = np.random.default_rng(0)
    args = _salted(generated.kernel, generated.random_arguments(rng, nonfinite=True), rng)
    lowered = run_pipeline(generated.kernel, pipeline, verify=True)
    expected = run_codes(generated.kernel, args, "interp")
    got = run_codes(lowered, args, "triton")
    difference = _first_difference(expected, got, generated.kernel, tolerant=True)
    assert difference is None, f"{difference}\n{lowered}"


@settings(max_examples=60, **_SETTINGS)
@given(kernels_with_sizes(max_ops=16))
def test_generated_programs_match_the_interpreter(generated):
    assert_backends_agree(generated, backends=("interp", "triton"))


@settings(max_examples=40, **_SETTINGS)
@given(kernels_with_sizes(max_ops=20))
def test_generated_programs_without_passes(generated):
    """Every op as generated reaches the code generator (no folding first)."""
    rng = np.random.default_rng(0)
    args = _salted(generated.kernel, generated.random_arguments(rng, nonfinite=True), rng)
    expected = run_codes(generated.kernel, args, "interp")
    copies = {p.name: _tensor_copy(p.type, args[p.name]) if isinstance(p.type, TensorType)
              else args[p.name] for p in generated.kernel.params}
    try:
        backend.compile_kernel(generated.kernel, pipeline="")(**copies)
        got = {name: _codes(value) for name, value in copies.items()
               if isinstance(value, (PackedTensor, np.ndarray))}
    except BittileError as exc:
        got = exc
    difference = _first_difference(expected, got, generated.kernel, tolerant=True)
    assert difference is None, difference


@settings(max_examples=30, **_SETTINGS)
@given(kernels_with_sizes(max_ops=12), st.sampled_from([8, 16, 32]))
def test_word_ops_after_pack_bits(generated, word):
    _agree_after(generated, f"pack-bits{{word={word}}}")


@settings(max_examples=20, **_SETTINGS)
@given(kernels_with_sizes(max_ops=16))
def test_fused_regions(generated):
    _agree_after(generated, "fuse-dequant-dot,fuse-elementwise,dce")
