"""Reading builtin arguments that must be compile-time values (ints, shapes, dtypes, layouts)."""

from __future__ import annotations

from bittile.dsl import ast
from bittile.dsl.lower_values import (
    _SHAPE_HINT,
    LayoutRequest,
    describe,
    is_runtime,
    num_kind,
)
from bittile.ir.dtypes import DType
from bittile.ir.layout import RegisterLayout


class ArgLowering:
    """Part of the lowering (see dsl/lower.py): compile-time arguments."""

    def const_value(self, node, what: str, hint: str | None = None):
        v = self.expr(node)
        if is_runtime(v):
            src = f"{node.id!r}" if isinstance(node, ast.Name) else "it"
            raise self.error(f"{what} must be known at compile time, but {src} is "
                             f"{describe(v)}", node.loc, hint or _SHAPE_HINT)
        return v

    def const_int(self, node, what: str, minimum: int | None = None,
                  hint: str | None = None) -> int:
        v = self.const_value(node, what, hint)
        if num_kind(v) != "int":
            raise self.error(f"{what} must be an int, got {describe(v)}", node.loc,
                             "write an integer or an int compile-time parameter")
        if minimum is not None and v < minimum:
            raise self.error(f"{what} must be at least {minimum}, got {v}", node.loc,
                             "sizes and counts are positive")
        return v

    def const_bool(self, node, what: str) -> bool:
        v = self.const_value(node, what)
        if num_kind(v) != "bool":
            raise self.error(f"{what} must be true or false, got {describe(v)}", node.loc,
                             f"write {what}=true or {what}=false")
        return v

    def list_items(self, node, what: str) -> list[tuple[ast.Expr, object]]:
        """(node, value) of each entry of a list argument."""
        if isinstance(node, ast.ListExpr):
            return [(item, self.expr(item)) for item in node.items]
        v = self.expr(node)
        if not isinstance(v, tuple):
            raise self.error(f"{what} must be a list [...], got {describe(v)}", node.loc,
                             f"write {what} in brackets, e.g. [BM, BN]")
        return [(node, item) for item in v]

    def const_ints(self, node, what: str, minimum: int | None = None) -> tuple[int, ...]:
        out = []
        for i, (item_node, v) in enumerate(self.list_items(node, what)):
            if is_runtime(v):
                src = f"{item_node.id!r}" if isinstance(item_node, ast.Name) else f"entry {i}"
                raise self.error(f"{what} must be known at compile time, but {src} is "
                                 f"{describe(v)}", item_node.loc, _SHAPE_HINT)
            if num_kind(v) != "int":
                raise self.error(f"{what} must be a list of ints, but entry {i} is "
                                 f"{describe(v)}", item_node.loc,
                                 "write integers or int compile-time parameters")
            if minimum is not None and v < minimum:
                raise self.error(f"{what} must be at least {minimum}, got {v}", item_node.loc,
                                 "tile dimensions are positive")
            out.append(v)
        return tuple(out)

    def shape_arg(self, node, what: str = "the tile shape") -> tuple[int, ...]:
        shape = self.const_ints(node, what, minimum=1)
        if not shape:
            raise self.error(f"{what} must have at least one dimension", node.loc,
                             "tiles have a non-empty shape such as [16]")
        return shape

    def dtype_arg(self, node, what: str) -> DType:
        if (isinstance(node, ast.Name) and self.scope.lookup(node.id) is None
                and not (self.fn_depth == 0 and node.id in self.sizes)
                and node.id not in self.functions):
            return self._dtype_name(node)
        v = self.expr(node)
        if not isinstance(v, DType):
            raise self.error(f"{what} must be a dtype, got {describe(v)}", node.loc,
                             "dtypes are written f32, f16, bf16, u4, i8, ...")
        return v

    def layout_arg(self, node, what: str) -> RegisterLayout:
        v = self.expr(node)
        if not isinstance(v, RegisterLayout):
            raise self.error(f"{what} must be a layout, got {describe(v)}", node.loc,
                             "build layouts with spatial(...), local(...), ... and methods")
        return v

    def layout_option(self, keywords: dict, request: LayoutRequest | None,
                      shape) -> RegisterLayout | None:
        """The ``layout=`` keyword or the ``@`` annotation, checked against ``shape``."""
        if "layout" in keywords:
            node = keywords["layout"].value
            layout, loc = self.layout_arg(node, "layout="), node.loc
        elif request is not None:
            layout, loc = request.layout, request.loc
        else:
            return None
        if shape is not None:
            self.check_fits(layout, shape, loc)
        return layout

