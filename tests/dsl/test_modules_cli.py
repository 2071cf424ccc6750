"""load_module / load_source, imports, kernel calls, hidden compiler frames, and the CLI."""

import subprocess
import sys
import traceback

import numpy as np
import pytest

import bittile
from bittile.errors import BittileError, LaunchError, TileSyntaxError, TileTypeError
from bittile.runtime.cli import main

SCALE = """
fn twice(v) {
    return v * 2.0
}
kernel scale[B: int = 8](x: f32[N], y: f32[N]) grid(cdiv(N, B)) {
    let i = block_id(0) * B
    store(y, [i], twice(load(x, [i], [B])))
}
"""


def test_load_source_gives_callable_kernels_and_helpers():
    module = bittile.load_source(SCALE, "scale.tile")
    assert set(module.kernels) == {"scale"} and set(module.functions) == {"twice"}
    x = np.arange(10, dtype=np.float32)
    y = np.zeros(10, np.float32)
    module.scale(x, y, B=4)
    np.testing.assert_array_equal(y, 2 * x)
    with pytest.raises(BittileError, match="only be called from a kernel"):
        module.twice(1.0)


def test_imports_share_helpers(tmp_path):
    (tmp_path / "helpers.tile").write_text("fn twice(v) {\n    return v * 2.0\n}\n")
    main_file = tmp_path / "main.tile"
    main_file.write_text('import "helpers.tile"\n' + SCALE[SCALE.index("kernel"):])
    module = bittile.load_module(main_file)
    x = np.ones(3, np.float32)
    y = np.zeros(3, np.float32)
    module.scale(x, y)
    np.testing.assert_array_equal(y, [2, 2, 2])


def test_import_cycle_is_located_at_the_closing_import(tmp_path):
    (tmp_path / "a.tile").write_text('import "b.tile"\n')
    (tmp_path / "b.tile").write_text('\nimport "a.tile"\n')
    with pytest.raises(TileSyntaxError) as info:
        bittile.load_module(tmp_path / "a.tile")
    err = info.value
    assert "import cycle: a.tile -> b.tile -> a.tile" in err.message
    assert err.loc.file.endswith("b.tile") and (err.loc.line, err.loc.col) == (2, 1)


def test_missing_import_and_duplicate_definitions(tmp_path):
    (tmp_path / "m.tile").write_text('import "nope.tile"\n')
    with pytest.raises(BittileError, match="cannot read .*nope.tile") as info:
        bittile.load_module(tmp_path / "m.tile")
    assert info.value.loc.line == 1
    with pytest.raises(TileSyntaxError, match="'f' is defined twice") as info:
        bittile.load_source("fn f(a) {\n return a\n}\nfn f(b) {\n return b\n}\n", "dup.tile")
    assert info.value.loc.line == 4


def test_wrong_argument_counts_and_names():
    module = bittile.load_source(SCALE, "scale2.tile")
    x = np.zeros(4, np.float32)
    with pytest.raises(LaunchError, match="missing argument"):
        module.scale(x)
    with pytest.raises(LaunchError, match="got 4 positional"):
        module.scale(x, x, 8, 9)
    with pytest.raises(TileTypeError, match="no compile-time parameter 'C'"):
        module.scale.specialize(C=3)
    with pytest.raises(LaunchError, match="no parameter 'z'"):
        module.scale(x, x, z=x)


def test_positional_compile_time_values_follow_runtime_arguments():
    module = bittile.load_source(SCALE, "scale3.tile")
    x = np.arange(6, dtype=np.float32)
    y = np.zeros(6, np.float32)
    module.scale(x, y, 4)
    np.testing.assert_array_equal(y, 2 * x)


