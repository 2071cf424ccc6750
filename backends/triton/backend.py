"""The Triton backend: IR -> passes -> Python source of a ``@triton.jit`` kernel -> launch.

On a machine with CUDA the kernel runs natively on torch CUDA tensors. Without a GPU (or with
``BITTILE_TRITON_INTERPRET=1``) it runs under Triton's interpreter on CPU tensors: the module
is imported with ``TRITON_INTERPRET=1`` in effect, since ``triton.jit`` decides at decoration
time. The generated source is written to ``triton/`` in the compile cache's folder (Triton reads
a kernel's source from its file) under a name that hashes the source, and imported from there;
compiled kernels are cached on the kernel object (Triton caches its own compilations).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import pathlib
import sys
import tempfile
from dataclasses import dataclass

from bittile.backends.triton.codegen import generate
from bittile.backends.triton.device import use_interpreter
from bittile.backends.triton.program import TritonProgram
from bittile.errors import LaunchError
from bittile.ir.core import Kernel

__all__ = ["PIPELINE", "CompiledTritonKernel", "lower", "program", "source", "compile_kernel",
           "run", "load_module"]

#: the passes the backend runs before generating code (Triton fuses elementwise code itself)
PIPELINE = "canonicalize,cse,dce"


def lower(kernel: Kernel, pipeline: str = PIPELINE) -> Kernel:
    from bittile.passes.manager import run_pipeline

    return run_pipeline(kernel, pipeline) if pipeline else kernel


def program(kernel: Kernel, pipeline: str = PIPELINE) -> TritonProgram:
    """The generated module of ``kernel`` after ``pipeline`` (default: the backend's)."""
    return generate(lower(kernel, pipeline))


def source(kernel: Kernel) -> str:
    """The Python source of ``kernel``'s Triton module (``bittile compile --emit triton``)."""
    return program(kernel).source


# ---- modules -----------------------------------------------------------------------------------
@functools.cache
def _temporary_folder() -> pathlib.Path:
    return pathlib.Path(tempfile.mkdtemp(prefix="bittile-triton-"))


def _cache_dir() -> pathlib.Path:
    """``triton/`` in the compile cache's folder (``runtime/cache.py``), or in a temporary
    folder when the disk cache is off: Triton reads kernels from files either way."""
    from bittile.runtime.cache import default_cache

    root = default_cache().folder or _temporary_folder()
    folder = pathlib.Path(root) / "triton"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_source(prog: TritonProgram) -> pathlib.Path:
    digest = hashlib.sha256(prog.source.encode()).hexdigest()[:20]
    path = _cache_dir() / f"{prog.kernel_name}_{digest}.py"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(prog.source)
        os.replace(tmp, path)  # atomic: concurrent processes write the same text
    return path


@contextlib.contextmanager
def _interpret(flag: bool):
    import triton

    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = flag
        yield


def load_module(prog: TritonProgram, interpret: bool):
    """Import ``prog``'s module, decorated for Triton's interpreter or for compilation."""
    path = _write_source(prog)
    name = f"bittile_triton_{path.stem}_{'interp' if interpret else 'jit'}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        with _interpret(interpret):
            spec.loader.exec_module(module)
        sys.modules[name] = module
    return module


# ---- running -----------------------------------------------------------------------------------
@dataclass
class CompiledTritonKernel:
    kernel: Kernel
    program: TritonProgram
    module: object
    device: str

    def __call__(self, *args, **kwargs) -> None:
        bound = self.plan.bind(args, kwargs)
        if self.device == "cpu":
            # Triton's interpreter runs the ops with NumPy, which warns where the IR's
            # semantics are defined anyway (integer overflow wraps, x / 0 is inf...)
            import numpy as np

            with np.errstate(all="ignore"):
                self.module.launch(bound.grid, bound.args)
        else:
            self.module.launch(bound.grid, bound.args)
        if bound.status is not None and int(bound.status.item()) != 0:
            raise LaunchError("a loop's step is 0", hint="loops need a non-zero step")
        for write_back in bound.write_backs:
            write_back()

    @functools.cached_property
    def plan(self):
        from bittile.backends.triton.launch import LaunchPlan

        return LaunchPlan(self.kernel, self.program, self.device)


def compile_kernel(kernel: Kernel, pipeline: str = PIPELINE) -> CompiledTritonKernel:
    """``kernel`` compiled for this machine (interpreter or CUDA) after ``pipeline``, cached
    on the kernel."""
    interpret = use_interpreter()
    cache = kernel.__dict__.setdefault("_triton_compiled", {})
    key = (interpret, pipeline)
    compiled = cache.get(key)
    if compiled is None:
        prog = program(kernel, pipeline)
        module = load_module(prog, interpret)
        compiled = CompiledTritonKernel(kernel, prog, module, "cpu" if interpret else "cuda")
        cache[key] = compiled
    return compiled


def run(kernel: Kernel, *args, **kwargs) -> None:
    """Launch ``kernel`` with Triton; tensors it stores to are updated in place."""
    compile_kernel(kernel)(*args, **kwargs)
