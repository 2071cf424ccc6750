"""Rendering of user-facing errors: location, source line, caret, hint."""

import pytest

import bittile
from bittile.errors import BittileError, IRError, LaunchError, Loc, TileTypeError, register_source


def test_error_renders_location_line_caret_and_hint():
    register_source("k.tile", "let a = 1\nlet b = a + w\n")
    err = TileTypeError("shape mismatch", Loc("k.tile", 2, 9, 2, 14), hint="broadcast w")
    assert str(err) == (
        "k.tile:2:9: type error: shape mismatch\n"
        "    let b = a + w\n"
        "            ^^^^^\n"
        "hint: broadcast w"
    )


def test_error_without_end_underlines_to_end_of_line():
    register_source("k2.tile", "x = load(t)   \n")
    text = str(BittileError("bad", Loc("k2.tile", 1, 5)))
    assert text.splitlines()[-1] == "        ^^^^^^^"


def test_error_without_location_or_unknown_source():
    assert str(LaunchError("missing argument x")) == "missing argument x"
    err = IRError("oops", Loc("<nowhere>", 3, 1))
    assert str(err) == "<nowhere>:3:1: IR error: oops"


def test_with_loc_only_fills_a_missing_location():
    loc = Loc("f", 1, 1)
    err = LaunchError("x").with_loc(loc)
    assert err.loc == loc and isinstance(err, LaunchError)
    assert IRError("y", Loc("g", 2, 2)).with_loc(loc).loc == Loc("g", 2, 2)


@pytest.mark.parametrize("cls, builtin", [
    (bittile.TileTypeError, TypeError), (bittile.DTypeError, ValueError),
    (bittile.PackingError, ValueError), (bittile.LayoutError, ValueError),
    (bittile.LaunchError, ValueError), (bittile.InternalError, RuntimeError),
])
def test_error_classes_share_one_base_and_a_builtin(cls, builtin):
    assert issubclass(cls, BittileError) and issubclass(cls, builtin)


def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys, bittile; heavy = [m for m in ('torch', 'triton', 'llvmlite', 'lark') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
