"""docs/configuration.md lists every switch with its type, default and whether it changes
the generated code, as runtime/config.py declares them."""

import pathlib
import re

import pytest

from bittile.errors import BittileError
from bittile.runtime import config

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def documented() -> dict[str, list[str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"\| `(BITTILE_\w+)` \|(.*)", line)
        if match:
            rows[match.group(1)] = [c.strip() for c in match.group(2).split("|")]
    return rows


def test_every_switch_is_documented_as_declared():
    rows = documented()
    assert set(rows) == set(config.SWITCHES)
    for name, switch in config.SWITCHES.items():
        kind, _default, changes, _what = rows[name][:4]
        assert kind == switch.kind, name
        assert changes == ("yes" if switch.changes_codegen else "no"), name


def test_invalid_values_are_errors(monkeypatch):
    monkeypatch.setenv("BITTILE_NUM_THREADS", "many")
    with pytest.raises(BittileError, match="BITTILE_NUM_THREADS"):
        config.get("BITTILE_NUM_THREADS")
    monkeypatch.setenv("BITTILE_LUT_EXACT", "maybe")
    with pytest.raises(BittileError, match="not a boolean"):
        config.get("BITTILE_LUT_EXACT")


def test_overrides_win_and_end_with_their_block(monkeypatch):
    monkeypatch.setenv("BITTILE_LUT_MAX_M", "4")
    with config.override(BITTILE_LUT_MAX_M=16):
        assert config.get("BITTILE_LUT_MAX_M") == 16
    assert config.get("BITTILE_LUT_MAX_M") == 4
    with pytest.raises(BittileError, match="unknown switch"):
        with config.override(BITTILE_NOPE=1):
            pass
