"""The disk compile cache: hits across processes, one entry for concurrent compiles, misses
after a compiler change, recovery from corrupted entries, and a memory-only fallback."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bittile.runtime import cache as cache_module
from bittile.runtime.cache import CompileCache, _unwrap, _wrap

ROOT = pathlib.Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import numpy as np, bittile
    from bittile.backends.llvm import backend
    kernel = bittile.load_module("examples/vector_add.tile").vector_add.specialize(BLOCK=64)
    compiled = backend.compile_kernel(kernel)
    x = np.arange(100, dtype=np.float32); z = np.zeros_like(x)
    compiled(x, x, z)
    assert np.array_equal(z, 2 * x)
    print("hit" if compiled.lowered is None else "compiled")
""")


def run_child(folder) -> str:
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True,
                         env={"BITTILE_CACHE_DIR": str(folder), "PATH": "/usr/bin:/bin"},
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def entries(folder) -> list[pathlib.Path]:
    return sorted(pathlib.Path(folder).rglob("*.bin"))


def test_a_second_process_hits_without_compiling(tmp_path):
    assert run_child(tmp_path) == "compiled"
    assert run_child(tmp_path) == "hit"
    assert len(entries(tmp_path)) == 1


def test_concurrent_processes_compile_once(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={"BITTILE_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
             for _ in range(4)]
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        outcomes.append(out.strip())
    assert outcomes.count("compiled") == 1 and outcomes.count("hit") == 3
    (entry,) = entries(tmp_path)
    assert _unwrap(entry.read_bytes()) is not None


@pytest.fixture
def fresh_caches(monkeypatch):
    monkeypatch.setattr(cache_module, "_caches", {})


def _compile_vector_add():
    import bittile
    from bittile.backends.llvm import backend

    kernel = bittile.load_module(ROOT / "examples/vector_add.tile").vector_add.specialize()
    return backend.compile_kernel(kernel)


def test_a_changed_compiler_misses(tmp_path, monkeypatch, fresh_caches):
    monkeypatch.setenv("BITTILE_CACHE_DIR", str(tmp_path))
    assert _compile_vector_add().lowered is not None
    monkeypatch.setattr(cache_module, "_caches", {})
    assert _compile_vector_add().lowered is None  # a hit
    monkeypatch.setattr(cache_module, "_caches", {})
    cache_module.compiler_hash()  # fill the functools cache, then pretend the sources changed
    monkeypatch.setattr(cache_module, "compiler_hash", lambda: "another compiler")
    assert _compile_vector_add().lowered is not None
    assert len(entries(tmp_path)) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_corrupted_entry_is_compiled_again(tmp_path, monkeypatch, fresh_caches, damage):
    monkeypatch.setenv("BITTILE_CACHE_DIR", str(tmp_path))
    _compile_vector_add()
    (entry,) = entries(tmp_path)
    blob = bytearray(entry.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:
        blob[-10] ^= 0xFF
    entry.write_bytes(bytes(blob))
    monkeypatch.setattr(cache_module, "_caches", {})
    with pytest.warns(UserWarning, match="corrupted"):
        compiled = _compile_vector_add()
    assert compiled.lowered is not None
    x = np.arange(10, dtype=np.float32)
    z = np.zeros_like(x)
    compiled(x, x, z)
    np.testing.assert_array_equal(z, 2 * x)
    assert _unwrap(entry.read_bytes()) is not None  # rewritten whole


def test_an_unwritable_folder_falls_back_to_memory(tmp_path, monkeypatch, fresh_caches):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("BITTILE_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="not writable"):
        compiled = _compile_vector_add()
    assert compiled.lowered is not None
    assert cache_module.default_cache().folder is None


def test_the_cache_can_be_disabled(tmp_path, monkeypatch, fresh_caches):
    monkeypatch.setenv("BITTILE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("BITTILE_DISABLE_CACHE", "1")
    _compile_vector_add()
    assert entries(tmp_path) == []


def test_entries_round_trip_and_reject_damage():
    payload = bytes(range(256)) * 3
    assert _unwrap(_wrap(payload)) == payload
    assert _unwrap(_wrap(payload)[:-1]) is None
    assert _unwrap(b"BTC1") is None
    cache = CompileCache(None)
    value, hit = cache.get_or_compute("k", lambda: b"abc")
    assert (value, hit) == (b"abc", False)
    assert cache.get_or_compute("k", lambda: b"other") == (b"abc", True)
