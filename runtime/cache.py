"""The on-disk compile cache: compiled artifacts keyed by everything that decides them.

A key hashes bittile's own source files (a changed compiler never gets a stale hit), the
caller's parts (printed IR, backend toolchain versions, target, options) and the value of every
environment switch that changes generated code (``runtime/config.py``). Entries live in
``BITTILE_CACHE_DIR`` (default: the platform's user cache folder, e.g. ``~/.cache/bittile``),
one file per key::

    b"BTC1" | sha256(payload) (32 bytes) | len(payload) (8 bytes, little endian) | payload

Writes go to a temporary file in the same folder and are moved into place with ``os.replace``
under a per-key file lock, so concurrent processes never see half an entry and compile a key
once. A truncated or corrupted entry is detected by its length and hash, reported with a
warning, deleted and compiled again. If the folder cannot be written, the cache warns once and
keeps entries in memory only. ``BITTILE_DISABLE_CACHE=1`` turns the disk cache off.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import struct
import tempfile
import warnings
from collections.abc import Callable

from bittile.runtime import config

__all__ = ["compiler_hash", "cache_key", "CompileCache", "default_cache"]

_MAGIC = b"BTC1"
_HEADER = struct.Struct("<4s32sQ")
_PACKAGE = pathlib.Path(__file__).resolve().parents[1]


@functools.cache
def compiler_hash() -> str:
    """A hash of every source file bittile compiles with (Python, grammars, stdlib kernels)."""
    digest = hashlib.sha256()
    skip = {"tests", "benchmarks", "docs", "examples"}
    files = []
    for root, dirs, names in os.walk(_PACKAGE):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in skip
                         and d != "__pycache__")
        files += [pathlib.Path(root, n) for n in names if n.endswith((".py", ".lark", ".tile"))]
    for path in sorted(files):
        digest.update(str(path.relative_to(_PACKAGE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def codegen_switches() -> tuple:
    """The value of every switch that changes generated code."""
    return tuple((name, repr(config.get(name))) for name, s in sorted(config.SWITCHES.items())
                 if s.changes_codegen)


def cache_key(*parts: str) -> str:
    digest = hashlib.sha256(compiler_hash().encode())
    for part in (*parts, repr(codegen_switches())):
        data = part.encode() if isinstance(part, str) else bytes(part)
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


class CompileCache:
    """Artifacts (bytes) by key, on disk when possible, always in memory."""

    def __init__(self, folder: str | os.PathLike | None):
        self.memory: dict[str, bytes] = {}
        self.folder = self._usable(folder) if folder is not None else None

    @staticmethod
    def _usable(folder) -> pathlib.Path | None:
        path = pathlib.Path(folder)
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
                pass
        except OSError as exc:
            warnings.warn(f"bittile: the compile cache folder {str(path)!r} is not writable "
                          f"({exc.strerror or exc}); compiled kernels are kept in memory only "
                          "(set BITTILE_CACHE_DIR to a writable folder)", stacklevel=3)
            return None
        return path

    def _path(self, key: str) -> pathlib.Path:
        return self.folder / key[:2] / f"{key}.bin"

    def get(self, key: str) -> bytes | None:
        if key in self.memory:
            return self.memory[key]
        if self.folder is None:
            return None
        path = self._path(key)
        try:
            blob = path.read_bytes()
        except OSError:
            return None
        payload = _unwrap(blob)
        if payload is None:
            warnings.warn(f"bittile: the compile cache entry {str(path)!r} is corrupted; it is "
                          "compiled again", stacklevel=3)
            try:
                path.unlink()
            except OSError:
                pass
            return None
        self.memory[key] = payload
        return payload

    def put(self, key: str, payload: bytes) -> None:
        self.memory[key] = payload
        if self.folder is None:
            return
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:16]}-")
            with os.fdopen(fd, "wb") as f:
                f.write(_wrap(payload))
            os.replace(tmp, path)
        except OSError as exc:
            warnings.warn(f"bittile: could not write the compile cache entry {str(path)!r}: "
                          f"{exc}", stacklevel=3)

    def get_or_compute(self, key: str, compute: Callable[[], bytes]) -> tuple[bytes, bool]:
        """The entry for ``key``, computing and storing it if missing (once across processes:
        others wait on the key's lock); also whether it was a hit."""
        found = self.get(key)
        if found is not None:
            return found, True
        if self.folder is None:
            payload = compute()
            self.memory[key] = payload
            return payload, False
        from filelock import FileLock

        lock_path = self._path(key).with_suffix(".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock_path)):
            found = self.get(key)
            if found is not None:
                return found, True
            payload = compute()
            self.put(key, payload)
        return payload, False


def _wrap(payload: bytes) -> bytes:
    return _HEADER.pack(_MAGIC, hashlib.sha256(payload).digest(), len(payload)) + payload


def _unwrap(blob: bytes) -> bytes | None:
    if len(blob) < _HEADER.size:
        return None
    magic, digest, length = _HEADER.unpack_from(blob)
    payload = blob[_HEADER.size:]
    if magic != _MAGIC or length != len(payload) or hashlib.sha256(payload).digest() != digest:
        return None
    return payload


_caches: dict[str | None, CompileCache] = {}


def default_cache() -> CompileCache:
    """The cache for the current ``BITTILE_CACHE_DIR`` / ``BITTILE_DISABLE_CACHE``."""
    if config.get("BITTILE_DISABLE_CACHE"):
        folder = None
    else:
        folder = config.get("BITTILE_CACHE_DIR")
        if folder is None:
            import platformdirs

            folder = platformdirs.user_cache_dir("bittile")
    cache = _caches.get(folder)
    if cache is None:
        cache = _caches[folder] = CompileCache(folder)
    return cache
