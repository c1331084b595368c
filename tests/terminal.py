"""Run the real console script as a user would: on a pseudo-terminal of a given width, or into pipes.

    code, out = run_in_pty([console_script(), "list"], columns=60)

The pty is the stdlib's (``pty.openpty``) with its window size set by ``TIOCSWINSZ``;
stdout and stderr both go to it unless ``stderr_tty=False`` (then stderr is a pipe,
returned separately). ANSI escapes are kept; ``plain()`` strips them for assertions.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys

import pytest

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def plain(text: str) -> str:
    """Text without ANSI escapes and carriage returns."""
    return _ANSI.sub("", text)


def run_in_pty(args: list[str], *, columns: int = 60, env: dict | None = None, stdout_tty: bool = True,
               stderr_tty: bool = True, timeout: float = 120) -> tuple[int, str, str]:
    """(exit code, what the terminal showed, stderr if it was a pipe else '')."""
    if not sys.platform.startswith(("linux", "darwin")):
        pytest.skip("needs a POSIX pty")
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**(env if env is not None else os.environ), "COLUMNS": str(columns), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(args, stdin=slave, stdout=slave if stdout_tty else subprocess.PIPE,
                            stderr=slave if stderr_tty else subprocess.PIPE, env=env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                proc.kill()
                raise TimeoutError(f"{args} produced nothing for {timeout} s")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        out_pipe = proc.stdout.read().decode() if proc.stdout else ""
        err_pipe = proc.stderr.read().decode() if proc.stderr else ""
        proc.wait(timeout=timeout)
    finally:
        os.close(master)
    shown = b"".join(chunks).decode(errors="replace")
    return proc.returncode, shown + (out_pipe if not stdout_tty else ""), err_pipe
