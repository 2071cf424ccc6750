"""LLVM through llvmlite: target machines for the host (or a chosen subset of its features),
optimization with the new pass manager, and JIT-loaded modules.

LLVM aborts the whole process when asked to run an instruction the target machine lacks, so
code is only ever generated for the host's own CPU name and features, or for a *smaller*
instruction set level (``x86-64-v2`` = SSE4.2, ``v3`` = AVX2, ``v4`` = AVX-512) that the host
also has: :func:`target_machine` refuses a level the host cannot run.

llvmlite is imported on first use, never at ``import bittile``.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from dataclasses import dataclass

from bittile.errors import BittileError

__all__ = ["CpuLevel", "LEVELS", "host_level", "target_machine", "optimize", "JitModule",
           "compile_object",
           "llvm"]

_init_lock = threading.Lock()
_initialized = False


def llvm():
    """The initialized ``llvmlite.binding`` module."""
    global _initialized
    import llvmlite.binding as binding

    if not _initialized:
        with _init_lock:
            if not _initialized:
                binding.initialize_native_target()
                binding.initialize_native_asmprinter()
                _initialized = True
    return binding


@dataclass(frozen=True)
class CpuLevel:
    """A CPU to generate code for: an LLVM CPU name, its feature string, and the widest vector
    (bits) the code should use."""

    name: str
    cpu: str
    features: str
    vector_bits: int
    #: features the host must have to run code of this level
    requires: tuple[str, ...] = ()


#: instruction set levels, smallest first (x86-64 micro-architecture levels)
LEVELS: dict[str, CpuLevel] = {
    "sse": CpuLevel("sse", "x86-64-v2", "", 128, ("sse4.2", "popcnt")),
    "avx2": CpuLevel("avx2", "x86-64-v3", "", 256, ("avx2", "fma", "bmi2", "f16c")),
    "avx512": CpuLevel("avx512", "x86-64-v4", "", 512,
                       ("avx512f", "avx512bw", "avx512dq", "avx512vl")),
}


@functools.cache
def host_features() -> frozenset[str]:
    """The features the host CPU has (names without the '+')."""
    flat = llvm().get_host_cpu_features().flatten()
    return frozenset(f[1:] for f in flat.split(",") if f.startswith("+"))


@functools.cache
def host_level() -> CpuLevel:
    """The host CPU itself: its LLVM name and every feature it has."""
    binding = llvm()
    features = binding.get_host_cpu_features().flatten()
    have = host_features()
    if {"avx512f", "avx512bw"} <= have:
        bits = 512
    elif "avx2" in have:
        bits = 256
    elif "sse2" in have:
        bits = 128
    else:  # not x86, or a CPU without SIMD LLVM reports
        bits = 128 if binding.get_process_triple().startswith(("aarch64", "arm64")) else 0
    return CpuLevel("host", binding.get_host_cpu_name(), features, bits)


def resolve_level(name: str | None) -> CpuLevel:
    """The level called ``name`` ("host", "sse", "avx2", "avx512"; None means host), checked
    against what the host can run."""
    if name in (None, "", "host"):
        return host_level()
    level = LEVELS.get(name)
    if level is None:
        raise BittileError(f"unknown CPU level {name!r}",
                           hint=f"choose one of host, {', '.join(LEVELS)}")
    missing = [f for f in level.requires if f not in host_features()]
    if missing:
        raise BittileError(
            f"this CPU cannot run code for level {name!r}: it lacks {', '.join(missing)}",
            hint="choose a smaller level, or 'host'",
        )
    return level


def target_machine(level: CpuLevel, opt: int = 3):
    """A new LLVM target machine for ``level``. Not cached: an execution engine takes
    ownership of the target machine it is created with and frees it with itself."""
    binding = llvm()
    target = binding.Target.from_default_triple()
    return target.create_target_machine(cpu=level.cpu, features=level.features, opt=opt,
                                        reloc="pic", codemodel="jitdefault", jit=True)


def parse(llvm_ir: str):
    """Parse LLVM IR text into a verified module."""
    binding = llvm()
    mod = binding.parse_assembly(llvm_ir)
    mod.verify()
    return mod


def optimize(mod, tm, speed_level: int = 3) -> None:
    """Run LLVM's standard optimization pipeline (the new pass manager) on ``mod`` in place."""
    binding = llvm()
    pto = binding.create_pipeline_tuning_options(speed_level=speed_level)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    pb = binding.create_pass_builder(tm, pto)
    pm = pb.getModulePassManager()
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    pm.run(mod, pb)


def compile_object(llvm_ir: str, level: CpuLevel, speed_level: int = 3) -> tuple[bytes, str]:
    """Optimize ``llvm_ir`` for ``level``; the object code and the optimized IR."""
    tm = target_machine(level)
    mod = parse(llvm_ir)
    optimize(mod, tm, speed_level)
    return tm.emit_object(mod), str(mod)


class JitModule:
    """A module compiled to machine code and loaded into this process (MCJIT)."""

    def __init__(self, llvm_ir: str, level: CpuLevel | None = None, speed_level: int = 3):
        binding = llvm()
        self.level = level or host_level()
        tm = target_machine(self.level)
        mod = parse(llvm_ir)
        optimize(mod, tm, speed_level)
        self.optimized_ir = str(mod)
        self.asm = None
        self._engine = binding.create_mcjit_compiler(mod, tm)
        self._engine.finalize_object()
        self._engine.run_static_constructors()
        self._module = mod

    @classmethod
    def from_object(cls, obj: bytes, level: CpuLevel, optimized_ir: str = "") -> JitModule:
        """Load object code made by :func:`compile_object` (no LLVM optimization runs)."""
        binding = llvm()
        self = cls.__new__(cls)
        self.level = level
        self.optimized_ir = optimized_ir
        self.asm = None
        empty = binding.parse_assembly("")
        self._engine = binding.create_mcjit_compiler(empty, target_machine(level))
        self._engine.add_object_file(binding.ObjectFileRef.from_data(obj))
        self._engine.finalize_object()
        self._module = empty
        return self

    def assembly(self) -> str:
        """The module's assembly, for inspection."""
        if self.asm is None:
            self.asm = target_machine(self.level).emit_assembly(parse(self.optimized_ir))
        return self.asm

    def address(self, name: str) -> int:
        addr = self._engine.get_function_address(name)
        if not addr:
            raise BittileError(f"the compiled module has no function {name!r}")
        return addr

    def function(self, name: str, restype, *argtypes):
        """A ctypes function for the native function ``name`` (kept alive by this module)."""
        fn = ctypes.CFUNCTYPE(restype, *argtypes)(self.address(name))
        fn._owner = self  # the engine must outlive every function pointer into it
        return fn
