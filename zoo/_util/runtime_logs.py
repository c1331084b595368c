"""Keep TensorFlow's, LiteRT's and absl's start-up chatter off the user's terminal.

TensorFlow prints oneDNN notices, "Could not find cuda drivers" and cuInit errors, and
LiteRT "Created TensorFlow Lite XNNPACK delegate", from C++ straight to file descriptor 2,
before any Python logging or TF_CPP_MIN_LOG_LEVEL applies. So while a runtime starts, fd 2
is pointed at a temporary file and the text dropped (errors still surface as Python
exceptions). With ``--verbose`` ($MOBILENET_ZOO_LOG_LEVEL=debug) nothing is hidden.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from .. import config

_lock = threading.Lock()


@contextmanager
def native_stderr_hidden() -> Iterator[None]:
    """Hide what native code writes to fd 2 inside the block."""
    if config.verbose():
        yield
        return
    with _lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, AttributeError, ValueError):  # no real fd 2 (embedded, some test runners)
            yield
            return
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)


def import_tensorflow() -> Any:
    """``import tensorflow`` with its start-up notices hidden (also its device probing)."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if not config.verbose() else "0")
    with native_stderr_hidden():
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe logs its errors here, not at first use
    return tf
