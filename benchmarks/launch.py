"""Warm launch overhead: how long a call of an already compiled tiny kernel takes from Python
(argument checks, binding, the native call), against a bare ctypes call of a native no-op
measured in the same run. Run: ``python benchmarks/launch.py``."""

from __future__ import annotations

import ctypes
import json
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _median_us(fn, calls: int) -> float:
    for _ in range(100):
        fn()
    samples = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return float(np.median(samples)) * 1e6


def measure(calls: int = 2000) -> dict:
    import bittile
    from bittile.backends.llvm import backend

    module = bittile.load_module(ROOT / "examples" / "vector_add.tile")
    kernel = module.vector_add
    x = np.ones(64, np.float32)
    z = np.zeros_like(x)
    compiled = backend.compile_kernel(kernel.specialize())
    libc = ctypes.CDLL(None)
    results = {
        "ctypes_noop_us": _median_us(lambda: libc.getpid(), calls),
        "compiled_kernel_us": _median_us(lambda: compiled(x, x, z), calls),
        "tile_kernel_us": _median_us(lambda: kernel(x, x, z, backend="llvm"), calls),
    }
    return results


def main(argv=None) -> int:
    results = measure()
    for name, value in results.items():
        print(f"{name:<22} {value:8.2f} us")
    out = ROOT / "benchmarks" / "results" / "launch.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
