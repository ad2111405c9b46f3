"""Compiled-code caches that never serve stale code.

numba's on-disk cache (``@njit(cache=True)``) checks only the timestamp of the file that
defines a function, so a caller compiled in ``threaded.py`` keeps running an old inlined
copy of ``pack_panel_b`` from ``packed.py`` after that file changes.  We key the cache
folder by a hash of every source file of the package instead: any edit anywhere moves
the cache to a new folder and everything is compiled afresh on the next run (a few
seconds); unchanged sources reuse their cache.

``NUMBA_CACHE_DIR`` must be set before numba is imported, so ``mlsys_labs/__init__.py``
calls :func:`configure_numba_cache` first thing.  A ``NUMBA_CACHE_DIR`` set by the user
(or by ``mlsys-labs mutants``) is left alone; one this function set in a parent process
(for another checkout, perhaps) is recomputed.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_AUTO = "_MLSYS_NUMBA_CACHE_DIR"   # remembers that the folder was chosen here, not by the user
KEEP = 3   # cache folders kept (the newest), so switching between two versions stays cheap


def sources_digest(package_dir: Path = _PACKAGE_DIR) -> str:
    """A hash of every ``.py`` file's path and content under the package."""
    h = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        h.update(str(path.relative_to(package_dir)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def configure_numba_cache() -> Path | None:
    """Point ``NUMBA_CACHE_DIR`` at ``.mlsys/numba-cache/<digest of the sources>``."""
    given = os.environ.get("NUMBA_CACHE_DIR")
    if given and given != os.environ.get(_AUTO):
        return None
    from .paths import state_dir

    try:
        base = state_dir("numba-cache")
        current = base / sources_digest()
        current.mkdir(exist_ok=True)
        os.utime(current)
        old = sorted((p for p in base.iterdir() if p.is_dir() and p != current),
                     key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in old[KEEP - 1:]:
            shutil.rmtree(stale, ignore_errors=True)
    except OSError:    # a read-only checkout: numba falls back to its own rules
        return None
    os.environ["NUMBA_CACHE_DIR"] = os.environ[_AUTO] = str(current)
    return current
