"""Shared benchmark utilities: timing, machine description, bandwidth probe and output files.

Conventions used by every benchmark here:

* Times come from ``time.perf_counter_ns``: each timed call is measured on its own, after
  untimed warm-up calls, with the garbage collector off. Reports give the median (the number to
  compare) and the minimum.
* 1 GB = 1e9 bytes. The bandwidth probe copies one large buffer into another and counts the
  bytes read plus the bytes written (2 x buffer size) per copy; the extra read that a
  write-allocate cache performs on the destination is not counted.
* Thread counts are set once for the whole run (`set_threads`): torch's intra-op pool gets the
  number of usable cores; numpy's BLAS keeps its own default (all cores unless an environment
  variable says otherwise), which `thread_settings` records.
"""

from __future__ import annotations

import datetime
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent

GB = 1e9
MIB = 1 << 20

_THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
)

_INTERESTING_FLAGS = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx512vbmi",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


# --------------------------------------------------------------------------------------------
# Timing


@dataclass(frozen=True)
class Timing:
    """Per-call wall-clock times of one callable, in nanoseconds."""

    median_ns: float
    min_ns: int
    max_ns: int
    repeats: int
    warmup: int

    @property
    def median_ms(self) -> float:
        return self.median_ns / 1e6

    @property
    def min_ms(self) -> float:
        return self.min_ns / 1e6

    def as_dict(self) -> dict[str, Any]:
        return {
            "median_ms": self.median_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ns / 1e6,
            "repeats": self.repeats,
            "warmup": self.warmup,
        }


def time_callable(
    fn: Callable[[], Any],
    *,
    warmup: int = 3,
    repeats: int = 30,
    min_repeats: int = 3,
    max_seconds: float | None = None,
    min_seconds: float = 0.0,
    max_repeats: int = 100_000,
) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then individually timed calls.

    At least ``repeats`` calls are timed, and more (up to ``max_repeats``) until ``min_seconds``
    have been spent in timed calls, so that a fast callable is timed over a window long enough
    to outlast short disturbances and to be checked for them. With ``max_seconds`` the loop
    stops early once that much time was spent and ``min_repeats`` calls were made, so that a
    slow baseline does not dominate the run. The number of timed calls is in the result.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    min_repeats = max(1, min(min_repeats, repeats))
    for _ in range(warmup):
        fn()
    samples: list[int] = []
    budget = math.inf if max_seconds is None else max_seconds * 1e9
    floor = min_seconds * 1e9
    spent = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        clock = time.perf_counter_ns
        while True:
            start = clock()
            fn()
            elapsed = clock() - start
            samples.append(elapsed)
            spent += elapsed
            count = len(samples)
            if count >= max_repeats or (spent >= budget and count >= min_repeats):
                break
            if count >= repeats and spent >= floor:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing(
        median_ns=float(statistics.median(samples)),
        min_ns=min(samples),
        max_ns=max(samples),
        repeats=len(samples),
        warmup=warmup,
    )


# --------------------------------------------------------------------------------------------
# Threads and machine description


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), falling back to ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def set_threads(n: int | None = None) -> dict[str, Any]:
    """Give torch's intra-op pool ``n`` threads (default: the usable cores); return the settings."""
    n = usable_cores() if n is None else n
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(n)
    return thread_settings()


