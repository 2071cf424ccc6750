"""Scopes, bindings and the syntactic scans the lowering needs (``dsl/lower.py``).

A :class:`Scope` maps names to :class:`Binding` s and has a parent; blocks (loop bodies,
branches) open a child scope, so a name may be redefined in an inner block but not twice in
one block. The kernel's compile-time and runtime parameters share the scope of the kernel
body's top level (a body ``let`` cannot silently hide a parameter); a helper function's
parameters likewise share the scope of its body, whose parent is nothing: helpers see only
their parameters, dtype names and other functions.

Bindings are mutable records: assigning a ``var`` replaces ``binding.value``, which is how a
loop or a branch finds the value a variable has at its end.
"""

from __future__ import annotations

from dataclasses import dataclass

from bittile.dsl import ast
from bittile.errors import Loc

__all__ = ["Binding", "Scope", "assigned_outer_names", "find_return", "BINDING_KINDS"]

#: what a name can be bound as; ``var`` and ``fnparam`` bindings are assignable
BINDING_KINDS = {
    "const": "a compile-time parameter",
    "param": "a kernel parameter",
    "let": "a let binding",
    "var": "a var",
    "loop": "a loop variable",
    "fnparam": "a helper function parameter",
}


@dataclass(eq=False)
class Binding:
    name: str
    value: object
    kind: str
    loc: Loc | None = None

    @property
    def mutable(self) -> bool:
        """Vars are assignable, and so are a helper's parameters (local to each inlining)."""
        return self.kind in ("var", "fnparam")

    @property
    def description(self) -> str:
        return BINDING_KINDS[self.kind]


class Scope:
    def __init__(self, parent: Scope | None = None):
        self.parent = parent
        self.names: dict[str, Binding] = {}

    def lookup(self, name: str) -> Binding | None:
        scope: Scope | None = self
        while scope is not None:
            binding = scope.names.get(name)
            if binding is not None:
                return binding
            scope = scope.parent
        return None

    def local(self, name: str) -> Binding | None:
        return self.names.get(name)

    def define(self, binding: Binding) -> None:
        self.names[binding.name] = binding

    def visible_names(self) -> list[str]:
        out: list[str] = []
        scope: Scope | None = self
        while scope is not None:
            out.extend(scope.names)
            scope = scope.parent
        return out


def assigned_outer_names(bodies: list[tuple[ast.Stmt, ...]]) -> list[str]:
    """Names assigned in ``bodies`` (each a block, scanned separately, nested blocks included)
    that refer to variables declared outside them, in order of first assignment.

    An assignment refers to an outer variable unless a ``let``/``var`` (or a loop variable)
    of the same name was declared earlier in the same or an enclosing block of the scan.
    """
    found: dict[str, None] = {}

    def scan(stmts: tuple[ast.Stmt, ...], declared: list[set[str]]) -> None:
        local: set[str] = set()
        declared = [*declared, local]
        for st in stmts:
            if isinstance(st, ast.Let):
                local.add(st.name)
            elif isinstance(st, ast.Assign):
                if not any(st.name in d for d in declared):
                    found.setdefault(st.name, None)
            elif isinstance(st, ast.For):
                scan(st.body, [*declared, {st.var}])
            elif isinstance(st, ast.If):
                scan(st.then_body, declared)
                scan(st.else_body, declared)

    for body in bodies:
        scan(body, [])
    return list(found)


def find_return(stmts: tuple[ast.Stmt, ...]) -> ast.Return | None:
    """The first ``return`` in ``stmts`` or in their nested blocks."""
    for st in stmts:
        if isinstance(st, ast.Return):
            return st
        if isinstance(st, ast.For):
            found = find_return(st.body)
        elif isinstance(st, ast.If):
            found = find_return(st.then_body) or find_return(st.else_body)
        else:
            found = None
        if found is not None:
            return found
    return None
