"""Lowering statements: bindings, assignments, loops with carried values, ifs."""

from __future__ import annotations

from bittile.dsl import ast
from bittile.dsl.lower_values import (
    _ARITH,
    _CONVERTED,
    DEFAULT_DTYPE,
    _adopts,
    _article,
    _Return,
    describe,
    is_number,
    is_runtime,
    is_tensor,
    is_tile,
    num_kind,
    type_str,
)
from bittile.dsl.scope import Binding, Scope, assigned_outer_names, find_return
from bittile.errors import (
    BittileError,
    InternalError,
    TileTypeError,
)
from bittile.ir.core import Value
from bittile.ir.dtypes import DType, i32
from bittile.ir.layout import RegisterLayout
from bittile.ir.types import ScalarType, TileType


class StmtLowering:
    """Part of the lowering (see dsl/lower.py): statements and control flow."""

    def _block(self, stmts) -> _Return | None:
        for st in stmts:
            ret = self._stmt(st)
            if ret is not None:
                return ret
        return None

    def _scoped_block(self, stmts) -> _Return | None:
        saved = self.scope
        self.scope = Scope(saved)
        try:
            return self._block(stmts)
        finally:
            self.scope = saved

    def _stmt(self, st: ast.Stmt) -> _Return | None:
        with self.b.at(st.loc):
            try:
                if isinstance(st, ast.Let):
                    self._let(st)
                elif isinstance(st, ast.Assign):
                    self._assign_stmt(st)
                elif isinstance(st, ast.ExprStmt):
                    self.expr(st.expr, allow_none=True)
                elif isinstance(st, ast.For):
                    self._for(st)
                elif isinstance(st, ast.If):
                    return self._if(st)
                elif isinstance(st, ast.Return):
                    if self.fn_depth == 0:
                        raise self.error("return outside a helper function", st.loc,
                                         "a kernel gives its results with store(...)")
                    return _Return(self.expr(st.value) if st.value is not None else None)
                else:
                    raise self.error(f"unexpected statement {type(st).__name__}", st.loc,
                                     "statements are let, var, assignments, for, if, return "
                                     "and expressions")
            except _CONVERTED as exc:
                raise self.error(exc.message, st.loc, exc.hint) from None
            except (BittileError, RecursionError):
                raise
            except Exception as exc:
                raise InternalError(
                    f"the lowering failed here: {type(exc).__name__}: {exc}", st.loc
                ) from exc
        return None

    def _let(self, st: ast.Let) -> None:
        value = self.expr(st.value)
        if st.mutable and (is_tensor(value) or isinstance(value, tuple)):
            raise self.error(
                f"a var holds a scalar, a tile or a compile-time value, not {describe(value)}",
                st.value.loc, f"bind it with let {st.name} = ...",
            )
        self._check_new_name(st.name, st.loc)
        self.scope.define(Binding(st.name, value, "var" if st.mutable else "let", st.loc))

    def _assign_stmt(self, st: ast.Assign) -> None:
        binding = self.scope.lookup(st.name)
        if binding is None:
            raise self.error(f"assignment to undeclared variable {st.name!r}", st.loc,
                             f"declare it first: var {st.name} = ...")
        if not binding.mutable:
            raise self.error(
                f"cannot assign to {st.name!r}: it is {binding.description}", st.loc,
                f"only vars can be assigned; declare it with var {st.name} = ..."
                if binding.kind == "let" else "assign a var of your own instead",
            )
        if st.op is not None:
            if st.op not in _ARITH and st.op != "//":
                raise self.error(f"'{st.op}=' is not an assignment operator", st.loc,
                                 "compound assignments are + - * / // % & | ^ << >>")
            rhs = self.expr(st.value)
            new = self.binary(st.op, binding.value, rhs, st)
        else:
            new = self.expr(st.value)
        self.assign(binding, new, st)

    def assign(self, binding: Binding, new, node) -> None:
        old, name = binding.value, binding.name
        if is_runtime(old):
            if is_number(new):
                if not _adopts(num_kind(new), old.type.dtype):
                    raise self._type_change(binding, old.type, None, node, new)
                new = self.splat_const(new, old.type, node)
            elif not is_runtime(new):
                raise self._type_change(binding, old.type, None, node, new)
            elif new.type != old.type:
                raise self._type_change(binding, old.type, new.type, node, new)
        elif is_number(old):
            kind = num_kind(old)
            if is_number(new):
                if num_kind(new) != kind:
                    raise self.error(
                        f"var {name!r} holds a compile-time {kind}; cannot assign "
                        f"{describe(new)}", node.loc,
                        "a var keeps its type; write the initial value with the same kind "
                        f"(e.g. {'0.0' if num_kind(new) == 'float' else '0'})",
                    )
            elif is_runtime(new) and isinstance(new.type, ScalarType):
                if not _adopts(kind, new.type.dtype):
                    raise self.error(
                        f"var {name!r} holds a compile-time {kind}; cannot assign "
                        f"{describe(new)}", node.loc,
                        f"initialize it with a value of that type, e.g. var {name} = "
                        f"cast(0, {new.type.dtype})",
                    )
            else:
                raise self.error(
                    f"var {name!r} holds a scalar ({describe(old)}); cannot assign "
                    f"{describe(new)}", node.loc,
                    "a var keeps its type; initialize it with a value of the final type, "
                    "e.g. var acc = zeros(f32, [BN])",
                )
        elif not isinstance(old, (DType, RegisterLayout)) or type(old) is not type(new):
            raise self.error(f"{name!r} holds {describe(old)}; cannot assign "
                             f"{describe(new)}", node.loc,
                             "a var keeps its type; tensors and lists cannot be reassigned")
        binding.value = new

    def _type_change(self, binding: Binding, old_t, new_t, node, new) -> TileTypeError:
        name = binding.name
        new_text = type_str(new_t) if new_t is not None else describe(new)
        if new_t is None:
            detail = f"cannot assign {describe(new)} to var {name!r} of type {type_str(old_t)}"
            hint = "a var keeps its type"
        elif isinstance(old_t, TileType) != isinstance(new_t, TileType):
            detail = (f"cannot assign {new_text} to var {name!r} of type {type_str(old_t)}: "
                      "a var cannot change between scalar and tile")
            hint = "use broadcast(...) or a reduction, or a new let"
        elif old_t.dtype != new_t.dtype:
            detail = (f"dtype mismatch in assignment to {name!r}: {old_t.dtype} and "
                      f"{new_t.dtype}")
            hint = f"a var keeps its dtype; cast the value: cast(..., {old_t.dtype})"
        elif isinstance(old_t, TileType) and old_t.shape != new_t.shape:
            detail = (f"shape mismatch in assignment to {name!r}: {list(old_t.shape)} and "
                      f"{list(new_t.shape)}")
            hint = "a var keeps its shape; reshape or broadcast the value, or use a new let"
        else:
            detail = (f"layout mismatch in assignment to {name!r}: {old_t.layout} and "
                      f"{new_t.layout}")
            hint = "a var keeps its layout; convert_layout(value, L) first"
        loop = self.carried.get(id(binding))
        if loop is not None:
            return self.error(
                f"loop-carried value changes type: {name!r} is {type_str(old_t)} before the "
                f"loop but {new_text} here", node.loc,
                f"a var carried through a loop keeps its type ({detail}); {hint}",
            )
        return self.error(detail, node.loc, hint)

    def splat_const(self, v, t, node) -> Value:
        """The compile-time number ``v`` as a runtime value of type ``t``."""
        scalar = self.constant(v, t.dtype, node)
        if isinstance(t, TileType):
            return self.b.full(scalar, t.shape, t.dtype, t.layout)
        return scalar

    def _carried(self, bodies) -> list[Binding]:
        out: list[Binding] = []
        for name in assigned_outer_names(bodies):
            binding = self.scope.lookup(name)
            if binding is not None and binding.mutable and binding not in out:
                out.append(binding)
        return out

    def _loop_bound(self, node, what: str):
        if node is None:
            return None
        v = self.expr(node)
        if num_kind(v) == "int" or (isinstance(v, Value) and isinstance(v.type, ScalarType)
                                    and v.type.dtype.is_int):
            return v
        raise self.error(f"the loop {what} must be an integer scalar, got {describe(v)}",
                         node.loc, "range(start, stop, step) takes integer scalars")

    def _for(self, st: ast.For) -> None:
        ret = find_return(st.body)
        if ret is not None:
            raise self.error("return inside a loop", ret.loc,
                             "assign a var in the loop and return it after the loop")
        lo = self._loop_bound(st.start, "start")
        hi = self._loop_bound(st.stop, "stop")
        step = self._loop_bound(st.step, "step")
        lo = 0 if lo is None else lo
        step = 1 if step is None else step
        if step == 0 and not isinstance(step, Value):
            raise self.error("the loop step must not be zero", st.step.loc,
                             "range(start, stop, step) needs a nonzero step")
        dtypes = list(dict.fromkeys(v.type.dtype for v in (lo, hi, step)
                                    if isinstance(v, Value)))
        if len(dtypes) > 1:
            raise self.error(f"the loop bounds have different dtypes: {dtypes[0]} and "
                             f"{dtypes[1]}", st.loc, "cast them to one integer dtype")
        dtype = dtypes[0] if dtypes else i32
        bounds = [v if isinstance(v, Value) else self.constant(v, dtype, st)
                  for v in (lo, hi, step)]

        carried = self._carried([st.body])
        dynamic: list[Binding] = []
        inits: list[Value] = []
        static: list[tuple[Binding, object]] = []
        for binding in carried:
            v = binding.value
            if is_runtime(v):
                dynamic.append(binding)
                inits.append(v)
            elif is_number(v):
                dynamic.append(binding)
                inits.append(self.constant(v, DEFAULT_DTYPE[num_kind(v)], st))
            else:
                static.append((binding, v))

        saved_carried = dict(self.carried)
        with self.b.for_range(*bounds, inits) as loop:
            saved_scope = self.scope
            self.scope = Scope(saved_scope)
            self.size_frames.append({})
            try:
                self.scope.define(Binding(st.var, loop.iv, "loop", st.loc))
                for binding, arg in zip(dynamic, loop.carried):
                    binding.value = arg
                    self.carried[id(binding)] = st
                self._block(st.body)
                finals = []
                for binding, arg in zip(dynamic, loop.carried):
                    v = binding.value
                    if is_number(v):
                        v = self.splat_const(v, arg.type, st)
                    if not is_runtime(v) or v.type != arg.type:
                        raise self._type_change(binding, arg.type, getattr(v, "type", None),
                                                st, v)
                    finals.append(v)
                for binding, v0 in static:
                    if type(binding.value) is not type(v0) or binding.value != v0:
                        raise self.error(
                            f"compile-time var {binding.name!r} changes inside a runtime loop",
                            st.loc, "a compile-time value cannot depend on the iteration",
                        )
                loop.yield_(*finals)
            finally:
                self.scope = saved_scope
                self.size_frames.pop()
                self.carried = saved_carried
        for binding, result in zip(dynamic, loop.results):
            binding.value = result

    def _if(self, st: ast.If) -> _Return | None:
        cond = self.expr(st.cond)
        if num_kind(cond) in ("bool", "int"):
            return self._scoped_block(st.then_body if cond else st.else_body)
        if not (isinstance(cond, Value) and isinstance(cond.type, ScalarType)
                and cond.type.dtype.is_int):
            if is_tile(cond):
                hint = "use where(cond, a, b) to select elementwise, or reduce the condition"
            elif is_runtime(cond):
                hint = "compare it, e.g. x != 0.0"
            else:
                hint = "an if needs a compile-time bool or a runtime u1 scalar (a comparison)"
            raise self.error(f"the condition of an if must be a bool or a u1 scalar, got "
                             f"{describe(cond)}", st.cond.loc, hint)
        ret = find_return(st.then_body) or find_return(st.else_body)
        if ret is not None:
            raise self.error("return inside an if with a runtime condition", ret.loc,
                             "assign a var in the branches and return it after the if")
        carried = self._carried([st.then_body, st.else_body])
        olds = [binding.value for binding in carried]
        with self.b.if_(cond) as br:
            then_vals = self._branch(br.then_, st.then_body, carried, olds)
            else_vals = self._branch(br.else_, st.else_body, carried, olds)
            then_yield, else_yield, merged = [], [], []
            for binding, t, e in zip(carried, then_vals, else_vals):
                if t is e or (is_number(t) and num_kind(t) == num_kind(e) and t == e):
                    continue
                if not (is_runtime(t) or is_number(t)) or not (is_runtime(e) or is_number(e)):
                    if type(t) is type(e) and t == e:
                        continue
                    raise self.error(
                        f"compile-time var {binding.name!r} gets different values in the "
                        "branches of an if with a runtime condition", st.loc,
                        "a compile-time value cannot depend on a runtime condition",
                    )
                if is_runtime(t):
                    typ = t.type
                elif is_runtime(e):
                    typ = e.type
                elif num_kind(t) == num_kind(e):
                    typ = ScalarType(DEFAULT_DTYPE[num_kind(t)])
                else:
                    raise self.error(
                        f"var {binding.name!r} is {describe(t)} in one branch and "
                        f"{describe(e)} in the other", st.loc,
                        "give both branches values of one type",
                    )
                with br.then_():
                    then_yield.append(self._merge_value(binding, t, typ, st))
                with br.else_():
                    else_yield.append(self._merge_value(binding, e, typ, st))
                merged.append(binding)
            with br.then_():
                br.yield_(*then_yield)
            with br.else_():
                br.yield_(*else_yield)
        for binding, result in zip(merged, br.results):
            binding.value = result
        return None

    def _branch(self, enter, body, carried, olds) -> list:
        with enter():
            saved = self.scope
            self.scope = Scope(saved)
            self.size_frames.append({})
            try:
                self._block(body)
                return [binding.value for binding in carried]
            finally:
                self.scope = saved
                self.size_frames.pop()
                for binding, old in zip(carried, olds):
                    binding.value = old

    def _merge_value(self, binding: Binding, v, typ, st) -> Value:
        if is_number(v):
            if not _adopts(num_kind(v), typ.dtype):
                raise self.error(
                    f"var {binding.name!r} is {describe(v)} in one branch and "
                    f"{_article(type_str(typ))} value in the other", st.loc,
                    f"initialize it with a {typ.dtype} value, e.g. cast(0, {typ.dtype})",
                )
            return self.splat_const(v, typ, st)
        if v.type != typ:
            raise self.error(
                f"var {binding.name!r} is {type_str(typ)} in one branch of the if but "
                f"{type_str(v.type)} in the other", st.loc,
                "both branches must leave a var with one type (dtype, shape, layout)",
            )
        return v

    # ---- expressions ---------------------------------------------------------------------
