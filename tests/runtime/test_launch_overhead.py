"""The warm launch overhead of a tiny llvm kernel (benchmarks/launch.py measures it; the goal
is at most 20 us on the development machine). The bound here is 5x looser, because test
machines are shared, but still fails if a launch starts doing real work in Python (such as
re-binding the kernel or reading a cache from disk)."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_warm_launch_of_a_tiny_kernel_is_cheap():
    spec = importlib.util.spec_from_file_location("launch_bench", ROOT / "benchmarks/launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.measure(calls=300)
    assert results["compiled_kernel_us"] < 100, results
    assert results["tile_kernel_us"] < 100, results
