"""User-facing errors.

Every error a user can cause is a :class:`BittileError`. When the error comes from a place in
a kernel's source, it carries a :class:`Loc` and renders the source line with a caret under the
offending span, in the style of a compiler diagnostic::

    gemv.tile:12:9: error: shape mismatch in '+': [32, 64] and [64, 32]
        acc = acc + w
              ^^^^^^^
    hint: broadcast one operand explicitly, e.g. w[None, :]

Sources that are not files on disk (strings, Python functions defined in a REPL) register their
text with :func:`register_source` so the caret can still be drawn.
"""

from __future__ import annotations

import linecache
from dataclasses import dataclass

__all__ = [
    "Loc",
    "BittileError",
    "TileSyntaxError",
    "TileTypeError",
    "DTypeError",
    "PackingError",
    "LayoutError",
    "IRError",
    "LaunchError",
    "InternalError",
    "register_source",
]


@dataclass(frozen=True)
class Loc:
    """A span of source text: 1-based line and column, end column exclusive."""

    file: str
    line: int
    col: int
    end_line: int | None = None
    end_col: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def source_line(self) -> str | None:
        text = linecache.getline(self.file, self.line)
        return text.rstrip("\n") if text else None

    def render(self) -> str:
        """The source line followed by a caret line under this span (empty if unknown)."""
        line = self.source_line()
        if line is None:
            return ""
        start = max(self.col - 1, 0)
        if self.end_line in (None, self.line) and self.end_col is not None:
            width = max(self.end_col - self.col, 1)
        else:
            width = max(len(line.rstrip()) - start, 1)
        expanded = line.expandtabs(4) if "\t" not in line[:start] else line
        return f"    {expanded}\n    {' ' * start}{'^' * width}"


def register_source(name: str, text: str) -> None:
    """Make ``text`` retrievable as the source of ``name`` for diagnostics."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    linecache.cache[name] = (len(text), None, lines, name)


class BittileError(Exception):
    """Base class of every error a bittile user can cause."""

    kind = "error"

    def __init__(self, message: str, loc: Loc | None = None, hint: str | None = None):
        self.message = message
        self.loc = loc
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.loc}: {self.kind}: {self.message}" if self.loc else self.message
        parts = [head]
        if self.loc is not None:
            snippet = self.loc.render()
            if snippet:
                parts.append(snippet)
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)

    def with_loc(self, loc: Loc | None) -> BittileError:
        """The same error located at ``loc`` if it has no location yet."""
        if self.loc is not None or loc is None:
            return self
        return type(self)(self.message, loc, self.hint)


class TileSyntaxError(BittileError):
    kind = "syntax error"


class TileTypeError(BittileError, TypeError):
    kind = "type error"


class DTypeError(BittileError, ValueError):
    kind = "dtype error"


class PackingError(BittileError, ValueError):
    kind = "packing error"


class LayoutError(BittileError, ValueError):
    kind = "layout error"


class IRError(BittileError, ValueError):
    """Malformed IR: raised by the builder, the verifier and the IR parser."""

    kind = "IR error"


class LaunchError(BittileError, ValueError):
    kind = "launch error"


class InternalError(BittileError, RuntimeError):
    """A bug in bittile itself, never the user's fault."""

    kind = "internal error"
