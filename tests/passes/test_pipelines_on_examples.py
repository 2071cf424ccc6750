"""Every pipeline runs on every example kernel and keeps its results bit-exact."""

import pathlib

import pytest

import bittile
from bittile.passes.pipelines import PIPELINES
from bittile.testing.checkers import assert_pipeline_preserves

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
SIZES = {"vector_add": {"N": 300}, "softmax": {"M": 7, "N": 100},
         "matmul": {"M": 33, "N": 17, "K": 70}, "gemv_u4": {"N": 37, "K": 96}}
PIPELINE_TEXTS = sorted({*PIPELINES.values(),
                         "fuse-dequant-dot,fuse-elementwise,pack-bits,canonicalize,cse,dce",
                         "pack-bits{word=8},canonicalize,cse,dce"})


@pytest.mark.parametrize("pipeline", PIPELINE_TEXTS)
@pytest.mark.parametrize("name", sorted(SIZES))
def test_pipeline_preserves_example(name, pipeline):
    kernel = getattr(bittile.load_module(EXAMPLES / f"{name}.tile"), name).specialize()
    assert_pipeline_preserves(kernel, pipeline, sizes=SIZES[name])


def test_every_example_is_covered():
    assert {p.stem for p in EXAMPLES.glob("*.tile")} == set(SIZES)
