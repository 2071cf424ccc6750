"""The Triton backend's numerics against the interpreter, op by op and dtype by dtype: every
elementwise op of every arithmetic dtype on special and random codes (every code for types of
at most 8 bits), every cast between every pair of dtypes, and casts of values at and next to
the rounding ties of every narrow float. Exact ops must match bit for bit, also after a cast
to a wide type (so results must be right as values, not only as stored bits);
transcendental functions within the checker's float tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from bittile.ir import dtypes as D
from bittile.ir.builder import KernelBuilder
from bittile.ir.ops import BINARY_OPS, COMPARE_OPS, UNARY_OPS
from bittile.ir.symbolic import cdiv, sym
from bittile.runtime.packed import PackedTensor
from bittile.testing.checkers import _float_mismatch, run_codes, special_codes

BLOCK = 1024
#: float ops whose result is correctly rounded (or exact), so the backends agree bit for bit
EXACT_FLOAT = {"add", "sub", "mul", "div", "rem", "min", "max", "neg", "abs", "floor", "ceil",
               "round", "sqrt"}
ARITHMETIC = [d for d in D.ALL_DTYPES if d.supports_arithmetic]


def _codes(dtype, n, rng) -> np.ndarray:
    if dtype.bits <= 8:
        return np.resize(np.arange(1 << dtype.bits, dtype=np.uint64), n)
    codes = rng.integers(0, 1 << dtype.bits, n, dtype=np.uint64)
    special = special_codes(dtype)
    codes[: 4 * special.size] = np.tile(special, 4)
    return codes


def _zeros(dtype, n):
    return PackedTensor.from_codes(np.zeros(n, np.uint64), dtype)


def _kernel(name, inputs, outputs, body, n):
    """A kernel loading ``inputs`` (name -> dtype) as tiles of BLOCK elements and storing
    ``body(builder, tiles)`` (output name -> tile) into ``outputs`` (name -> dtype)."""
    kb = KernelBuilder(name)
    params = {k: kb.tensor(k, d, ["N"]) for k, d in {**inputs, **outputs}.items()}
    kb.grid(cdiv(sym("N"), BLOCK))
    b = kb.builder
    i = b.mul(b.block_id(0), b.constant(BLOCK, D.i32))
    tiles = {k: b.load(params[k], [i], [BLOCK]) for k in inputs}
    for k, value in body(b, tiles).items():
        b.store(params[k], [i], value)
    return kb.finish()


def _assert_agree(kernel, args, exact: set[str]):
    expected = run_codes(kernel, args, "interp")
    got = run_codes(kernel, args, "triton")
    dtypes = {p.name: p.type.dtype for p in kernel.params}
    inputs = {k: v.codes().reshape(-1) for k, v in args.items() if k in ("x", "y")}
    for name, codes in expected.items():
        dtype = dtypes[name]
        if name in exact or not dtype.is_float:
            bad = codes != got[name]
        else:
            bad = _float_mismatch(dtype, codes, got[name])
        if bad.any():
            j = int(np.argmax(bad.reshape(-1)))
            operands = {k: hex(int(v[j])) for k, v in inputs.items()}
            raise AssertionError(
                f"{name}: {int(bad.sum())} elements differ, first at {j} with operands "
                f"{operands}: {int(codes.reshape(-1)[j]):#x} expected, "
                f"{int(got[name].reshape(-1)[j]):#x} from triton")


@pytest.mark.parametrize("dtype", ARITHMETIC, ids=str)
def test_elementwise_ops(dtype):
    rng = np.random.default_rng(dtype.bits)
    kind = "float" if dtype.is_float else "int"
    ops = [("unary", k) for k, a in UNARY_OPS.items() if a in (kind, "num")]
    ops += [("binary", k) for k, a in BINARY_OPS.items() if a in (kind, "num")]
    ops += [("compare", k) for k in COMPARE_OPS]
    wide = D.i32 if dtype.is_int else D.f32
    outputs, exact = {}, set()
    for family, k in ops:
        outputs[k] = D.u1 if family == "compare" else dtype
        outputs[f"{k}_wide"] = D.i32 if family == "compare" else wide
        if dtype.is_int or family == "compare" or k in EXACT_FLOAT:
            exact |= {k, f"{k}_wide"}

    def body(b, t):
        out = {}
        for family, k in ops:
            if family == "unary":
                r = b.unary(k, t["x"])
            else:
                r = getattr(b, family)(k, t["x"], t["y"])
            out[k] = r
            if f"{k}_wide" in exact:  # a rounding difference of a transcendental would
                out[f"{k}_wide"] = b.cast(r, outputs[f"{k}_wide"])  # show up at f32 precision
        return out

    outputs = {k: d for k, d in outputs.items() if not k.endswith("_wide") or k in exact}
    kernel = _kernel("elementwise", {"x": dtype, "y": dtype}, outputs, body, BLOCK)
    x = _codes(dtype, BLOCK, rng)
    y = rng.permutation(_codes(dtype, BLOCK, rng))
    if dtype.is_int:  # shift amounts in and around [0, bits)
        amounts = rng.integers(-2, dtype.bits + 2, BLOCK // 4)
        y[::4] = dtype.encode(dtype.wrap(amounts)).astype(np.uint64)
    args = {"x": PackedTensor.from_codes(x, dtype), "y": PackedTensor.from_codes(y, dtype)}
    args.update({k: _zeros(d, BLOCK) for k, d in outputs.items()})
    _assert_agree(kernel, args, exact)


def _casts_kernel(src):
    return _kernel("casts", {"x": src}, {d.name: d for d in D.ALL_DTYPES},
                   lambda b, t: {d.name: b.cast(t["x"], d) for d in D.ALL_DTYPES}, BLOCK)


def _run_casts(src, codes):
    n = -(-codes.size // BLOCK) * BLOCK
    args = {"x": PackedTensor.from_codes(np.resize(codes, n), src)}
    args.update({d.name: _zeros(d, n) for d in D.ALL_DTYPES})
    _assert_agree(_casts_kernel(src), args, {d.name for d in D.ALL_DTYPES})


@pytest.mark.parametrize("src", D.ALL_DTYPES, ids=str)
def test_casts_between_every_pair_of_dtypes(src):
    _run_casts(src, _codes(src, BLOCK, np.random.default_rng(src.bits)))


def _tie_values() -> np.ndarray:
    """Midpoints between neighbouring values of every narrow float (ties of the rounding),
    the f32 values next to them, and halves around every integer type's bounds."""
    values = []
    for d in D.ALL_DTYPES:
        if d.is_float and d.bits <= 16:
            codes = np.arange(0, 1 << d.bits, 1 if d.bits <= 8 else 61, dtype=np.uint64)
            v = d.decode(codes)
            v = np.sort(v[np.isfinite(v)])
            mid = ((v[1:] + v[:-1]) / 2).astype(np.float32)
            values += [mid, np.nextafter(mid, np.float32(np.inf)),
                       np.nextafter(mid, np.float32(-np.inf))]
        elif d.is_int:
            values.append(np.array([d.min - 0.5, d.max + 0.5, d.min - 1, d.max + 1, 2.5, -2.5],
                                   np.float32))
    return np.concatenate(values).astype(np.float64)


@pytest.mark.parametrize("src", [D.f32, D.f16, D.bf16], ids=str)
def test_float_casts_round_ties_to_even(src):
    _run_casts(src, src.encode(_tie_values()).astype(np.uint64))


@pytest.mark.parametrize("src", [D.i32, D.u32], ids=str)
def test_wide_integer_casts_round_once(src):
    """Integers above 2^24 at and next to bf16's ties (rounding through f32 would round
    twice)."""
    steps = np.arange(1 << 10, dtype=np.int64) << 20
    ints = np.concatenate([steps + k for k in (0, 1 << 19, (1 << 19) + 1, (1 << 19) - 1)])
    ints = np.concatenate([ints, -ints])
    _run_casts(src, src.encode(np.clip(ints, src.min, src.max)).astype(np.uint64))