def test_compiler_frames_are_hidden(monkeypatch):
    monkeypatch.delenv("BITTILE_DEBUG", raising=False)
    bad = bittile.load_source(
        "kernel k(x: f32[N]) grid(1) {\n    let t = load(x, [0], [4]) + load(x, [0], [8])\n}\n",
        "bad.tile",
    )
    with pytest.raises(TileTypeError) as info:
        bad.k(np.zeros(8, np.float32))
    frames = traceback.extract_tb(info.value.__traceback__)
    assert not any("/dsl/lower" in f.filename or "/ir/" in f.filename for f in frames)
    assert "bad.tile:2:" in str(info.value)
    monkeypatch.setenv("BITTILE_DEBUG", "1")
    bad2 = bittile.load_source(
        "kernel k(x: f32[N]) grid(1) {\n    let t = load(x, [0], [4]) + load(x, [0], [8])\n}\n",
        "bad2.tile",
    )
    with pytest.raises(TileTypeError) as info:
        bad2.k(np.zeros(8, np.float32))
    frames = traceback.extract_tb(info.value.__traceback__)
    assert any("/dsl/" in f.filename for f in frames)


@pytest.fixture
def scale_file(tmp_path):
    path = tmp_path / "scale.tile"
    path.write_text(SCALE)
    return path


def test_cli_check_ok_and_error(scale_file, tmp_path, capsys):
    assert main(["check", str(scale_file)]) == 0
    assert "ok (1 kernels)" in capsys.readouterr().out
    bad = tmp_path / "bad.tile"
    bad.write_text("kernel k(x: f32[N]) grid(1) {\n    let a = undefined_thing + 1\n}\n")
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2:13" in err and "undefined_thing" in err and "^" in err


def test_cli_compile_emits_ir_and_ast(scale_file, capsys):
    assert main(["compile", str(scale_file), "-D", "B=16", "--emit", "ir"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("kernel @scale(") and "grid(cdiv(N, 16))" in out
    assert main(["compile", str(scale_file), "--kernel", "scale", "--emit", "ast"]) == 0
    assert "KernelDef(" in capsys.readouterr().out


def test_cli_run_and_its_errors(scale_file, capsys):
    assert main(["run", str(scale_file), "--size", "N=13"]) == 0
    assert "ran scale on interp" in capsys.readouterr().out
    assert main(["run", str(scale_file)]) == 1
    assert "--size" in capsys.readouterr().err
    assert main(["run", str(scale_file), "--kernel", "nope", "--size", "N=3"]) == 1
    assert "no kernel 'nope'" in capsys.readouterr().err
    assert main(["compile", str(scale_file), "-D", "oops"]) == 1
    assert "NAME=VALUE" in capsys.readouterr().err


def test_console_script_is_installed(scale_file):
    out = subprocess.run([sys.executable, "-m", "bittile.runtime.cli", "check", str(scale_file)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_self_import_through_another_spelling_is_a_cycle(tmp_path):
    (tmp_path / "d.tile").write_text('import "./d.tile"\n')
    with pytest.raises(TileSyntaxError, match="import cycle: d.tile -> d.tile"):
        bittile.load_module(tmp_path / "d.tile")


def test_local_definition_clashing_with_an_import(tmp_path):
    (tmp_path / "a.tile").write_text("fn scale(v) {\n    return v\n}\n")
    (tmp_path / "b.tile").write_text('import "a.tile"\n' + SCALE[SCALE.index("kernel"):])
    with pytest.raises(TileSyntaxError, match="'scale' is defined twice"):
        bittile.load_module(tmp_path / "b.tile")
    with pytest.raises(TileSyntaxError, match="cannot name a kernel"):
        bittile.load_source("fn kernels(v) {\n    return v\n}\n", "reserved.tile")


def test_specializations_tell_apart_equal_but_different_values():
    module = bittile.load_source(
        "kernel k[S: float = 1.0](y: f32[N]) grid(1) {\n"
        "    store(y, [0], full(f32, [1], S))\n}\n", "k.tile")
    a, b = module.k.specialize(S=0.0), module.k.specialize(S=-0.0)
    assert a is not b and "-0.0" in str(b)
    assert module.k.specialize(S=float("nan")) is module.k.specialize(S=float("nan"))


def test_debug_switch_zero_means_off(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("BITTILE_DEBUG", "0")
    assert main(["compile", str(tmp_path / "missing.tile")]) == 1
    assert "cannot read" in capsys.readouterr().err
