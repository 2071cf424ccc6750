"""`make demo` runs examples/demo.py: it must succeed and report a correct result."""

import pathlib
import subprocess
import sys

DEMO = pathlib.Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def test_demo_runs_and_checks_its_result():
    out = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip().endswith("OK")
    assert "kernel @gemv_u4(" in out.stdout and "mean squared error" in out.stdout
    assert "bittile llvm:" in out.stdout and "numpy fp32 GEMV:" in out.stdout
