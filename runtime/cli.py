"""The ``bittile`` command line: check, compile and run ``.tile`` files.

    bittile check FILE...
    bittile compile FILE --kernel NAME [-D NAME=VALUE]...
        [--emit ast|ir|ir-opt|llvm|llvm-opt|asm|triton|ptx] [--arch sm_80|sm_90]
    bittile opt FILE.tir --passes "canonicalize,cse,dce"
    bittile run FILE --kernel NAME --size M=128 [--size K=64] [-D NAME=VALUE]... [--seed N]
    bittile layout "spatial(4, 8).local(2, 1)" --png out.png
    bittile fuzz [--minutes N] [--backends interp,llvm] [--pipelines "cse;dce"] [--replay F]
    bittile example minilm [--quick] [--backend llvm]
    bittile bench gemv [--quick] [--shapes 4096x4096] [--bits u4,u2] [--m 1,32] ...

User mistakes print as diagnostics (file:line:col, the source line, a caret, a hint) and exit
with status 1; ``BITTILE_DEBUG=1`` shows the compiler's traceback as well.
"""

from __future__ import annotations

import argparse
import sys
import time

from bittile.errors import BittileError

__all__ = ["main", "parse_define"]


def parse_define(text: str):
    """``NAME=VALUE`` with VALUE an int, float, true/false, a dtype name or a layout."""
    from bittile.ir.dtypes import dtype_from_name
    from bittile.ir.layout import parse_layout

    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise BittileError(f"-D takes NAME=VALUE, got {text!r}")
    value = value.strip()
    for convert in (int, float):
        try:
            return name, convert(value)
        except ValueError:
            pass
    if value in ("true", "false"):
        return name, value == "true"
    try:
        return name, dtype_from_name(value)
    except BittileError:
        pass
    return name, parse_layout(value)


def _defines(items) -> dict:
    return dict(parse_define(d) for d in items or ())


def _pick_kernel(module, name: str | None):
    kernels = module.kernels
    if name is None:
        if len(kernels) != 1:
            raise BittileError(
                f"{module._name} has {len(kernels)} kernels; choose one with --kernel",
                hint=f"kernels: {', '.join(kernels) or 'none'}",
            )
        return next(iter(kernels.values()))
    if name not in kernels:
        raise BittileError(f"no kernel {name!r} in {module._name}",
                           hint=f"kernels: {', '.join(kernels) or 'none'}")
    return kernels[name]


def cmd_check(args) -> int:
    from bittile.dsl.module import load_module

    failures = 0
    for path in args.files:
        try:
            module = load_module(path)
            for kernel in module.kernels.values():
                if all(p.default is not None for p in kernel.ast.const_params):
                    kernel.specialize()
                else:
                    missing = [p.name for p in kernel.ast.const_params if p.default is None]
                    print(f"{path}: kernel {kernel.name} parsed; specialize with "
                          f"-D {missing[0]}=... to check its types", file=sys.stderr)
            print(f"{path}: ok ({len(module.kernels)} kernels)")
        except BittileError as exc:
            failures += 1
            print(exc.render(), file=sys.stderr)
    return 1 if failures else 0


def cmd_compile(args) -> int:
    from bittile.dsl.module import load_module

    kernel = _pick_kernel(load_module(args.file), args.kernel)
    if args.emit == "ast":
        import pprint

        pprint.pprint(kernel.ast, width=100, sort_dicts=False)
        return 0
    ir = kernel.specialize(**_defines(args.define))
    if args.emit in ("llvm", "llvm-opt", "asm"):
        from bittile.backends.llvm import backend

        if args.emit == "llvm":
            print(backend.llvm_ir(ir), end="")
            return 0
        compiled = backend.compile_kernel(ir, args.cpu)
        print(compiled.module.optimized_ir if args.emit == "llvm-opt"
              else compiled.module.assembly(), end="")
        return 0
    if args.emit == "triton":
        from bittile.backends.triton import backend as triton_backend

        print(triton_backend.source(ir), end="")
        return 0
    if args.emit == "ptx":
        from bittile.backends.triton import aot

        compiled = aot.compile_ahead(ir, args.arch)
        print(compiled.ptx, end="")
        print(f"{compiled.name} for {compiled.arch}: {compiled.n_regs} registers, "
              f"{compiled.spill_stores} bytes spill stores, {compiled.spill_loads} bytes spill "
              f"loads, {compiled.shared} bytes shared memory, {compiled.num_warps} warps",
              file=sys.stderr)
        return 0
    if args.emit == "ir-opt":
        from bittile.passes.manager import run_pipeline
        from bittile.passes.pipelines import pipeline_for

        ir = run_pipeline(ir, pipeline_for(args.target), verify=True)
    print(ir, end="")
    return 0


