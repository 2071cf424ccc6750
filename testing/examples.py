"""The example kernels shipped in ``examples/`` (the package's ``examples`` folder) and
arguments for them at any size, for tests that run every example on a backend."""

from __future__ import annotations

import pathlib

import numpy as np

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"

__all__ = ["EXAMPLES", "example_names", "example_kernel", "example_arguments"]


def example_names() -> list[str]:
    """The names of the ``.tile`` examples (each defines a kernel of that name)."""
    return sorted(p.stem for p in EXAMPLES.glob("*.tile"))


def example_kernel(name: str, **consts):
    """The IR of example ``name`` specialized on ``consts``."""
    from bittile.dsl.module import load_module

    return load_module(str(EXAMPLES / f"{name}.tile")).kernels[name].specialize(**consts)


def example_arguments(name: str, size: int, rng: np.random.Generator,
                      gemv_k: int = 128) -> dict:
    """Random arguments of example ``name`` with ``size`` as its main extent (``gemv_k``: the
    K of ``gemv_u4``, a multiple of its group of 32)."""
    import bittile

    if name == "vector_add":
        x, y = (rng.standard_normal(size).astype(np.float32) for _ in range(2))
        return {"x": x, "y": y, "z": np.zeros(size, np.float32)}
    if name == "softmax":
        return {"x": rng.standard_normal((size % 7 + 3, size)).astype(np.float32),
                "y": np.zeros((size % 7 + 3, size), np.float32)}
    if name == "matmul":
        m, k, n = size, size % 13 + 5, size % 11 + 3
        return {"a": rng.standard_normal((m, k)).astype(np.float32),
                "b": rng.standard_normal((k, n)).astype(np.float32),
                "c": np.zeros((m, n), np.float32)}
    if name == "gemv_u4":
        n, k = size, gemv_k
        return {"w": bittile.pack(rng.integers(0, 16, (n, k)), bittile.u4),
                "s": rng.random((n, k // 32)).astype(np.float32),
                "x": rng.standard_normal(k).astype(np.float32),
                "y": np.zeros(n, np.float32)}
    raise KeyError(f"no arguments for example {name}: add them in bittile/testing/examples.py")
