"""Every ```python block in docs/ and the README runs, so the documentation cannot rot."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks():
    for page in PAGES:
        for match in BLOCK.finditer(page.read_text()):
            line = page.read_text()[: match.start()].count("\n") + 2
            yield pytest.param(page, line, match.group(1), id=f"{page.name}:{line}")


@pytest.mark.parametrize("page, line, code", list(_blocks()))
def test_python_block_runs(page, line, code):
    # Pad with newlines so tracebacks point at the right line of the page.
    exec(compile("\n" * (line - 1) + code, str(page), "exec"), {"__name__": "__docs__"})


def test_every_page_has_been_collected():
    assert {p.name for p in PAGES} >= {"dtypes.md", "ir.md", "layouts.md", "README.md"}
