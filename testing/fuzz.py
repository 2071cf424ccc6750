"""Differential fuzzing: random tile programs x backends x pass pipelines.

``bittile fuzz --minutes 5 --backends interp,llvm --pipelines canonicalize,cse`` draws programs
with :func:`bittile.testing.kernels` and checks, for each, that every backend agrees with the
interpreter and that every pipeline preserves the interpreter's results. A failure is shrunk by
hypothesis to a small program, written to the output folder as a ``.tile`` file whose header
comments hold the sizes, seed and the command that replays it::

    bittile fuzz --replay fuzz-failures/fuzz-1a2b3c4d.tile
"""

from __future__ import annotations

import hashlib
import pathlib
import sys
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FuzzReport", "fuzz", "replay"]


@dataclass
class FuzzReport:
    programs: int = 0
    failures: list[pathlib.Path] = field(default_factory=list)
    seconds: float = 0.0


def _arguments(kernel, sizes: dict, scalars: dict, seed: int) -> dict:
    """The launch arguments of a campaign's program (the same when replayed)."""
    from bittile.testing.checkers import _random_arguments, _salted

    rng = np.random.default_rng(seed)
    env = {**sizes, **{k: v for k, v in scalars.items() if isinstance(v, int)}}
    args = _salted(kernel, _random_arguments(kernel, env, rng), rng)
    args.update(scalars)
    return args


def _check_kernel(kernel, sizes, scalars, backends, pipelines, seed: int) -> None:
    from bittile.testing.checkers import assert_backends_agree, assert_pipeline_preserves

    args = _arguments(kernel, sizes, scalars, seed)
    if len(backends) > 1:
        assert_backends_agree(kernel, backends=tuple(backends), args=args)
    for pipeline in pipelines:
        assert_pipeline_preserves(kernel, pipeline, args=args)


def _check(program, backends, pipelines, seed: int) -> None:
    _check_kernel(program.compile(), program.sizes, program.generated.scalars, backends,
                  pipelines, seed)


def _write(out: pathlib.Path, program, backends, pipelines, error: BaseException,
           seed: int) -> pathlib.Path:
    out.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(program.source.encode()).hexdigest()[:8]
    path = out / f"fuzz-{digest}.tile"
    sizes = ",".join(f"{k}={v}" for k, v in program.sizes.items())
    scalars = ",".join(f"{k}={v!r}" for k, v in program.generated.scalars.items())
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    header = [
        f"// bittile fuzz failure: {first_line}",
        f"// sizes: {sizes}",
        f"// scalars: {scalars}",
        f"// backends: {','.join(backends)}",
        f"// pipelines: {';'.join(pipelines)}",
        f"// seed: {seed}",
        f"// replay: bittile fuzz --replay {path}",
    ]
    path.write_text("\n".join(header) + "\n" + program.source)
    return path


def fuzz(minutes: float = 1.0, *, backends=("interp", "llvm"), pipelines=(),
         out="fuzz-failures", max_programs: int | None = None, seed: int = 0,
         max_ops: int = 16, progress=None) -> FuzzReport:
    """Run a campaign for ``minutes`` (or ``max_programs``); return what it found."""
    report = FuzzReport()
    out = pathlib.Path(out)
    deadline = time.monotonic() + minutes * 60
    start = time.monotonic()
    batch = 0
    while time.monotonic() < deadline and (max_programs is None
                                           or report.programs < max_programs):
        size = 25 if max_programs is None else min(25, max_programs - report.programs)
        failing: list = []
        campaign = _campaign(size, max_ops, backends, pipelines, seed, failing)
        campaign = _seeded(campaign, seed + batch)
        try:
            campaign()
        except Exception:
            if failing:
                program, exc = failing[-1]
                report.failures.append(_write(out, program, backends, pipelines, exc, seed))
        report.programs += size
        batch += 1
        if progress is not None:
            progress(report)
    report.seconds = time.monotonic() - start
    return report


def _campaign(size: int, max_ops: int, backends, pipelines, seed: int, failing: list):
    """A hypothesis test over ``size`` programs that records each failing program in
    ``failing`` (hypothesis shrinks a failure, so the last one recorded is the smallest)."""
    from hypothesis import HealthCheck, given, settings

    from bittile.testing.strategies import kernels

    @settings(max_examples=size, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(kernels(max_ops=max_ops))
    def campaign(program):
        try:
            _check(program, backends, pipelines, seed)
        except Exception as exc:
            failing.append((program, exc))
            raise

    return campaign


def _seeded(test, seed: int):
    from hypothesis import seed as hypothesis_seed

    return hypothesis_seed(seed)(test)


def replay(path) -> str | None:
    """Re-run a reproducer written by :func:`fuzz`; the failure message, or None if it passes
    now."""
    from bittile.dsl.module import load_source

    text = pathlib.Path(path).read_text()
    meta = {}
    for line in text.splitlines():
        if line.startswith("// ") and ":" in line:
            key, _, value = line[3:].partition(":")
            meta[key.strip()] = value.strip()
    sizes = {k: int(v) for k, v in (item.split("=") for item in meta.get("sizes", "").split(",")
                                    if item)}
    scalars = {}
    for item in filter(None, meta.get("scalars", "").split(",")):
        name, _, value = item.partition("=")
        scalars[name] = eval(value, {"nan": float("nan"), "inf": float("inf")})  # noqa: S307
    backends = [b for b in meta.get("backends", "interp").split(",") if b]
    pipelines = [p for p in meta.get("pipelines", "").split(";") if p]
    module = load_source(text, str(path))
    (tile_kernel,) = module.kernels.values()
    try:
        _check_kernel(tile_kernel.specialize(), sizes, scalars, backends, pipelines,
                      int(meta.get("seed", "0")))
    except AssertionError as exc:
        return str(exc)
    return None


def main_fuzz(args) -> int:
    """The ``bittile fuzz`` command."""
    if args.replay:
        failure = replay(args.replay)
        if failure is None:
            print(f"{args.replay}: passes now")
            return 0
        print(failure)
        return 1
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    pipelines = [p.strip() for p in (args.pipelines or "").split(";") if p.strip()]

    def progress(report):
        print(f"\r{report.programs} programs, {len(report.failures)} failures",
              end="", file=sys.stderr, flush=True)

    report = fuzz(args.minutes, backends=backends, pipelines=pipelines, out=args.out,
                  max_programs=args.max_programs, seed=args.seed,
                  progress=progress if sys.stderr.isatty() else None)
    print(f"{report.programs} programs in {report.seconds:.0f} s, "
          f"{len(report.failures)} failure(s)")
    for path in report.failures:
        print(f"  {path}   (replay: bittile fuzz --replay {path})")
    return 1 if report.failures else 0
