"""Ratio benchmarks for bittile's kernels (not part of the installed package).

Run the scripts from the repository root, e.g. ``python benchmarks/gemv.py --quick``. With the
editable install (``make venv``) the same modules import as ``bittile.benchmarks.gemv`` and
``bittile.benchmarks.common``.
"""
