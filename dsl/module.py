"""Loading ``.tile`` files: ``bittile.load_module(path)`` and ``bittile.load_source(text)``.

A module's kernels and helper functions are its attributes. ``import "other.tile"`` makes the
other file's helpers and kernels visible (paths are relative to the importing file); an import
cycle is an error pointing at the import that closes it.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

from bittile.dsl import ast
from bittile.dsl.kernel import TileFunction, TileKernel
from bittile.errors import BittileError, Loc, TileSyntaxError

__all__ = ["TileModule", "load_module", "load_source"]

#: attribute names of TileModule itself, which kernels and functions cannot take
_RESERVED = frozenset({"kernels", "functions"})


class TileModule(SimpleNamespace):
    """The kernels and functions of one ``.tile`` file, as attributes."""

    def __init__(self, name: str, tree: ast.Module, kernels: dict, functions: dict):
        super().__init__(**kernels, **{n: TileFunction(f) for n, f in functions.items()})
        self.__dict__["_name"] = name
        self.__dict__["_ast"] = tree
        self.__dict__["_kernels"] = kernels
        self.__dict__["_functions"] = functions

    @property
    def kernels(self) -> dict[str, TileKernel]:
        return dict(self._kernels)

    @property
    def functions(self) -> dict[str, ast.FnDef]:
        return dict(self._functions)

    def __repr__(self) -> str:
        return f"<bittile module {self._name}: {', '.join(self._kernels) or 'no kernels'}>"


def load_module(path: str | os.PathLike) -> TileModule:
    """Parse and check the ``.tile`` file at ``path``."""
    path = os.fspath(path)
    return _Loader().load_file(os.path.abspath(path), None)


def load_source(text: str, filename: str = "<string>") -> TileModule:
    """A module from ``.tile`` source text; imports resolve relative to the working directory."""
    return _Loader().load_text(text, filename, os.getcwd())


class _Loader:
    def __init__(self):
        self.loading: list[str] = []
        self.done: dict[str, TileModule] = {}

    def load_file(self, path: str, at: Loc | None) -> TileModule:
        path = os.path.realpath(path)
        if path in self.done:
            return self.done[path]
        if path in self.loading:
            cycle = self.loading[self.loading.index(path):]
            chain = " -> ".join(os.path.basename(p) for p in cycle)
            raise TileSyntaxError(
                f"import cycle: {chain} -> {os.path.basename(path)}", at,
                hint="move the shared helpers into a file that both can import",
            )
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise BittileError(f"cannot read {path}: {exc.strerror}", at) from None
        module = self.load_text(text, path, os.path.dirname(path), key=path)
        self.done[path] = module
        return module

    def load_text(self, text: str, filename: str, directory: str,
                  key: str | None = None) -> TileModule:
        from bittile.dsl.parser import parse_module

        tree = parse_module(text, filename)
        self.loading.append(key or filename)
        try:
            functions: dict[str, ast.FnDef] = {}
            kernels: dict[str, TileKernel] = {}
            for item in tree.items:
                if isinstance(item, ast.Import):
                    other = self.load_file(os.path.join(directory, item.path), item.loc)
                    functions.update(other.functions)
                    kernels.update(other.kernels)
            defined: dict[str, Loc] = {
                name: getattr(value, "ast", value).loc
                for name, value in (*functions.items(), *kernels.items())
            }
            for item in tree.items:
                if isinstance(item, (ast.FnDef, ast.KernelDef)):
                    if item.name in _RESERVED:
                        raise TileSyntaxError(
                            f"{item.name!r} cannot name a kernel or function: a module uses it",
                            item.loc, hint="choose another name",
                        )
                    if item.name in defined:
                        raise TileSyntaxError(
                            f"{item.name!r} is defined twice (first at {defined[item.name]})",
                            item.loc,
                        )
                    defined[item.name] = item.loc
                    if isinstance(item, ast.FnDef):
                        functions[item.name] = item
            for item in tree.items:
                if isinstance(item, ast.KernelDef):
                    kernels[item.name] = TileKernel(item, functions)
        finally:
            self.loading.pop()
        return TileModule(os.path.basename(filename), tree, kernels, functions)
