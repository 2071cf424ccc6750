"""Passes: frozen dataclasses whose fields are their options, registered by kebab-case name.

A pass transforms a :class:`~bittile.ir.core.Kernel` into a new kernel (it never mutates its
input) and must preserve the interpreter's results on every kernel it accepts. Pipelines are
lists of passes, also written as text::

    "canonicalize,cse,dce,pack-bits{word=32}"

where ``{name=value, ...}`` sets options (ints, floats, true/false, or bare words).
"""

from __future__ import annotations

import abc
import dataclasses
import re
from dataclasses import dataclass
from typing import ClassVar

from bittile.errors import BittileError, InternalError
from bittile.ir.core import Kernel

__all__ = ["Pass", "PASS_REGISTRY", "register_pass", "parse_pipeline", "format_pipeline"]

PASS_REGISTRY: dict[str, type[Pass]] = {}


@dataclass(frozen=True)
class Pass(abc.ABC):
    """Base class of passes. Subclasses set ``name`` and implement :meth:`run`."""

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def run(self, kernel: Kernel) -> Kernel:
        """The transformed kernel (a new one; ``kernel`` itself is never modified)."""

    def __str__(self) -> str:
        options = [
            f"{f.name.replace('_', '-')}={_format_option(getattr(self, f.name))}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        ]
        return self.name + ("{" + ",".join(options) + "}" if options else "")


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: a frozen dataclass registered under ``cls.name``."""
    cls = dataclass(frozen=True)(cls)
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", cls.name or ""):
        raise InternalError(f"pass {cls.__name__} needs a kebab-case name, has {cls.name!r}")
    if cls.name in PASS_REGISTRY:
        raise InternalError(f"pass name {cls.name!r} is registered twice")
    PASS_REGISTRY[cls.name] = cls
    return cls


def _format_option(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_option(text: str):
    if text in ("true", "false"):
        return text == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


_ITEM = re.compile(r"\s*([a-z][a-z0-9-]*)\s*(?:\{([^}]*)\})?\s*(?:,|$)")


def parse_pipeline(text: str) -> list[Pass]:
    """``"canonicalize,pack-bits{word=32}"`` -> pass objects (registered passes only)."""
    _load_builtin_passes()
    passes: list[Pass] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _ITEM.match(text, pos)
        if not match or match.end() == pos:
            raise BittileError(
                f"cannot read the pipeline {text!r} at character {pos + 1}",
                hint="separate passes by commas, options in braces: cse,pack-bits{word=32}",
            )
        name, options = match.group(1), match.group(2)
        cls = PASS_REGISTRY.get(name)
        if cls is None:
            raise BittileError(f"unknown pass {name!r}",
                               hint=f"known passes: {', '.join(sorted(PASS_REGISTRY))}")
        kwargs = {}
        for item in filter(None, (o.strip() for o in (options or "").split(","))):
            key, sep, value = item.partition("=")
            field_name = key.strip().replace("-", "_")
            fields = {f.name for f in dataclasses.fields(cls)}
            if not sep or field_name not in fields:
                raise BittileError(
                    f"pass {name} has no option {key.strip()!r}",
                    hint=f"options: {', '.join(sorted(fields)) or 'none'}",
                )
            kwargs[field_name] = _parse_option(value.strip())
        passes.append(cls(**kwargs))
        pos = match.end()
    return passes


def format_pipeline(passes) -> str:
    return ",".join(str(p) for p in passes)


def _load_builtin_passes() -> None:
    """Import every pass module so their passes are registered."""
    import importlib
    import pkgutil

    import bittile.passes as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in ("base", "rewrite", "manager", "pipelines", "__init__"):
            importlib.import_module(f"bittile.passes.{info.name}")
