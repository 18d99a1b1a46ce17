"""Process memory settings applied when a service starts (never at import time).

glibc gives every thread that allocates its own malloc arena (up to 8 per core), and memory
freed in one arena is rarely returned to the system: ingest decodes photos of tens of MB on
the threads of its pool, so its resident memory kept growing under load (``make load``: +115
MiB in 60 s, 229 MiB/min at the end) although nothing leaked. Two arenas keep that bounded for
a small cost in allocator contention. ``MALLOC_ARENA_MAX`` in the environment, when set, wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)
DEFAULT_ARENAS = 2


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process; False where that is not possible (another
    C library, or the environment already decided)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False  # read by glibc itself at start
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_ARENA_MAX, arenas))
    if not ok:
        log.debug("mallopt(M_ARENA_MAX) refused")
    return ok
