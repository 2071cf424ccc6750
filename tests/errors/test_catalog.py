"""The catalog of user mistakes: each one gives a BittileError with a clear message (and, where
there is source, the file, line and column, the source line and a caret), never a Python
traceback from the compiler's internals.

Each case is ``(what the user did, action, expected error class, message pattern, where)``:
``where`` is ``(line, text at the column)`` for mistakes in source, or None.
"""

from __future__ import annotations

import numpy as np
import pytest

import bittile
from bittile.dsl.module import load_source
from bittile.errors import BittileError, LaunchError, TileSyntaxError, TileTypeError
from bittile.runtime import config
from bittile.runtime.cli import main as cli_main

VECTOR_ADD = """
kernel vector_add[BLOCK: int = 16](x: f32[N], y: f32[N], z: f32[N]) grid(cdiv(N, BLOCK)) {
    let i0 = block_id(0) * BLOCK
    store(z, [i0], load(x, [i0], [BLOCK]) + load(y, [i0], [BLOCK]))
}
"""

GEMV = """
kernel gemv[BN: int = 16, BK: int = 32](w: u4[N, K], x: f32[K], y: f32[N]) grid(cdiv(N, BN)) {
    let n0 = block_id(0) * BN
    var acc = zeros(f32, [BN, 1])
    for k0 in range(0, K, BK) {
        let wf = cast(load(w, [n0, k0], [BN, BK]), f32)
        acc = dot(wf, reshape(load(x, [k0], [BK]), [BK, 1]), acc)
    }
    store(y, [n0], reshape(acc, [BN]))
}
"""


def compile_source(text: str, **consts):
    module = load_source(text, "mistake.tile")
    for kernel in module.kernels.values():
        kernel.specialize(**consts)


def source_case(body: str):
    """A kernel whose body is ``body`` (its first line is line 3 of the file)."""
    return "\nkernel k[B: int = 8](x: f32[N], y: f32[N], q: u4[N]) grid(1) {\n" + body + "\n}\n"


def launch(text, *args, backend="llvm", **kwargs):
    module = load_source(text, "launch.tile")
    (kernel,) = module.kernels.values()
    kernel(*args, backend=backend, **kwargs)


F = np.float32
SOURCE_MISTAKES = [
    ("unknown name", source_case("    let a = load(x, [0], [B]) + nope"), TileTypeError,
     r"nope", (3, "nope")),
    ("undefined function", source_case("    let a = frobnicate(x)"), TileTypeError,
     r"frobnicate", (3, "frobnicate")),
    ("unclosed bracket", source_case("    let a = load(x, [0, [B])"), TileSyntaxError,
     r"unexpected '\)'", None),
    ("missing closing brace", "kernel k() grid(1) {\n    let a = 1\n", TileSyntaxError,
     r"never closed", None),
    ("misspelled keyword", source_case("    lett a = 1"), TileSyntaxError,
     r"unexpected name 'a'", (3, "a")),
    ("adding tiles of different shapes",
     source_case("    let a = load(x, [0], [B]) + load(y, [0], [4])"), TileTypeError,
     r"shape", (3, "load")),
    ("adding f32 and u4 tiles",
     source_case("    let a = load(x, [0], [B]) + load(q, [0], [B])"), TileTypeError,
     r"u4|f32", (3, "load")),
    ("storing the wrong dtype", source_case("    store(q, [0], load(x, [0], [B]))"),
     TileTypeError, r"u4|f32", (3, "load(x")),
    ("loading with the wrong number of offsets", source_case("    let a = load(x, [0, 0], [B])"),
     TileTypeError, r"offset", (3, "[0, 0]")),
    ("tile shape of the wrong rank", source_case("    let a = load(x, [0], [B, B])"),
     TileTypeError, r"rank", (3, "[B, B]")),
    ("non-constant tile shape", source_case("    let a = load(x, [0], [N])"), TileTypeError,
     r"known at compile time", (3, "")),
    ("assigning to a let", source_case("    let a = 1\n    a = 2"), TileTypeError, r"a", (4, "a")),
    ("bitwise op on floats", source_case("    let a = load(x, [0], [B]) & load(y, [0], [B])"),
     TileTypeError, r"integer operands", (3, "load")),
    ("exp of an integer tile", source_case("    let a = exp(load(q, [0], [B]))"), TileTypeError,
     r"float operands", (3, "exp")),
    ("dot with mismatched inner sizes",
     source_case("    let a = dot(zeros(f32, [4, 8]), zeros(f32, [4, 8]), zeros(f32, [4, 8]))"),
     TileTypeError, r"shape mismatch", (3, "dot")),
    ("reduction over a missing axis", source_case("    let a = sum(load(x, [0], [B]), 3)"),
     TileTypeError, r"axis", (3, "3)")),
    ("broadcast to an incompatible shape",
     source_case("    let a = broadcast(load(x, [0], [B]), [3])"), TileTypeError,
     r"cannot broadcast", (3, "")),
    ("reshape changing the number of elements",
     source_case("    let a = reshape(load(x, [0], [B]), [3])"), TileTypeError,
     r"cannot reshape", (3, "")),
    ("view to a size that does not divide",
     source_case("    let a = view(load(q, [0], [3]), u8)"), BittileError,
     r"multiple of 8", (3, "")),
    ("casting to an unknown dtype", source_case("    let a = cast(load(x, [0], [B]), f7)"),
     TileTypeError, r"f7", (3, "f7")),
    ("an invalid layout", source_case("    let a = load(x, [0], [B]) @ spatial(3)"),
     BittileError, r"layout spatial\(3\)", (3, "")),
    ("duplicate parameter",
     "kernel k(x: f32[N], x: f32[N]) grid(1) {\n}\n", TileTypeError, r"x", (1, "x")),
    ("unknown dtype in a parameter", "kernel k(x: f33[N]) grid(1) {\n}\n", TileTypeError,
     r"f33", (1, "f33")),
    ("yielding from a loop a value of another type",
     source_case("    var a = zeros(f32, [B])\n    for i in range(0, 4, 1) {\n"
                 "        a = zeros(f32, [4])\n    }"), TileTypeError, r"changes type", (5, "a")),
    ("a number too large for its dtype", source_case("    let a = full(u4, [B], 99)"),
     BittileError, r"does not fit in u4", (3, "")),
]


