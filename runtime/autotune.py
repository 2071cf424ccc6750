"""Autotuning: choose a kernel's compile-time parameters by measuring them.

    @bittile.autotune(space={"BN": [64, 128, 256], "BK": [256, 1024]}, key=["N", "K"])
    @bittile.kernel
    def gemv(...): ...

or ``bittile.autotune(configs=[{"BN": 64}, {"BN": 128, "BK": 512}], key=[...])(tile_kernel)``
for a kernel from a ``.tile`` file. The candidates are the Cartesian product of ``space`` plus
the listed ``configs``. Each distinct *key* (the values of the named sizes, solved from the
arguments' shapes, and the names of the arguments' dtypes) is tuned once: every candidate runs
``warmup`` times, then ``repeats`` timed times, and the one with the smallest median wins. The
winner is remembered in memory and on disk (``autotune.json`` in the compile cache folder),
next to a description of the environment it was measured in (backend, CPU, threads, bittile's
compiler hash): a different environment tunes again. Tensors the kernel writes are restored
after every measured run, so kernels that accumulate into their outputs tune correctly.

While tuning, a progress bar goes to stderr when it is a terminal (tqdm, if installed);
otherwise tuning is silent.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bittile.errors import LaunchError
from bittile.runtime import config

__all__ = ["autotune", "Autotuned"]


def autotune(*, space: Mapping[str, Sequence] | None = None,
             configs: Sequence[Mapping[str, Any]] = (), key: Sequence[str] = (),
             warmup: int = 2, repeats: int = 5):
    """Decorate a kernel (``@bittile.kernel`` or one from a ``.tile`` module)."""
    candidates = [dict(c) for c in configs]
    if space:
        names = list(space)
        candidates += [dict(zip(names, values))
                       for values in itertools.product(*(space[n] for n in names))]
    if not candidates:
        raise LaunchError("autotune needs a space or a list of configs")

    def wrap(kernel):
        return Autotuned(kernel, candidates, tuple(key), warmup, repeats)

    return wrap


class Autotuned:
    """A kernel whose compile-time parameters are chosen per key by measurement."""

    def __init__(self, kernel, candidates, key, warmup, repeats):
        self.kernel = kernel
        self.name = kernel.name
        self.candidates = candidates
        self.key_names = key
        self.warmup, self.repeats = warmup, repeats
        self.best: dict[tuple, dict] = {}
        self.timings: dict[tuple, list[tuple[dict, float]]] = {}

    # ---- keys ------------------------------------------------------------------------------
    def key_of(self, args: tuple, kwargs: dict) -> tuple:
        ir = self.kernel.specialize(**self.candidates[0])
        from bittile.runtime.launch import _match

        given = _match(ir, args, kwargs)
        sizes = {}
        for p in ir.params:
            shape = getattr(given[p.name], "shape", None)
            if shape is None:
                sizes[p.name] = given[p.name]
                continue
            for dim, actual in zip(p.type.shape, shape):
                sizes.setdefault(str(dim), int(actual))
        missing = [n for n in self.key_names if n not in sizes]
        if missing:
            raise LaunchError(f"autotune key {missing[0]!r} is not a size or scalar of kernel "
                              f"{self.name}", hint=f"sizes: {', '.join(sorted(sizes))}")
        dtypes = tuple(str(getattr(given[p.name], "dtype", "")) for p in ir.params)
        return (*(sizes[n] for n in self.key_names), *dtypes)

    def environment(self) -> dict:
        from bittile.runtime.cache import compiler_hash

        return {"backend": config.get("BITTILE_BACKEND") or "interp",
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(), "threads": config.get("BITTILE_NUM_THREADS"),
                "compiler": compiler_hash()[:16]}

    # ---- calling ---------------------------------------------------------------------------
    def __call__(self, *args, backend: str | None = None, **kwargs):
        key = self.key_of(args, kwargs)
        best = self.best.get(key) or self._load(key)
        if best is None:
            best = self.tune(key, args, kwargs, backend)
        return self.kernel(*args, backend=backend, **kwargs, **best)

    def tune(self, key: tuple, args: tuple, kwargs: dict, backend: str | None) -> dict:
        written = self._written(args, kwargs)
        saved = [(a, np.array(a, copy=True)) for a in written]
        results = []
        for candidate in _progress(self.candidates, f"tuning {self.name} {key}"):
            try:
                seconds = self._measure(candidate, args, kwargs, backend, saved)
            except LaunchError:
                continue  # e.g. a tile larger than the problem allows
            results.append((candidate, seconds))
        if not results:
            raise LaunchError(f"no configuration of {self.name} could run for key {key}")
        best = min(results, key=lambda r: r[1])[0]
        self.best[key] = best
        self.timings[key] = results
        self._store(key, best)
        return best

    def _measure(self, candidate, args, kwargs, backend, saved) -> float:
        times = []
        for i in range(self.warmup + self.repeats):
            start = time.perf_counter()
            self.kernel(*args, backend=backend, **kwargs, **candidate)
            elapsed = time.perf_counter() - start
            for array, copy in saved:
                array[...] = copy
            if i >= self.warmup:
                times.append(elapsed)
        return float(np.median(times))

    def _written(self, args, kwargs) -> list:
        from bittile.runtime.launch import _match, written_params

        ir = self.kernel.specialize(**self.candidates[0])
        given = _match(ir, args, kwargs)
        out = []
        for name in written_params(ir):
            arg = given[name]
            if isinstance(arg, np.ndarray):
                out.append(arg)
            elif hasattr(arg, "bytes_view"):
                out.append(arg.bytes_view())
            elif type(arg).__module__.startswith("torch"):
                out.append(arg.detach().numpy())
        return out

    # ---- memory on disk --------------------------------------------------------------------
    def _path(self):
        from bittile.runtime.cache import default_cache

        folder = default_cache().folder
        return None if folder is None else folder / "autotune.json"

    def _entry_name(self, key: tuple) -> str:
        return json.dumps([self.name, [str(k) for k in key], self.environment()],
                          sort_keys=True)

    def _load(self, key: tuple) -> dict | None:
        path = self._path()
        if path is None or not path.exists():
            return None
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        best = table.get(self._entry_name(key))
        if best is not None and best in self.candidates:
            self.best[key] = best
            return best
        return None

    def _store(self, key: tuple, best: dict) -> None:
        path = self._path()
        if path is None:
            return
        from filelock import FileLock

        with FileLock(str(path) + ".lock"):
            try:
                table = json.loads(path.read_text()) if path.exists() else {}
            except (OSError, ValueError):
                table = {}
            table[self._entry_name(key)] = best
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
            os.replace(tmp, path)


def _progress(items, description: str):
    if not sys.stderr.isatty():
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=description, file=sys.stderr, leave=False)
