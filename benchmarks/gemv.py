"""GEMV and small-M GEMM with low-bit weights: bittile's kernels against every baseline, one run.

The operation is a Linear layer, ``y[M, N] = x[M, K] @ W.T`` with ``W`` of shape ``[N, K]``
(N out features, K in features), float32 activations ``x`` and float32 results. Weights are
quantized per group of ``group_size`` (128) consecutive elements along K:

* unsigned formats ``u1 u2 u3 u4 u8``: codes ``q`` in ``[0, 2**bits)``, a scale ``s`` and a zero
  point ``z`` (in code units) per (row, group): ``W = (q - z) * s`` (asymmetric);
* signed formats such as ``i4``: codes in ``[-2**(bits-1), 2**(bits-1))``, ``W = q * s``
  (symmetric, ``z`` = 0).

The codes are also stored packed (`QuantizedWeight.packed`): each row is a dense LSB-first
bitstream, which is bittile's own memory form (``bittile.ir.bitstream``), so a bittile kernel
can use the buffer as it is. The data are random (only the timing matters) but chosen so that
the bfloat16 baselines see exact inputs: activations are bfloat16 values, scales have 4
significant bits and zero points are integers. Every contender's result is checked once
against a float64 reference before it is timed; a contender whose result is wrong gets no time.

Contenders are registered in a table (`register_contender`). The baselines registered here:

``numpy_fp32``      numpy matmul with the dequantized float32 weight (``W @ x`` when M = 1)
``torch_fp32``      ``torch.nn.functional.linear`` in float32
``torch_bf16``      the same in bfloat16 (activations converted in the timed call, result to f32)
``torch_int4``      torch's int4 CPU kernel ``_weight_int4pack_mm_for_cpu`` with bfloat16
                    activations and scales: its fast path (u4 and i4 only)
``torch_int4_f32``  the same kernel with float32 activations and scales: a much slower generic
                    path in torch 2.13, so only timed at M = 1
``numpy_dequant``   per call: unpack the codes, dequantize to float32, matmul (every format)

bittile's kernels plug in through `register_contender` (family ``"bittile"``), either from code
that imports this module or with ``--plugin MODULE`` on the command line; `check_targets` then
evaluates the issue's performance targets for them. Until one is registered the targets read
"not measured".

Run from the repository root: ``python benchmarks/gemv.py`` (all cases, a few minutes) or
``python benchmarks/gemv.py --quick``. With the editable install the module is also importable
as ``bittile.benchmarks.gemv``.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:
    from . import common
except ImportError:  # run as a script: python benchmarks/gemv.py
    import common

SCHEMA = "bittile.benchmarks.gemv/1"
GROUP_SIZE = 128
DEFAULT_SHAPES: tuple[tuple[int, int], ...] = ((4096, 4096), (11008, 4096), (4096, 11008))
DEFAULT_WEIGHTS: tuple[str, ...] = ("u1", "u2", "u3", "u4", "u8", "i4")
DEFAULT_M: tuple[int, ...] = (1, 32)
DEFAULT_OUT = common.REPO_ROOT / "benchmarks" / "results" / "gemv.json"
QUICK_OUT = common.REPO_ROOT / "benchmarks" / "results" / "gemv_quick.json"

# Tolerances on max|y - ref| / max|ref| (ref: float64 result from the same quantized weights).
TOL_FP32 = 1e-4  # float32 products, float32 accumulation
TOL_BF16 = 1e-2  # bfloat16 weights or a bfloat16 result (8 significant bits)

# Other processes' CPU share above which a timing is flagged (and re-timed): torch's two-thread
# pool loses far more than that share when one of its threads waits for a core.
BUSY_THRESHOLD = 0.05
HEADLINE = (4096, 4096)
BANDWIDTH_SHAPE = (11008, 4096)


@dataclass(frozen=True)
class RunConfig:
    shapes: tuple[tuple[int, int], ...] = DEFAULT_SHAPES
    weights: tuple[str, ...] = DEFAULT_WEIGHTS
    ms: tuple[int, ...] = DEFAULT_M
    repeats: int = 30
    warmup: int = 3
    max_seconds: float = 2.0  # time budget of the timed calls of one contender on one case
    min_seconds: float = 0.3  # time fast contenders for at least this long (more repeats)
    group_size: int = GROUP_SIZE
    bandwidth_bytes: int = 512 * common.MIB
    threads: int | None = None  # torch threads; None = usable cores
    contenders: tuple[str, ...] | None = None  # None = all registered
    seed: int = 0
    quick: bool = False
    idle_check_seconds: float = 1.0  # how long to sample other processes' CPU use, before/after
    # Re-time an entry (after a pause) when other processes used >= BUSY_THRESHOLD of the CPUs
    # during its timed calls; the least disturbed attempt is kept.
    retries: int = 2
    retry_wait_seconds: float = 3.0


QUICK_CONFIG = RunConfig(
    shapes=((256, 512),),
    ms=(1, 4),
    repeats=3,
    warmup=1,
    max_seconds=0.1,
    min_seconds=0.0,
    bandwidth_bytes=16 * common.MIB,
    quick=True,
    idle_check_seconds=0.2,
    retries=0,
)


# --------------------------------------------------------------------------------------------
# Weight formats and data


@dataclass(frozen=True)
class WeightFormat:
    """``u<bits>`` (unsigned codes, asymmetric) or ``i<bits>`` (signed codes, symmetric)."""

    bits: int
    signed: bool

    @property
    def name(self) -> str:
        return f"{'i' if self.signed else 'u'}{self.bits}"

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @classmethod
    def parse(cls, text: str) -> WeightFormat:
        match = re.fullmatch(r"([ui]?)(\d+)", text.strip().lower())
        if not match:
            raise ValueError(f"weight format {text!r}: expected u<bits> or i<bits>, e.g. u4")
        signed, bits = match.group(1) == "i", int(match.group(2))
        if not 1 <= bits <= 8 or (signed and bits < 2):
            raise ValueError(f"weight format {text!r}: bits must be 1..8 (2..8 when signed)")
        return cls(bits, signed)


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack ``codes`` [N, K] row by row into LSB-first bitstreams: uint8 [N, K * bits // 8].

    Code ``k`` of a row occupies bits ``[k*bits, (k+1)*bits)`` of the row's bytes, bit 0 being
    the least significant bit of byte 0; signed codes are stored in two's complement.
    """
    n, k = codes.shape
    if k % 8:
        raise ValueError(f"K = {k} must be a multiple of 8")
    mask = np.uint64((1 << bits) - 1)
    out = np.empty((n, k * bits // 8), np.uint8)
    chunk = max(1, (1 << 22) // k)  # bound the uint64 temporaries
    for start in range(0, n, chunk):
        rows = codes[start : start + chunk].astype(np.int64).astype(np.uint64) & mask
        words = np.zeros((rows.shape[0], k // 8), "<u8")  # 8 codes = `bits` bytes
        for j in range(8):
            words |= rows[:, j::8] << np.uint64(bits * j)
        as_bytes = words.view(np.uint8).reshape(rows.shape[0], k // 8, 8)
        out[start : start + chunk] = as_bytes[:, :, :bits].reshape(-1, k * bits // 8)
    return out


def unpack_codes(packed: np.ndarray, bits: int, k: int, signed: bool = False) -> np.ndarray:
    """Inverse of `pack_codes`: uint8 codes [N, K] (int8, sign-extended, when ``signed``)."""
    n = packed.shape[0]
    mask = (1 << bits) - 1
    if 8 % bits == 0:  # whole codes per byte: code j of a byte sits at bit bits*j
        per_byte = 8 // bits
        out = np.empty((n, k // per_byte, per_byte), np.uint8)
        for j in range(per_byte):
            np.bitwise_and(packed >> (bits * j), mask, out=out[:, :, j])
    else:  # 8 codes in `bits` bytes: widen each group to one little-endian uint64
        wide = np.zeros((n, k // 8, 8), np.uint8)
        wide[:, :, :bits] = packed.reshape(n, k // 8, bits)
        words = wide.view("<u8")[:, :, 0]
        out = np.empty((n, k // 8, 8), np.uint8)
        for j in range(8):
            out[:, :, j] = (words >> np.uint64(bits * j)) & np.uint64(mask)
    codes = out.reshape(n, k)
    if signed:
        shift = 8 - bits
        codes = (codes << shift).view(np.int8) >> shift
    return codes


@dataclass
class QuantizedWeight:
    """A group-quantized weight [N, K]: ``W = (codes - zeros) * scales`` per (row, group)."""

    fmt: WeightFormat
    codes: np.ndarray  # [N, K] uint8 (unsigned formats) or int8 (signed formats)
    scales: np.ndarray  # [N, K // group_size] float32
    zeros: np.ndarray  # [N, K // group_size] float32, in code units; all 0 for signed formats
    group_size: int
    packed: np.ndarray  # [N, K * bits // 8] uint8, see `pack_codes`

    @property
    def shape(self) -> tuple[int, int]:
        return self.codes.shape

    @property
    def weight_bytes(self) -> int:
        """Bytes of the packed codes (scales and zero points not counted)."""
        return int(self.packed.nbytes)

    def dequantize(self, dtype=np.float32) -> np.ndarray:
        n, k = self.shape
        groups = k // self.group_size
        w = self.codes.reshape(n, groups, self.group_size).astype(dtype)
        w -= self.zeros[:, :, None].astype(dtype)
        w *= self.scales[:, :, None].astype(dtype)
        return w.reshape(n, k)


def make_weight(
    n: int, k: int, fmt: WeightFormat, group_size: int, rng: np.random.Generator
) -> QuantizedWeight:
    """Random codes, scales and zero points (see the module docstring for the value choices)."""
    if k % group_size or k % 8:
        raise ValueError(f"K = {k} must be a multiple of the group size {group_size} and of 8")
    code_dtype = np.int8 if fmt.signed else np.uint8
    codes = rng.integers(fmt.qmin, fmt.qmax + 1, size=(n, k), dtype=code_dtype)
    groups = k // group_size
    scales = (rng.integers(8, 16, size=(n, groups)) * 2.0**-10).astype(np.float32)
    if fmt.signed:
        zeros = np.zeros((n, groups), np.float32)
    else:
        zeros = rng.integers(0, 1 << fmt.bits, size=(n, groups)).astype(np.float32)
    return QuantizedWeight(fmt, codes, scales, zeros, group_size, pack_codes(codes, fmt.bits))


def make_activations(m: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [M, K] standard normal values truncated to bfloat16 precision."""
    x = rng.standard_normal((m, k), dtype=np.float32)
    return (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)


@dataclass
class GemvCase:
    """One benchmark case: ``y[M, N] = x[M, K] @ W.T`` with a quantized ``W``."""

    m: int
    weight: QuantizedWeight
    x: np.ndarray  # [M, K] float32
    _reference: np.ndarray | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return self.weight.shape[0]

    @property
    def k(self) -> int:
        return self.weight.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        return self.weight.shape

    @property
    def fmt(self) -> WeightFormat:
        return self.weight.fmt

    @property
    def group_size(self) -> int:
        return self.weight.group_size

    def reference(self) -> np.ndarray:
        """The exact-ish result: float64 [M, N] from the same quantized weights."""
        if self._reference is None:
            w = self.weight.dequantize(np.float64)
            self._reference = self.x.astype(np.float64) @ w.T
        return self._reference


# --------------------------------------------------------------------------------------------
# Contenders


SetupFn = Callable[[GemvCase], "Callable[[], Any] | None"]


@dataclass(frozen=True)
class Contender:
    """A way to compute a case. ``setup(case)`` does the untimed preparation (packing, layout
    changes, compilation) and returns a zero-argument callable that computes ``y`` from the
    case's ``x`` and weight, or None when the contender does not apply to the case."""

    name: str
    setup: SetupFn
    family: str = "bittile"  # "bittile" or "baseline"
    dense: bool = False  # independent of the weight format: measured once per (shape, M)
    tolerance: float = TOL_FP32
    bytes_read: Callable[[GemvCase], int] | None = None  # default: the packed code bytes
    description: str = ""


_REGISTRY: dict[str, Contender] = {}


def register_contender(
    name: str,
    setup: SetupFn,
    *,
    family: str = "bittile",
    dense: bool = False,
    tolerance: float = TOL_FP32,
    bytes_read: Callable[[GemvCase], int] | None = None,
    description: str = "",
    replace: bool = False,
) -> Contender:
    """Add a contender to the benchmark (this is where bittile's kernels plug in).

    ``setup(case: GemvCase)`` runs untimed and returns either None (the contender does not
    handle this case, e.g. another bit width) or a callable taking no arguments that returns
    ``y`` as a float32 array-like (numpy or torch) of shape [M, N] (or [N] when M = 1). The
    callable must compute ``y`` anew on every call from ``case.x`` and the weight prepared in
    ``setup``: its first result is checked against a float64 reference with ``tolerance``
    (max |y - ref| / max |ref|) and the contender is reported as a wrong result, with no time,
    if it fails. Useful inputs: ``case.x`` (float32 [M, K]), ``case.weight.packed`` (bittile's
    bitstream of the codes, row by row), ``.codes``, ``.scales``, ``.zeros`` (float32
    [N, K // group]; dequantization is ``(codes - zeros) * scales``), ``case.group_size``.

    Contenders of family ``"bittile"`` are the ones `check_targets` evaluates. ``bytes_read``
    gives the bytes one call must read from memory, for the effective-bandwidth column
    (default: the packed code bytes).
    """
    if name in _REGISTRY and not replace:
        raise ValueError(f"contender {name!r} is already registered")
    if family not in ("bittile", "baseline"):
        raise ValueError(f"family must be 'bittile' or 'baseline', got {family!r}")
    contender = Contender(name, setup, family, dense, tolerance, bytes_read, description)
    _REGISTRY[name] = contender
    return contender


def unregister_contender(name: str) -> None:
    _REGISTRY.pop(name, None)


def registered_contenders() -> list[Contender]:
    return list(_REGISTRY.values())


def _dense_bytes(itemsize: int) -> Callable[[GemvCase], int]:
    return lambda case: case.n * case.k * itemsize


def _setup_numpy_fp32(case: GemvCase):
    w = case.weight.dequantize(np.float32)
    if case.m == 1:
        x0 = np.ascontiguousarray(case.x[0])
        return lambda: w @ x0  # a true GEMV (sgemv)
    x, wt = case.x, w.T
    return lambda: x @ wt


def _import_torch():
    import torch

    return torch


def _setup_torch_fp32(case: GemvCase):
    torch = _import_torch()
    w = torch.from_numpy(case.weight.dequantize(np.float32))
    x = torch.from_numpy(case.x)
    linear = torch.nn.functional.linear
    return lambda: linear(x, w)


def _setup_torch_bf16(case: GemvCase):
    torch = _import_torch()
    w = torch.from_numpy(case.weight.dequantize(np.float32)).to(torch.bfloat16)
    x = torch.from_numpy(case.x)
    linear, bf16 = torch.nn.functional.linear, torch.bfloat16
    return lambda: linear(x.to(bf16), w).float()


def torch_int4_operands(weight: QuantizedWeight, dtype):
    """torch's int4 CPU operands for ``weight`` (a 4-bit format): (packed, scales_and_zeros).

    ``torch._convert_weight_to_int4pack_for_cpu(codes, inner_k_tiles)`` takes int32 codes
    [N, K] in [0, 16) (N a multiple of 16) and returns uint8 [N, K // 2]; on the CPU the
    ``inner_k_tiles`` argument is unused. ``torch._weight_int4pack_mm_for_cpu(x, packed,
    group_size, scales_and_zeros)`` dequantizes ``w = (q - 8) * scale + zero`` with
    ``scales_and_zeros`` of shape [K // group_size, N, 2] (``[..., 0]`` scale, ``[..., 1]``
    zero) in the dtype of ``x``. Our ``(q - z) * s`` is ``(q - 8) * s + (8 - z) * s``; signed
    codes are shifted by 8 into [0, 16) with zero 0.
    """
    torch = _import_torch()
    codes = weight.codes.astype(np.int32)
    if weight.fmt.signed:
        codes += 8
        zero = np.zeros_like(weight.scales)
    else:
        zero = (8.0 - weight.zeros) * weight.scales
    packed = torch._convert_weight_to_int4pack_for_cpu(torch.from_numpy(codes), 1)
    sz = np.ascontiguousarray(np.stack([weight.scales.T, zero.T], axis=-1), np.float32)
    return packed, torch.from_numpy(sz).to(dtype)


def _torch_int4_applies(case: GemvCase) -> bool:
    return case.fmt.bits == 4 and case.n % 16 == 0 and case.group_size in (32, 64, 128, 256)


def _setup_torch_int4(case: GemvCase):
    if not _torch_int4_applies(case):
        return None
    torch = _import_torch()
    packed, sz = torch_int4_operands(case.weight, torch.bfloat16)
    x, gs, bf16 = torch.from_numpy(case.x), case.group_size, torch.bfloat16
    mm = torch._weight_int4pack_mm_for_cpu
    return lambda: mm(x.to(bf16), packed, gs, sz).float()


def _setup_torch_int4_f32(case: GemvCase):
    if not _torch_int4_applies(case) or case.m != 1:
        return None
    torch = _import_torch()
    packed, sz = torch_int4_operands(case.weight, torch.float32)
    x, gs = torch.from_numpy(case.x), case.group_size
    mm = torch._weight_int4pack_mm_for_cpu
    return lambda: mm(x, packed, gs, sz)


def _setup_numpy_dequant(case: GemvCase):
    wt = case.weight
    n, k = wt.shape
    fmt, gs = wt.fmt, wt.group_size
    packed, scales, zeros = wt.packed, wt.scales[:, :, None], wt.zeros[:, :, None]
    x = case.x

    def run():
        w = unpack_codes(packed, fmt.bits, k, fmt.signed).reshape(n, k // gs, gs)
        w = w.astype(np.float32)
        if not fmt.signed:
            w -= zeros
        w *= scales
        w = w.reshape(n, k)
        return w @ x[0] if case.m == 1 else x @ w.T

    return run


def _register_baselines() -> None:
    baseline = {"family": "baseline", "replace": True}
    register_contender(
        "numpy_fp32",
        _setup_numpy_fp32,
        dense=True,
        bytes_read=_dense_bytes(4),
        description="numpy matmul, dequantized float32 weight (W @ x for M = 1)",
        **baseline,
    )
    register_contender(
        "torch_fp32",
        _setup_torch_fp32,
        dense=True,
        bytes_read=_dense_bytes(4),
        description="torch.nn.functional.linear, float32",
        **baseline,
    )
    register_contender(
        "torch_bf16",
        _setup_torch_bf16,
        dense=True,
        tolerance=TOL_BF16,
        bytes_read=_dense_bytes(2),
        description="torch.nn.functional.linear, bfloat16 weight and activations "
        "(conversion of x and y inside the timed call)",
        **baseline,
    )
    register_contender(
        "torch_int4",
        _setup_torch_int4,
        tolerance=TOL_BF16,
        description="torch._weight_int4pack_mm_for_cpu, bfloat16 activations and scales "
        "(conversion of x and y inside the timed call); u4 and i4",
        **baseline,
    )
    register_contender(
        "torch_int4_f32",
        _setup_torch_int4_f32,
        description="torch._weight_int4pack_mm_for_cpu, float32 activations and scales "
        "(torch's slow generic path; M = 1 only)",
        **baseline,
    )
    register_contender(
        "numpy_dequant",
        _setup_numpy_dequant,
        description="numpy per call: unpack codes, dequantize to float32, matmul",
        **baseline,
    )


_register_baselines()

# bittile's kernels: register them here (or from a --plugin module) with
#     register_contender("bittile_llvm", setup_fn)            # family "bittile" by default
# where setup_fn(case) returns None for the formats and shapes the kernel does not handle.


# --------------------------------------------------------------------------------------------
# Checking and measuring


def _to_numpy(y: Any) -> np.ndarray:
    if hasattr(y, "detach"):  # a torch tensor
        y = y.detach().float().cpu().numpy()
    return np.asarray(y)


def check_result(y: Any, case: GemvCase, tolerance: float) -> tuple[bool, float | None, str]:
    """Compare a contender's result with the float64 reference: (ok, relative error, reason)."""
    y = _to_numpy(y)
    if y.size != case.m * case.n:
        return False, None, f"result has shape {list(y.shape)}, expected [{case.m}, {case.n}]"
    y = y.reshape(case.m, case.n).astype(np.float64)
    if not np.isfinite(y).all():
        return False, None, "result has NaN or infinite values"
    ref = case.reference()
    scale = max(float(np.abs(ref).max()), np.finfo(np.float64).tiny)
    err = float(np.abs(y - ref).max()) / scale
    if not err <= tolerance:
        return False, err, f"max |y - ref| / max |ref| = {err:.3g} > tolerance {tolerance:.3g}"
    return True, err, ""


def measure(contender: Contender, case: GemvCase, config: RunConfig) -> dict[str, Any]:
    """Set up, check and time one contender on one case; never raises for its failures."""
    entry: dict[str, Any] = {
        "contender": contender.name,
        "family": contender.family,
        "N": case.n,
        "K": case.k,
        "M": case.m,
        "weights": None if contender.dense else case.fmt.name,
        "bits": None if contender.dense else case.fmt.bits,
        "weight_bytes": None if contender.dense else case.weight.weight_bytes,
        "status": "ok",
    }
    if contender.dense:
        entry["checked_with"] = case.fmt.name
    try:
        fn = contender.setup(case)
    except Exception as exc:
        return {**entry, "status": "error", "error": f"setup: {type(exc).__name__}: {exc}"}
    if fn is None:
        return {**entry, "status": "not_applicable"}
    try:
        ok, err, reason = check_result(fn(), case, contender.tolerance)
    except Exception as exc:
        return {**entry, "status": "error", "error": f"call: {type(exc).__name__}: {exc}"}
    entry["max_rel_err"] = err
    entry["tolerance"] = contender.tolerance
    if not ok:
        return {**entry, "status": "wrong_result", "error": reason}
    best: tuple[float, float | None, common.Timing] | None = None
    attempts = 0
    for attempt in range(1 + max(0, config.retries)):
        if attempt:
            time.sleep(config.retry_wait_seconds)
        attempts += 1
        with common.OtherCpuMeter() as meter:
            timing = common.time_callable(
                fn,
                warmup=config.warmup,
                repeats=config.repeats,
                max_seconds=config.max_seconds,
                min_seconds=config.min_seconds,
            )
        busy = meter.fraction or 0.0  # None: too short to tell, taken as undisturbed
        if best is None or busy < best[0]:
            best = (busy, meter.fraction, timing)
        if busy < BUSY_THRESHOLD:
            break
    entry.update(best[2].as_dict())
    entry["other_cpu_use"] = best[1]
    entry["attempts"] = attempts
    entry["bytes_read"] = int(
        contender.bytes_read(case) if contender.bytes_read else case.weight.weight_bytes
    )
    return entry


def _select_contenders(names: Iterable[str] | None) -> list[Contender]:
    if names is None:
        return registered_contenders()
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise ValueError(f"unknown contenders {unknown}; registered: {sorted(_REGISTRY)}")
    return [_REGISTRY[n] for n in names]


def run_benchmark(config: RunConfig, *, log: Callable[[str], None] | None = print) -> dict:
    """Run every case and contender; return the results dict (what the JSON file holds)."""
    log = log or (lambda _msg: None)
    started = time.perf_counter()
    formats = [WeightFormat.parse(w) for w in config.weights]
    contenders = _select_contenders(config.contenders)
    common.set_threads(config.threads)
    machine = common.machine_info()
    log(
        f"machine: {machine['cpu_model']}, {machine['usable_cores']} cores, "
        f"torch threads {machine['threads']['torch_threads']}"
    )
    busy_before = common.other_cpu_use(config.idle_check_seconds)
    warning = common.busy_warning(busy_before, BUSY_THRESHOLD)
    if warning:
        log(warning)
    log(f"bandwidth probe: copying {config.bandwidth_bytes / common.MIB:.0f} MiB ...")
    bandwidth = common.bandwidth_probe(config.bandwidth_bytes)
    log(f"bandwidth: {bandwidth['gbps']:.1f} GB/s ({bandwidth['method']})")

    entries: list[dict[str, Any]] = []
    for n, k in config.shapes:
        xs = {
            m: make_activations(m, k, np.random.default_rng([config.seed, n, k, m]))
            for m in config.ms
        }
        for fi, fmt in enumerate(formats):
            rng = np.random.default_rng([config.seed, n, k, fmt.bits, int(fmt.signed)])
            weight = make_weight(n, k, fmt, config.group_size, rng)
            for m in config.ms:
                case = GemvCase(m, weight, xs[m])
                for contender in contenders:
                    if contender.dense and fi > 0:
                        continue  # dense contenders do not depend on the format
                    entry = measure(contender, case, config)
                    entries.append(entry)
                    log(_progress_line(entry))
                case._reference = None
            del weight
    _add_derived(entries, bandwidth["gbps"])
    busy_after = common.other_cpu_use(config.idle_check_seconds)
    warning = common.busy_warning(max(busy_before or 0.0, busy_after or 0.0), BUSY_THRESHOLD)
    warnings = [warning] if warning else []
    timed = [e for e in entries if e["status"] == "ok"]
    disturbed = [e for e in timed if (e.get("other_cpu_use") or 0.0) >= BUSY_THRESHOLD]
    if disturbed:
        warnings.append(
            f"warning: {len(disturbed)} of {len(timed)} timings ran while other processes used "
            f">= {100 * BUSY_THRESHOLD:.0f}% of the CPUs (see the status column / other_cpu_use)"
        )
    results = {
        "schema": SCHEMA,
        "machine": machine,
        "duration_s": round(time.perf_counter() - started, 1),
        "other_cpu_use": {"before": busy_before, "after": busy_after},
        "load_average_after": common.load_average(),
        "warnings": warnings,
        "config": {
            "shapes": [list(s) for s in config.shapes],
            "weights": [f.name for f in formats],
            "m": list(config.ms),
            "repeats": config.repeats,
            "warmup": config.warmup,
            "max_seconds": config.max_seconds,
            "min_seconds": config.min_seconds,
            "group_size": config.group_size,
            "seed": config.seed,
            "quick": config.quick,
            "retries": config.retries,
        },
        "conventions": {
            "operation": "y[M, N] = x[M, K] @ W.T; W [N, K] quantized per group of group_size "
            "along K: W = (q - z) * s (u formats), q * s (i formats); float32 x and y",
            "time": "per-call wall time (time.perf_counter_ns) after warm-up; median and min, "
            "in ms; at least `repeats` timed calls and more until min_seconds were spent; "
            "they stop after max_seconds once 3 were made; an entry disturbed "
            "by other processes is re-timed up to `retries` times, keeping the least disturbed "
            "attempt (`attempts`)",
            "speedup": "speedup_vs_X = median time of X / median time of the contender on the "
            "same (N, K, M); > 1 means faster than X. torch_int4's time for a (N, K, M) is "
            "its u4 time (i4 if u4 was not run), for every weight format",
            "bandwidth_fraction": "bytes_read / median time / bandwidth.gbps; bytes_read is the "
            "packed code bytes for quantized contenders (scales and zero points not counted), "
            "N*K*4 or N*K*2 for the dense float32 / bfloat16 baselines",
            "other_cpu_use": "share of all CPUs that other processes used during an entry's "
            "timed calls (/proc/stat busy time minus this process's CPU time); timings with "
            f">= {BUSY_THRESHOLD} are flagged as disturbed",
            "caches": "the same weight is used by every timed call, so weights that fit in the "
            "last-level cache are read from it (see machine.caches)",
        },
        "bandwidth": bandwidth,
        "contenders": {
            c.name: {
                "family": c.family,
                "dense": c.dense,
                "tolerance": c.tolerance,
                "description": c.description,
            }
            for c in contenders
        },
        "results": entries,
    }
    results["targets"] = [
        {"target": desc, "reached": reached, "numbers": numbers}
        for desc, reached, numbers in check_targets(results)
    ]
    return results


def _progress_line(entry: dict[str, Any]) -> str:
    where = f"{entry['N']}x{entry['K']} M={entry['M']} {entry['weights'] or 'dense':>5}"
    what = f"{entry['contender']:<16}"
    if entry["status"] == "ok":
        return f"  {where} {what} {entry['median_ms']:9.3f} ms"
    return f"  {where} {what} {entry['status']} {entry.get('error', '')}".rstrip()


def _lookup(
    entries: Sequence[dict], name: str, n: int, k: int, m: int, weights: str | None = None
) -> dict | None:
    for e in entries:
        if (
            e["contender"] == name
            and e["status"] == "ok"
            and (e["N"], e["K"], e["M"]) == (n, k, m)
            and (weights is None or e["weights"] == weights)
        ):
            return e
    return None


def _torch_int4_entry(entries: Sequence[dict], n: int, k: int, m: int) -> dict | None:
    return _lookup(entries, "torch_int4", n, k, m, "u4") or _lookup(
        entries, "torch_int4", n, k, m, "i4"
    )


def _add_derived(entries: list[dict], bandwidth_gbps: float) -> None:
    for e in entries:
        if e["status"] != "ok":
            continue
        n, k, m, t = e["N"], e["K"], e["M"], e["median_ms"]
        fp32 = _lookup(entries, "numpy_fp32", n, k, m)
        int4 = _torch_int4_entry(entries, n, k, m)
        e["speedup_vs_numpy_fp32"] = fp32["median_ms"] / t if fp32 else None
        e["speedup_vs_torch_int4"] = int4["median_ms"] / t if int4 else None
        e["gbps"] = e["bytes_read"] / (t * 1e6)
        e["bandwidth_fraction"] = e["gbps"] / bandwidth_gbps if bandwidth_gbps else None


# --------------------------------------------------------------------------------------------
# Targets


def _best_bittile(entries: Sequence[dict], n: int, k: int, m: int, weights: str) -> dict | None:
    found = [
        e
        for e in entries
        if e["family"] == "bittile"
        and e["status"] == "ok"
        and (e["N"], e["K"], e["M"], e["weights"]) == (n, k, m, weights)
    ]
    return min(found, key=lambda e: e["median_ms"]) if found else None


def _speedup_target(desc, fast, slow, need, fast_label, slow_label) -> tuple[str, bool, dict]:
    numbers: dict[str, Any] = {"required_speedup": need}
    missing = [label for label, e in ((fast_label, fast), (slow_label, slow)) if e is None]
    if fast is not None:
        numbers[f"{fast_label}_ms"] = fast["median_ms"]
        numbers[f"{fast_label}_contender"] = fast["contender"]
    if slow is not None:
        numbers[f"{slow_label}_ms"] = slow["median_ms"]
        numbers[f"{slow_label}_contender"] = slow["contender"]
    if missing:
        numbers["missing"] = missing
        return desc, False, numbers
    speedup = slow["median_ms"] / fast["median_ms"]
    numbers["speedup"] = speedup
    return desc, speedup >= need, numbers


def check_targets(results: dict) -> list[tuple[str, bool, dict]]:
    """Evaluate the issue's targets on a results dict (as written to JSON).

    "W4" is the u4 format (asymmetric, the same arithmetic as torch's int4 kernel) and
    "bittile" the fastest correct contender of family "bittile" on the case. Each target is
    (description, reached, numbers); a target whose contenders were not measured is not
    reached, and its numbers list what is missing.
    """
    entries = results["results"]
    bw = results["bandwidth"]["gbps"]
    n, k = HEADLINE
    w4 = _best_bittile(entries, n, k, 1, "u4")
    targets = [
        _speedup_target(
            f"W4 GEMV {n}x{k} (M=1): bittile >= 1.5x faster than torch's int4 CPU kernel",
            w4,
            _torch_int4_entry(entries, n, k, 1),
            1.5,
            "bittile_w4",
            "torch_int4",
        ),
        _speedup_target(
            f"W4 GEMV {n}x{k} (M=1): bittile >= 3x faster than numpy fp32",
            w4,
            _lookup(entries, "numpy_fp32", n, k, 1),
            3.0,
            "bittile_w4",
            "numpy_fp32",
        ),
        _speedup_target(
            f"W2 GEMV {n}x{k} (M=1): bittile W2 >= 1.7x faster than bittile W4",
            _best_bittile(entries, n, k, 1, "u2"),
            w4,
            1.7,
            "bittile_w2",
            "bittile_w4",
        ),
        _speedup_target(
            f"W4 GEMM {n}x{k} at M=32: bittile no slower than torch's int4 CPU kernel",
            _best_bittile(entries, n, k, 32, "u4"),
            _torch_int4_entry(entries, n, k, 32),
            1.0,
            "bittile_w4",
            "torch_int4",
        ),
    ]
    bn, bk = BANDWIDTH_SHAPE
    desc = (
        f"W4 GEMV {bn}x{bk} (M=1): bittile reads the packed weight bytes at >= 50% of the "
        "measured bandwidth"
    )
    e = _best_bittile(entries, bn, bk, 1, "u4")
    numbers: dict[str, Any] = {"required_fraction": 0.5, "bandwidth_gbps": bw}
    if e is None:
        numbers["missing"] = ["bittile_w4"]
        targets.append((desc, False, numbers))
    else:
        gbps = e["weight_bytes"] / (e["median_ms"] * 1e6)
        numbers.update(
            bittile_w4_contender=e["contender"],
            bittile_w4_ms=e["median_ms"],
            weight_bytes=e["weight_bytes"],
            gbps=gbps,
            fraction=gbps / bw,
        )
        targets.append((desc, gbps / bw >= 0.5, numbers))
    return targets


# --------------------------------------------------------------------------------------------
# Reporting


def format_report(results: dict) -> str:
    """The stdout report: bandwidth, the table of times and ratios, the targets."""
    bw = results["bandwidth"]
    lines = [
        f"memory bandwidth: {bw['gbps']:.1f} GB/s ({bw['method']}, "
        f"{bw['bytes'] / common.MIB:.0f} MiB buffers; read + write bytes per copy)",
        *results.get("warnings", []),
        "",
    ]
    order = {tuple(s): i for i, s in enumerate(results["config"]["shapes"])}
    weights = results["config"]["weights"]
    names = list(results["contenders"])
    entries = sorted(
        results["results"],
        key=lambda e: (
            order.get((e["N"], e["K"]), len(order)),
            e["M"],
            -1 if e["weights"] is None else weights.index(e["weights"]),
            names.index(e["contender"]) if e["contender"] in names else len(names),
        ),
    )
    rows = []
    for e in entries:
        if e["status"] == "not_applicable":
            continue
        ok = e["status"] == "ok"
        frac = e.get("bandwidth_fraction") if ok else None
        rows.append(
            [
                f"{e['N']}x{e['K']}",
                e["M"],
                e["weights"] or "dense",
                e["contender"],
                e.get("median_ms") if ok else None,
                e.get("min_ms") if ok else None,
                e.get("speedup_vs_numpy_fp32") if ok else None,
                e.get("speedup_vs_torch_int4") if ok else None,
                e.get("gbps") if ok else None,
                None if frac is None else 100.0 * frac,
                _status_text(e),
            ]
        )
    headers = [
        "NxK",
        "M",
        "weights",
        "contender",
        "median ms",
        "min ms",
        "x np_fp32",
        "x torch_int4",
        "GB/s",
        "% bw",
        "status",
    ]
    lines.append(common.format_table(headers, rows))
    lines.append("")
    lines.append("x X = speedup over X (X's median time / this one's; > 1 is faster).")
    lines.append(
        "% bw = bytes read (packed codes; dense: the float weight) / median time / probe bandwidth."
    )
    lines.append("")
    lines.append("targets:")
    for t in results["targets"]:
        nums = t["numbers"]
        if "missing" in nums:
            detail = "not measured (no result for " + ", ".join(nums["missing"]) + ")"
        elif "speedup" in nums:
            detail = f"speedup {nums['speedup']:.2f}x (need {nums['required_speedup']}x)"
        else:
            detail = (
                f"{nums['gbps']:.1f} GB/s = {100 * nums['fraction']:.0f}% of "
                f"{nums['bandwidth_gbps']:.1f} GB/s"
            )
        mark = "REACHED" if t["reached"] else "not reached"
        lines.append(f"  [{mark}] {t['target']}: {detail}")
    return "\n".join(lines)


def _status_text(e: dict) -> str:
    if e["status"] != "ok":
        return f"{e['status'].upper()}: {e.get('error', '')}"
    busy = e.get("other_cpu_use")
    if busy is not None and busy >= BUSY_THRESHOLD:
        return f"ok, other processes {100 * busy:.0f}% busy"
    return "ok"


def write_plot(results: dict, path: str | Path) -> Path | None:
    """A PNG with one panel per (shape, M): median time per format and contender (log scale),
    dense baselines as horizontal lines, and the time to read the packed codes at the probe's
    bandwidth. Returns None (writes nothing) when matplotlib is not installed."""
    plt = common.import_pyplot()
    if plt is None:
        return None
    entries = [e for e in results["results"] if e["status"] == "ok"]
    shapes = [tuple(s) for s in results["config"]["shapes"]]
    ms = results["config"]["m"]
    weights = results["config"]["weights"]
    bw = results["bandwidth"]["gbps"]
    quantized = [
        name
        for name in results["contenders"]
        if not results["contenders"][name]["dense"] and any(e["contender"] == name for e in entries)
    ]
    dense = [name for name in results["contenders"] if results["contenders"][name]["dense"]]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color = {name: colors[i % len(colors)] for i, name in enumerate(dense + quantized)}

    fig, axes = plt.subplots(
        len(shapes), len(ms), figsize=(5.5 * len(ms), 3.6 * len(shapes)), squeeze=False
    )
    xs = np.arange(len(weights))
    width = 0.8 / max(1, len(quantized))
    for (row, (n, k)), (col, m) in ((r, c) for r in enumerate(shapes) for c in enumerate(ms)):
        ax = axes[row][col]
        for i, name in enumerate(quantized):
            times = [(e := _lookup(entries, name, n, k, m, w)) and e["median_ms"] for w in weights]
            heights = [t if t else np.nan for t in times]
            ax.bar(xs - 0.4 + width * (i + 0.5), heights, width, label=name, color=color[name])
        for name in dense:
            e = _lookup(entries, name, n, k, m)
            if e:
                ax.axhline(e["median_ms"], ls="--", lw=1, color=color[name], label=name)
        bound = [n * k * WeightFormat.parse(w).bits / 8 / (bw * 1e6) for w in weights]
        ax.scatter(
            xs,
            bound,
            marker="_",
            s=300,
            color="black",
            zorder=3,
            label="packed codes at probe bandwidth",
        )
        ax.set_yscale("log")
        ax.set_xticks(xs, weights)
        ax.set_title(f"{n}x{k}, M={m}", fontsize=10)
        ax.set_ylabel("median ms")
        ax.grid(axis="y", which="both", alpha=0.3)
    handles, labels = {}, []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.legend(
        [handles[lab] for lab in labels],
        labels,
        loc="lower center",
        ncol=min(4, len(labels)),
        fontsize=8,
    )
    machine = results["machine"]
    fig.suptitle(
        f"GEMV/GEMM, group {results['config']['group_size']}: {machine['cpu_model']}, "
        f"{machine['usable_cores']} cores, {bw:.1f} GB/s copy",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) // 4), 1, 0.97))
    return common.save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# Command line


def _parse_shapes(text: str) -> tuple[tuple[int, int], ...]:
    shapes = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", part)
        if not match:
            raise argparse.ArgumentTypeError(f"shape {part!r}: expected NxK, e.g. 4096x4096")
        shapes.append((int(match.group(1)), int(match.group(2))))
    return tuple(shapes)




def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/gemv.py",
        description="GEMV / small-M GEMM with low-bit weights against numpy and torch baselines.",
    )
    parser.add_argument(
        "--shapes",
        type=_parse_shapes,
        help="weight shapes NxK, comma-separated (default: "
        + ",".join(f"{n}x{k}" for n, k in DEFAULT_SHAPES)
        + ")",
    )
    parser.add_argument(
        "--bits",
        type=common.parse_list,
        help="weight formats, comma-separated (default: "
        + ",".join(DEFAULT_WEIGHTS)
        + "); a bare number means u<bits>",
    )
    parser.add_argument(
        "--m", type=common.parse_ints, help="activation rows M, comma-separated (default: 1,32)"
    )
    parser.add_argument("--repeats", type=int, help="timed calls per case, at least (default 30)")
    parser.add_argument("--warmup", type=int, help="untimed calls first (default 3)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        help="time budget of one contender's timed calls on one case (default 2)",
    )
    parser.add_argument(
        "--min-seconds",
        type=float,
        help="time fast contenders for at least this long, with more calls (default 0.3)",
    )
    parser.add_argument(
        "--bandwidth-mb", type=float, help="buffer size of the bandwidth probe in MiB (default 512)"
    )
    parser.add_argument(
        "--retries",
        type=int,
        help="re-time a contender up to this many times when other processes "
        "disturbed its timing (default 2; 0 with --quick)",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: usable cores)")
    parser.add_argument(
        "--contenders", type=common.parse_list, help="run only these contenders, comma-separated"
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first; it registers contenders with "
        "register_contender, or defines register_gemv_contenders(register)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small, fast subset (for tests); other options override it",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="JSON output path (default benchmarks/results/gemv.json, or "
        "gemv_quick.json with --quick); the PNG goes beside it, as .png",
    )
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    parser.add_argument("--list", action="store_true", help="list the contenders and exit")
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    base = QUICK_CONFIG if args.quick else RunConfig()
    changes: dict[str, Any] = {"seed": args.seed}
    if args.shapes:
        changes["shapes"] = args.shapes
    if args.bits:
        changes["weights"] = tuple(WeightFormat.parse(b).name for b in args.bits)
    if args.m:
        changes["ms"] = args.m
    for name in (
        "repeats",
        "warmup",
        "max_seconds",
        "min_seconds",
        "threads",
        "contenders",
        "retries",
    ):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.bandwidth_mb is not None:
        changes["bandwidth_bytes"] = int(args.bandwidth_mb * common.MIB)
    return RunConfig(**{**base.__dict__, **changes})


#: bittile's own contenders, loaded unless --plugin names other modules
BITTILE_CONTENDERS = "bittile.benchmarks.bittile_gemv"


def load_plugin(module_name: str) -> None:
    module = importlib.import_module(module_name)
    hook = getattr(module, "register_gemv_contenders", None)
    if callable(hook):
        hook(register_contender)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for module_name in args.plugin or [BITTILE_CONTENDERS]:
        load_plugin(module_name)
    if args.list:
        for c in registered_contenders():
            print(f"{c.name:<16} {c.family:<9} {'dense ' if c.dense else ''}{c.description}")
        return 0
    config = config_from_args(args)
    for n, k in config.shapes:
        if k % config.group_size or n < 1:
            raise SystemExit(f"shape {n}x{k}: K must be a multiple of {config.group_size}")
    results = run_benchmark(config)
    out = args.out or (QUICK_OUT if config.quick else DEFAULT_OUT)
    png = out.with_suffix(".png")
    if args.no_plot:
        results["plot"] = None
    else:
        written = write_plot(results, png)
        results["plot"] = str(written) if written else None
        if written is None:
            results["plot_note"] = common.MATPLOTLIB_MISSING
    common.write_json(out, results)
    print()
    print(format_report(results))
    print()
    print(f"JSON: {out}")
    if args.no_plot:
        print("PNG: not written (--no-plot)")
    else:
        print(f"PNG: {results['plot']}" if results["plot"] else f"PNG: {common.MATPLOTLIB_MISSING}")
    failed = [e for e in results["results"] if e["status"] in ("error", "wrong_result")]
    if failed:
        print(f"{len(failed)} contender run(s) failed their check or raised; see the table.")
        return 1
    return 0


def _script_entry() -> int:
    """Run as a script through the package module when it is importable, so that a plugin
    importing ``bittile.benchmarks.gemv`` registers into the registry this run uses."""
    try:
        from bittile.benchmarks import gemv as package_module
    except ImportError:
        return main()
    return package_module.main()


if __name__ == "__main__":
    sys.exit(_script_entry())
