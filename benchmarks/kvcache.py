"""Decode attention over a quantized KV cache: bittile's KIVI cache against torch's fp32 SDPA,
measured in one run.

The case is one decode step of a Llama-2-7B-shaped attention layer (B = 1, H = Hkv = 32,
D = 128) over 4096 and 32768 cached tokens. Keys are Gaussian with two outlier channels (as
KIVI observed in real models), values Gaussian.

Contenders:

``torch_sdpa_fp32``  ``torch.nn.functional.scaled_dot_product_attention(q, k, v)`` with q
                     ``[1, 32, 1, 128]`` and the float32 caches ``[1, 32, T, 128]``: the baseline
``kivi4``            ``KIVICache(bits=4, group_size=32, residual_length=128).attention(q)`` on
                     the llvm backend: the packed 4-bit codes are read by the kernel, the last
                     128..159 tokens are float32 (KIVI's default group size)
``kivi4_g128``       the same with groups of 128 (tokens for keys, channels for values), a
                     configuration KIVI also evaluates; one scale per 128 codes instead of four
                     lets each dot of the kernel work on one row instead of four
``kivi2``            2-bit codes, group 32

Each KIVI result is checked before it is timed: against torch SDPA over the cache's own
dequantized keys and values (``|o - ref| <= 1e-4 * max|V|``, else the contender gets no time);
its error against full precision (relative Frobenius norm) is reported too.

Timing: the contenders of a context are timed in alternation, ``rounds`` times, each time for
``repeats`` calls after a warm-up; a contender's time is the median over all its calls, and
``speedup_vs_torch`` is the median over rounds of torch's median / the contender's median in
that round (so that a burst of other work on the machine hits both alike). Other processes'
CPU use during each round is recorded (``common.OtherCpuMeter``). The bytes each contender
reads per step and the time to read them at the copy bandwidth of the probe are reported.

Target (issue 8): 4-bit KIVI at 32K context at least 2x faster than torch_sdpa_fp32, checked
for both 4-bit contenders.

Run from the repository root: ``python benchmarks/kvcache.py`` (about a minute, mostly
building the caches) or ``python benchmarks/kvcache.py --quick``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

try:
    from . import common
except ImportError:  # run as a script: python benchmarks/kvcache.py
    import common

SCHEMA = "bittile.benchmarks.kvcache/1"
DEFAULT_OUT = common.REPO_ROOT / "benchmarks" / "results" / "kvcache.json"
QUICK_OUT = common.REPO_ROOT / "benchmarks" / "results" / "kvcache_quick.json"
BASELINE = "torch_sdpa_fp32"
#: contender -> (bits, group size)
KIVI_CONTENDERS = {"kivi4": (4, 32), "kivi4_g128": (4, 128), "kivi2": (2, 32)}
TARGETS = (("kivi4", 32768, 2.0), ("kivi4_g128", 32768, 2.0))  # contender, context, speedup
CHECK_TOLERANCE = 1e-4  # |o - SDPA(dequantized cache)| <= this * max|V|


@dataclass(frozen=True)
class RunConfig:
    heads: int = 32
    head_dim: int = 128
    contexts: tuple[int, ...] = (4096, 32768)
    contenders: tuple[str, ...] = tuple(KIVI_CONTENDERS)
    residual_length: int = 128
    rounds: int = 5
    repeats: int = 5
    warmup: int = 2
    threads: int | None = None  # torch's threads (bittile's: BITTILE_NUM_THREADS or cores)
    bandwidth_bytes: int = 512 * common.MIB
    seed: int = 0
    quick: bool = False


QUICK_CONFIG = RunConfig(heads=4, head_dim=64, contexts=(256, 1024), rounds=2, repeats=2,
                         warmup=1, bandwidth_bytes=16 * common.MIB, quick=True)


def _torch():
    import torch

    return torch


def make_inputs(config: RunConfig, context: int):
    """q [1, H, 1, D], k and v [1, H, T, D] (float32 torch tensors)."""
    torch = _torch()
    gen = torch.Generator().manual_seed(config.seed + context)
    h, d = config.heads, config.head_dim
    k = torch.randn(1, h, context, d, generator=gen)
    k[..., 1] = 12 * k[..., 1] + 20  # outlier channels
    k[..., d // 2] = 8 * k[..., d // 2] - 15
    v = torch.randn(1, h, context, d, generator=gen)
    q = torch.randn(1, h, 1, d, generator=gen)
    return q, k, v


def build_kivi(bits: int, group: int, config: RunConfig, k, v):
    from bittile.stdlib import KIVICache

    cache = KIVICache(bits, group, config.residual_length, backend="llvm")
    cache.append(k, v)
    return cache


def check_kivi(cache, q, k, v) -> dict[str, Any]:
    """The kernel against SDPA over the cache's dequantized K and V, and against full
    precision."""
    torch = _torch()
    out = cache.attention(q)
    keys, values = (torch.from_numpy(a) for a in cache.dequantize())
    sdpa = torch.nn.functional.scaled_dot_product_attention
    ref = sdpa(q, keys, values)
    full = sdpa(q, k, v)
    err = (out - ref).abs().max().item()
    bound = CHECK_TOLERANCE * values.abs().max().item()
    return {"max_error_vs_dequantized": err, "error_bound": bound, "ok": err <= bound,
            "relative_error_vs_fp32": ((out - full).norm() / full.norm()).item()}


def _time_round(fn: Callable[[], Any], config: RunConfig) -> list[float]:
    for _ in range(config.warmup):
        fn()
    times = []
    for _ in range(config.repeats):
        start = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def run_context(config: RunConfig, context: int, log: Callable[[str], None]) -> list[dict]:
    torch = _torch()
    q, k, v = make_inputs(config, context)
    fp32_bytes = 2 * k.numel() * 4
    sdpa = torch.nn.functional.scaled_dot_product_attention
    contenders: dict[str, tuple[Callable[[], Any], dict[str, Any]]] = {
        BASELINE: (lambda: sdpa(q, k, v), {"bytes_read": fp32_bytes})}
    for name in config.contenders:
        bits, group = KIVI_CONTENDERS[name]
        start = time.perf_counter()
        cache = build_kivi(bits, group, config, k, v)
        info = {"bytes_read": cache.nbytes, "build_seconds": time.perf_counter() - start,
                "quantized_tokens": cache.quantized_length, "residual_tokens": cache.residual}
        info.update(check_kivi(cache, q, k, v))
        log(f"  {name}: cache built in {info['build_seconds']:.1f} s, max error vs "
            f"dequantized {info['max_error_vs_dequantized']:.2e}, relative error vs fp32 "
            f"{info['relative_error_vs_fp32']:.3f}")
        if not info["ok"]:
            info["status"] = "wrong_result"
        contenders[name] = (lambda cache=cache: cache.attention(q), info)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    medians: dict[str, list[float]] = {name: [] for name in contenders}
    busy: list[float | None] = []
    for _ in range(config.rounds):
        with common.OtherCpuMeter() as meter:
            for name, (fn, info) in contenders.items():
                if info.get("status") == "wrong_result":
                    continue
                got = _time_round(fn, config)
                times[name] += got
                medians[name].append(statistics.median(got))
        busy.append(meter.fraction)
    entries = []
    for name, (_, info) in contenders.items():
        entry = {"contender": name, "context": context, "H": config.heads,
                 "D": config.head_dim, "status": info.pop("status", "ok"), **info}
        if times[name]:
            entry.update(median_ms=statistics.median(times[name]), min_ms=min(times[name]),
                         calls=len(times[name]), round_medians_ms=medians[name])
            ratios = [b / m for b, m in zip(medians[BASELINE], medians[name])]
            entry["speedup_vs_torch"] = statistics.median(ratios)
        entry["other_cpu_use"] = busy
        entries.append(entry)
    return entries


def run_benchmark(config: RunConfig, *, log: Callable[[str], None] | None = print) -> dict:
    log = log or (lambda _msg: None)
    threads = common.set_threads(config.threads)
    log(f"torch threads: {threads['torch_threads']}")
    busy_before = common.other_cpu_use(0.5)
    bandwidth = common.bandwidth_probe(config.bandwidth_bytes)
    log(f"copy bandwidth: {bandwidth['gbps']:.1f} GB/s")
    entries = []
    for context in config.contexts:
        log(f"context {context}:")
        entries += run_context(config, context, log)
    for e in entries:
        e["read_at_probe_bandwidth_ms"] = e["bytes_read"] / (bandwidth["gbps"] * 1e6)
    busy_after = common.other_cpu_use(0.5)
    results = {
        "schema": SCHEMA, "machine": common.machine_info(), "config": vars(config).copy(),
        "bandwidth": bandwidth, "baseline": BASELINE, "results": entries,
        "other_cpu_use": {"before": busy_before, "after": busy_after},
    }
    warning = common.busy_warning(max(busy_before or 0.0, busy_after or 0.0))
    if warning:
        results["warning"] = warning
    results["targets"] = [check_target(results, *target) for target in TARGETS]
    return results


def check_target(results: dict, name: str, context: int, need: float) -> dict[str, Any]:
    text = f"{name} decode at context {context} >= {need:.0f}x faster than {BASELINE}"
    entry = next((e for e in results["results"]
                  if e["contender"] == name and e["context"] == context), None)
    got = None if entry is None else entry.get("speedup_vs_torch")
    return {"target": text, "speedup": got, "reached": got is not None and got >= need,
            "measured": got is not None}


def format_report(results: dict) -> str:
    headers = ["context", "contender", "median ms", "min ms", "vs torch", "MB read",
               "ms at probe BW", "rel. err vs fp32", "status"]
    rows = []
    for e in results["results"]:
        rows.append([e["context"], e["contender"], e.get("median_ms"), e.get("min_ms"),
                     e.get("speedup_vs_torch"), e["bytes_read"] / 1e6,
                     e["read_at_probe_bandwidth_ms"], e.get("relative_error_vs_fp32"),
                     e["status"]])
    lines = [common.format_table(headers, rows), ""]
    for t in results["targets"]:
        state = ("reached" if t["reached"] else "NOT reached") if t["measured"] else "not measured"
        speed = f" ({t['speedup']:.3f}x)" if t["speedup"] else ""
        lines.append(f"target {state}{speed}: {t['target']}")
    if results.get("warning"):
        lines.append(results["warning"])
    return "\n".join(lines)


def write_plot(results: dict, path: str | Path) -> Path | None:
    """Median time per context and contender (log scale), with the time to read each
    contender's bytes at the probe bandwidth."""
    plt = common.import_pyplot()
    if plt is None:
        return None
    entries = [e for e in results["results"] if e.get("median_ms")]
    contexts = sorted({e["context"] for e in entries})
    names = list(dict.fromkeys(e["contender"] for e in entries))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        found = {e["context"]: e for e in entries if e["contender"] == name}
        xs = [c - 0.4 + width * (i + 0.5) for c in range(len(contexts))]
        bars = [found[c]["median_ms"] if c in found else float("nan") for c in contexts]
        ax.bar(xs, bars, width, label=name)
        ax.scatter(xs, [found[c]["read_at_probe_bandwidth_ms"] if c in found else float("nan")
                        for c in contexts], marker="_", s=200, color="black", zorder=3)
        for x, e in zip(xs, (found.get(c) for c in contexts)):
            if e and e.get("speedup_vs_torch") and name != BASELINE:
                ax.annotate(f"{e['speedup_vs_torch']:.2f}x", (x, e["median_ms"]), ha="center",
                            va="bottom", fontsize=8)
    ax.set_xticks(range(len(contexts)), [f"context {c}" for c in contexts])
    ax.set_yscale("log")
    ax.set_ylabel("median ms per decode step (log)")
    m = results["machine"]
    ax.set_title(f"decode attention, H={results['config']['heads']}, "
                 f"D={results['config']['head_dim']}: {m['usable_cores']} cores, "
                 f"{results['bandwidth']['gbps']:.0f} GB/s copy (black: bytes read at it)",
                 fontsize=9)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return common.save_figure(fig, path)



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/kvcache.py",
                                     description="KIVI decode attention against torch SDPA")
    parser.add_argument("--contexts", type=common.parse_ints, help="default 4096,32768")
    parser.add_argument("--contenders", type=lambda s: tuple(s.split(",")),
                        help=f"{', '.join(KIVI_CONTENDERS)} (default: all); the baseline "
                        "always runs")
    parser.add_argument("--rounds", type=int, help="alternating timing rounds (default 5)")
    parser.add_argument("--repeats", type=int, help="timed calls per round (default 5)")
    parser.add_argument("--threads", type=int, help="torch threads (default: usable cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/"
                        "kvcache.json, kvcache_quick.json with --quick); the PNG goes beside it")
    parser.add_argument("--no-plot", action="store_true")
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    config = QUICK_CONFIG if args.quick else RunConfig()
    changes: dict[str, Any] = {"seed": args.seed}
    for name in ("contexts", "contenders", "rounds", "repeats", "threads"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    for name in changes.get("contenders", ()):
        if name not in KIVI_CONTENDERS:
            raise SystemExit(f"unknown contender {name!r}: one of {', '.join(KIVI_CONTENDERS)}")
    return replace(config, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    results = run_benchmark(config)
    out = args.out or (QUICK_OUT if config.quick else DEFAULT_OUT)
    written = None if args.no_plot else write_plot(results, out.with_suffix(".png"))
    results["plot"] = str(written) if written else None
    common.write_json(out, results)
    print()
    print(format_report(results))
    print(f"\nJSON: {out}\nPNG: {results['plot'] or 'not written'}")
    failed = [e for e in results["results"] if e["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