@pytest.mark.parametrize(("what", "text", "cls", "pattern", "where"), SOURCE_MISTAKES,
                         ids=[c[0] for c in SOURCE_MISTAKES])
def test_source_mistakes(what, text, cls, pattern, where):
    with pytest.raises(cls, match=pattern) as info:
        compile_source(text)
    err = info.value
    assert err.loc is not None, f"{what}: no location"
    assert err.loc.file == "mistake.tile"
    rendered = err.render()
    assert "mistake.tile:" in rendered and "^" in rendered, rendered
    if where is not None and where[1]:
        line, text_at = where
        assert err.loc.line == line, (what, err.loc, rendered)
        source_line = text.splitlines()[line - 1]
        assert source_line[err.loc.col - 1:].startswith(text_at), (what, rendered)
    assert "Traceback" not in rendered


LAUNCH_MISTAKES = [
    ("wrong dtype", lambda: launch(VECTOR_ADD, np.ones(4, np.float64), np.ones(4, F),
                                   np.ones(4, F)), LaunchError, r"must hold f32"),
    ("shapes disagreeing on a size", lambda: launch(VECTOR_ADD, np.ones(4, F), np.ones(5, F),
                                                    np.ones(4, F)), LaunchError, r"size N"),
    ("wrong rank", lambda: launch(VECTOR_ADD, np.ones((2, 2), F), np.ones(4, F),
                                  np.ones(4, F)), LaunchError, r"rank"),
    ("missing argument", lambda: launch(VECTOR_ADD, np.ones(4, F), np.ones(4, F)), LaunchError,
     r"missing"),
    ("extra argument", lambda: launch(VECTOR_ADD, np.ones(4, F), np.ones(4, F), np.ones(4, F),
                                      np.ones(4, F), np.ones(4, F)), LaunchError,
     r"got 5 positional"),
    ("unknown keyword argument", lambda: launch(VECTOR_ADD, np.ones(4, F), np.ones(4, F),
                                                np.ones(4, F), w=1), LaunchError,
     r"no parameter 'w'"),
    ("argument given twice", lambda: launch(VECTOR_ADD, np.ones(4, F), np.ones(4, F),
                                            np.ones(4, F), x=np.ones(4, F)), LaunchError,
     r"twice"),
    ("a list instead of a tensor", lambda: launch(VECTOR_ADD, [1.0, 2.0], np.ones(2, F),
                                                  np.ones(2, F)), LaunchError, r"tensor"),
    ("read-only output", lambda: launch(VECTOR_ADD, np.ones(4, F), np.ones(4, F),
                                        _readonly(4)), LaunchError, r"read-only"),
    ("non-contiguous output", lambda: launch(VECTOR_ADD, np.ones(4, F), np.ones(4, F),
                                             np.ones(8, F)[::2]), LaunchError, r"contiguous"),
    ("non-contiguous torch tensor", lambda: _torch_case(), LaunchError, r"contiguous"),
    ("sub-byte weights as a numpy array", lambda: launch(GEMV, np.ones((4, 8), np.uint8),
                                                         np.ones(8, F), np.ones(4, F)),
     LaunchError, r"bittile.pack"),
    ("packed tensor of the wrong dtype", lambda: launch(
        GEMV, bittile.pack(np.ones((4, 8), np.int64), bittile.u2), np.ones(8, F),
        np.ones(4, F)), LaunchError, r"u4"),
    ("unknown backend", lambda: launch(VECTOR_ADD, np.ones(4, F), np.ones(4, F), np.ones(4, F),
                                       backend="quantum"), LaunchError, r"backend"),
    ("unknown compile-time parameter", lambda: load_source(VECTOR_ADD, "v.tile")
     .vector_add.specialize(BLOCKS=4), TileTypeError, r"BLOCKS"),
    ("values outside a packed dtype's range", lambda: bittile.pack(np.array([16]), bittile.u4),
     BittileError, r"16"),
    ("an integer scalar out of range", lambda: launch(
        "kernel k(x: u4[N], s: u4) grid(1) {\n    store(x, [0], full(u4, [1], s))\n}\n",
        bittile.pack(np.zeros(2, np.int64), bittile.u4), 99), LaunchError, r"99"),
]


