"""The T-MAC-style lookup-table matmul: its specification, the plan derived from it for a CPU
level, and the weight layout (``repack`` / ``unrepack``). See ``docs/lut.md``.

Two layouts exist, chosen by the instruction set of the level:

- ``vbmi`` (AVX-512 with VBMI and VNNI): a weight vector is 64 bytes; dword ``i`` of it, byte
  ``t`` holds, in its low nibble, bit plane ``b`` of the four codes ``k = 16 s + 4 t + 0..3`` for
  output ``n = 32 j + i`` and, in its high nibble, the same for ``n + 16``. One ``vpermb`` looks
  each byte up in the 64-byte register holding the four tables of the slice (its index gets the
  selector ``16 t``) and one ``vpdpbusd`` sums the four groups of a dword, weighted by ``2^b`` times
  a small per-table integer, into the int32 accumulator of ``n``.
- ``shuf`` (``pshufb``: SSSE3, AVX2, AVX-512BW; also the exact float mode and the generic IR form):
  a weight vector is ``V`` = 16, 32 or 64 bytes; every byte of it belongs to the same group of four
  codes (one 16-byte table, broadcast to every 128-bit lane) and plane; byte ``p`` holds output
  ``n = (p % 4) * V/4 + p // 4`` in its low nibble and ``n + V`` in its high nibble, so that after
  the even/odd split of ``pmaddubsw`` and ``pmaddwd`` every float vector covers consecutive ``n``.

Within a tile the vectors are stored n-group by n-group (``nv`` vectors, ``nv * 2 * ns`` outputs;
the last n-group of a tile may be narrower), then slice by slice along K, then plane by plane,
then vector by vector.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from bittile.errors import BittileError

__all__ = ["LutSpec", "Plan", "make_plan", "tile_bytes", "repack", "unrepack"]


@dataclass(frozen=True)
class LutSpec:
    """One tile of the lookup-table matmul (see ``emit_lut_tile``)."""

    bits: int  #: weight code bits, 1..8
    m: int  #: activation rows per tile
    block_k: int  #: K extent of one tile (multiple of 4)
    block_n: int  #: N extent of one tile
    group_k: int  #: alpha/beta are constant over runs of group_k along K
    exact: bool = False  #: float tables instead of int8
    level: str = "host"  #: CPU level name as in ``jit.resolve_level``
    #: use x86 intrinsics where the level has them (False: only the generic IR form; for tests
    #: and for targets bittile has no intrinsics for)
    intrinsics: bool = True


#: bits of the features a level guarantees (named levels); "host" uses the host's own features
_LEVEL_FEATURES = {
    "sse": frozenset({"sse2", "ssse3", "sse4.1", "sse4.2"}),
    "avx2": frozenset({"sse2", "ssse3", "sse4.1", "sse4.2", "avx", "avx2", "fma"}),
    "avx512": frozenset({"sse2", "ssse3", "sse4.1", "sse4.2", "avx", "avx2", "fma", "avx512f",
                         "avx512bw", "avx512dq", "avx512vl"}),
}


@dataclass(frozen=True)
class Plan:
    """How a ``LutSpec`` is computed on its level (everything static the code generator needs)."""

    spec: LutSpec
    level: object  #: the jit.CpuLevel
    kind: str  #: "vbmi", "shuf" (int8 tables) or "exact" (float tables, shuf layout)
    isa: str  #: intrinsics used: "vbmi", "avx512bw", "avx2", "ssse3" or "generic"
    vbytes: int  #: bytes per weight vector
    slice_k: int  #: K covered by one weight vector (16 for vbmi, 4 otherwise)
    ns: int  #: outputs per nibble half of a weight vector
    nv: int  #: vectors per n-group in the layout
    kp: int  #: block_k padded to slices
    npad: int  #: block_n padded to whole vectors
    run_k: int  #: K sharing one float table scale and one integer accumulator
    rmax: int  #: largest per-table integer multiplier (vbmi; 1 otherwise)

    @property
    def bits(self) -> int:
        return self.spec.bits

    @property
    def vec_n(self) -> int:
        """Outputs covered by one weight vector (both nibbles)."""
        return 2 * self.ns

    @property
    def nslices(self) -> int:
        return self.kp // self.slice_k

    @property
    def ngroups(self) -> list[int]:
        """Vectors in each n-group of a tile."""
        nvec = self.npad // self.vec_n
        full, rest = divmod(nvec, self.nv)
        return [self.nv] * full + ([rest] if rest else [])

    @property
    def ngroup_bytes(self) -> list[int]:
        return [self.nslices * self.bits * v * self.vbytes for v in self.ngroups]

    @property
    def tile_bytes(self) -> int:
        return sum(self.ngroup_bytes)

    @property
    def flanes(self) -> int:
        """float lanes of one accumulator vector"""
        return 16 if self.kind == "vbmi" else self.vbytes // 4

    # byte position -> (K offset of its group within the slice, n offset of its low nibble)
    def byte_map(self) -> tuple[np.ndarray, np.ndarray]:
        p = np.arange(self.vbytes)
        if self.kind == "vbmi":
            return 4 * (p % 4), p // 4
        q = self.vbytes // 4
        return np.zeros_like(p), (p % 4) * q + p // 4


def _features(level) -> frozenset[str]:
    from bittile.backends.llvm import jit

    if level.name == "host":
        return jit.host_features()
    return _LEVEL_FEATURES.get(level.name, frozenset())


def _check_spec(spec: LutSpec) -> None:
    def bad(msg):
        raise BittileError(f"invalid LutSpec {spec}: {msg}")

    if not 1 <= spec.bits <= 8:
        bad("bits must be in 1..8")
    if spec.m < 1 or spec.block_n < 1 or spec.block_k < 4:
        bad("m, block_n must be >= 1 and block_k >= 4")
    if spec.block_k % 4 or spec.group_k % 4 or spec.group_k < 4:
        bad("block_k and group_k must be multiples of 4")
    if spec.block_k % spec.group_k:
        bad("group_k must divide block_k")
    if spec.group_k > 65536:
        bad("group_k must be at most 65536 (int32 accumulators)")


@functools.cache
def make_plan(spec: LutSpec) -> Plan:
    from bittile.backends.llvm import jit

    _check_spec(spec)
    level = jit.resolve_level(spec.level)
    feats = _features(level) if spec.intrinsics else frozenset()
    wide = level.vector_bits >= 512
    if wide and {"avx512bw", "avx512vbmi", "avx512vnni"} <= feats and not spec.exact:
        kind, isa, vbytes = "vbmi", "vbmi", 64
    else:
        kind = "exact" if spec.exact else "shuf"
        if wide and "avx512bw" in feats:
            isa, vbytes = "avx512bw", 64
        elif "avx2" in feats:
            isa, vbytes = "avx2", 32
        elif "ssse3" in feats:
            isa, vbytes = "ssse3", 16
        else:
            isa = "generic"
            vbytes = 64 if wide else 32 if level.vector_bits >= 256 else 16
        if kind == "exact" and isa == "avx512bw" and "avx512f" not in feats:
            isa = "avx2"
    if kind == "vbmi":
        slice_k, ns, nv = 16, 16, 4
        run_k = spec.group_k
        rmax = 16
    else:
        slice_k, ns = 4, vbytes
        nv = 1 if kind == "exact" else 2
        if kind == "exact":
            run_k = spec.group_k
        else:
            # int16 accumulators: a group adds at most 127 * (2^bits - 1) to one of them
            groups = max(1, min(8, 32767 // (127 * ((1 << spec.bits) - 1))))
            run_k = max(d for d in range(4, 4 * groups + 1, 4) if spec.group_k % d == 0)
        rmax = 1
    kp = -(-spec.block_k // slice_k) * slice_k
    vec_n = 2 * ns
    npad = -(-spec.block_n // vec_n) * vec_n
    return Plan(spec, level, kind, isa, vbytes, slice_k, ns, nv, kp, npad, run_k, rmax)


def tile_bytes(spec: LutSpec) -> int:
    """Bytes of one repacked tile."""
    return make_plan(spec).tile_bytes


def _tile_maps(plan: Plan):
    """For every byte of a tile: the K index of the first code of its groups (low and high
    nibble share it), its plane, and the n index of the low / high nibble (within the padded
    tile)."""
    kofs, nofs = plan.byte_map()
    ks, ps, nlo = [], [], []
    n0 = 0
    for nvec in plan.ngroups:
        s = np.arange(plan.nslices)[:, None, None, None]
        b = np.arange(plan.bits)[None, :, None, None]
        j = np.arange(nvec)[None, None, :, None]
        shape = (plan.nslices, plan.bits, nvec, plan.vbytes)
        ks.append(np.broadcast_to(s * plan.slice_k + kofs, shape).ravel())
        ps.append(np.broadcast_to(b + 0 * kofs, shape).ravel())
        nlo.append(np.broadcast_to(n0 + j * plan.vec_n + nofs, shape).ravel())
        n0 += nvec * plan.vec_n
    k = np.concatenate(ks)
    return k, np.concatenate(ps), np.concatenate(nlo), np.concatenate(nlo) + plan.ns


def _tiles(codes: np.ndarray, plan: Plan, k_axis: int) -> tuple[np.ndarray, int, int]:
    """codes -> [KT, NT, kp, npad] uint8, zero padded."""
    if codes.ndim != 2 or k_axis not in (0, 1):
        raise BittileError("repack needs a 2-D code array and k_axis 0 or 1")
    c = codes if k_axis == 0 else codes.T
    spec = plan.spec
    if c.size and (c.min() < 0 or c.max() >= 1 << spec.bits):
        raise BittileError(f"weight codes must be in [0, {1 << spec.bits}) for {spec.bits} bits")
    K, N = c.shape
    kt, nt = -(-K // spec.block_k), -(-N // spec.block_n)
    full = np.zeros((kt * spec.block_k, nt * spec.block_n), np.uint8)
    full[:K, :N] = c
    t = full.reshape(kt, spec.block_k, nt, spec.block_n).transpose(0, 2, 1, 3)
    out = np.zeros((kt, nt, plan.kp, plan.npad), np.uint8)
    out[:, :, :spec.block_k, :spec.block_n] = t
    return out, K, N


def repack(codes: np.ndarray, spec: LutSpec, k_axis: int = 0) -> np.ndarray:
    """Weight codes (2-D, values in [0, 2^bits), K along ``k_axis``) -> the lookup layout: a flat
    uint8 array of tiles, tile ``(kt, nt)`` at byte ``(kt * NT + nt) * tile_bytes(spec)``."""
    plan = make_plan(spec)
    t, _, _ = _tiles(np.asarray(codes), plan, k_axis)
    k, p, nlo, nhi = _tile_maps(plan)
    p = p.astype(np.uint8)
    lo = np.zeros(t.shape[:2] + k.shape, np.uint8)
    hi = np.zeros_like(lo)
    for jj in range(4):
        lo |= ((t[:, :, k + jj, nlo] >> p) & 1) << jj
        hi |= ((t[:, :, k + jj, nhi] >> p) & 1) << jj
    return (lo | (hi << 4)).ravel()


def unrepack(packed: np.ndarray, spec: LutSpec, K: int, N: int, k_axis: int = 0) -> np.ndarray:
    """The inverse of ``repack``: the [K, N] (or [N, K]) codes of a repacked matrix."""
    plan = make_plan(spec)
    kt, nt = -(-K // spec.block_k), -(-N // spec.block_n)
    packed = np.asarray(packed, np.uint8)
    if packed.size != kt * nt * plan.tile_bytes:
        raise BittileError("packed array has the wrong size for this spec and shape")
    k, p, nlo, nhi = _tile_maps(plan)
    tb = packed.reshape(kt, nt, -1)
    t = np.zeros((kt, nt, plan.kp, plan.npad), np.uint8)
    for b in range(spec.bits):
        sel = p == b
        for half, nn in ((0, nlo[sel]), (4, nhi[sel])):
            for jj in range(4):
                bit = (tb[:, :, sel] >> (half + jj)) & 1
                t[:, :, k[sel] + jj, nn] |= (bit << b).astype(np.uint8)
    full = t[:, :, :spec.block_k, :spec.block_n].transpose(0, 2, 1, 3)
    full = full.reshape(kt * spec.block_k, nt * spec.block_n)[:K, :N]
    return full if k_axis == 0 else full.T


def period_k(plan: Plan) -> int:
    """K after which the pattern of slices and runs repeats."""
    return math.lcm(plan.run_k, plan.slice_k)
