"""The LLVM CPU backend: IR -> passes -> LLVM IR -> machine code for the host -> launch.

Compiled kernels are cached on the kernel object, per CPU level, so a warm launch costs only
the argument binding and the native calls.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass

from bittile.backends.llvm import jit
from bittile.ir.core import Kernel
from bittile.runtime import config

__all__ = ["CompiledKernel", "compile_kernel", "run", "llvm_ir"]


_WORKER_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p,
                                ctypes.c_int64, ctypes.c_int64)


@dataclass
class CompiledKernel:
    kernel: Kernel
    lowered: Kernel
    llvm_ir: str
    module: jit.JitModule
    worker: object
    compile_seconds: float

    def __call__(self, *args, **kwargs) -> None:
        from bittile.backends.llvm.codegen import ERRORS
        from bittile.backends.llvm.launch import bind_native, launch

        native = bind_native(self.kernel, args, kwargs)
        launch(self.worker, native, ERRORS)


def _lower(kernel: Kernel) -> Kernel:
    from bittile.passes.manager import run_pipeline
    from bittile.passes.pipelines import pipeline_for

    return run_pipeline(kernel, pipeline_for("llvm"))


def llvm_ir(kernel: Kernel) -> str:
    """The (unoptimized) LLVM IR of ``kernel`` after the backend's passes."""
    from bittile.backends.llvm.codegen import generate

    return str(generate(_lower(kernel)))


def compile_kernel(kernel: Kernel, level: str | None = None) -> CompiledKernel:
    """Compile ``kernel`` for the CPU level ``level`` (default: ``BITTILE_CPU_LEVEL`` or the
    host), cached on the kernel."""
    cpu = jit.resolve_level(level or config.get("BITTILE_CPU_LEVEL"))
    cache = kernel.__dict__.setdefault("_llvm_compiled", {})
    compiled = cache.get(cpu)
    if compiled is None:
        from bittile.backends.llvm.codegen import generate

        start = time.perf_counter()
        lowered = _lower(kernel)
        text = str(generate(lowered))
        module = jit.JitModule(text, cpu)
        worker = _WORKER_TYPE(module.address("bittile_worker"))
        compiled = CompiledKernel(kernel, lowered, text, module, worker,
                                  time.perf_counter() - start)
        cache[cpu] = compiled
    return compiled


def run(kernel: Kernel, *args, **kwargs) -> None:
    """Launch ``kernel`` on the CPU; tensors it stores to are updated in place."""
    compile_kernel(kernel)(*args, **kwargs)
