"""Attention on the CPU: bittile's stdlib kernels against torch's SDPA, measured in one run.

Cases (defaults; see ``RunConfig``):

* prefill: ``attention(q, k, v, causal=...)`` with B=1, H=8 query heads, Hkv=2 kv heads (GQA
  4), D=128 and Lq = Lk = 2048, causal and not;
* decode: ``decode_attention(q, k_cache, v_cache, seq_lens)``, one query token per sequence,
  B=1, H=32, Hkv=8, D=128 (Llama-3-8B's attention shape) over 4096 and 32768 cached positions.

Both in float32, bfloat16 and float16. Contenders:

``bittile``              the stdlib kernels on the llvm backend (flash attention; flash decoding
                         with split-K and a log-sum-exp merge)
``torch_sdpa``           ``torch.nn.functional.scaled_dot_product_attention(..., enable_gqa=True)``
                         as a user calls it (decode: q as [B, H, 1, D])
``torch_sdpa_grouped``   decode only: the G = H / Hkv query heads that share a kv head passed
                         as G queries of one head ([B, Hkv, G, D]), the layout trick that flash
                         decoding uses, so torch reads each kv head once

Every contender's result is checked before it is timed: its root-mean-square error against a
float64 reference must be at most twice torch_sdpa's own (plus one unit roundoff of the dtype),
the accuracy rule of docs/stdlib-attention.md; a contender that fails gets no time.

Speeds are ratios measured in this run: ``speedup_vs_torch_sdpa`` = torch_sdpa's median time /
the contender's. Prefill also reports GFLOP/s (4 * B * H * Lq * Lk * D flops, halved when
causal); decode reports the cache bytes read per second and their fraction of the copy
bandwidth measured by the probe (``benchmarks/common.py``).

Run from the repository root: ``python benchmarks/attention.py`` (a few minutes) or
``python benchmarks/attention.py --quick``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

try:
    from . import common
except ImportError:  # run as a script: python benchmarks/attention.py
    import common

SCHEMA = "bittile.benchmarks.attention/1"
DEFAULT_OUT = common.REPO_ROOT / "benchmarks" / "results" / "attention.json"
QUICK_OUT = common.REPO_ROOT / "benchmarks" / "results" / "attention_quick.json"
BUSY_THRESHOLD = 0.05  # other processes' CPU share above which a timing is re-timed
BASELINE = "torch_sdpa"
UNIT_ROUNDOFF = {"float32": 2.0 ** -24, "float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}


@dataclass(frozen=True)
class RunConfig:
    dtypes: tuple[str, ...] = ("float32", "bfloat16", "float16")
    prefill_shape: tuple[int, int, int, int] = (1, 8, 2, 128)  # B, H, Hkv, D
    prefill_lengths: tuple[int, ...] = (2048,)
    decode_shape: tuple[int, int, int, int] = (1, 32, 8, 128)  # B, H, Hkv, D
    decode_contexts: tuple[int, ...] = (4096, 32768)
    repeats: int = 10
    warmup: int = 2
    max_seconds: float = 3.0
    min_seconds: float = 0.3
    bandwidth_bytes: int = 512 * common.MIB
    threads: int | None = None  # torch and bittile threads; None = usable cores
    seed: int = 0
    quick: bool = False
    idle_check_seconds: float = 1.0
    retries: int = 2
    retry_wait_seconds: float = 3.0
    contenders: tuple[str, ...] | None = None  # None = all


QUICK_CONFIG = RunConfig(
    dtypes=("float32", "bfloat16"),
    prefill_shape=(1, 2, 1, 64),
    prefill_lengths=(256,),
    decode_shape=(1, 8, 2, 64),
    decode_contexts=(512, 2048),
    repeats=3,
    warmup=1,
    max_seconds=0.2,
    min_seconds=0.0,
    bandwidth_bytes=16 * common.MIB,
    quick=True,
    idle_check_seconds=0.2,
    retries=0,
)


# --------------------------------------------------------------------------------------------
# Cases


@dataclass
class Case:
    phase: str  # "prefill" | "decode"
    dtype: str
    b: int
    h: int
    hkv: int
    d: int
    length: int  # Lq = Lk (prefill) or cached positions (decode)
    causal: bool = False
    tensors: dict[str, Any] = field(default_factory=dict, repr=False)
    _reference: Any = field(default=None, repr=False)

    @property
    def label(self) -> str:
        if self.phase == "prefill":
            return f"prefill L={self.length}{' causal' if self.causal else ''}"
        return f"decode ctx={self.length}"

    @property
    def flops(self) -> float:
        """Multiply-adds of q.k and p.v, two flops each (halved when causal)."""
        lq = 1 if self.phase == "decode" else self.length
        full = 4.0 * self.b * self.h * lq * self.length * self.d
        return full / 2 if self.causal else full

    @property
    def cache_bytes(self) -> int:
        k = self.tensors["k"]
        return 2 * k.numel() * k.element_size()

    def reference(self):
        """The float64 result (computed once)."""
        if self._reference is None:
            t = {name: x.double() for name, x in self.tensors.items() if name != "seq_lens"}
            self._reference = _torch_sdpa(self, t)
        return self._reference


def _import_torch():
    import torch

    return torch


def make_case(phase: str, dtype: str, shape, length: int, causal: bool, seed: int) -> Case:
    torch = _import_torch()
    b, h, hkv, d = shape
    gen = torch.Generator().manual_seed(seed)
    tdtype = getattr(torch, dtype)
    lq = length if phase == "prefill" else None
    q_shape = (b, h, lq, d) if lq else (b, h, d)
    tensors = {
        "q": torch.randn(q_shape, generator=gen).to(tdtype),
        "k": torch.randn(b, hkv, length, d, generator=gen).to(tdtype),
        "v": torch.randn(b, hkv, length, d, generator=gen).to(tdtype),
    }
    if phase == "decode":
        tensors["seq_lens"] = torch.full((b,), length, dtype=torch.int32)
    return Case(phase, dtype, b, h, hkv, d, length, causal, tensors)


# --------------------------------------------------------------------------------------------
# Contenders: setup(case) -> a callable returning the result, or None if not applicable


def _torch_sdpa(case: Case, t: dict[str, Any]):
    import torch.nn.functional as F

    if case.phase == "prefill":
        return F.scaled_dot_product_attention(t["q"], t["k"], t["v"], is_causal=case.causal,
                                              enable_gqa=True)
    out = F.scaled_dot_product_attention(t["q"][:, :, None], t["k"], t["v"], enable_gqa=True)
    return out[:, :, 0]


def _setup_torch_sdpa(case: Case):
    return lambda: _torch_sdpa(case, case.tensors)


def _setup_torch_grouped(case: Case):
    if case.phase != "decode":
        return None
    import torch.nn.functional as F

    t = case.tensors
    b, h, hkv, d = case.b, case.h, case.hkv, case.d
    q = t["q"].reshape(b, hkv, h // hkv, d)

    def run():
        return F.scaled_dot_product_attention(q, t["k"], t["v"]).reshape(b, h, d)

    return run


def _setup_bittile(case: Case):
    import bittile
    from bittile.stdlib import attention, decode_attention

    t = case.tensors
    if case.phase == "prefill":
        def run():
            return attention(t["q"], t["k"], t["v"], causal=case.causal, backend="llvm")
    else:
        def run():
            return decode_attention(t["q"], t["k"], t["v"], t["seq_lens"], backend="llvm")

    threads = common.thread_settings()["torch_threads"] or common.usable_cores()

    def with_threads():
        with bittile.options(BITTILE_NUM_THREADS=threads):
            return run()

    return with_threads


CONTENDERS: dict[str, tuple[str, Callable[[Case], Callable | None]]] = {
    "bittile": ("stdlib attention / decode_attention on the llvm backend", _setup_bittile),
    "torch_sdpa": ("torch SDPA, enable_gqa=True", _setup_torch_sdpa),
    "torch_sdpa_grouped": ("torch SDPA, decode with the query heads of a kv head as queries",
                           _setup_torch_grouped),
}


# --------------------------------------------------------------------------------------------
# Checking and timing


def rms_error(out, ref) -> float:
    return out.double().sub(ref).pow(2).mean().sqrt().item()


def error_bound(case: Case, baseline_error: float) -> float:
    reference_rms = case.reference().pow(2).mean().sqrt().item()
    return 2 * baseline_error + UNIT_ROUNDOFF[case.dtype] * reference_rms


def measure(name: str, case: Case, config: RunConfig, bound: float | None) -> dict[str, Any]:
    """Set up, check and time one contender on one case; never raises for its failures."""
    entry: dict[str, Any] = {
        "contender": name, "phase": case.phase, "dtype": case.dtype, "B": case.b, "H": case.h,
        "Hkv": case.hkv, "D": case.d, "length": case.length, "causal": case.causal,
        "status": "ok",
    }
    try:
        fn = CONTENDERS[name][1](case)
    except Exception as exc:
        return {**entry, "status": "error", "error": f"setup: {type(exc).__name__}: {exc}"}
    if fn is None:
        return {**entry, "status": "not_applicable"}
    try:
        err = rms_error(fn(), case.reference())  # the first call also compiles (bittile)
    except Exception as exc:
        return {**entry, "status": "error", "error": f"call: {type(exc).__name__}: {exc}"}
    entry["rms_error"] = err
    entry["error_bound"] = bound
    if bound is not None and not err <= bound:
        return {**entry, "status": "wrong_result",
                "error": f"RMS error {err:.3g} > bound {bound:.3g} (2 x torch_sdpa's)"}
    best = None
    attempts = 0
    for attempt in range(1 + max(0, config.retries)):
        if attempt:
            time.sleep(config.retry_wait_seconds)
        attempts += 1
        with common.OtherCpuMeter() as meter:
            timing = common.time_callable(fn, warmup=config.warmup, repeats=config.repeats,
                                          max_seconds=config.max_seconds,
                                          min_seconds=config.min_seconds)
        busy = meter.fraction or 0.0
        if best is None or busy < best[0]:
            best = (busy, meter.fraction, timing)
        if busy < BUSY_THRESHOLD:
            break
    entry.update(best[2].as_dict())
    entry["other_cpu_use"] = best[1]
    entry["attempts"] = attempts
    seconds = best[2].median_ns / 1e9
    if case.phase == "prefill":
        entry["gflops"] = case.flops / seconds / 1e9
    else:
        entry["cache_bytes"] = case.cache_bytes
        entry["gbps"] = case.cache_bytes / seconds / 1e9
    return entry


def _cases(config: RunConfig):
    for dtype in config.dtypes:
        for length in config.prefill_lengths:
            for causal in (False, True):
                yield "prefill", dtype, config.prefill_shape, length, causal
        for context in config.decode_contexts:
            yield "decode", dtype, config.decode_shape, context, False


def run_benchmark(config: RunConfig, *, log: Callable[[str], None] | None = print) -> dict:
    """Run every case and contender; return the results dict (what the JSON file holds)."""
    log = log or (lambda _msg: None)
    started = time.perf_counter()
    names = list(config.contenders or CONTENDERS)
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        raise ValueError(f"unknown contenders {unknown}; known: {sorted(CONTENDERS)}")
    if BASELINE in names:  # the baseline first: its error sets the others' bound
        names.remove(BASELINE)
        names.insert(0, BASELINE)
    common.set_threads(config.threads)
    machine = common.machine_info()
    log(f"machine: {machine['cpu_model']}, {machine['usable_cores']} cores, "
        f"torch threads {machine['threads']['torch_threads']}")
    busy_before = common.other_cpu_use(config.idle_check_seconds)
    warning = common.busy_warning(busy_before, BUSY_THRESHOLD)
    if warning:
        log(warning)
    log(f"bandwidth probe: copying {config.bandwidth_bytes / common.MIB:.0f} MiB ...")
    bandwidth = common.bandwidth_probe(config.bandwidth_bytes)
    log(f"bandwidth: {bandwidth['gbps']:.1f} GB/s ({bandwidth['method']})")

    entries: list[dict[str, Any]] = []
    for index, (phase, dtype, shape, length, causal) in enumerate(_cases(config)):
        case = make_case(phase, dtype, shape, length, causal, config.seed + index)
        bound = None
        for name in names:
            entry = measure(name, case, config, bound)
            if name == BASELINE and "rms_error" in entry:
                bound = error_bound(case, entry["rms_error"])
            entries.append(entry)
            log(_progress_line(entry))
        del case
    _add_speedups(entries, bandwidth["gbps"])
    busy_after = common.other_cpu_use(config.idle_check_seconds)
    warning = common.busy_warning(max(busy_before or 0.0, busy_after or 0.0), BUSY_THRESHOLD)
    warnings = [warning] if warning else []
    timed = [e for e in entries if e["status"] == "ok"]
    disturbed = [e for e in timed if (e.get("other_cpu_use") or 0.0) >= BUSY_THRESHOLD]
    if disturbed:
        warnings.append(f"warning: {len(disturbed)} of {len(timed)} timings ran while other "
                        f"processes used >= {100 * BUSY_THRESHOLD:.0f}% of the CPUs")
    return {
        "schema": SCHEMA,
        "machine": machine,
        "duration_s": round(time.perf_counter() - started, 1),
        "other_cpu_use": {"before": busy_before, "after": busy_after},
        "load_average_after": common.load_average(),
        "warnings": warnings,
        "config": {
            "dtypes": list(config.dtypes),
            "prefill_shape_B_H_Hkv_D": list(config.prefill_shape),
            "prefill_lengths": list(config.prefill_lengths),
            "decode_shape_B_H_Hkv_D": list(config.decode_shape),
            "decode_contexts": list(config.decode_contexts),
            "repeats": config.repeats, "warmup": config.warmup,
            "max_seconds": config.max_seconds, "min_seconds": config.min_seconds,
            "seed": config.seed, "quick": config.quick, "retries": config.retries,
        },
        "conventions": {
            "time": "per-call wall time (time.perf_counter_ns) after warm-up calls; median and "
            "min in ms; at least `repeats` timed calls, more until min_seconds, stopping after "
            "max_seconds once 3 were made; an entry disturbed by other processes is re-timed "
            "up to `retries` times, keeping the least disturbed attempt",
            "speedup": "speedup_vs_torch_sdpa = torch_sdpa's median / the contender's median on "
            "the same case; > 1 means faster than torch",
            "gflops": "prefill: 4 * B * H * Lq * Lk * D flops (q.k and p.v, a multiply-add "
            "counted as two), halved when causal, per median second",
            "gbps": "decode: bytes of the k and v caches (B * Hkv * ctx * D * 2 * itemsize) per "
            "median second; bandwidth_fraction divides it by the probe's GB/s",
            "accuracy": "rms_error: root-mean-square error against float64 SDPA; a contender "
            "must stay within error_bound = 2 * torch_sdpa's RMS error + the dtype's unit "
            "roundoff * RMS of the reference",
            "threads": "torch's intra-op pool and bittile's BITTILE_NUM_THREADS get the same "
            "number of threads (machine.threads.torch_threads)",
        },
        "bandwidth": bandwidth,
        "contenders": {n: CONTENDERS[n][0] for n in names},
        "results": entries,
    }


def _add_speedups(entries: list[dict], bandwidth_gbps: float) -> None:
    def key(e):
        return (e["phase"], e["dtype"], e["length"], e["causal"])

    base = {key(e): e for e in entries if e["contender"] == BASELINE and e["status"] == "ok"}
    for e in entries:
        if e["status"] != "ok":
            continue
        b = base.get(key(e))
        e["speedup_vs_torch_sdpa"] = b["median_ms"] / e["median_ms"] if b else None
        if "gbps" in e:
            e["bandwidth_fraction"] = e["gbps"] / bandwidth_gbps


def _progress_line(e: dict[str, Any]) -> str:
    where = f"{e['dtype']:>8} {_case_label(e):<22} {e['contender']:<19}"
    if e["status"] == "ok":
        return f"  {where} {e['median_ms']:10.2f} ms  rms err {e['rms_error']:.2g}"
    return f"  {where} {e['status']} {e.get('error', '')}".rstrip()


def _case_label(e: dict[str, Any]) -> str:
    if e["phase"] == "prefill":
        return f"prefill L={e['length']}{' causal' if e['causal'] else ''}"
    return f"decode ctx={e['length']}"


# --------------------------------------------------------------------------------------------
# Report and plot


def format_report(results: dict) -> str:
    rows = []
    for e in results["results"]:
        if e["status"] == "not_applicable":
            continue
        ok = e["status"] == "ok"
        rate = e.get("gflops") if e["phase"] == "prefill" else e.get("gbps")
        rows.append([
            _case_label(e), e["dtype"], e["contender"],
            e.get("median_ms") if ok else None, e.get("min_ms") if ok else None,
            e.get("speedup_vs_torch_sdpa"), rate, e.get("bandwidth_fraction"),
            e.get("rms_error"), e["status"] if ok else f"{e['status']}: {e.get('error', '')}",
        ])
    headers = ["case", "dtype", "contender", "median ms", "min ms", "vs torch_sdpa",
               "GFLOP/s | GB/s", "of bandwidth", "rms error", "status"]
    lines = [common.format_table(headers, rows)]
    m = results["machine"]
    lines.append("")
    lines.append(f"{m['cpu_model']}, {m['usable_cores']} cores, torch threads "
                 f"{m['threads']['torch_threads']}, copy bandwidth "
                 f"{results['bandwidth']['gbps']:.1f} GB/s; prefill B, H, Hkv, D = "
                 f"{results['config']['prefill_shape_B_H_Hkv_D']}, decode B, H, Hkv, D = "
                 f"{results['config']['decode_shape_B_H_Hkv_D']}")
    lines.extend(results["warnings"])
    return "\n".join(lines)


_SHORT = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


def _plot_label(e: dict[str, Any]) -> str:
    if e["phase"] == "prefill":
        return f"{_SHORT[e['dtype']]}\n{'causal' if e['causal'] else 'full'}"
    return f"{_SHORT[e['dtype']]}\nctx {e['length']}"


def write_plot(results: dict, path: str | Path) -> Path | None:
    """Median times per case (log scale), one panel per phase, bars per contender; decode
    panels mark the time to read the caches at the probe's bandwidth. None when matplotlib is
    missing."""
    plt = common.import_pyplot()
    if plt is None:
        return None
    entries = [e for e in results["results"] if e["status"] == "ok"]
    names = list(results["contenders"])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), squeeze=False)
    for ax, phase in zip(axes[0], ("prefill", "decode")):
        mine = [e for e in entries if e["phase"] == phase]
        labels = list(dict.fromkeys(_plot_label(e) for e in mine))
        xs = range(len(labels))
        present = [n for n in names if any(e["contender"] == n for e in mine)]
        width = 0.8 / max(1, len(present))
        for i, name in enumerate(present):
            found = {_plot_label(e): e["median_ms"] for e in mine if e["contender"] == name}
            ax.bar([x - 0.4 + width * (i + 0.5) for x in xs],
                   [found.get(label, math.nan) for label in labels], width, label=name,
                   color=colors[names.index(name) % len(colors)])
        if phase == "decode":
            floor = {}
            for e in mine:
                floor.setdefault(_plot_label(e),
                                 e["cache_bytes"] / (results["bandwidth"]["gbps"] * 1e6))
            ax.scatter(list(xs), [floor[label] for label in labels], marker="_", s=400,
                       color="black", zorder=3, label="caches read at probe bandwidth")
        lengths = sorted({e["length"] for e in mine})
        title = (f"prefill, L = {', '.join(map(str, lengths))}" if phase == "prefill"
                 else "decode (one query token)")
        ax.set_yscale("log")
        ax.set_xticks(list(xs), labels, fontsize=8)
        ax.set_ylabel("median ms (log)")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    m = results["machine"]
    fig.suptitle(f"attention: {m['cpu_model']}, {m['usable_cores']} cores, torch threads "
                 f"{m['threads']['torch_threads']}, {results['bandwidth']['gbps']:.1f} GB/s "
                 "copy", fontsize=10)
    fig.tight_layout()
    return common.save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# Command line




def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/attention.py",
                                     description="bittile's attention kernels against torch SDPA")
    parser.add_argument("--dtypes", type=common.parse_list,
                        help="float32, bfloat16, float16 (default: all three)")
    parser.add_argument("--prefill-lengths", type=common.parse_ints, help="default 2048")
    parser.add_argument("--contexts", type=common.parse_ints, help="decode contexts (default "
                        "4096,32768)")
    parser.add_argument("--contenders", type=common.parse_list,
                        help=f"run only these, comma-separated ({', '.join(CONTENDERS)})")
    parser.add_argument("--repeats", type=int, help="timed calls per case, at least")
    parser.add_argument("--warmup", type=int, help="untimed calls first")
    parser.add_argument("--max-seconds", type=float, help="time budget of one timing")
    parser.add_argument("--threads", type=int, help="threads for torch and bittile "
                        "(default: usable cores)")
    parser.add_argument("--retries", type=int, help="re-time disturbed entries (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/"
                        "attention.json, or attention_quick.json with --quick); the PNG "
                        "goes beside it")
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    config = QUICK_CONFIG if args.quick else RunConfig()
    changes: dict[str, Any] = {"seed": args.seed}
    renames = {"dtypes": "dtypes", "prefill_lengths": "prefill_lengths",
               "contexts": "decode_contexts", "contenders": "contenders", "repeats": "repeats",
               "warmup": "warmup", "max_seconds": "max_seconds", "threads": "threads",
               "retries": "retries"}
    for arg, name in renames.items():
        if getattr(args, arg) is not None:
            changes[name] = getattr(args, arg)
    for dtype in changes.get("dtypes", ()):
        if dtype not in UNIT_ROUNDOFF:
            raise SystemExit(f"dtype {dtype!r}: expected one of {', '.join(UNIT_ROUNDOFF)}")
    return replace(config, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    results = run_benchmark(config)
    out = args.out or (QUICK_OUT if config.quick else DEFAULT_OUT)
    if args.no_plot:
        results["plot"] = None
    else:
        written = write_plot(results, out.with_suffix(".png"))
        results["plot"] = str(written) if written else None
        if written is None:
            results["plot_note"] = common.MATPLOTLIB_MISSING
    common.write_json(out, results)
    print()
    print(format_report(results))
    print()
    print(f"JSON: {out}")
    print(f"PNG: {results['plot']}" if results["plot"] else
          f"PNG: {'not written (--no-plot)' if args.no_plot else common.MATPLOTLIB_MISSING}")
    failed = [e for e in results["results"] if e["status"] in ("error", "wrong_result")]
    if failed:
        print(f"{len(failed)} contender run(s) failed their check or raised; see the table.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
