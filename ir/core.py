"""The structure of the IR: values, blocks, operations and kernels.

Structured SSA. A :class:`Kernel` has parameters (global tensors and scalars, which are the
arguments of its body block), a grid of symbolic sizes and a body. Ops that contain code (loops,
ifs) hold nested :class:`Block` s whose arguments are the loop counter and the loop-carried
values, and end with a yield.

Ops and values are identities: they hash and compare by ``id``. Each op class declares its
fields with :func:`operand`, :func:`operands`, :func:`attr`, :func:`result`, :func:`results`
and :func:`region`, so that the printer, the parser and the passes can treat every op
generically while each class keeps named, typed fields. At most one field of an op is a
variadic operand group, so a flat operand list always splits back into fields unambiguously.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bittile.errors import InternalError, IRError, Loc
from bittile.ir.symbolic import SymExpr
from bittile.ir.types import Type

__all__ = [
    "Value",
    "Block",
    "Op",
    "Kernel",
    "Param",
    "operand",
    "operands",
    "attr",
    "result",
    "results",
    "region",
    "OP_REGISTRY",
    "register_op",
    "abstract_op",
]


class Value:
    """An SSA value: the result of an op or the argument of a block."""

    __slots__ = ("type", "name_hint", "__weakref__")

    def __init__(self, type: Type, name_hint: str | None = None):
        self.type = type
        self.name_hint = name_hint

    def __repr__(self) -> str:
        hint = f" {self.name_hint}" if self.name_hint else ""
        return f"<Value{hint}: {self.type}>"


@dataclass(eq=False)
class Block:
    """A list of ops with block arguments; nested blocks end with a ``YieldOp``."""

    args: list[Value] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)

    def walk(self):
        """Every op in this block and in nested blocks, in program order (pre-order)."""
        for op in self.ops:
            yield op
            for region in op.regions:
                yield from region.walk()


# ---- field declarations -----------------------------------------------------------------------
_OPERAND, _OPERANDS, _ATTR, _RESULT, _RESULTS, _REGION = (
    "operand", "operands", "attr", "result", "results", "region"
)


def operand():
    return field(metadata={"kind": _OPERAND})


def operands():
    return field(metadata={"kind": _OPERANDS})


def attr(default: Any = dataclasses.MISSING):
    if default is dataclasses.MISSING:
        return field(metadata={"kind": _ATTR})
    return field(default=default, metadata={"kind": _ATTR})


def result():
    return field(metadata={"kind": _RESULT})


def results():
    return field(metadata={"kind": _RESULTS})


def region():
    return field(metadata={"kind": _REGION})


OP_REGISTRY: dict[str, type[Op]] = {}


def abstract_op(cls):
    """Class decorator for an unregistered base of a family of ops sharing fields."""
    return dataclass(frozen=True, eq=False, kw_only=True)(cls)


def register_op(cls: type[Op]) -> type[Op]:
    """Class decorator: make ``cls`` a frozen identity dataclass and register it by name."""
    cls = dataclass(frozen=True, eq=False, kw_only=True)(cls)
    if not getattr(cls, "name", None):
        raise InternalError(f"op class {cls.__name__} has no registered name")
    if cls.name in OP_REGISTRY:
        raise InternalError(f"op name {cls.name!r} is registered twice")
    kinds = [f.metadata.get("kind") for f in dataclasses.fields(cls)]
    if kinds.count(_OPERANDS) > 1:
        raise InternalError(f"{cls.__name__} declares more than one variadic operand group")
    cls._fields_by_kind = {
        kind: tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("kind") == kind)
        for kind in (_OPERAND, _OPERANDS, _ATTR, _RESULT, _RESULTS, _REGION)
    }
    cls._operand_order = tuple(
        f.name for f in dataclasses.fields(cls) if f.metadata.get("kind") in (_OPERAND, _OPERANDS)
    )
    OP_REGISTRY[cls.name] = cls
    return cls


@dataclass(frozen=True, eq=False, kw_only=True)
class Op:
    """Base class of every op. Subclasses are declared with :func:`register_op`."""

    name: ClassVar[str] = ""
    loc: Loc | None = field(default=None, metadata={"kind": "loc"})

    _fields_by_kind: ClassVar[dict[str, tuple[str, ...]]] = {}
    _operand_order: ClassVar[tuple[str, ...]] = ()

    # ---- generic views -------------------------------------------------------------------
    @property
    def operands(self) -> tuple[Value, ...]:
        flat: list[Value] = []
        for name in self._operand_order:
            value = getattr(self, name)
            if isinstance(value, tuple):
                flat.extend(value)
            else:
                flat.append(value)
        return tuple(flat)

    @property
    def results(self) -> tuple[Value, ...]:
        flat: list[Value] = [getattr(self, n) for n in self._fields_by_kind[_RESULT]]
        for name in self._fields_by_kind[_RESULTS]:
            flat.extend(getattr(self, name))
        return tuple(flat)

    @property
    def attributes(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self._fields_by_kind[_ATTR]}

    @property
    def regions(self) -> tuple[Block, ...]:
        return tuple(getattr(self, n) for n in self._fields_by_kind[_REGION])

    @property
    def result(self) -> Value:
        res = self.results
        if len(res) != 1:
            raise InternalError(f"{self.name} has {len(res)} results, not one")
        return res[0]

    @classmethod
    def from_generic(
        cls,
        operands: tuple[Value, ...],
        attributes: dict[str, Any],
        result_values: tuple[Value, ...],
        regions: tuple[Block, ...],
        loc: Loc | None = None,
    ) -> Op:
        """Rebuild an op from the generic views (used by the parser and by rewrites)."""
        kwargs: dict[str, Any] = dict(attributes)
        fixed = [n for n in cls._operand_order if n not in cls._fields_by_kind[_OPERANDS]]
        n_variadic = len(operands) - len(fixed)
        if n_variadic < 0 or (n_variadic and not cls._fields_by_kind[_OPERANDS]):
            raise IRError(f"{cls.name} takes {len(fixed)} operands, got {len(operands)}", loc)
        it = iter(operands)
        for name in cls._operand_order:
            if name in cls._fields_by_kind[_OPERANDS]:
                kwargs[name] = tuple(next(it) for _ in range(n_variadic))
            else:
                kwargs[name] = next(it)
        single = cls._fields_by_kind[_RESULT]
        if cls._fields_by_kind[_RESULTS]:
            kwargs[cls._fields_by_kind[_RESULTS][0]] = tuple(result_values)
        else:
            if len(result_values) != len(single):
                raise IRError(
                    f"{cls.name} has {len(single)} results, got {len(result_values)}", loc
                )
            kwargs.update(zip(single, result_values))
        region_names = cls._fields_by_kind[_REGION]
        if len(regions) != len(region_names):
            raise IRError(f"{cls.name} has {len(region_names)} regions, got {len(regions)}", loc)
        kwargs.update(zip(region_names, regions))
        unknown = set(attributes) - set(cls._fields_by_kind[_ATTR])
        if unknown:
            raise IRError(f"{cls.name} has no attribute {sorted(unknown)[0]!r}", loc)
        try:
            return cls(loc=loc, **kwargs)
        except TypeError as exc:
            raise IRError(f"malformed {cls.name}: {exc}", loc) from None

    def verify(self) -> None:
        """Check operand and result types; raise IRError. Subclasses extend this."""

    def error(self, message: str, hint: str | None = None) -> IRError:
        return IRError(f"{self.name}: {message}", self.loc, hint)

    def __repr__(self) -> str:
        return f"<{self.name} at {self.loc}>" if self.loc else f"<{self.name}>"


@dataclass(frozen=True)
class Param:
    """A runtime parameter of a kernel: a global tensor or a scalar."""

    name: str
    type: Type


@dataclass(eq=False)
class Kernel:
    """A specialized kernel: every compile-time parameter has been substituted."""

    name: str
    params: tuple[Param, ...]
    grid: tuple[SymExpr, ...]
    body: Block
    loc: Loc | None = None

    @property
    def param_values(self) -> list[Value]:
        return self.body.args

    def walk(self):
        return self.body.walk()

    def size_symbols(self) -> list[str]:
        """Sizes: names that are a whole dimension of some tensor parameter (so a launch binds
        them from the arguments' shapes), in order of first appearance."""
        from bittile.ir.symbolic import Sym
        from bittile.ir.types import TensorType

        seen: dict[str, None] = {}
        for p in self.params:
            if isinstance(p.type, TensorType):
                for dim in p.type.shape:
                    if isinstance(dim, Sym):
                        seen.setdefault(dim.name, None)
        return list(seen)

    def shape_symbols(self) -> set[str]:
        """Every name used in a tensor parameter's shape."""
        from bittile.ir.types import TensorType

        return {s for p in self.params if isinstance(p.type, TensorType)
                for dim in p.type.shape for s in dim.symbols()}

    def __str__(self) -> str:
        from bittile.ir.printer import print_kernel

        return print_kernel(self)

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython and hypothesis reports
        printer.text(str(self))
