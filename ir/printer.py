"""The textual form of the IR: one generic syntax for every op.

``print_kernel`` writes a kernel, :mod:`bittile.ir.parser` reads it back; the two are exact
inverses on the printed form (``print(parse(print(k))) == print(k)``, with or without source
locations). Example::

    kernel @dequant(%w: tensor<u4[N, 8]>, %y: tensor<f32[N]>, %alpha: f32) grid(cdiv(N, 16)) {
      %0 = tile.block_id() {axis = 0} : i32
      %1 = arith.constant() {dtype = i32, value = 16} : i32
      %2 = arith.mul(%0, %1) : i32
      %3 = arith.constant() {dtype = i32, value = 0} : i32
      %4 = tile.load(%w, %2, %3) {shape = [16, 8]} : tile<u4[16, 8]>
      %5 = tile.view(%4) {dtype = u32, shape = [16, 1]} : tile<u32[16, 1]>
      %6 = tile.cast(%4) {dtype = f32} : tile<f32[16, 8]>
      %7 = arith.constant() {dtype = i32, value = 1} : i32
      %8 = scf.for(%3, %7, %7, %6) ({
      ^(%9: i32, %10: tile<f32[16, 8]>):
        %11 = arith.mul(%10, %alpha) : tile<f32[16, 8]>
        scf.yield(%11)
      }) : tile<f32[16, 8]>
      %12 = tile.reduce_sum(%8) {axis = 1, keepdims = false} : tile<f32[16]>
      %13 = tile.convert_layout(%12) {layout = layout<spatial(16)>} : tile<f32[16] @ spatial(16)>
      %14 = arith.constant() {dtype = i32, value = 64} : i32
      %15 = cmp.lt(%2, %14) : u1
      %16 = scf.if(%15) ({
        scf.yield(%13)
      }, {
        %17 = math.neg(%13) : tile<f32[16] @ spatial(16)>
        scf.yield(%17)
      }) : tile<f32[16] @ spatial(16)>
      tile.store(%y, %2, %16)
    }

Grammar (``ir/ir.lark`` is the normative version; whitespace and ``# comments`` are free)::

    module     := kernel*
    kernel     := 'kernel' @NAME '(' [param (',' param)*] ')' 'grid' '(' [expr (',' expr)*] ')'
                  [loc] '{' op* '}'
    param      := %NAME ':' type
    op         := [%v (',' %v)* '='] OPNAME '(' [%v (',' %v)*] ')' [regions] [attrs]
                  [':' type (',' type)*] [loc]
    regions    := '(' region (',' region)* ')'
    region     := '{' ['^' '(' [param (',' param)*] ')' ':'] op* '}'
    attrs      := '{' [NAME '=' attr (',' NAME '=' attr)*] '}'
    attr       := ['-'] INT | ['-'] FLOAT | ['-'] 'inf' | 'nan' | 'true' | 'false' | STRING
                | DTYPE | 'layout' '<' LAYOUT '>' | '[' [attr (',' attr)*] ']'
    type       := DTYPE | 'tensor' '<' DTYPE '[' [expr (',' expr)*] ']' '>'
                | 'tile' '<' DTYPE '[' INT (',' INT)* ']' ['@' LAYOUT] '>'
    expr       := expr ('+' | '-') term | term
    term       := term ('*' | '//' | '%') atom | atom
    atom       := ['-'] INT | NAME | ('cdiv' | 'min' | 'max') '(' expr ',' expr ')' | '(' expr ')'
    loc        := 'loc' '(' STRING ':' INT ':' INT ['to' [INT] ':' [INT]] ')'
                | 'loc' '(' 'unknown' ')'

- ``@NAME`` is the kernel name, JSON-quoted (``@"a b"``) when it is not an identifier; ``%NAME``
  likewise for values. Parameters print as ``%<param name>``; every other value (op results
  and block arguments, in print order, results before the regions of their op) as ``%0``,
  ``%1``, ... so the text does not depend on object identities or name hints.
- ``OPNAME`` is a registered op name (``tile.load``, ``arith.add``, ...). Ops without results
  have neither ``=`` nor ``: types``; ops with results list exactly one type per result.
- Regions are blocks of the op (loop body, then/else branches). A block with arguments starts
  with ``^(%a: type, ...):``; the kernel body's arguments are the parameters of the header.
- Attributes are sorted by name; attributes whose value is ``None`` (the default of every
  optional attribute) are left out. Values: ``int``; ``float`` by ``repr`` (always with a
  ``.`` or an exponent) or ``inf``/``-inf``/``nan``; ``true``/``false``; JSON strings;
  ``[...]`` for tuples; a dtype by its name (``f16``, ``u4``, ``f6e3m2``); a register layout
  as ``layout<...>`` around ``str(layout)`` (which never contains ``<`` or ``>``).
- ``LAYOUT`` is the text of a layout, read with :func:`bittile.ir.layout.parse_layout`.
- Sizes are symbolic expressions printed by ``str(SymExpr)``: ``+ - * // %`` with the usual
  precedence, left-associative, and the calls ``cdiv``, ``min``, ``max``.
- With ``locs=True`` every op line and the kernel header end with ``loc("file":line:col)``,
  ``loc("file":line:col to end_line:end_col)`` when the end is known (either end field may
  be empty if only one is known), or ``loc(unknown)`` when the op has no location.
- Nesting indents by two spaces; the ``^(...)`` line of a block is at the level of its op.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable

from bittile.errors import InternalError, Loc
from bittile.ir.core import Block, Kernel, Op, Value
from bittile.ir.dtypes import DType
from bittile.ir.layout import RegisterLayout

__all__ = ["print_kernel", "print_module", "print_op", "format_attribute", "format_loc"]

_INDENT = "  "
_PLAIN_NAME = re.compile(r"[A-Za-z_]\w*")


def print_kernel(kernel: Kernel, locs: bool = False) -> str:
    """The text of ``kernel`` (ends with a newline); ``locs`` appends source locations."""
    return _Printer(locs).kernel(kernel)


def print_module(kernels: Iterable[Kernel], locs: bool = False) -> str:
    """Several kernels, separated by blank lines (what ``parse_module`` reads)."""
    return "\n".join(print_kernel(k, locs) for k in kernels)


def print_op(op: Op, names: dict[Value, str] | None = None, locs: bool = False) -> str:
    """One op (with its regions), for debugging and error messages.

    Values not named in ``names`` (a map from values to names such as ``"%x"``) are named by
    their position: ``%in0``, ``%in1``, ... in order of first use; results and the values
    defined inside the op's regions are numbered ``%0``, ``%1``, ...
    """
    printer = _Printer(locs, unknown_prefix="%in")
    if names:
        printer.names.update(names)
    lines: list[str] = []
    printer.op(op, 0, lines)
    return "\n".join(lines)


# ---- pieces -------------------------------------------------------------------------------------
def _quoted_name(sigil: str, name: str) -> str:
    """``%name``/``@name``, JSON-quoted when ``name`` is not a plain identifier."""
    if _PLAIN_NAME.fullmatch(name):
        return sigil + name
    return sigil + json.dumps(name)


def format_attribute(value) -> str:
    """The text of one attribute value (see the module docstring)."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()  # numpy scalars print as the Python number they hold
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, DType):
        return value.name
    if isinstance(value, RegisterLayout):
        return f"layout<{value}>"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(format_attribute(v) for v in value) + "]"
    raise InternalError(f"cannot print an attribute of type {type(value).__name__}: {value!r}")


