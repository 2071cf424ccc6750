"""The pipeline each target runs, as text (see passes/base.py for the syntax).

Passes ask targets for capabilities; pipelines only choose which passes run, in which order.
"""

from __future__ import annotations

__all__ = ["PIPELINES", "pipeline_for"]

#: target name -> pipeline text. The interpreter is the specification: it needs no lowering,
#: only the cleanups (which must never change a result).
PIPELINES = {
    "interp": "canonicalize,cse,dce",
    # the llvm backend fuses elementwise chains itself (lazily evaluated tiles); fusing
    # dequantization into dots lets it pick a dot lowering for low-bit operands
    "llvm": "canonicalize,cse,dce,fuse-elementwise,fuse-dequant-dot,dce",
}


def pipeline_for(target: str) -> str:
    from bittile.errors import BittileError

    try:
        return PIPELINES[target]
    except KeyError:
        raise BittileError(f"no pipeline for target {target!r}",
                           hint=f"targets: {', '.join(PIPELINES)}") from None
