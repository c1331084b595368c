"""Keep freed image buffers in the process, for loops that make one per image (eval).

glibc's malloc hands every block over 128 KiB back to the OS when it is freed, so the next
image's buffers (a decoded JPEG, the resized float image) come back page by page, and on
this project's machines those page faults cost more than the resize itself (about 2x,
``benchmarks/bench_eval.py``). Raising malloc's mmap and trim thresholds, as mallopt(3)
documents, keeps up to a few tens of megabytes of freed memory for reuse. A no-op where
the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # mallopt(3) parameter numbers, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20   # glibc's own ceiling for a dynamic threshold on 64-bit
TRIM_THRESHOLD_BYTES = 64 << 20

_done = False


def keep_freed_buffers() -> bool:
    """Raise glibc's thresholds once per process; True if they were raised (now or before)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                                  TRIM_THRESHOLD_BYTES))
    return _done
