"""Every environment switch bittile reads, typed, in one place.

Each switch says whether it changes the generated code (and so must be part of a compile-cache
key) or only what bittile prints or checks. Read switches through :func:`get`, at the time they
matter (not at import), so tests can set them with ``monkeypatch.setenv``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass

from bittile.errors import BittileError

__all__ = ["Switch", "SWITCHES", "get", "override"]


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
        Switch("BITTILE_CACHE_DIR", "str", None, False,
               "the compile cache folder (default: the user cache folder, e.g. "
               "~/.cache/bittile)"),
        Switch("BITTILE_DISABLE_CACHE", "bool", False, False,
               "keep compiled kernels in memory only (no disk cache)"),
        Switch("BITTILE_NUM_THREADS", "int", None, False,
               "threads a CPU kernel runs on (default: the number of cores)"),
        Switch("BITTILE_DOT_LOWERING", "str", "auto", True,
               "how the llvm backend lowers dots with a low-bit operand: auto (table lookup "
               "for at most BITTILE_LUT_MAX_M dense rows, else dequantize-and-FMA), lut or fma"),
        Switch("BITTILE_LUT_MAX_M", "int", 8, True,
               "the most dense rows (M) for which auto picks table lookup"),
        Switch("BITTILE_LUT_EXACT", "bool", False, True,
               "table-lookup dots use float tables (exact to float rounding) instead of int8"),
        Switch("BITTILE_CPU_LEVEL", "str", None, True,
               "the instruction set the llvm backend targets: host (default), avx512, avx2 or "
               "sse; never more than the host has"),
        Switch("BITTILE_TRITON_INTERPRET", "bool", False, False,
               "run triton kernels under Triton's interpreter on CPU tensors even when CUDA "
               "is available (without CUDA they always are)"),
    )
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


#: os.environ decodes every lookup; its underlying mapping of encoded names is much faster to
#: read on the launch path (the same data: os.environ writes through to it)
_ENV_DATA = getattr(os.environ, "_data", None)
_ENCODED = {name: os.environ.encodekey(name) for name in SWITCHES} if _ENV_DATA is not None \
    else {}
_parsed: dict[tuple[str, bytes], object] = {}


def _raw(name: str) -> bytes | str | None:
    if _ENV_DATA is not None and name in _ENCODED:
        return _ENV_DATA.get(_ENCODED[name])
    return os.environ.get(name)


_overrides: contextvars.ContextVar[dict | None] = contextvars.ContextVar("bittile_overrides",
                                                                         default=None)


@contextlib.contextmanager
def override(**values):
    """Set switches for the code inside the ``with`` block (this thread or task only), e.g.
    ``with bittile.options(BITTILE_LUT_EXACT=True): kernel(...)`` for one call. Values are
    given typed (bool, int, str), not as environment strings."""
    for name in values:
        if name not in SWITCHES:
            raise BittileError(f"unknown switch {name!r}",
                               hint=f"switches: {', '.join(sorted(SWITCHES))}")
    token = _overrides.set({**(_overrides.get() or {}), **values})
    try:
        yield
    finally:
        _overrides.reset(token)


def get(name: str):
    """The value of switch ``name``: an :func:`override` in effect, else the environment, else
    its default."""
    overrides = _overrides.get()
    if overrides and name in overrides:
        return overrides[name]
    raw = _raw(name)
    if raw is None:
        return SWITCHES[name].default
    key = (name, raw)
    try:
        return _parsed[key]
    except KeyError:
        pass
    value = _parse(SWITCHES[name], os.environ.decodevalue(raw) if isinstance(raw, bytes)
                   else raw)
    _parsed[key] = value
    return value


def _parse(switch: Switch, raw: str):
    name = switch.name
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
