"""Every ```python block in docs/ and the README runs, and every ```tile block compiles, so the
documentation cannot rot."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def _blocks(language):
    block = re.compile(rf"^```{language}\n(.*?)^```", re.S | re.M)
    for page in PAGES:
        for match in block.finditer(page.read_text()):
            line = page.read_text()[: match.start()].count("\n") + 2
            yield pytest.param(page, line, match.group(1), id=f"{page.name}:{line}")


@pytest.mark.parametrize("page, line, code", list(_blocks("python")))
def test_python_block_runs(page, line, code):
    # Pad with newlines so tracebacks point at the right line of the page.
    exec(compile("\n" * (line - 1) + code, str(page), "exec"), {"__name__": "__docs__"})


@pytest.mark.parametrize("page, line, code", list(_blocks("tile")))
def test_tile_block_compiles(page, line, code):
    import bittile

    module = bittile.load_source("\n" * (line - 1) + code, str(page))
    for kernel in module.kernels.values():
        kernel.specialize()
    assert module.kernels or module.functions


def test_every_page_has_been_collected():
    assert {p.name for p in PAGES} >= {"dtypes.md", "ir.md", "layouts.md", "README.md"}
