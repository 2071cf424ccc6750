"""Running pipelines, with instruments: verification between passes, printing and dumping the
IR, and timing.

A pass that breaks the IR is reported by name, with the verifier's message (located at the
offending op) and the IR it produced.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

from bittile.errors import BittileError, InternalError
from bittile.ir.core import Kernel
from bittile.passes.base import Pass, parse_pipeline
from bittile.runtime import config

__all__ = ["PassManager", "run_pipeline"]


class PassManager:
    def __init__(
        self,
        passes: Sequence[Pass] | str,
        *,
        verify: bool | None = None,
        print_before: Sequence[str] | None = None,
        print_after: Sequence[str] | None = None,
        dump_dir: str | None = None,
        timing: bool | None = None,
        out=None,
    ):
        self.passes = parse_pipeline(passes) if isinstance(passes, str) else list(passes)
        debug = config.get("BITTILE_DEBUG")
        self.verify = verify if verify is not None else (
            debug or config.get("BITTILE_VERIFY_PASSES")
        )
        self.print_before = set(print_before if print_before is not None
                                else config.get("BITTILE_PRINT_IR_BEFORE"))
        self.print_after = set(print_after if print_after is not None
                               else config.get("BITTILE_PRINT_IR_AFTER"))
        self.dump_dir = dump_dir if dump_dir is not None else config.get("BITTILE_DUMP_DIR")
        self.timing = timing if timing is not None else config.get("BITTILE_TIME_PASSES")
        self.out = out or sys.stderr
        self.times: list[tuple[str, float]] = []

    def _wants(self, names: set[str], p: Pass) -> bool:
        return "all" in names or p.name in names

    def _dump(self, index: int, label: str, kernel: Kernel) -> None:
        os.makedirs(self.dump_dir, exist_ok=True)
        path = os.path.join(self.dump_dir, f"{kernel.name}.{index:02d}.{label}.tir")
        with open(path, "w", encoding="utf-8") as f:
            f.write(str(kernel))

    def run(self, kernel: Kernel) -> Kernel:
        from bittile.ir.verifier import verify_kernel

        self.times = []
        if self.dump_dir:
            self._dump(0, "input", kernel)
        for index, p in enumerate(self.passes, start=1):
            if self._wants(self.print_before, p):
                print(f"// ----- IR before {p} -----\n{kernel}", file=self.out)
            start = time.perf_counter()
            try:
                result = p.run(kernel)
            except BittileError:
                raise
            except Exception as exc:
                raise InternalError(f"pass {p} crashed: {type(exc).__name__}: {exc}") from exc
            self.times.append((str(p), time.perf_counter() - start))
            if self.verify:
                try:
                    verify_kernel(result)
                except BittileError as exc:
                    raise InternalError(
                        f"pass {p} produced invalid IR: {exc.render()}\n{_safe_print(result)}",
                        exc.loc,
                    ) from None
            if self._wants(self.print_after, p):
                print(f"// ----- IR after {p} -----\n{result}", file=self.out)
            if self.dump_dir:
                self._dump(index, p.name, result)
            kernel = result
        if self.timing:
            for name, seconds in self.times:
                print(f"{seconds * 1e3:9.3f} ms  {name}", file=self.out)
        return kernel


def _safe_print(kernel: Kernel) -> str:
    try:
        return str(kernel)
    except Exception as exc:  # the IR may be too broken to print
        return f"(the IR cannot be printed: {exc})"


def run_pipeline(kernel: Kernel, passes: Sequence[Pass] | str, **options) -> Kernel:
    return PassManager(passes, **options).run(kernel)
