"""all-MiniLM-L6-v2 on bittile's kernels (examples/minilm): the fp32 forward pass reproduces
the published similarity, and quantized weights keep the embeddings close to fp32."""

from __future__ import annotations

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))


def test_fp32_path_matches_the_published_model():
    from minilm.model import MiniLM, load_weights, torch_attention, torch_linear

    weights, config = load_weights()
    model = MiniLM(weights, config, torch_linear(weights), torch_attention)
    a, b = model.encode(["A man is eating food.", "A man is eating a piece of bread."])
    assert float(a @ b) == pytest.approx(0.755, abs=0.005)


def test_quantized_weights_keep_the_embeddings():
    from minilm.run import run

    rows = {r["config"]: r for r in run("llvm", quick=True, out=lambda *_: None)}
    assert rows["bittile fp32"]["min_cos"] >= 0.99999
    assert rows["bittile u8 g128"]["min_cos"] >= 0.9995
    assert rows["bittile u4 g128"]["mean_cos"] >= 0.94
    assert rows["bittile u4 g128"]["weight_bytes"] < rows["torch fp32"]["weight_bytes"]