def _readonly(n):
    a = np.ones(n, F)
    a.setflags(write=False)
    return a


def _torch_case():
    import torch

    z = torch.zeros(8)[::2]
    launch(VECTOR_ADD, torch.ones(4), torch.ones(4), z)


@pytest.mark.parametrize(("what", "action", "cls", "pattern"), LAUNCH_MISTAKES,
                         ids=[c[0] for c in LAUNCH_MISTAKES])
def test_launch_mistakes(what, action, cls, pattern):
    with pytest.raises(cls, match=pattern) as info:
        action()
    assert info.value.message, what
    assert info.value.__traceback__ is None or "Traceback" not in info.value.render()


ENV_MISTAKES = [
    ("a boolean switch set to a word", "BITTILE_LUT_EXACT", "perhaps", "BITTILE_LUT_EXACT"),
    ("a thread count that is not a number", "BITTILE_NUM_THREADS", "lots", "positive integer"),
    ("a thread count of zero", "BITTILE_NUM_THREADS", "0", "positive integer"),
    ("an unknown CPU level", "BITTILE_CPU_LEVEL", "avx9000", "unknown CPU level"),
    ("an unknown dot lowering", "BITTILE_DOT_LOWERING", "magic", "BITTILE_DOT_LOWERING"),
]


@pytest.mark.parametrize(("what", "name", "value", "pattern"), ENV_MISTAKES,
                         ids=[c[0] for c in ENV_MISTAKES])
def test_invalid_environment_values(what, name, value, pattern, monkeypatch):
    monkeypatch.setenv(name, value)
    with pytest.raises(BittileError, match=pattern):
        with config.override():
            launch(GEMV.replace("BN: int = 16", "BN: int = 8"),  # 4 blocks: threads are used
                   bittile.pack(np.ones((32, 32), np.int64), bittile.u4), np.ones(32, F),
                   np.ones(32, F))


def run_cli(capsys, *argv):
    code = cli_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


CLI_MISTAKES = [
    ("checking a file that does not exist", ["check", "no/such/file.tile"], r"no/such/file"),
    ("compiling a kernel name that does not exist",
     ["compile", "examples/vector_add.tile", "--kernel", "nope"], r"no kernel 'nope'"),
    ("a malformed -D", ["compile", "examples/vector_add.tile", "-D", "BLOCK"], r"NAME=VALUE"),
    ("a malformed --size", ["run", "examples/vector_add.tile", "--size", "N=lots"], r"--size"),
    ("running without the sizes the kernel needs", ["run", "examples/vector_add.tile"],
     r"N"),
    ("an unknown pass", ["opt", "tests/data/fused.tir", "--passes", "frobnicate"],
     r"frobnicate"),
    ("a CPU level the host lacks or that does not exist",
     ["compile", "examples/vector_add.tile", "--emit", "asm", "--cpu", "avx9000"],
     r"unknown CPU level"),
]


@pytest.mark.parametrize(("what", "argv", "pattern"), CLI_MISTAKES,
                         ids=[c[0] for c in CLI_MISTAKES])
def test_cli_mistakes(what, argv, pattern, capsys, monkeypatch):
    import pathlib
    import re

    monkeypatch.chdir(pathlib.Path(__file__).resolve().parents[2])
    code, out, err = run_cli(capsys, *argv)
    assert code == 1, (what, out, err)
    assert re.search(pattern, err), (what, err)
    assert "Traceback" not in err


def test_the_catalog_has_at_least_forty_mistakes():
    total = len(SOURCE_MISTAKES) + len(LAUNCH_MISTAKES) + len(ENV_MISTAKES) + len(CLI_MISTAKES)
    assert total >= 40
