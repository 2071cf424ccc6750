"""The LLVM CPU backend: IR -> passes -> LLVM IR -> machine code for the host -> launch.

Compiled kernels are cached on the kernel object, per CPU level and codegen switch, so a warm
launch costs only the argument binding and the native calls. Weights that a table-lookup dot
reads (see ``lut_dot.py``) are repacked into the lookup layout on their first launch and the
repacked copy is cached with the weight object (see :func:`repacked`).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import json
import time
import weakref
from dataclasses import dataclass, field

import numpy as np

from bittile.backends.llvm import jit
from bittile.backends.llvm.codegen import ERRORS
from bittile.backends.llvm.launch import launch
from bittile.errors import LaunchError
from bittile.ir.core import Kernel
from bittile.ir.types import TensorType
from bittile.runtime import config

__all__ = ["CompiledKernel", "compile_kernel", "run", "llvm_ir", "repacked", "forget_repacked"]

_WORKER_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p,
                                ctypes.c_int64, ctypes.c_int64)
_STACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p)


@dataclass
class CompiledKernel:
    kernel: Kernel
    lowered: Kernel | None  # None when loaded from the disk cache
    llvm_ir: str
    module: jit.JitModule
    worker: object
    compile_seconds: float
    #: tensor parameter name -> (index among tensor parameters, LutSpec, k axis)
    repacked_params: dict = field(default_factory=dict)
    #: address of bittile_job (the entry point of the persistent worker threads)
    job: int | None = None
    #: bittile_stack_bytes(ints): the stack one worker call needs, estimated
    stack_bytes: object = None

    def __call__(self, *args, **kwargs) -> None:
        native = self.plan.bind(args, kwargs)
        for name, (index, spec, k_axis) in self.repacked_params.items():
            weights = repacked(native.given[name], self.kernel_param(name).type.dtype, spec,
                               k_axis)
            native.pointers[index] = weights.ctypes.data
            native.keep.append(weights)
        launch(self.worker, native, ERRORS, self.job)

    @functools.cached_property
    def plan(self):
        from bittile.backends.llvm.launch import LaunchPlan

        plan = LaunchPlan(self.kernel)
        plan.stack_fn = self.stack_bytes
        return plan

    def kernel_param(self, name: str):
        return next(p for p in self.kernel.params if p.name == name)


def _lower(kernel: Kernel) -> Kernel:
    from bittile.passes.manager import run_pipeline
    from bittile.passes.pipelines import pipeline_for

    return run_pipeline(kernel, pipeline_for("llvm"))


def _lut_dots(lowered: Kernel, level: jit.CpuLevel) -> dict:
    from bittile.backends.llvm.lut_dot import lut_spec, plan_lut_dots

    mode = config.get("BITTILE_DOT_LOWERING")
    if mode not in ("auto", "lut", "fma"):
        raise LaunchError(f"BITTILE_DOT_LOWERING={mode!r} is not auto, lut or fma")
    if mode == "fma":
        return {}
    plans = plan_lut_dots(lowered, config.get("BITTILE_LUT_MAX_M"), force=mode == "lut")
    exact = config.get("BITTILE_LUT_EXACT")
    return {id(p.op): (p, lut_spec(p, exact, level.name)) for p in plans}


def llvm_ir(kernel: Kernel) -> str:
    """The (unoptimized) LLVM IR of ``kernel`` after the backend's passes."""
    from bittile.backends.llvm.codegen import generate

    lowered = _lower(kernel)
    level = jit.resolve_level(config.get("BITTILE_CPU_LEVEL"))
    return str(generate(lowered, _lut_dots(lowered, level), level.vector_bits))


def _cache_key(level: jit.CpuLevel) -> tuple:
    return (level, config.get("BITTILE_DOT_LOWERING"), config.get("BITTILE_LUT_MAX_M"),
            config.get("BITTILE_LUT_EXACT"))


def compile_kernel(kernel: Kernel, level: str | None = None) -> CompiledKernel:
    """Compile ``kernel`` for the CPU level ``level`` (default: ``BITTILE_CPU_LEVEL`` or the
    host), cached on the kernel and in the disk cache (``runtime/cache.py``) as object code."""
    cpu = jit.resolve_level(level or config.get("BITTILE_CPU_LEVEL"))
    cache = kernel.__dict__.setdefault("_llvm_compiled", {})
    key = _cache_key(cpu)
    compiled = cache.get(key)
    if compiled is None:
        compiled = cache[key] = _compile(kernel, cpu)
    return compiled


