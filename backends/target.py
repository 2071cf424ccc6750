"""What a backend's target can do, as data: passes ask the target, never the backend's name."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Target", "INTERP", "CPU_AVX512", "CPU_AVX2", "CPU_SSE", "CUDA_SM90"]


@dataclass(frozen=True)
class Target:
    """A compilation target.

    - ``vector_bits``: the widest SIMD register (bits) the code may use; 0 for no SIMD;
    - ``num_lanes_threads``: how many workers a layout's spatial modes may spread over
      (SIMD lanes times threads on a CPU, threads of a block on a GPU);
    - ``native_bits``: the integer widths loads and stores handle natively;
    - ``has_shared_memory``: whether shared-memory tiles exist.
    """

    name: str
    vector_bits: int
    num_workers: int
    native_bits: tuple[int, ...] = (8, 16, 32)
    has_shared_memory: bool = False

    def vector_lanes(self, element_bits: int) -> int:
        """How many elements of ``element_bits`` fit one vector register (at least 1)."""
        if self.vector_bits <= 0:
            return 1
        return max(1, self.vector_bits // max(element_bits, 1))


INTERP = Target("interp", vector_bits=0, num_workers=1)
CPU_SSE = Target("cpu-sse", vector_bits=128, num_workers=4)
CPU_AVX2 = Target("cpu-avx2", vector_bits=256, num_workers=8)
CPU_AVX512 = Target("cpu-avx512", vector_bits=512, num_workers=16)
CUDA_SM90 = Target("cuda-sm90", vector_bits=128, num_workers=128, has_shared_memory=True)
