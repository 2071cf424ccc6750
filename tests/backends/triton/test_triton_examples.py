"""The Triton backend on every example: run under Triton's interpreter against bittile's
interpreter (bit-exact for integer and packed data, the checker's float tolerance otherwise) at
awkward sizes, and compiled ahead of time for sm_80 and sm_90 without a GPU, with registers
and spills recorded (an example that spills fails). The command line's ``--emit triton`` and
``--emit ptx`` too."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import bittile
from bittile.backends.triton import aot, backend
from bittile.passes.manager import run_pipeline
from bittile.testing.checkers import assert_backends_agree
from bittile.testing.examples import example_arguments, example_kernel

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "examples"
NAMES = sorted(p.stem for p in EXAMPLES.glob("*.tile"))


def example(name: str, **consts):
    return example_kernel(name, **consts)


def example_args(name: str, size: int, rng):
    return example_arguments(name, size, rng, gemv_k=96)


# softmax.tile handles rows of at most COLS=128 elements by design
CASES = [(name, size) for name in NAMES for size in (7, 100 if name == "softmax" else 129)]


def test_every_example_has_arguments():
    rng = np.random.default_rng(0)
    for name in NAMES:
        example_args(name, 3, rng)


@pytest.mark.parametrize(("name", "size"), CASES)
def test_examples_match_the_interpreter(name, size):
    rng = np.random.default_rng(size)
    assert_backends_agree(example(name), backends=("interp", "triton"),
                          args=example_args(name, size, rng))


@pytest.mark.parametrize("name", NAMES)
def test_examples_after_fusion_match_the_interpreter(name):
    """Fused elementwise chains and dequantizing dots (what the llvm pipeline makes)."""
    kernel = run_pipeline(example(name), "fuse-dequant-dot,fuse-elementwise,canonicalize,cse,dce",
                          verify=True)
    rng = np.random.default_rng(1)
    assert_backends_agree(kernel, backends=("interp", "triton"),
                          args=example_args(name, 33, rng))


def test_examples_match_numpy():
    rng = np.random.default_rng(2)
    args = example_args("matmul", 70, rng)
    backend.run(example("matmul", BM=16, BN=16, BK=16), **args)
    np.testing.assert_allclose(args["c"], args["a"] @ args["b"], rtol=1e-5, atol=1e-5)
    args = example_args("gemv_u4", 50, rng)
    backend.run(example("gemv_u4"), **args)
    codes = bittile.unpack(args["w"]).astype(np.float64)
    expected = ((codes - 8) * np.repeat(args["s"].astype(np.float64), 32, axis=1)) @ args["x"]
    np.testing.assert_allclose(args["y"], expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("arch", aot.ARCHS)
@pytest.mark.parametrize("name", NAMES)
def test_examples_compile_ahead_of_time_without_spills(name, arch, record_property):
    compiled = aot.compile_ahead(example(name), arch)
    record_property("registers", compiled.n_regs)
    record_property("spill_bytes", compiled.n_spills)
    assert f".target {arch}" in compiled.ptx
    assert 0 < compiled.n_regs <= 255
    assert compiled.n_spills == 0, f"{name} spills {compiled.n_spills} bytes on {arch}"


def test_cli_emits_triton_source_and_ptx(capsys):
    from bittile.runtime.cli import main

    path = str(EXAMPLES / "vector_add.tile")
    assert main(["compile", path, "--emit", "triton"]) == 0
    text = capsys.readouterr().out
    assert "@triton.jit\ndef vector_add(" in text and "def launch(grid, args):" in text
    compile(text, "vector_add.py", "exec")  # valid Python
    assert main(["compile", path, "--emit", "ptx", "--arch", "sm_90"]) == 0
    captured = capsys.readouterr()
    assert ".target sm_90a" in captured.out and ".entry vector_add" in captured.out
    assert "registers" in captured.err and "0 bytes spill stores" in captured.err


def test_cli_rejects_unknown_architectures(capsys):
    from bittile.runtime.cli import main

    with pytest.raises(SystemExit):
        main(["compile", str(EXAMPLES / "vector_add.tile"), "--emit", "ptx", "--arch", "sm_70"])
    assert "invalid choice" in capsys.readouterr().err


def test_generated_source_uses_the_kernel_names():
    text = backend.source(example("matmul"))
    assert "def matmul(a_ptr, a_shape0, a_shape1, b_ptr" in text
    assert 'input_precision="ieee"' in text  # 32x32 tiles: tl.dot
    assert "for " in text and "tl.program_id(0)" in text