def format_loc(loc: Loc | None) -> str:
    """``loc(...)`` for ``loc`` (``loc(unknown)`` for None)."""
    if loc is None:
        return "loc(unknown)"
    text = f"{json.dumps(loc.file)}:{loc.line}:{loc.col}"
    if loc.end_line is not None or loc.end_col is not None:
        end_line = "" if loc.end_line is None else str(loc.end_line)
        end_col = "" if loc.end_col is None else str(loc.end_col)
        text += f" to {end_line}:{end_col}"
    return f"loc({text})"


class _Printer:
    def __init__(self, locs: bool, unknown_prefix: str = "%?"):
        self.locs = locs
        self.names: dict[Value, str] = {}
        self.counter = 0
        self.unknown_prefix = unknown_prefix
        self.unknown = 0

    # -- naming ---------------------------------------------------------------------------------
    def define(self, value: Value) -> str:
        name = f"%{self.counter}"
        self.counter += 1
        self.names[value] = name
        return name

    def ref(self, value: Value) -> str:
        """The name of a used value; values never defined (malformed IR) get placeholder
        names so that debugging output is still readable."""
        name = self.names.get(value)
        if name is None:
            name = f"{self.unknown_prefix}{self.unknown}"
            self.unknown += 1
            self.names[value] = name
        return name

    # -- text -----------------------------------------------------------------------------------
    def loc_suffix(self, loc: Loc | None) -> str:
        return f" {format_loc(loc)}" if self.locs else ""

    def kernel(self, kernel: Kernel) -> str:
        params = []
        args = list(kernel.body.args)
        for i, p in enumerate(kernel.params):
            name = _quoted_name("%", p.name)
            if i < len(args):
                self.names[args[i]] = name
            params.append(f"{name}: {p.type}")
        grid = ", ".join(str(d) for d in kernel.grid)
        header = (
            f"kernel {_quoted_name('@', kernel.name)}({', '.join(params)}) grid({grid})"
            f"{self.loc_suffix(kernel.loc)} {{"
        )
        lines = [header]
        for op in kernel.body.ops:
            self.op(op, 1, lines)
        lines.append("}")
        return "\n".join(lines) + "\n"

    def op(self, op: Op, depth: int, lines: list[str]) -> None:
        indent = _INDENT * depth
        operands = ", ".join(self.ref(v) for v in op.operands)
        results = op.results
        result_names = [self.define(r) for r in results]
        head = f"{indent}{', '.join(result_names)} = " if results else indent
        text = f"{head}{op.name}({operands})"
        regions = op.regions
        if regions:
            text += " ("
            for k, block in enumerate(regions):
                lines.append(text + "{")
                self.block(block, depth, lines)
                text = indent + "}" + (", " if k + 1 < len(regions) else ")")
        attrs = {k: v for k, v in op.attributes.items() if v is not None}
        if attrs:
            text += " {" + ", ".join(
                f"{k} = {format_attribute(attrs[k])}" for k in sorted(attrs)
            ) + "}"
        if results:
            text += " : " + ", ".join(str(r.type) for r in results)
        lines.append(text + self.loc_suffix(op.loc))

    def block(self, block: Block, depth: int, lines: list[str]) -> None:
        if block.args:
            args = ", ".join(f"{self.define(a)}: {a.type}" for a in block.args)
            lines.append(f"{_INDENT * depth}^({args}):")
        for op in block.ops:
            self.op(op, depth + 1, lines)
