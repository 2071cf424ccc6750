"""The fuzz command finds a planted bug (a wrong rewrite registered only here), writes a small
reproducer and replays it; a short campaign over correct code finds nothing."""

from __future__ import annotations

from typing import ClassVar

import pytest

from bittile.ir import ops
from bittile.passes.base import PASS_REGISTRY, Pass, register_pass
from bittile.passes.rewrite import Rewriter
from bittile.testing.fuzz import fuzz, replay


class AddConstantAsSubPass(Pass):
    """Deliberately wrong: rewrites ``a + b`` into ``a - b`` when ``b`` is a constant or a
    block id (an "index simplification" that got the sign wrong)."""

    name: ClassVar[str] = "planted-bug-add-constant"

    def run(self, kernel):
        return _Swap().run(kernel)


class _Swap(Rewriter):
    def __init__(self):
        super().__init__()
        self.constants: set[int] = set()

    def rewrite(self, op, operands):
        if isinstance(op, (ops.ConstantOp, ops.BlockIdOp)):
            new = self.clone(op, operands).results[0]
            self.constants.add(id(new))
            return (new,)
        if (isinstance(op, ops.BinaryOp) and op.kind == "add"
                and id(operands[1]) in self.constants):
            return (self.builder.sub(operands[0], operands[1]),)
        return None


@pytest.fixture(scope="module")
def planted():
    if AddConstantAsSubPass.name not in PASS_REGISTRY:  # once per process
        register_pass(AddConstantAsSubPass)
    yield AddConstantAsSubPass.name
    PASS_REGISTRY.pop(AddConstantAsSubPass.name, None)  # only this test sees the planted bug


def test_fuzz_finds_a_planted_bug_and_writes_a_reproducer(tmp_path, planted):
    report = fuzz(minutes=5, backends=("interp",), pipelines=(planted,), out=tmp_path,
                  max_programs=75, max_ops=10)
    assert report.failures, f"{report.programs} programs and the planted bug went unnoticed"
    path = report.failures[0]
    text = path.read_text()
    assert "replay: bittile fuzz --replay" in text and "kernel " in text
    assert replay(path) is not None  # the reproducer fails again


def test_a_short_campaign_on_correct_code_finds_nothing(tmp_path):
    report = fuzz(minutes=5, backends=("interp", "llvm"), pipelines=("canonicalize,cse,dce",),
                  out=tmp_path, max_programs=50, max_ops=12, seed=3)
    assert report.failures == [], [p.read_text() for p in report.failures]
