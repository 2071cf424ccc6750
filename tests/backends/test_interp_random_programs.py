"""Random elementwise integer programs (hypothesis) against a Python-integer re-implementation:
wraparound modulo 2^bits, C division / remainder (x / 0 == 0, x % 0 == x), shifts outside
[0, bits) giving 0 or the sign fill, comparisons feeding ``where``. Bit-exact."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bittile
from bittile import PackedTensor
from bittile.backends import interp
from bittile.ir.builder import KernelBuilder

INT_TYPES = [d for d in bittile.ALL_DTYPES if d.is_int]
BINARY = ["add", "sub", "mul", "div", "rem", "min", "max", "and", "or", "xor", "shl", "shr"]
UNARY = ["neg", "abs", "not"]
COMPARE = ["eq", "ne", "lt", "le", "gt", "ge"]
N = 16


def irange(dt):
    if dt.kind == "uint":
        return 0, (1 << dt.bits) - 1
    return -(1 << (dt.bits - 1)), (1 << (dt.bits - 1)) - 1


def wrap(v: int, dt) -> int:
    lo, _ = irange(dt)
    return (v - lo) % (1 << dt.bits) + lo


def ref_binary(kind, a, b, dt):
    if kind in ("add", "sub", "mul", "and", "or", "xor"):
        fn = {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b,
              "and": lambda: a & b, "or": lambda: a | b, "xor": lambda: a ^ b}[kind]
        return wrap(fn(), dt)
    if kind == "div":
        return 0 if b == 0 else wrap(int(a / b), dt)
    if kind == "rem":
        return a if b == 0 else wrap(int(math.fmod(a, b)), dt)
    if kind == "min":
        return min(a, b)
    if kind == "max":
        return max(a, b)
    ok = 0 <= b < dt.bits
    if kind == "shl":
        return wrap(a << b, dt) if ok else 0
    return wrap(a >> b, dt) if ok else (-1 if a < 0 else 0)


def ref_compare(kind, a, b):
    return {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b,
            "ge": a >= b}[kind]


def expressions(dt):
    lo, hi = irange(dt)
    leaves = st.one_of(st.just(("x",)), st.just(("y",)),
                       st.integers(lo, hi).map(lambda v: ("const", v)))

    def extend(children):
        return st.one_of(
            st.tuples(st.just("bin"), st.sampled_from(BINARY), children, children),
            st.tuples(st.just("un"), st.sampled_from(UNARY), children),
            st.tuples(st.just("where"), st.sampled_from(COMPARE), children, children, children,
                      children),
        )

    return st.recursive(leaves, extend, max_leaves=10)


def emit(b, node, env, dt):
    tag = node[0]
    if tag in ("x", "y"):
        return env[tag]
    if tag == "const":
        return b.full(b.constant(node[1], dt), [N])
    if tag == "bin":
        return b.binary(node[1], emit(b, node[2], env, dt), emit(b, node[3], env, dt))
    if tag == "un":
        return b.unary(node[1], emit(b, node[2], env, dt))
    cond = b.compare(node[1], emit(b, node[2], env, dt), emit(b, node[3], env, dt))
    return b.where(cond, emit(b, node[4], env, dt), emit(b, node[5], env, dt))


def evaluate(node, x, y, dt):
    tag = node[0]
    if tag == "x":
        return x
    if tag == "y":
        return y
    if tag == "const":
        return node[1]
    if tag == "bin":
        return ref_binary(node[1], evaluate(node[2], x, y, dt), evaluate(node[3], x, y, dt), dt)
    if tag == "un":
        v = evaluate(node[2], x, y, dt)
        return wrap({"neg": -v, "abs": abs(v), "not": ~v}[node[1]], dt)
    c = ref_compare(node[1], evaluate(node[2], x, y, dt), evaluate(node[3], x, y, dt))
    return evaluate(node[4], x, y, dt) if c else evaluate(node[5], x, y, dt)


def pack(values, dt) -> PackedTensor:
    big = 0
    for i, v in enumerate(values):
        big |= (v & ((1 << dt.bits) - 1)) << (i * dt.bits)
    n = (len(values) * dt.bits + 7) // 8
    return PackedTensor(np.frombuffer(big.to_bytes(n, "little"), np.uint8).copy(),
                        (len(values),), dt)


def unpack(p: PackedTensor) -> list[int]:
    big = int.from_bytes(bytes(p.data), "little")
    bits = p.dtype.bits
    out = [(big >> (i * bits)) & ((1 << bits) - 1) for i in range(p.shape[0])]
    return [wrap(c, p.dtype) for c in out]


@st.composite
def programs(draw):
    dt = draw(st.sampled_from(INT_TYPES))
    lo, hi = irange(dt)
    edge = st.sampled_from(sorted(v for v in {lo, hi, 0, 1, 2, -1, dt.bits - 1, dt.bits}
                                  if lo <= v <= hi))
    value = st.one_of(st.integers(lo, hi), edge)
    x = draw(st.lists(value, min_size=N, max_size=N))
    y = draw(st.lists(value, min_size=N, max_size=N))
    return dt, draw(expressions(dt)), x, y


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_random_int_programs(program):
    dt, tree, x, y = program
    kb = KernelBuilder("prog")
    xt = kb.tensor("x", dt, [N])
    yt = kb.tensor("y", dt, [N])
    zt = kb.tensor("z", dt, [N])
    b = kb.builder
    env = {"x": b.load(xt, [0], [N]), "y": b.load(yt, [0], [N])}
    b.store(zt, [0], emit(b, tree, env, dt))
    kernel = kb.finish()
    out = pack([0] * N, dt)
    interp.run(kernel, pack(x, dt), pack(y, dt), out)
    expected = [evaluate(tree, a, c, dt) for a, c in zip(x, y, strict=False)]
    assert unpack(out) == expected, (dt, tree)
