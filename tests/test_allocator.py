"""``zoo.allocator``: eval keeps freed image-sized buffers in the process (glibc's mallopt)."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not hasattr(ctypes.CDLL(None), "mallinfo2"),
                                reason="glibc with mallinfo2 (2.33+) only")

PROBE = """
import ctypes, sys
from zoo.allocator import keep_freed_buffers

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "tuned":
    assert keep_freed_buffers() and keep_freed_buffers()  # once is enough; twice is harmless
before = libc.mallinfo2().hblks
image = bytearray(4 << 20)  # a decoded 1280x1080 photo
print(libc.mallinfo2().hblks - before)
"""


def _mmapped_chunks(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_image_sized_buffers_come_from_the_heap_once_tuned():
    """By default glibc maps a 4 MiB block straight from the OS (and unmaps it when freed, so the
    next image faults its pages in again); after keep_freed_buffers() it comes from the heap."""
    assert _mmapped_chunks("default") == 1
    assert _mmapped_chunks("tuned") == 0
