"""Every environment switch bittile reads, typed, in one place.

Each switch says whether it changes the generated code (and so must be part of a compile-cache
key) or only what bittile prints or checks. Read switches through :func:`get`, at the time they
matter (not at import), so tests can set them with ``monkeypatch.setenv``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bittile.errors import BittileError

__all__ = ["Switch", "SWITCHES", "get"]


@dataclass(frozen=True)
class Switch:
    name: str
    kind: str  # "bool" | "int" | "str" | "list"
    default: object
    changes_codegen: bool
    help: str


SWITCHES = {
    s.name: s
    for s in (
        Switch("BITTILE_DEBUG", "bool", False, False,
               "show compiler tracebacks behind diagnostics; verify the IR after every pass"),
        Switch("BITTILE_BACKEND", "str", None, True, "the backend kernels run on"),
        Switch("BITTILE_VERIFY_PASSES", "bool", False, False,
               "verify the IR after every pass (always on with BITTILE_DEBUG)"),
        Switch("BITTILE_PRINT_IR_AFTER", "list", (), False,
               "print the IR after these passes (comma-separated names, or 'all')"),
        Switch("BITTILE_PRINT_IR_BEFORE", "list", (), False,
               "print the IR before these passes (comma-separated names, or 'all')"),
        Switch("BITTILE_DUMP_DIR", "str", None, False,
               "write the IR before the first pass and after every pass to this folder"),
        Switch("BITTILE_TIME_PASSES", "bool", False, False, "print how long each pass took"),
        Switch("BITTILE_NUM_THREADS", "int", None, False,
               "threads a CPU kernel runs on (default: the number of cores)"),
        Switch("BITTILE_CPU_LEVEL", "str", None, True,
               "the instruction set the llvm backend targets: host (default), avx512, avx2 or "
               "sse; never more than the host has"),
    )
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def get(name: str):
    """The value of switch ``name`` from the environment (or its default)."""
    switch = SWITCHES[name]
    raw = os.environ.get(name)
    if raw is None:
        return switch.default
    if switch.kind == "bool":
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise BittileError(f"{name}={raw!r} is not a boolean", hint="use 1 or 0")
    if switch.kind == "int":
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if value < 1:
            raise BittileError(f"{name}={raw!r} is not a positive integer", hint="e.g. 4")
        return value
    if switch.kind == "list":
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw
