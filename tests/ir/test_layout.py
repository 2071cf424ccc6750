"""Tests of the register layout algebra (bittile.ir.layout).

The reference mapping used throughout (`reference`) is computed straight from the definition
with Python loops, independently of the module's canonicalization and numpy tables.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bittile.errors import LayoutError
from bittile.ir import layout as L
from bittile.ir.layout import (
    RegisterLayout,
    column_local,
    column_spatial,
    concat,
    local,
    parse_layout,
    reduce,
    replicated,
    spatial,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------------------------
# reference semantics


def reference(shape, mode_shape, spatial_modes, local_modes):
    """{element index: (sorted workers, local)} from the raw definition."""
    out = {}
    for flat, index in enumerate(itertools.product(*[range(n) for n in shape])):
        digits, rest = [], flat
        for m in reversed(mode_shape):
            rest, dg = divmod(rest, m)
            digits.append(dg)
        digits.reverse()
        choices = [range(-x) if x < 0 else [digits[x]] for x in spatial_modes]
        sizes = [-x if x < 0 else mode_shape[x] for x in spatial_modes]
        workers = []
        for combo in itertools.product(*choices):
            w = 0
            for dg, s in zip(combo, sizes, strict=True):
                w = w * s + dg
            workers.append(w)
        loc = 0
        for x in local_modes:
            loc = loc * mode_shape[x] + digits[x]
        out[index] = (tuple(sorted(workers)), loc)
    return out


def ref_of(layout):
    return reference(layout.shape, layout.mode_shape, layout.spatial_modes, layout.local_modes)


def module_mapping(layout):
    return {
        idx: (tuple(layout.workers_of(idx)), layout.map(idx)[1])
        for idx in itertools.product(*[range(n) for n in layout.shape])
    }


def is_replicated(layout):
    return any(x < 0 for x in layout.spatial_modes)


# ----------------------------------------------------------------------------------------------
# strategies

BUILDERS = [spatial, local, column_spatial, column_local]


@st.composite
def layouts(draw, rank=None, max_size=96, sizes=(1, 1, 2, 2, 3, 4), allow_replication=True):
    """A composition of 1-3 random primitives (small enough to enumerate every element)."""
    r = draw(st.integers(1, 3)) if rank is None else rank
    result, budget = None, max_size
    for _ in range(draw(st.integers(1, 3))):
        if allow_replication and draw(st.integers(0, 4)) == 0:
            factor = replicated(draw(st.sampled_from([2, 3])), r)
        else:
            dims = []
            for _ in range(r):
                s = draw(st.sampled_from(sizes))
                s = s if s <= budget else 1
                budget //= s
                dims.append(s)
            factor = draw(st.sampled_from(BUILDERS))(*dims)
        result = factor if result is None else result * factor
    return result


@st.composite
def raw_variant(draw, layout):
    """A non-canonical description of the same mapping as ``layout``: modes split into
    adjacent pieces, size-one modes and replication digits inserted, replication split."""
    pieces = []  # per old mode: list of new piece sizes
    for m in layout.mode_shape:
        divisors = [d for d in range(2, m) if m % d == 0]
        if divisors and draw(st.booleans()):
            d = draw(st.sampled_from(divisors))
            pieces.append([d, m // d])
        else:
            pieces.append([m])
        if draw(st.integers(0, 3)) == 0:
            pieces[-1].append(1)
    new_ids, modes = [], []
    for p in pieces:
        new_ids.append(list(range(len(modes), len(modes) + len(p))))
        modes += p
    sp = []
    for x in layout.spatial_modes:
        if x < 0 and -x == 4 and draw(st.booleans()):
            sp += [-2, -2]
        else:
            sp += [x] if x < 0 else new_ids[x]
    if draw(st.booleans()):
        sp.insert(draw(st.integers(0, len(sp))), -1)
    lo = [i for x in layout.local_modes for i in new_ids[x]]
    return layout.shape, tuple(modes), tuple(sp), tuple(lo)


# ----------------------------------------------------------------------------------------------
# published facts


def test_local_then_spatial_mapping():
    lay = local(3, 4).spatial(2, 3)
    assert lay.shape == (6, 12)
    for i, j in itertools.product(range(6), range(12)):
        assert lay.map((i, j)) == ((i % 2) * 3 + j % 3, (i // 2) * 4 + j // 3)


def test_tilus_mma_like_mapping():
    lay = local(2, 1).spatial(8, 4).local(1, 2)
    assert lay.shape == (16, 8) and lay.num_workers == 32 and lay.local_size == 4
    for i, j in itertools.product(range(16), range(8)):
        assert lay.map((i, j)) == ((i % 8) * 4 + j // 2, (i // 8) * 2 + j % 2)


def test_reduce_spatial_gives_replication():
    red = reduce(spatial(3, 4), dims=[0])
    assert red.shape == (4,)
    for k in range(4):
        assert red.workers_of((k,)) == sorted([k, k + 4, k + 8])
    assert spatial(3, 4).reduce([0]) == red


def test_published_divisions():
    assert spatial(2, 4).local(2, 1) / local(2, 1) == spatial(2, 4)
    assert spatial(6) / spatial(3) == spatial(2)


# ----------------------------------------------------------------------------------------------
# primitives and small facts


def test_primitive_orders():
    assert spatial(2, 3).map((1, 0)) == (3, 0)
    assert column_spatial(2, 3).map((1, 0)) == (1, 0)
    assert local(2, 3).map((1, 0)) == (0, 3)
    assert column_local(2, 3).map((1, 0)) == (0, 1)
    rep = replicated(4, rank=2)
    assert rep.shape == (1, 1) and rep.num_workers == 4 and rep.local_size == 1
    assert rep.workers_of((0, 0)) == [0, 1, 2, 3]


def test_canonical_merges():
    assert local(2).local(2) == local(4)
    assert spatial(2, 1).spatial(2, 3) == spatial(4, 3)
    assert replicated(2).replicated(3) == replicated(6)
    raw = RegisterLayout((4, 3), (2, 1, 2, 3), (0, 1, 2), (3,))
    assert raw.mode_shape == (4, 3) and raw.spatial_modes == (0,) and raw.local_modes == (1,)
    assert raw == spatial(4, 1).local(1, 3)
    # the same dimension's digits in reverse order cannot merge
    rev = RegisterLayout((4,), (2, 2), (1, 0), ())
    assert rev != spatial(4) and rev.map((1,)) == (2, 0)


def test_str_examples():
    assert str(local(2, 1).spatial(8, 4).local(1, 2)) == "local(2, 1).spatial(8, 4).local(1, 2)"
    assert str(column_spatial(2, 3)) == "column_spatial(2, 3)"
    assert str(replicated(4, rank=2).spatial(2, 2)) == "replicated(4, rank=2).spatial(2, 2)"
    assert str(local()) == "local()"
    rev = RegisterLayout((4,), (2, 2), (1, 0), ())
    assert str(rev).startswith("RegisterLayout(shape=[4]")
    assert parse_layout(str(rev)) == rev
    assert repr(spatial(3)) == "spatial(3)"


def test_parse_forms():
    assert parse_layout("(spatial(2) * local(3)).spatial(2)") == spatial(2).local(3).spatial(2)
    assert parse_layout(" spatial(2, 4) . local(2, 1) / local(2, 1) ") == spatial(2, 4)
    assert parse_layout("replicated(n=3, rank=2)") == replicated(3, 2)
    assert parse_layout("spatial(2).replicated(2)") == spatial(2) * replicated(2)
    text = "RegisterLayout(shape=(4,), mode_shape=[2, 2], spatial_modes=[1, -3], local_modes=[0])"
    lay = parse_layout(text)
    assert lay.num_workers == 6 and lay.workers_of((1,)) == [3, 4, 5] and lay.map((2,)) == (0, 1)


def test_reshape_permute_examples():
    lay = local(2, 1).spatial(8, 4).local(1, 2)
    assert lay.flatten() == local(2).spatial(32).local(2)
    assert lay.permute([1, 0]) == local(1, 2).column_spatial(4, 8).local(2, 1)
    assert lay.reshape(-1, 4).shape == (32, 4)
    assert lay.unsqueeze(1).squeeze(1) == lay
    assert concat(spatial(2), local(3)) == spatial(2, 1).local(1, 3)


# ----------------------------------------------------------------------------------------------
# properties


@SETTINGS
@given(st.data())
def test_compose_associative(data):
    r = data.draw(st.integers(1, 3))
    a, b, c = (data.draw(layouts(rank=r, max_size=8)) for _ in range(3))
    assert (a * b) * c == a * (b * c)
    assert ref_of((a * b) * c) == ref_of(a * (b * c))


@SETTINGS
@given(st.data())
def test_compose_matches_definition(data):
    r = data.draw(st.integers(1, 3))
    a, b = data.draw(layouts(rank=r, max_size=12)), data.draw(layouts(rank=r, max_size=8))
    ab, ref_a, ref_b = a * b, ref_of(a), ref_of(b)
    for idx, (workers, loc) in ref_of(ab).items():
        outer = tuple(i // n for i, n in zip(idx, b.shape, strict=True))
        inner = tuple(i % n for i, n in zip(idx, b.shape, strict=True))
        (wa, la), (wb, lb) = ref_a[outer], ref_b[inner]
        assert workers == tuple(sorted(x * b.num_workers + y for x in wa for y in wb))
        assert loc == la * b.local_size + lb


@SETTINGS
@given(st.data())
def test_divide_inverts_compose(data):
    r = data.draw(st.integers(1, 3))
    a, b = data.draw(layouts(rank=r)), data.draw(layouts(rank=r, max_size=16))
    assert (a * b) / b == a


@SETTINGS
@given(layouts())
def test_tables_match_reference_map_and_inverse(lay):
    worker, loc = lay.tables()
    assert worker.shape == lay.shape and loc.shape == lay.shape
    ref = ref_of(lay)
    assert module_mapping(lay) == ref
    for idx, (workers, slot) in ref.items():
        assert (worker[idx], loc[idx]) == (workers[0], slot) == lay.map(idx)
        for w in workers:
            assert lay.logical_index(w, slot) == idx
    inv = lay.inverse_table()
    assert inv.shape == (lay.num_workers, lay.local_size)
    flat_ids = np.arange(lay.size).reshape(lay.shape)
    assert np.array_equal(inv[worker, loc], flat_ids)
    for w, slot in itertools.product(range(lay.num_workers), range(lay.local_size)):
        idx = np.unravel_index(inv[w, slot], lay.shape)
        assert w in ref[tuple(int(i) for i in idx)][0]


@SETTINGS
@given(layouts(allow_replication=False))
def test_bijection_without_replication(lay):
    worker, loc = lay.tables()
    assert lay.num_workers * lay.local_size == lay.size
    pairs = (worker * lay.local_size + loc).ravel()
    assert np.array_equal(np.sort(pairs), np.arange(lay.size))
    assert np.array_equal(np.sort(lay.inverse_table().ravel()), np.arange(lay.size))


@SETTINGS
@given(st.data())
def test_canonical_form_of_raw_variants(data):
    lay = data.draw(layouts())
    raw = data.draw(raw_variant(lay))
    other = RegisterLayout(*raw)
    assert reference(*raw) == ref_of(lay)
    assert other == lay and hash(other) == hash(lay)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_equality_iff_same_mapping(data):
    r = data.draw(st.integers(1, 2))
    a, b = (data.draw(layouts(rank=r, max_size=8, sizes=(1, 2, 4))) for _ in range(2))
    same = a.shape == b.shape and ref_of(a) == ref_of(b)
    assert (a == b) == same
    if a == b:
        assert hash(a) == hash(b)


def _ordered_factorizations(n):
    if n == 1:
        yield []
        return
    for d in range(2, n + 1):
        if n % d == 0:
            for rest in _ordered_factorizations(n // d):
                yield [d, *rest]


@pytest.mark.parametrize("shape", [(4,), (6,), (8,), (2, 2), (2, 4), (3, 2)])
def test_canonical_form_unique_exhaustive(shape):
    """Every raw description of a small shape: same mapping <=> same canonical layout."""
    by_mapping, by_layout = {}, {}
    for fact in itertools.product(*[list(_ordered_factorizations(n)) for n in shape]):
        modes = [m for f in fact for m in f]
        for kinds in itertools.product([0, 1], repeat=len(modes)):
            sp_ids = [i for i, k in enumerate(kinds) if k]
            lo_ids = [i for i, k in enumerate(kinds) if not k]
            for sp in itertools.permutations(sp_ids):
                for lo in itertools.permutations(lo_ids):
                    for rep in [None, *[(p, s) for p in range(len(sp) + 1) for s in (2, 3)]]:
                        spl = list(sp)
                        if rep:
                            spl.insert(rep[0], -rep[1])
                        raw = (shape, tuple(modes), tuple(spl), lo)
                        lay = RegisterLayout(*raw)
                        key = tuple(sorted(reference(*raw).items()))
                        by_mapping.setdefault(key, set()).add(lay)
                        by_layout.setdefault(lay, set()).add(key)
    assert all(len(v) == 1 for v in by_mapping.values())
    assert all(len(v) == 1 for v in by_layout.values())
    assert all(ref_of(lay) == dict(next(iter(keys))) for lay, keys in by_layout.items())


@SETTINGS
@given(st.data())
def test_permute_preserves_mapping(data):
    lay = data.draw(layouts())
    perm = data.draw(st.permutations(range(lay.rank)))
    p = lay.permute(perm)
    ref, pref = ref_of(lay), ref_of(p)
    assert p.shape == tuple(lay.shape[d] for d in perm)
    for idx, value in ref.items():
        assert pref[tuple(idx[d] for d in perm)] == value


@SETTINGS
@given(st.data())
def test_reshape_and_flatten_preserve_mapping(data):
    lay = data.draw(layouts())
    flat = lay.flatten()
    assert [flat.workers_of((k,)) for k in range(lay.size)] == [
        lay.workers_of(idx) for idx in itertools.product(*[range(n) for n in lay.shape])
    ]
    assert np.array_equal(flat.tables()[1], lay.tables()[1].ravel())
    assert np.array_equal(flat.tables()[0], lay.tables()[0].ravel())
    # any shape that the layout can take
    divisors = [d for d in range(1, lay.size + 1) if lay.size % d == 0]
    first = data.draw(st.sampled_from(divisors))
    try:
        re = lay.reshape(first, lay.size // first)
    except LayoutError:
        return  # a mode would have to be split unevenly
    w, lc = re.tables()
    assert np.array_equal(w.ravel(), lay.tables()[0].ravel())
    assert np.array_equal(lc.ravel(), lay.tables()[1].ravel())
    assert re.reshape(lay.shape) == lay


@SETTINGS
@given(st.data())
def test_reduce_matches_direct_computation(data):
    lay = data.draw(layouts())
    dims = sorted(data.draw(st.sets(st.integers(0, lay.rank - 1), min_size=1)))
    keep = data.draw(st.booleans())
    red = reduce(lay, dims, keepdims=keep)
    kept = [d for d in range(lay.rank) if d not in dims]
    assert red.shape == tuple(
        1 if d in dims else n for d, n in enumerate(lay.shape) if keep or d in kept
    )
    # direct: the reduced element is held by every worker holding any of its source elements
    expected = {}
    for idx, (workers, _) in ref_of(lay).items():
        key = tuple(0 if d in dims else i for d, i in enumerate(idx) if keep or d in kept)
        expected.setdefault(key, set()).update(workers)
    assert {k: set(v[0]) for k, v in ref_of(red).items()} == expected
    assert red.num_workers == lay.num_workers


@SETTINGS
@given(layouts())
def test_str_parse_round_trip(lay):
    assert parse_layout(str(lay)) == lay
    assert parse_layout(repr(lay)) == lay


@SETTINGS
@given(st.data())
def test_str_parse_round_trip_raw(data):
    """Layouts outside the primitive compositions print (and parse) explicitly."""
    lay = data.draw(layouts(allow_replication=True))
    modes = list(lay.spatial_modes)
    shuffled = data.draw(st.permutations(modes))
    odd = RegisterLayout(lay.shape, lay.mode_shape, tuple(shuffled), lay.local_modes)
    assert parse_layout(str(odd)) == odd
    reduced = odd.reduce([0])
    assert parse_layout(str(reduced)) == reduced


@SETTINGS
@given(st.data())
def test_concat_matches_definition(data):
    a, b = data.draw(layouts(max_size=12)), data.draw(layouts(max_size=8))
    c = concat(a, b)
    assert c.rank == a.rank + b.rank
    ra, rb, rc = ref_of(a), ref_of(b), ref_of(c)
    for ia, (wa, la) in ra.items():
        for ib, (wb, lb) in rb.items():
            workers, loc = rc[ia + ib]
            assert workers == tuple(sorted(x * b.num_workers + y for x in wa for y in wb))
            assert loc == la * b.local_size + lb


# ----------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: spatial(0), "positive integers"),
        (lambda: local(2, -1), "positive integers"),
        (lambda: spatial(2.5), "must be integers"),
        (lambda: replicated(0), "positive integers"),
        (lambda: replicated(2, rank=-1), "non-negative"),
        (lambda: spatial(2) * spatial(2, 2), "rank 1"),
        (lambda: spatial(4) / spatial(3), "does not divide"),
        (lambda: local(2).spatial(2) / spatial(2).local(2), "cannot divide"),
        (lambda: spatial(2, 4) / spatial(2), "ranks differ"),
        (lambda: spatial(2, 3).reshape(3, 2), "cannot reshape"),
        (lambda: spatial(2, 3).reshape(5), "same number of elements"),
        (lambda: spatial(2, 3).squeeze(0), "not 1"),
        (lambda: spatial(2, 3).permute([0, 0]), "listed twice"),
        (lambda: spatial(2, 3).permute([0]), "permutation"),
        (lambda: spatial(2, 3).reduce(2), "out of range"),
        (lambda: spatial(2, 3).map((2, 0)), "out of range"),
        (lambda: spatial(2, 3).map((0,)), "out of range"),
        (lambda: spatial(2, 3).logical_index(6, 0), "out of range"),
        (lambda: RegisterLayout((4,), (3,), (0,), ()), "do not factor"),
        (lambda: RegisterLayout((4,), (2, 2), (0, 0), ()), "exactly once"),
        (lambda: RegisterLayout((4,), (4,), (), (0, -2)), "replication digits"),
        (lambda: parse_layout("spatial(2"), "malformed layout"),
        (lambda: parse_layout("foo(2)"), "expected one of spatial"),
        (lambda: parse_layout("spatial(2) + local(2)"), "found '+'"),
        (lambda: parse_layout("spatial(x)"), "expected an integer"),
        (lambda: parse_layout("spatial(2).bar(3)"), "builder method"),
        (lambda: parse_layout("RegisterLayout(shape=[4])"), "exactly the fields"),
        (lambda: parse_layout("spatial([2])"), "integer arguments"),
        (lambda: parse_layout(""), "end of text"),
        (lambda: parse_layout("__import__('os')"), "expected one of"),
        (lambda: parse_layout(3), "needs a string"),
    ],
)
def test_errors(make, fragment):
    with pytest.raises(LayoutError) as info:
        make()
    assert fragment in str(info.value)


def test_division_error_names_both_layouts():
    with pytest.raises(LayoutError) as info:
        local(2).spatial(2) / spatial(2).local(2)
    assert "local(2).spatial(2)" in str(info.value) and "spatial(2).local(2)" in str(info.value)


def test_module_exports():
    assert set(L.__all__) >= {"RegisterLayout", "spatial", "local", "reduce", "parse_layout"}
    assert math.prod(spatial(2, 3).shape) == spatial(2, 3).size == 6


def test_rank_zero_layouts():
    full = reduce(local(2, 3).spatial(2, 2), [0, 1])
    assert full.shape == () and full.size == 1 and full.num_workers == 4
    assert full.workers_of(()) == [0, 1, 2, 3] and full.map(()) == (0, 0)
    assert full.logical_index(3, 0) == ()
    assert str(full) == "replicated(4, rank=0)" and parse_layout(str(full)) == full
    assert full.unsqueeze(0) == replicated(4)
    assert parse_layout("local()") == local() != full
