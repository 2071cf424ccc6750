"""Frontend fuzzing: token-level mutations of every example and stdlib kernel, parsed, lowered
and verified. The only acceptable outcomes are a kernel or a BittileError with a location in
the mutated file (never an internal error or a Python exception from the compiler)."""

from __future__ import annotations

import pathlib
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bittile
from bittile.dsl.module import load_source
from bittile.errors import BittileError, InternalError

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = sorted([*ROOT.glob("examples/*.tile"), *ROOT.glob("stdlib/*.tile")])
TOKEN = re.compile(r"(//[^\n]*|[A-Za-z_][A-Za-z0-9_]*|0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
                   r"|<<=|>>=|<<|>>|==|!=|<=|>=|&&|\|\||[-+*/%&|^]=|\S)(\s*)")
REPLACEMENTS = ["0", "1", "-1", "3", "64", "0.5", "inf", "x", "N", "K", "f32", "u4", "i8",
                "f16", "bf16", "u1", "f4e2m1", "+", "-", "*", "/", "%", "<<", "&", "==", "<",
                "(", ")", "[", "]", "{", "}", ",", ";", "let", "var", "for", "if", "load",
                "store", "cast", "view", "dot", "sum", "reshape", "broadcast", "permute",
                "zeros", "where", "exp", "None", ":", "@", "spatial(2)", "local(4, 1)"]
COMPILE_TIME = {"W": bittile.u4}


def tokens_of(text: str) -> list[list[str]]:
    """``[token, the whitespace after it]`` pairs, comments dropped (newlines end statements,
    so the whitespace is kept)."""
    return [["" if m.group(1).startswith("//") else m.group(1), m.group(2)]
            for m in TOKEN.finditer(text)]


def join(tokens) -> str:
    return "".join(t + (space or " ") for t, space in tokens)


def compile_all(text: str) -> None:
    module = load_source(text, "mutant.tile")
    for kernel in module.kernels.values():
        consts = {p.name: COMPILE_TIME[p.name] for p in kernel.ast.const_params
                  if p.default is None and p.name in COMPILE_TIME}
        kernel.specialize(**consts)


@st.composite
def mutants(draw):
    path = draw(st.sampled_from(SOURCES))
    tokens = tokens_of(path.read_text())
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(tokens) - 1))
        kind = draw(st.integers(0, 3))
        if kind == 0:
            del tokens[i]
        elif kind == 1:
            tokens.insert(i, list(tokens[draw(st.integers(0, len(tokens) - 1))]))
        elif kind == 2:
            tokens[i] = [draw(st.sampled_from(REPLACEMENTS)), tokens[i][1]]
        else:
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i][0], tokens[j][0] = tokens[j][0], tokens[i][0]
    return join(tokens)


def test_unmutated_sources_compile():
    assert SOURCES
    for path in SOURCES:
        compile_all(join(tokens_of(path.read_text())))


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(mutants())
def test_mutated_sources_compile_or_fail_with_a_location(text):
    try:
        compile_all(text)
    except InternalError as exc:
        pytest.fail(f"internal error on a mutant: {exc.render()}\n{text}")
    except BittileError as exc:
        if exc.loc is not None:
            assert exc.loc.file == "mutant.tile", exc.render()
            assert "^" in exc.render()
        else:  # a few whole-module problems have no single place, but must say what to do
            assert exc.message, text
