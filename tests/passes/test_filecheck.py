"""FileCheck tests of passes: every ``tests/passes/filecheck/*.tir`` file, case by case.

Format of a ``.tir`` file (``//`` starts a directive line; it is not IR syntax, so these lines
are blanked before parsing, keeping line numbers)::

    // RUN: canonicalize,dce        <- the file's pipeline, on its first line
    // -----                        <- separates cases
    // A case: one kernel, then CHECK lines on the printed result.
    // RUN: cse                     <- optional: this case's own pipeline
    kernel @k(...) grid(1) {
      ...
    }
    // CHECK-LABEL: kernel @k
    // CHECK: arith.add
    // CHECK-NOT: arith.mul

Each case is parsed with ``parse_kernel``, run through its pipeline with verification after
every pass, printed, and matched by the ``filecheck`` package (a Python port of LLVM's
FileCheck: CHECK, CHECK-NEXT, CHECK-SAME, CHECK-NOT, CHECK-LABEL, ``[[NAME:regex]]``...) against
the case's CHECK lines. A case without CHECK lines is an error: it could never fail.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from bittile.errors import BittileError
from bittile.ir.parser import parse_kernel
from bittile.ir.printer import print_kernel
from bittile.passes.manager import run_pipeline

FILECHECK_DIR = Path(__file__).with_name("filecheck")
_SEPARATOR = re.compile(r"^\s*//\s*-----\s*$")
_RUN = re.compile(r"^\s*//\s*RUN:\s*(.*?)\s*$")
_CHECK = re.compile(r"^\s*//\s*CHECK(-[A-Z]+)?:")


@dataclass(frozen=True)
class Case:
    path: Path
    first_line: int  # 1-based line of the case's first line in the file
    lines: tuple[str, ...]
    pipeline: str

    @property
    def id(self) -> str:
        return f"{self.path.stem}:{self.first_line}"

    def padded(self, lines) -> str:
        """``lines`` placed at the case's position in the file, so line numbers match."""
        return "\n" * (self.first_line - 1) + "\n".join(lines) + "\n"

    @property
    def kernel_text(self) -> str:
        return self.padded("" if line.lstrip().startswith("//") else line for line in self.lines)


def read_cases(path: Path) -> list[Case]:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = _RUN.match(lines[0]) if lines else None
    file_pipeline = header.group(1) if header else None
    chunks, start = [], 0
    for i, line in enumerate(lines):
        if _SEPARATOR.match(line):
            chunks.append((start, lines[start:i]))
            start = i + 1
    chunks.append((start, lines[start:]))
    cases = []
    for start, chunk in chunks:
        code = [line for line in chunk if line.strip() and not line.lstrip().startswith("//")]
        if not code:
            continue  # the header, or comments only
        own = [m.group(1) for line in chunk if (m := _RUN.match(line))]
        own = [p for p in own if not (start == 0 and p == file_pipeline)]
        pipeline = own[-1] if own else file_pipeline
        if pipeline is None:
            raise ValueError(f"{path}:{start + 1}: no '// RUN: <pipeline>' for this case "
                             "or on the first line of the file")
        cases.append(Case(path, start + 1, tuple(chunk), pipeline))
    return cases


CASES = [case for path in sorted(FILECHECK_DIR.glob("*.tir")) for case in read_cases(path)]


def filecheck(check_text: str, check_name: str, output: str, tmp_path: Path) -> str | None:
    """Match ``output`` against the CHECK lines of ``check_text``; the error report, if any."""
    filecheck_main = pytest.importorskip(
        "filecheck.main", reason="the filecheck package (test extra) is not installed").main
    check_file = tmp_path / check_name
    check_file.write_text(check_text, encoding="utf-8")
    input_file = tmp_path / "output.tir"
    input_file.write_text(output, encoding="utf-8")
    report = io.StringIO()
    with contextlib.redirect_stderr(report), contextlib.redirect_stdout(report):
        try:
            filecheck_main(["filecheck", str(check_file), "--input-file", str(input_file)])
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
    return None if code == 0 else report.getvalue()


def test_cases_split_at_separators_and_may_override_the_pipeline(tmp_path: Path):
    path = tmp_path / "example.tir"
    path.write_text("// RUN: cse\n// about the file\n// -----\nkernel @a() grid(1) {\n}\n"
                    "// CHECK: @a\n// -----\n// only a comment\n// -----\n// RUN: dce,cse\n"
                    "kernel @b() grid(1) {\n}\n// CHECK: @b\n", encoding="utf-8")
    first, second = read_cases(path)
    assert (first.first_line, first.pipeline) == (4, "cse")
    assert (second.first_line, second.pipeline) == (10, "dce,cse")
    assert second.kernel_text.splitlines()[10] == "kernel @b() grid(1) {"
    assert parse_kernel(second.kernel_text).name == "b"


def test_every_file_has_cases():
    assert CASES, f"no cases in {FILECHECK_DIR}"
    for path in FILECHECK_DIR.glob("*.tir"):
        assert read_cases(path), f"{path} holds no case"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_filecheck(case: Case, tmp_path: Path):
    if not any(_CHECK.match(line) for line in case.lines):
        pytest.fail(f"{case.id}: the case has no CHECK line, so it cannot fail")
    try:
        kernel = parse_kernel(case.kernel_text, filename=str(case.path))
        result = run_pipeline(kernel, case.pipeline, verify=True)
    except BittileError as exc:
        pytest.fail(f"{case.id} ({case.pipeline}): {exc.render()}", pytrace=False)
    output = print_kernel(result)
    report = filecheck(case.padded(case.lines), case.path.name, output, tmp_path)
    if report is not None:
        pytest.fail(f"{case.id} ({case.pipeline}): FileCheck failed\n{report}\n"
                    f"--- output of {case.pipeline} ---\n{output}", pytrace=False)