def thread_settings() -> dict[str, Any]:
    """Thread counts in force: torch's pool, numpy's BLAS (if threadpoolctl can tell) and env."""
    torch = _torch()
    settings: dict[str, Any] = {
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "numpy_blas_threads": None,
        "env": {k: os.environ[k] for k in _THREAD_ENV_VARS if k in os.environ},
    }
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        settings["numpy_blas_threads"] = "library default (threadpoolctl not installed)"
    else:
        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        settings["numpy_blas_threads"] = [
            {"library": p.get("internal_api"), "threads": p.get("num_threads")} for p in pools
        ]
    return settings


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: other work on the machine skews timings."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    text = _read_text("/proc/stat")
    if not text or not text.startswith("cpu "):
        return None
    fields = [int(v) for v in text.split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user time
    return total - idle, total


def other_cpu_use(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over ``seconds`` while this process sleeps: other work that
    will compete with the benchmark. None where /proc/stat is not available."""
    before = _cpu_times()
    time.sleep(seconds)
    after = _cpu_times()
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


class OtherCpuMeter:
    """Context manager: the fraction of all CPUs that *other* processes used while it was open
    (system-wide busy time from /proc/stat minus this process's CPU time). ``fraction`` is None
    where /proc/stat is missing or the interval was too short to tell (< 5 clock ticks)."""

    def __init__(self) -> None:
        self.fraction: float | None = None

    def __enter__(self) -> OtherCpuMeter:
        self._sys = _cpu_times()
        self._own = time.process_time()
        return self

    def __exit__(self, *exc_info) -> None:
        end, own = _cpu_times(), time.process_time() - self._own
        if self._sys is None or end is None:
            return
        busy, total = end[0] - self._sys[0], end[1] - self._sys[1]
        if total < 5:
            return
        own_ticks = own * os.sysconf("SC_CLK_TCK")
        self.fraction = min(1.0, max(0.0, (busy - own_ticks) / total))


def busy_warning(busy: float | None, threshold: float = 0.1) -> str | None:
    """A warning when other processes kept the CPUs busy (see `other_cpu_use`)."""
    if busy is None or busy < threshold:
        return None
    return (
        f"warning: other processes kept {100 * busy:.0f}% of the CPUs busy around the run; "
        "timings (torch's thread pool especially) are slower and noisier than on an idle machine"
    )


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _cpuinfo() -> tuple[str, list[str]]:
    text = _read_text("/proc/cpuinfo") or ""
    model: str | None = None
    flags: list[str] = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = value.split()
    return model or platform.processor() or platform.machine(), flags


def _caches() -> list[dict[str, str]]:
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    caches = []
    for index in sorted(base.glob("index*")):
        entry = {}
        for field in ("level", "type", "size"):
            value = _read_text(str(index / field))
            if value is not None:
                entry[field] = value.strip()
        if entry:
            caches.append(entry)
    return caches


def _mem_total_bytes() -> int | None:
    for line in (_read_text("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _numpy_blas() -> str | None:
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older numpy, or a build without the dict mode
        return None


def machine_info() -> dict[str, Any]:
    """Describe the machine and software versions, for the JSON output."""
    model, flags = _cpuinfo()
    torch = _torch()
    try:
        import matplotlib

        mpl_version = matplotlib.__version__
    except ImportError:
        mpl_version = None
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "usable_cores": usable_cores(),
        "cpu_flags": [f for f in _INTERESTING_FLAGS if f in flags],
        "hypervisor": "hypervisor" in flags,
        "caches": _caches(),
        "memory_bytes": _mem_total_bytes(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "numpy_blas": _numpy_blas(),
        "torch": torch.__version__ if torch is not None else None,
        "torch_cpu_capability": (
            torch.backends.cpu.get_cpu_capability() if torch is not None else None
        ),
        "matplotlib": mpl_version,
        "threads": thread_settings(),
        "load_average": load_average(),
        "git": _git_commit(),
    }
    return info


# --------------------------------------------------------------------------------------------
# Memory bandwidth

BANDWIDTH_CONVENTION = (
    "copy of one buffer into another of the same size; GB/s = (bytes read + bytes written) / "
    "median time, i.e. 2 x buffer bytes per copy, 1 GB = 1e9 bytes; write-allocate reads of the "
    "destination are not counted; the probe's figure is the best median over the copy methods "
    "(numpy single-threaded, torch with its thread pool)"
)


def bandwidth_probe(
    nbytes: int = 512 * MIB, *, repeats: int = 7, warmup: int = 1
) -> dict[str, Any]:
    """Measure memory bandwidth with a large array copy (see `BANDWIDTH_CONVENTION`).

    The buffers are written before timing so that page faults are not measured. Returns a dict
    with the per-method numbers and ``gbps``, the figure that benchmarks compare against.
    """
    n = max(1, nbytes // 4)
    src = np.full(n, 1.0, dtype=np.float32)
    dst = np.zeros_like(src)
    moved = 2 * src.nbytes
    methods: dict[str, dict[str, Any]] = {}

    timing = time_callable(lambda: np.copyto(dst, src), warmup=warmup, repeats=repeats)
    methods["numpy_copy"] = {
        "threads": 1,
        "gbps": moved / timing.median_ns,
        "gbps_best": moved / timing.min_ns,
        **timing.as_dict(),
    }
    torch = _torch()
    if torch is not None:
        src_t, dst_t = torch.from_numpy(src), torch.from_numpy(dst)
        timing = time_callable(lambda: dst_t.copy_(src_t), warmup=warmup, repeats=repeats)
        methods["torch_copy"] = {
            "threads": torch.get_num_threads(),
            "gbps": moved / timing.median_ns,
            "gbps_best": moved / timing.min_ns,
            **timing.as_dict(),
        }
    if not np.array_equal(dst[:: max(1, n // 1024)], src[:: max(1, n // 1024)]):
        raise RuntimeError("bandwidth probe: the copy did not copy")
    best = max(methods, key=lambda name: methods[name]["gbps"])
    return {
        "bytes": int(src.nbytes),
        "gbps": methods[best]["gbps"],
        "method": best,
        "convention": BANDWIDTH_CONVENTION,
        "methods": methods,
    }


# --------------------------------------------------------------------------------------------
# Output


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite(obj: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) by None, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented, strictly valid JSON, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite(data), indent=1, default=_json_default, allow_nan=False)
    path.write_text(text + "\n")
    return path


def import_pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend, or None if not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> Path:
    """Write ``fig`` to ``path`` (creating its folder) at the benchmarks' resolution, close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_list(text: str) -> tuple[str, ...]:
    """``"a, b,c"`` -> ``("a", "b", "c")`` (command-line lists)."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def parse_ints(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in parse_list(text))


MATPLOTLIB_MISSING = (
    "matplotlib is not installed, so no PNG plot was written "
    "(pip install matplotlib, or add it to the project's extras)"
)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: text columns left-aligned, numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    numeric = [
        all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) and bool(rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        if value == 0 or abs(value) >= 100:
            return f"{value:.1f}"
        if abs(value) >= 1:
            return f"{value:.3f}"
        return f"{value:.4f}"
    return str(value)