def _disk_key(kernel: Kernel, cpu: jit.CpuLevel) -> str:
    import llvmlite

    from bittile.runtime.cache import cache_key

    binding = jit.llvm()
    return cache_key("llvm", str(kernel), llvmlite.__version__, str(binding.llvm_version_info),
                     cpu.cpu, cpu.features)


def _compile(kernel: Kernel, cpu: jit.CpuLevel) -> CompiledKernel:
    from bittile.runtime.cache import default_cache

    start = time.perf_counter()
    built: list = []

    def build() -> bytes:
        from bittile.backends.llvm.codegen import generate

        lowered = _lower(kernel)
        luts = _lut_dots(lowered, cpu)
        text = str(generate(lowered, luts, cpu.vector_bits))
        obj, optimized = jit.compile_object(text, cpu)
        tensor_names = [p.name for p in lowered.params if isinstance(p.type, TensorType)]
        repacked_params = {tensor_names[plan.param_index]: (plan.param_index, spec, plan.k_axis)
                           for plan, spec in luts.values()}
        built.append((lowered, text))
        return _pack_artifact(obj, optimized, text, repacked_params)

    payload, _ = default_cache().get_or_compute(_disk_key(kernel, cpu), build)
    obj, optimized, text, repacked_params = _unpack_artifact(payload)
    module = jit.JitModule.from_object(obj, cpu, optimized)
    worker = _WORKER_TYPE(module.address("bittile_worker"))
    lowered = built[0][0] if built else None
    return CompiledKernel(kernel, lowered, text, module, worker, time.perf_counter() - start,
                          repacked_params, module.address("bittile_job"),
                          _STACK_TYPE(module.address("bittile_stack_bytes")))


def _pack_artifact(obj: bytes, optimized: str, text: str, repacked_params: dict) -> bytes:
    meta = {"optimized_ir": optimized, "llvm_ir": text,
            "repacked": {name: [index, dataclasses.asdict(spec), k_axis]
                         for name, (index, spec, k_axis) in repacked_params.items()}}
    header = json.dumps(meta).encode()
    return len(header).to_bytes(8, "little") + header + obj


def _unpack_artifact(payload: bytes):
    from bittile.backends.llvm.lut import LutSpec

    size = int.from_bytes(payload[:8], "little")
    meta = json.loads(payload[8:8 + size])
    repacked = {name: (index, LutSpec(**spec), k_axis)
                for name, (index, spec, k_axis) in meta["repacked"].items()}
    return payload[8 + size:], meta["optimized_ir"], meta["llvm_ir"], repacked


def run(kernel: Kernel, *args, **kwargs) -> None:
    """Launch ``kernel`` on the CPU; tensors it stores to are updated in place."""
    compile_kernel(kernel)(*args, **kwargs)


# ---- repacked weights --------------------------------------------------------------------------
_repacked: dict[tuple, tuple] = {}


def _codes(arg, dtype) -> np.ndarray:
    from bittile.runtime.packed import PackedTensor

    if isinstance(arg, PackedTensor):
        return arg.codes().reshape(arg.shape)
    if type(arg).__module__.startswith("torch"):
        arg = arg.detach().numpy()
    return np.asarray(arg).view(f"u{np.asarray(arg).dtype.itemsize}")


def _version(arg):
    return getattr(arg, "_version", None)


def repacked(arg, dtype, spec, k_axis: int) -> np.ndarray:
    """``arg``'s codes in the lookup layout of ``spec``, cached with ``arg``: the cache entry
    lives as long as ``arg`` does. Torch tensors are repacked again after an in-place change
    (their version counter moves); for numpy arrays and PackedTensors that change in place,
    call :func:`forget_repacked` first."""
    from bittile.backends.llvm.lut import repack

    key = (id(arg), spec, k_axis)
    entry = _repacked.get(key)
    if entry is not None:
        ref, version, packed = entry
        if ref() is arg and version == _version(arg):
            return packed
    codes = _codes(arg, dtype).astype(np.int64)
    if dtype.is_signed:  # the layout holds codes offset to unsigned (see lut_dot.py)
        codes = codes ^ (1 << (dtype.bits - 1))
    packed = repack(codes, spec, k_axis)
    try:
        ref = weakref.ref(arg, lambda _, key=key: _repacked.pop(key, None))
    except TypeError:  # not weak-referenceable: repack on every launch
        return packed
    _repacked[key] = (ref, _version(arg), packed)
    return packed


def forget_repacked(arg) -> None:
    """Drop the cached repacked forms of ``arg`` (after changing it in place)."""
    for key in [k for k in _repacked if k[0] == id(arg)]:
        del _repacked[key]
