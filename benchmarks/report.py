"""Write docs/benchmarks.md from the latest benchmark results (``make bench-report`` runs the
benchmarks first). Every table keeps the machine it ran on and the baselines measured in the
same run; nothing here is measured, it only formats benchmarks/results/*.json."""

from __future__ import annotations

import json
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
IMAGES = ROOT / "docs" / "images"


def _machine(m: dict) -> str:
    return (f"{m.get('cpu_model', '?')}, {m.get('usable_cores', '?')} cores, "
            f"torch {m.get('torch', '?')}, numpy {m.get('numpy', '?')}, {m.get('date', '?')}")


def gemv_section(data: dict) -> list[str]:
    lines = ["## GEMV and small-M GEMM with low-bit weights", "",
             f"Machine: {_machine(data['machine'])}. Memory bandwidth probe: "
             f"{data['bandwidth']['gbps']:.1f} GB/s.", "",
             "| shape | M | weights | contender | median ms | vs numpy fp32 | vs torch int4 |",
             "|---|---|---|---|---|---|---|"]
    for r in data["results"]:
        if r.get("status") != "ok":
            continue
        vs_int4 = r.get("speedup_vs_torch_int4")
        lines.append(
            f"| {r['N']}x{r['K']} | {r['M']} | {r.get('weights') or 'dense'} | "
            f"{r['contender']} | {r['median_ms']:.3f} | "
            f"{r.get('speedup_vs_numpy_fp32') or 0:.2f}x | "
            f"{f'{vs_int4:.2f}x' if vs_int4 else '-'} |")
    lines += ["", "Targets:", ""]
    for t in data.get("targets", []):
        lines.append(f"- {'reached' if t['reached'] else '**not reached**'}: {t['target']}")
    plot = data.get("plot")
    if plot and pathlib.Path(plot).exists():
        IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(plot, IMAGES / "gemv.png")
        lines += ["", "![GEMV times](images/gemv.png)"]
    return lines


def _benchmark_module(name: str):
    """benchmarks/<name>.py, as a package module or (run as a script) a sibling module."""
    import importlib

    try:
        return importlib.import_module(f"benchmarks.{name}")
    except ImportError:
        return importlib.import_module(name)


def table_section(name: str, title: str, data: dict) -> list[str]:
    """The benchmark's own text report (its table and targets) and its plot."""
    lines = ["", f"## {title}", "",
             f"`python benchmarks/{name}.py` on {_machine(data['machine'])}.", "",
             "```text", _benchmark_module(name).format_report(data), "```"]
    plot = data.get("plot")
    if plot and pathlib.Path(plot).exists():
        IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(plot, IMAGES / f"{name}.png")
        lines += ["", f"![{title}](images/{name}.png)"]
    return lines


def main() -> int:
    sections = ["# Benchmarks", "",
                "Every number comes from `benchmarks/`, as times and ratios against baselines "
                "measured in the same run on the same machine; absolute times are not comparable "
                "across machines. Regenerate with `make bench-report`.", ""]
    gemv = RESULTS / "gemv.json"
    if gemv.exists():
        sections += gemv_section(json.loads(gemv.read_text()))
    else:
        sections += ["No results yet: run `make bench-report`."]
    for name, title in (("attention", "Attention"), ("kvcache", "Quantized KV-cache decode")):
        path = RESULTS / f"{name}.json"
        if path.exists():
            sections += table_section(name, title, json.loads(path.read_text()))
    launch = RESULTS / "launch.json"
    if launch.exists():
        data = json.loads(launch.read_text())
        sections += ["", "## Launch overhead", "",
                     "`python benchmarks/launch.py`: a warm call of the 64-element vector add on "
                     "the llvm backend, median per call.", "",
                     "| call | us |", "|---|---|",
                     f"| a bare ctypes call of a native no-op | {data['ctypes_noop_us']:.2f} |",
                     f"| the compiled kernel | {data['compiled_kernel_us']:.1f} |",
                     f"| the kernel object (specialization lookup, then the same) | "
                     f"{data['tile_kernel_us']:.1f} |"]
    DOC.write_text("\n".join(sections) + "\n")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
