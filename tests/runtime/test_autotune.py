"""Autotuning: each key is tuned once, the winner is remembered on disk for the same
environment, outputs written during tuning are restored, and results are right."""

from __future__ import annotations

import numpy as np
import pytest

import bittile
from bittile.dsl.module import load_source
from bittile.errors import LaunchError
from bittile.runtime import cache as cache_module

ACCUMULATE = """
kernel accumulate[BLOCK: int = 16](x: f32[N], y: f32[N]) grid(cdiv(N, BLOCK)) {
    let i0 = block_id(0) * BLOCK
    store(y, [i0], load(y, [i0], [BLOCK]) + load(x, [i0], [BLOCK]))
}
"""


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BITTILE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cache_module, "_caches", {})


def tuned(**options):
    kernel = load_source(ACCUMULATE, "accumulate.tile").accumulate
    return bittile.autotune(space={"BLOCK": [8, 32, 128]}, key=["N"], **options)(kernel)


def test_outputs_are_restored_while_tuning_and_written_once():
    kernel = tuned()
    x = np.arange(100, dtype=np.float32)
    y = np.ones(100, np.float32)
    kernel(x, y, backend="llvm")
    np.testing.assert_array_equal(y, 1 + x)
    assert set(kernel.timings[kernel.key_of((x, y), {})][i][0]["BLOCK"]
               for i in range(3)) == {8, 32, 128}


def test_each_key_is_tuned_once_and_remembered_on_disk(monkeypatch):
    kernel = tuned()
    calls = []
    original = kernel.tune
    monkeypatch.setattr(kernel, "tune", lambda *a: calls.append(a[0]) or original(*a))
    x = np.ones(64, np.float32)
    for _ in range(3):
        kernel(x, np.zeros(64, np.float32), backend="llvm")
    kernel(np.ones(65, np.float32), np.zeros(65, np.float32), backend="llvm")
    assert len(calls) == 2
    again = tuned()  # a new process would see the same file
    monkeypatch.setattr(again, "tune", lambda *a: pytest.fail("tuned again"))
    y = np.zeros(64, np.float32)
    again(x, y, backend="llvm")
    np.testing.assert_array_equal(y, x)


def test_a_different_environment_tunes_again(monkeypatch):
    kernel = tuned()
    x = np.ones(40, np.float32)
    kernel(x, np.zeros(40, np.float32), backend="llvm")
    monkeypatch.setenv("BITTILE_NUM_THREADS", "1")
    again = tuned()
    assert again._load(again.key_of((x, x), {})) is None


def test_bad_key_and_empty_space_are_errors():
    with pytest.raises(LaunchError, match="space or a list"):
        bittile.autotune(key=["N"])
    kernel = load_source(ACCUMULATE, "accumulate.tile").accumulate
    bad = bittile.autotune(configs=[{"BLOCK": 8}], key=["M"])(kernel)
    x = np.ones(4, np.float32)
    with pytest.raises(LaunchError, match="autotune key 'M'"):
        bad(x, x.copy())
