"""The llvm backend against the interpreter (the specification): every example at round and
awkward sizes, generated programs, every CPU level the host can run, threads, and launch
errors. Integer and packed results must be bit-exact; floats within the stated tolerance."""

from __future__ import annotations

import pathlib
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bittile
from bittile.backends.llvm import backend, jit
from bittile.dsl.module import load_module
from bittile.errors import LaunchError
from bittile.ir.builder import KernelBuilder
from bittile.testing.checkers import assert_backends_agree
from bittile.testing.examples import example_arguments, example_kernel
from bittile.testing.ir_strategies import kernels_with_sizes

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "examples"
LEVELS = [name for name in ("sse", "avx2", "avx512") if all(
    f in jit.host_features() for f in jit.LEVELS[name].requires)]


@pytest.fixture(autouse=True)
def exact_lookup_tables(monkeypatch):
    """Dots with low-bit operands may take the table-lookup lowering, whose int8 tables are
    approximate by design (their accuracy is tested in test_lut_dot.py); agreement with the
    interpreter is checked with its float tables."""
    monkeypatch.setenv("BITTILE_LUT_EXACT", "1")


def example(name: str, **consts):
    return example_kernel(name, **consts)


def example_args(name: str, size: int, rng):
    return example_arguments(name, size, rng)


# softmax.tile handles rows of at most COLS=128 elements by design
CASES = [(name, size) for name in ("vector_add", "softmax", "matmul", "gemv_u4")
         for size in (1, 7, 129, 257) if not (name == "softmax" and size > 128)]


@pytest.mark.parametrize(("name", "size"), CASES)
def test_examples_match_the_interpreter(name, size):
    rng = np.random.default_rng(size)
    assert_backends_agree(example(name), args=example_args(name, size, rng))


