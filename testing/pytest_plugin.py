"""A pytest plugin for suites that test tile kernels (registered as the ``bittile`` plugin).

    pytest --bittile-backends=interp,llvm

Tests that take the ``bittile_backend`` fixture run once per chosen backend (default: every
backend available here). Use it with ``kernel(..., backend=bittile_backend)`` or
``assert_backends_agree(kernel, backends=("interp", bittile_backend))``.
"""

from __future__ import annotations


def available_backends() -> list[str]:
    from bittile.dsl.kernel import BACKENDS

    names = ["interp"]
    if "llvm" in BACKENDS:
        try:
            import llvmlite  # noqa: F401

            names.append("llvm")
        except ImportError:
            pass
    if "triton" in BACKENDS:
        try:
            import triton  # noqa: F401

            names.append("triton")
        except ImportError:
            pass
    return names


def pytest_addoption(parser):
    group = parser.getgroup("bittile")
    group.addoption("--bittile-backends", default=None, metavar="NAMES",
                    help="comma-separated backends the bittile_backend fixture runs on "
                         "(default: every backend available here)")


def chosen_backends(config) -> list[str]:
    raw = config.getoption("--bittile-backends", default=None)
    if not raw:
        return available_backends()
    names = [n.strip() for n in raw.split(",") if n.strip()]
    from bittile.dsl.kernel import BACKENDS

    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        import pytest

        raise pytest.UsageError(f"--bittile-backends: unknown backend(s) {', '.join(unknown)}; "
                                f"known: {', '.join(BACKENDS)}")
    return names


def pytest_generate_tests(metafunc):
    if "bittile_backend" in metafunc.fixturenames:
        metafunc.parametrize("bittile_backend", chosen_backends(metafunc.config))