def cmd_run(args) -> int:
    import numpy as np

    from bittile.dsl.module import load_module

    kernel = _pick_kernel(load_module(args.file), args.kernel)
    ir = kernel.specialize(**_defines(args.define))
    sizes = {}
    for item in args.size or ():
        name, _, value = item.partition("=")
        try:
            sizes[name] = int(value)
        except ValueError:
            raise BittileError(f"--size takes NAME=INT, got {item!r}") from None
    rng = np.random.default_rng(args.seed)
    arguments = []
    from bittile.ir.types import TensorType
    from bittile.runtime.packed import PackedTensor

    for p in ir.params:
        if isinstance(p.type, TensorType):
            try:
                shape = tuple(d.evaluate(sizes) for d in p.type.shape)
            except BittileError as exc:
                raise BittileError(
                    f"{exc.message} (tensor {p.name} of {p.type})",
                    hint="give every size with --size NAME=VALUE",
                ) from None
            arguments.append(_random_tensor(p.type.dtype, shape, rng))
        else:
            arguments.append(1 if p.type.dtype.is_int else 1.0)
    start = time.perf_counter()
    kernel[_defines(args.define)](*arguments, backend=args.backend)
    elapsed = time.perf_counter() - start
    from bittile.runtime.packed import unpack

    for p, arg in zip(ir.params, arguments):
        if isinstance(arg, PackedTensor):
            flat = unpack(arg).reshape(-1)
            print(f"{p.name}: {p.type.dtype}{list(arg.shape)} first values {flat[:8].tolist()}")
    print(f"ran {kernel.name} on {args.backend or 'interp'} in {elapsed * 1e3:.1f} ms")
    return 0


def _random_tensor(dtype, shape, rng):
    """Ints uniform over the dtype's range, floats standard normal rounded to the dtype."""
    from bittile.runtime.packed import pack

    if dtype.is_int:
        values = rng.integers(dtype.min, dtype.max + 1, size=shape)
    else:
        values = dtype.round(rng.standard_normal(shape))
    return pack(values, dtype)