def test_examples_match_numpy():
    rng = np.random.default_rng(1)
    args = example_args("matmul", 70, rng)
    backend.run(example("matmul"), **args)
    np.testing.assert_allclose(args["c"], args["a"] @ args["b"], rtol=1e-5, atol=1e-5)
    args = example_args("gemv_u4", 100, rng)
    backend.run(example("gemv_u4"), **args)
    codes = bittile.unpack(args["w"]).astype(np.float64)
    scales = np.repeat(args["s"].astype(np.float64), 32, axis=1)
    expected = ((codes - 8) * scales) @ args["x"]
    np.testing.assert_allclose(args["y"], expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("level", LEVELS)
def test_smaller_cpu_levels_give_the_same_results(level, monkeypatch):
    """Code for a smaller instruction set (the fallback for CPUs without AVX-512 or AVX2)
    runs here too, since the host has a superset; it must agree, and must not use wider
    registers than its level has."""
    monkeypatch.setenv("BITTILE_CPU_LEVEL", level)
    rng = np.random.default_rng(3)
    for name in ("vector_add", "matmul", "gemv_u4"):
        assert_backends_agree(example(name), args=example_args(name, 77, rng))
    asm = backend.compile_kernel(example("vector_add"), level).module.assembly()
    if level == "sse":
        assert "%ymm" not in asm and "%zmm" not in asm
    if level == "avx2":
        assert "%zmm" not in asm


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(kernels_with_sizes(max_ops=16))
def test_generated_programs_match_the_interpreter(generated):
    assert_backends_agree(generated)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(kernels_with_sizes(max_ops=12), st.sampled_from([8, 16, 32]))
def test_word_ops_after_pack_bits_match_the_interpreter(generated, word):
    """The llvm backend also runs kernels after pack-bits (word loads and stores)."""
    from bittile.passes.manager import run_pipeline
    from bittile.testing.checkers import _first_difference, _salted, run_codes

    rng = np.random.default_rng(0)
    args = _salted(generated.kernel, generated.random_arguments(rng, nonfinite=True), rng)
    packed = run_pipeline(generated.kernel, f"pack-bits{{word={word}}}", verify=True)
    expected = run_codes(generated.kernel, args, "interp")
    got = run_codes(packed, args, "llvm")
    difference = _first_difference(expected, got, generated.kernel, tolerant=True)
    assert difference is None, f"{difference}\n{packed}"


def _store_one_per_block(dtype):
    """out[i] = x[i] (one element per block), so neighbouring blocks (on other threads) store
    into the same bytes of a sub-byte tensor."""
    kb = KernelBuilder("copy_one")
    x = kb.tensor("x", dtype, ["N"])
    out = kb.tensor("out", dtype, ["N"])
    kb.grid("N")
    b = kb.builder
    i = b.block_id(0)
    b.store(out, [i], b.load(x, [i], [1]))
    return kb.finish()


@pytest.mark.parametrize("dtype", [bittile.u1, bittile.u3, bittile.i4, bittile.f6e3m2])
def test_subbyte_stores_from_many_threads_keep_their_neighbours(dtype, monkeypatch):
    monkeypatch.setenv("BITTILE_NUM_THREADS", "2")
    kernel = _store_one_per_block(dtype)
    rng = np.random.default_rng(0)
    for n in (1, 9, 1001):
        codes = rng.integers(0, 1 << dtype.bits, n).astype(np.uint64)
        x = bittile.PackedTensor.from_codes(codes, dtype)
        for _ in range(20):
            out = bittile.PackedTensor.from_codes(np.zeros(n, np.uint64), dtype)
            backend.run(kernel, x, out)
            np.testing.assert_array_equal(out.codes(), codes)


@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_thread_counts_agree(threads, monkeypatch):
    monkeypatch.setenv("BITTILE_NUM_THREADS", threads)
    rng = np.random.default_rng(5)
    args = example_args("vector_add", 1000, rng)
    backend.run(example("vector_add", BLOCK=16), **args)
    np.testing.assert_array_equal(args["z"], args["x"] + args["y"])


def test_zero_loop_step_is_a_launch_error():
    kb = KernelBuilder("zero_step")
    out = kb.tensor("out", bittile.i32, ["N"])
    step = kb.scalar("step", bittile.i32)
    kb.grid(1)
    b = kb.builder
    with b.for_range(0, 10, step, [b.constant(0, bittile.i32)]) as loop:
        loop.yield_(b.add(loop.carried[0], 1))
    b.store(out, [0], b.broadcast(loop.results[0], [1]))
    kernel = kb.finish()
    data = np.zeros(1, np.int32)
    backend.run(kernel, data, 3)
    assert data[0] == 4
    with pytest.raises(LaunchError, match="step is 0"):
        backend.run(kernel, data, 0)


@pytest.mark.parametrize("threads", ["2", "3"])
def test_an_error_in_any_thread_range_is_reported(threads, monkeypatch):
    """Only the last block's loop has step 0: its range runs on a worker thread, whose status
    must reach the launch; the launch after it (same workers) runs normally."""
    from bittile.dsl.module import load_source

    monkeypatch.setenv("BITTILE_NUM_THREADS", threads)
    source = """
    kernel k(out: i32[N]) grid(N) {
        var n = 0
        for i in range(0, 4, where(block_id(0) == N - 1, zero, 1)) {
            n = n + 1
        }
        store(out, [block_id(0)], broadcast(n, [1]))
    }
    """
    kernel = load_source(source.replace("zero", "0"), "steps.tile").k.specialize()
    with pytest.raises(LaunchError, match="step is 0"):
        backend.run(kernel, np.zeros(9, np.int32))
    fine = load_source(source.replace("zero", "2"), "steps.tile").k.specialize()
    out = np.zeros(9, np.int32)
    backend.run(fine, out)
    np.testing.assert_array_equal(out, [4] * 8 + [2])


def test_written_non_contiguous_array_is_rejected():
    kernel = example("vector_add")
    x = np.zeros(64, np.float32)
    z = np.zeros(128, np.float32)[::2]
    with pytest.raises(LaunchError, match="contiguous"):
        backend.run(kernel, x, x, z)
    # read-only arguments may be strided: they are copied
    out = np.zeros(64, np.float32)
    backend.run(kernel, np.arange(128, dtype=np.float32)[::2], x, out)
    np.testing.assert_array_equal(out, np.arange(0, 128, 2, dtype=np.float32))


def test_kernels_choose_the_backend_by_name(monkeypatch):
    module = load_module(str(EXAMPLES / "vector_add.tile"))
    x = np.arange(300, dtype=np.float32)
    z = np.zeros_like(x)
    module.vector_add(x, x, z, backend="llvm")
    np.testing.assert_array_equal(z, 2 * x)
    monkeypatch.setenv("BITTILE_BACKEND", "llvm")
    z[:] = 0
    module.vector_add(x, x, z)
    np.testing.assert_array_equal(z, 2 * x)


def test_cli_emits_llvm_and_assembly(capsys):
    from bittile.runtime.cli import main

    path = str(EXAMPLES / "vector_add.tile")
    assert main(["compile", path, "--emit", "llvm"]) == 0
    assert "define i32 @\"bittile_worker\"" in capsys.readouterr().out
    assert main(["compile", path, "--emit", "asm", "--cpu", "sse"]) == 0
    asm = capsys.readouterr().out
    assert "bittile_worker" in asm and "%ymm" not in asm


class _DLPackOnly:
    """Something that is neither numpy nor torch but shares its memory through DLPack."""

    def __init__(self, array):
        self.array = array

    def __dlpack__(self, **kwargs):
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


@pytest.mark.parametrize("backend_name", ["interp", "llvm"])
def test_dlpack_arguments_are_used_in_place(backend_name):
    module = load_module(str(EXAMPLES / "vector_add.tile"))
    x = np.arange(50, dtype=np.float32)
    z = np.zeros_like(x)
    module.vector_add(_DLPackOnly(x), _DLPackOnly(x), _DLPackOnly(z), backend=backend_name)
    np.testing.assert_array_equal(z, 2 * x)


def test_torch_tensors_are_used_in_place():
    import torch

    module = load_module(str(EXAMPLES / "vector_add.tile"))
    x = torch.arange(300, dtype=torch.float32)
    z = torch.zeros(300)
    module.vector_add(x, x, z, backend="llvm")
    assert torch.equal(z, 2 * x)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(kernels_with_sizes(max_ops=14), st.sampled_from(["start", "end"]))
def test_generated_programs_stay_inside_their_tensors(generated, side):
    """Every tensor sits against an inaccessible page: an access past its first or last byte
    would crash the process. Results must still match the interpreter."""
    from bittile.testing.checkers import _first_difference, _salted, _tensor_copy, run_codes
    from bittile.testing.guards import guarded_argument

    rng = np.random.default_rng(1)
    kernel = generated.kernel
    args = _salted(kernel, generated.random_arguments(rng, nonfinite=True), rng)
    expected = run_codes(kernel, args, "interp")
    guarded = {p.name: guarded_argument(_tensor_copy(p.type, args[p.name]), side)
               if p.name in generated.tensor_shapes() else args[p.name]
               for p in kernel.params}
    try:
        backend.run(kernel, **guarded)
        got = {name: (v.codes() if isinstance(v, bittile.PackedTensor)
                      else v.view(f"u{v.dtype.itemsize}"))
               for name, v in guarded.items() if name in generated.tensor_shapes()}
    except bittile.BittileError as exc:
        got = exc
    difference = _first_difference(expected, got, kernel, tolerant=True)
    assert difference is None, difference


def test_guarded_memory_crashes_on_an_access_past_its_end():
    """The guard the test above relies on: reading one element past the end kills a process."""
    import subprocess
    import sys

    code = ("import ctypes, numpy as np\n"
            "from bittile.testing.guards import guarded\n"
            "a = guarded(np.arange(10, dtype=np.float32))\n"
            "print(ctypes.c_float.from_address(a.ctypes.data + 36).value, flush=True)\n"
            "ctypes.c_float.from_address(a.ctypes.data + 40).value\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "9.0" and out.returncode != 0


def test_unsigned_offsets_are_zero_extended():
    """Found by `bittile fuzz`: a u1 offset of 1 was sign-extended to -1."""
    from bittile.backends import interp
    from bittile.dsl.module import load_source

    source = """
    kernel k(x: u8[2, 4], out: u8[2, 4], row: u1) grid(1) {
        store(out, [row, cast(0, u4)], load(x, [row, cast(0, u4)], [1, 4]))
    }
    """
    kernel = load_source(source, "offsets.tile").k.specialize()
    x = np.arange(8, dtype=np.uint8).reshape(2, 4)
    for run in (interp.run, backend.run):
        out = np.zeros_like(x)
        run(kernel, x, out, 1)
        np.testing.assert_array_equal(out[1], x[1])
        np.testing.assert_array_equal(out[0], 0)


def test_a_rank_one_tile_reduces_to_a_scalar():
    """Reported by the attention kernels: sum of a [1] tile to a scalar crashed codegen."""
    from bittile.dsl.module import load_source

    source = """
    kernel k(lens: i32[B], out: i32[B]) grid(B) {
        let b = block_id(0)
        let n = sum(load(lens, [b], [1]), 0)
        var acc = cast(0, i32)
        for i in range(0, n, 1) {
            acc = acc + i
        }
        store(out, [b], broadcast(acc, [1]))
    }
    """
    kernel = load_source(source, "reduce_scalar.tile").k.specialize()
    lens = np.array([0, 1, 5, 10], np.int32)
    out = np.zeros(4, np.int32)
    backend.run(kernel, lens, out)
    np.testing.assert_array_equal(out, lens * (lens - 1) // 2)


def test_workers_sleeping_between_launches_wake_for_every_launch(monkeypatch):
    """Workers sleep (a futex in native code on Linux) as soon as a launch ends: launches right
    after one another and after pauses (the worker asleep) all complete, with right results.
    A lost wake-up would hang; the launches run on a thread joined with a timeout."""
    import threading
    import time

    monkeypatch.setenv("BITTILE_NUM_THREADS", "2")
    kernel = example("vector_add", BLOCK=16)
    compiled = backend.compile_kernel(kernel)
    rng = np.random.default_rng(9)
    failures = []

    def launches():
        for i in range(300):
            args = example_args("vector_add", 16 * (i % 7 + 2), rng)
            compiled(args["x"], args["y"], args["z"])
            if not np.array_equal(args["z"], args["x"] + args["y"]):
                failures.append(i)
            if i % 50 == 0:
                time.sleep(0.01)

    runner = threading.Thread(target=launches, daemon=True)
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive(), "a launch never finished (a worker was not woken)"
    assert failures == []


def _run_script(code: str) -> subprocess.CompletedProcess:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=str(EXAMPLES.parent.parent))


LAUNCH_SCRIPT = """
import os, sys, threading, numpy as np
os.environ["BITTILE_NUM_THREADS"] = "2"
import bittile
from bittile.backends.llvm import backend
kernel = bittile.load_module({path!r}).vector_add.specialize(BLOCK={block})
def launch():
    x = np.arange({n}, dtype=np.float32); z = np.zeros_like(x)
    backend.run(kernel, x, x, z)
    assert np.array_equal(z, 2 * x)
"""


def test_a_forked_child_launches_on_its_own_workers():
    """The parent's worker threads do not exist in a forked child: the child must start its
    own instead of posting to them and waiting forever."""
    code = LAUNCH_SCRIPT.format(path=str(EXAMPLES / "vector_add.tile"), block=16, n=1000) + """
launch()
pid = os.fork()
if pid == 0:
    launch()
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""
    out = _run_script(code)
    assert out.stdout.strip() == "child 0", out.stderr


def test_a_thread_with_a_small_stack_leaves_big_kernels_to_the_workers():
    """A kernel whose estimate exceeds a quarter of the launching thread's stack (512 KB here)
    runs its ranges on the workers' 64 MB stacks instead of crashing the caller."""
    code = LAUNCH_SCRIPT.format(path=str(EXAMPLES / "vector_add.tile"), block=65536,
                                n=3 * 65536) + """
threading.stack_size(512 << 10)
t = threading.Thread(target=launch); t.start(); t.join()
from bittile.backends.llvm.launch import caller_stack_limit
print("ok", caller_stack_limit())
"""
    out = _run_script(code)
    assert out.returncode == 0 and out.stdout.startswith("ok"), out.stderr


def test_workers_without_the_futex_sleep_in_python():
    """Where the futex system call is not available the workers return to Python between
    launches and sleep on an event: the same launches (with pauses) must complete."""
    code = LAUNCH_SCRIPT.format(path=str(EXAMPLES / "vector_add.tile"), block=16, n=1000) + """
import time
from bittile.backends.llvm import lut
lut._futex = 0  # as on a platform without it (read when the worker code is first built)
assert lut._futex_syscall() is None
for i in range(100):
    launch()
    if i % 20 == 0:
        time.sleep(0.01)
print("ok")
"""
    out = _run_script(code)
    assert out.stdout.strip() == "ok", out.stderr
