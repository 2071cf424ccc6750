"""The pass manager, pipeline text and the rewriter, with passes defined only in this test."""

import dataclasses

import pytest

import bittile
from bittile.errors import BittileError, InternalError
from bittile.ir import ops
from bittile.ir.core import Kernel
from bittile.passes.base import PASS_REGISTRY, Pass, format_pipeline, parse_pipeline, register_pass
from bittile.passes.manager import PassManager
from bittile.passes.rewrite import Rewriter

SOURCE = """
kernel k[B: int = 8](x: f32[N], y: f32[N]) grid(cdiv(N, B)) {
    let i = block_id(0) * B
    store(y, [i], load(x, [i], [B]) * 2.0)
}
"""


@pytest.fixture(scope="module")
def kernel() -> Kernel:
    return bittile.load_source(SOURCE, "k.tile").k.specialize()


def _test_pass(name):
    def wrap(cls):
        if name in PASS_REGISTRY:  # re-imports under xdist or reruns
            return PASS_REGISTRY[name]
        cls.name = name
        return register_pass(cls)
    return wrap


@_test_pass("test-identity")
class IdentityPass(Pass):
    scale: int = 1

    def run(self, kernel):
        return Rewriter().run(kernel)


@_test_pass("test-break-ir")
class BreakIRPass(Pass):
    """Drops the block id: the verifier must catch the dangling use."""

    def run(self, kernel):
        class Drop(Rewriter):
            def rewrite(self, op, operands):
                if isinstance(op, ops.BlockIdOp):
                    return (op.out,)  # the old value, never defined in the new kernel
                return None

        return Drop().run(kernel)


def test_pipeline_text_round_trips():
    passes = parse_pipeline("test-identity, test-identity{scale=3}")
    assert passes == [IdentityPass(), IdentityPass(scale=3)]
    assert format_pipeline(passes) == "test-identity,test-identity{scale=3}"


@pytest.mark.parametrize("text, fragment", [
    ("no-such-pass", "unknown pass 'no-such-pass'"),
    ("test-identity{bogus=1}", "has no option 'bogus'"),
    ("test-identity{scale}", "has no option 'scale'"),
    ("test-identity,,", "cannot read the pipeline"),
])
def test_pipeline_text_errors(text, fragment):
    with pytest.raises(BittileError, match=fragment):
        parse_pipeline(text)


def test_passes_are_frozen_and_kebab_case():
    with pytest.raises(dataclasses.FrozenInstanceError):
        IdentityPass().scale = 2
    with pytest.raises(InternalError, match="kebab-case"):
        class Bad(Pass):
            name = "Bad_Name"
        register_pass(Bad)


def test_rewriter_clone_is_identical_and_new(kernel):
    clone = Rewriter().run(kernel)
    assert str(clone) == str(kernel)
    assert not {id(op) for op in clone.walk()} & {id(op) for op in kernel.walk()}


def test_verify_names_the_pass_that_broke_the_ir(kernel):
    with pytest.raises(InternalError) as info:
        PassManager("test-identity,test-break-ir", verify=True).run(kernel)
    text = str(info.value)
    assert "pass test-break-ir produced invalid IR" in text and "kernel @k" in text
    # without verification the broken IR passes through unnoticed
    PassManager("test-break-ir", verify=False).run(kernel)


def test_print_dump_and_timing_instruments(kernel, tmp_path, capsys):
    import io

    out = io.StringIO()
    PassManager("test-identity,test-identity{scale=2}", print_after=["test-identity"],
                print_before=["all"], dump_dir=str(tmp_path), timing=True, out=out).run(kernel)
    text = out.getvalue()
    assert text.count("// ----- IR after test-identity") == 2
    assert text.count("// ----- IR before") == 2 and " ms  test-identity{scale=2}" in text
    dumps = sorted(p.name for p in tmp_path.iterdir())
    assert dumps == ["k.00.input.tir", "k.01.test-identity.tir", "k.02.test-identity.tir"]
    from bittile.ir.parser import parse_kernel

    assert str(parse_kernel((tmp_path / dumps[2]).read_text())) == str(kernel)


def test_environment_switches(kernel, monkeypatch, capsys):
    monkeypatch.setenv("BITTILE_PRINT_IR_AFTER", "test-identity")
    monkeypatch.setenv("BITTILE_VERIFY_PASSES", "1")
    PassManager("test-identity").run(kernel)
    assert "IR after test-identity" in capsys.readouterr().err
    with pytest.raises(InternalError):
        PassManager("test-break-ir").run(kernel)
    monkeypatch.setenv("BITTILE_VERIFY_PASSES", "maybe")
    with pytest.raises(BittileError, match="is not a boolean"):
        PassManager("test-identity")


def test_opt_command(kernel, tmp_path, capsys):
    from bittile.runtime.cli import main

    path = tmp_path / "k.tir"
    path.write_text(str(kernel))
    assert main(["opt", str(path), "--passes", "test-identity"]) == 0
    assert capsys.readouterr().out == str(kernel)
    assert main(["opt", str(path), "--passes", "nope"]) == 1
    assert "unknown pass 'nope'" in capsys.readouterr().err
