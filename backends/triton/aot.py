"""Ahead-of-time compilation of generated kernels for NVIDIA GPUs, without a GPU.

``triton.compile`` takes the kernel through Triton's stages (TTIR, TTGIR, LLVM IR, PTX, cubin)
for a ``GPUTarget``; only loading the binary needs a device. Triton 3.9 runs ``ptxas -v`` but
keeps neither its register count nor its spill report, so :func:`compile_ahead` runs the same
``ptxas`` on the PTX once more and reads them from its report.

This path needs the kernel decorated for compilation, so Triton itself must have been imported
without ``TRITON_INTERPRET=1`` (its library functions are decorated at import time).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

from bittile.backends.triton.backend import PIPELINE, load_module, program
from bittile.errors import BittileError
from bittile.ir.core import Kernel

__all__ = ["AotKernel", "compile_ahead", "ARCHS"]

#: the architectures ``--arch`` accepts
ARCHS = ("sm_80", "sm_90")


@dataclass(frozen=True)
class AotKernel:
    """A kernel compiled ahead of time for one architecture."""

    name: str
    arch: str
    ptx: str
    num_warps: int
    #: registers per thread
    n_regs: int
    #: bytes of registers spilled to local memory (stores plus loads, as ptxas reports them)
    n_spills: int
    spill_stores: int
    spill_loads: int
    #: bytes of shared memory the kernel uses
    shared: int


def _capability(arch: str) -> int:
    match = re.fullmatch(r"sm_?(\d+)a?", arch)
    if match is None:
        raise BittileError(f"unknown GPU architecture {arch!r}",
                           hint=f"use one of {', '.join(ARCHS)}")
    return int(match.group(1))


def compile_ahead(kernel: Kernel, arch: str = "sm_90", pipeline: str = PIPELINE) -> AotKernel:
    """Compile ``kernel`` (after ``pipeline``) for ``arch`` (e.g. ``"sm_80"``, ``"sm_90"``);
    cached on the kernel."""
    capability = _capability(arch)
    cache = kernel.__dict__.setdefault("_triton_aot", {})
    key = (capability, pipeline)
    if key in cache:
        return cache[key]
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    prog = program(kernel, pipeline)
    module = load_module(prog, interpret=False)
    fn = getattr(module, prog.kernel_name)
    if not isinstance(fn, triton.runtime.JITFunction):
        raise BittileError(
            "ahead-of-time compilation needs Triton imported without TRITON_INTERPRET=1",
            hint="unset TRITON_INTERPRET; bittile enables the interpreter only where it runs "
                 "kernels")
    signature = {a.name: a.signature for a in prog.args}
    compiled = triton.compile(
        ASTSource(fn, signature, {}), target=GPUTarget("cuda", capability, 32),
        options={"num_warps": prog.num_warps, "enable_fp_fusion": False})
    ptx = compiled.asm["ptx"]
    regs, stores, loads = _ptxas_report(ptx, capability)
    result = AotKernel(prog.kernel_name, f"sm_{capability}", ptx, prog.num_warps, regs,
                       stores + loads, stores, loads, int(compiled.metadata.shared))
    cache[key] = result
    return result


def _ptxas_report(ptx: str, capability: int) -> tuple[int, int, int]:
    """(registers, spill store bytes, spill load bytes) from ``ptxas -v``."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    ptxas = get_ptxas(capability).path
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "kernel.ptx")
        with open(source, "w", encoding="utf-8") as f:
            f.write(ptx)
        run = subprocess.run(
            [ptxas, "-v", f"--gpu-name={sm_arch_from_capability(capability)}", source,
             "-o", os.path.join(folder, "kernel.cubin")],
            capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise BittileError(f"ptxas failed on the generated kernel:\n{run.stderr}")
    report = run.stderr + run.stdout
    regs = re.search(r"Used (\d+) registers", report)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
    if regs is None or spills is None:
        raise BittileError(f"cannot read ptxas's report:\n{report}")
    return int(regs.group(1)), int(spills.group(1)), int(spills.group(2))