def cmd_opt(args) -> int:
    """Like mlir-opt: read textual IR, run passes, print the result."""
    from bittile.ir.parser import parse_module
    from bittile.ir.printer import print_module
    from bittile.passes.manager import PassManager

    try:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise BittileError(f"cannot read {args.file}: {exc.strerror}") from None
    kernels = parse_module(text, args.file)
    manager = PassManager(args.passes, verify=True,
                          print_after=("all",) if args.print_ir_after_all else None,
                          timing=args.time_passes or None)
    print(print_module([manager.run(k) for k in kernels]), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bittile", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="parse and type-check .tile files")
    check.add_argument("files", nargs="+")
    check.set_defaults(run=cmd_check)
    for name, fn, help_text in (("compile", cmd_compile, "print a kernel's AST or IR"),
                                ("run", cmd_run, "run a kernel on random inputs")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("file")
        p.add_argument("--kernel", "-k")
        p.add_argument("-D", "--define", action="append", metavar="NAME=VALUE",
                       help="a compile-time parameter")
        p.set_defaults(run=fn)
        if name == "compile":
            p.add_argument("--emit", choices=("ast", "ir", "ir-opt", "llvm", "llvm-opt", "asm",
                                              "triton", "ptx"),
                           default="ir",
                           help="ir-opt: after a target's passes; llvm: the LLVM IR the llvm "
                                "backend generates; llvm-opt: after LLVM's optimizations; asm: "
                                "the machine code; triton: the Triton kernel's Python source; "
                                "ptx: that kernel compiled ahead of time for --arch (no GPU "
                                "needed; registers and spills go to stderr)")
            p.add_argument("--target", default="interp", help="whose pipeline --emit ir-opt runs")
            p.add_argument("--cpu", default=None,
                           help="CPU level for llvm-opt/asm: host (default), avx512, avx2, sse")
            p.add_argument("--arch", default="sm_90", choices=("sm_80", "sm_90"),
                           help="GPU architecture for --emit ptx")
        else:
            p.add_argument("--size", action="append", metavar="NAME=INT")
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--backend", default=None)
    layout = sub.add_parser("layout", help="draw a register layout: workers and local indices")
    layout.add_argument("layout", help='e.g. "local(2, 1).spatial(8, 4).local(1, 2)"')
    layout.add_argument("--png", required=True, metavar="FILE")
    layout.set_defaults(run=cmd_layout)
    fuzz = sub.add_parser("fuzz", help="differential fuzzing: random programs x backends x "
                                       "pipelines; failures are written as .tile reproducers")
    fuzz.add_argument("--minutes", type=float, default=1.0)
    fuzz.add_argument("--max-programs", type=int, default=None)
    fuzz.add_argument("--backends", default="interp,llvm")
    fuzz.add_argument("--pipelines", default="",
                      help='pass pipelines to check, separated by ";" (e.g. "canonicalize,cse")')
    fuzz.add_argument("--out", default="fuzz-failures")
    fuzz.add_argument("--seed", type=int, default=0)
    fuzz.add_argument("--replay", default=None, metavar="FILE.tile")
    fuzz.set_defaults(run=cmd_fuzz)
    example = sub.add_parser("example", help="run an example (minilm: a transformer on "
                                             "bittile's kernels, accuracy and speed table)",
                             add_help=False)
    example.add_argument("which", choices=("minilm",))
    example.add_argument("rest", nargs=argparse.REMAINDER)
    example.set_defaults(run=cmd_example)
    bench = sub.add_parser("bench", help="run a benchmark (gemv) with its in-run baselines",
                           add_help=False)
    bench.add_argument("which", choices=("gemv",))
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(run=cmd_bench)
    opt = sub.add_parser("opt", help="run passes on textual IR (.tir) and print the result")
    opt.add_argument("file")
    opt.add_argument("--passes", required=True, help='e.g. "canonicalize,cse,dce"')
    opt.add_argument("--print-ir-after-all", action="store_true")
    opt.add_argument("--time-passes", action="store_true")
    opt.set_defaults(run=cmd_opt)
    return parser


def cmd_layout(args) -> int:
    from bittile.ir.layout import parse_layout
    from bittile.ir.layout_plot import draw_layout

    layout = parse_layout(args.layout)
    try:
        draw_layout(layout, args.png)
    except ValueError as exc:
        raise BittileError(str(exc), hint="draw a 1-D or 2-D layout") from None
    except ImportError:
        raise BittileError("drawing layouts needs matplotlib",
                           hint="pip install matplotlib (the bench extra)") from None
    print(f"{args.png}: {layout} ({layout.num_workers} workers x {layout.local_size} local)")
    return 0


def cmd_fuzz(args) -> int:
    from bittile.testing.fuzz import main_fuzz

    return main_fuzz(args)


def cmd_example(args) -> int:
    import importlib.util
    import pathlib

    script = pathlib.Path(__file__).resolve().parents[1] / "examples" / args.which / "run.py"
    if not script.exists():
        raise BittileError("the examples are not installed with this copy of bittile",
                           hint=f"run them from a source checkout: python {script}")
    spec = importlib.util.spec_from_file_location(f"bittile_example_{args.which}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(args.rest)


def cmd_bench(args) -> int:
    try:
        from bittile.benchmarks import gemv
    except ImportError:
        raise BittileError("the benchmarks are not installed with this copy of bittile",
                           hint="run them from a source checkout: python benchmarks/gemv.py") \
            from None
    return gemv.main(args.rest)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BittileError as exc:
        from bittile.runtime import config

        if config.get("BITTILE_DEBUG"):
            raise
        print(exc.render(), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
