"""A real loopback HTTP(S) server with fault injection, for download tests and benchmarks.

    def test_x(fault_server):
        url = fault_server.add("/m.tgz", data, faults=[Fault(status=503, retry_after="1")])
        ...
        assert fault_server.stats("/m.tgz").requests == 2

Serves registered byte blobs (or files from a directory) on 127.0.0.1 at an ephemeral
port, honouring ``Range`` (``bytes=N-`` / ``bytes=N-M``), ``If-Range`` and
``ETag`` / ``Last-Modified``. Each path has a queue of per-request :class:`Fault` s
(``faults=[...]``: the i-th request gets the i-th entry, ``None`` = healthy) and a
``default`` fault for every request after that. It counts requests and body bytes sent
per path and keeps each request's headers, so a test can assert that a resume sent about
one file's worth of bytes and that a ``Range`` header arrived.

Why ``http.server.ThreadingHTTPServer`` and not werkzeug / pytest-httpserver:
pytest-httpserver answers with whole werkzeug ``Response`` objects; it cannot reset the
TCP connection after exactly N body bytes, send fewer bytes than the Content-Length it
announced and then close, or drip bytes with pauses while we count what actually left the
socket (werkzeug's dev server re-frames and buffers the body, and an exception in a
streamed generator leaves the connection state to werkzeug). With our own handler we own
the socket: ``SO_LINGER 0`` + close is a real RST, ``shutdown`` is a clean short body,
``socket.sendfile`` streams 200 MB from disk at loopback speed for the standalone mode.
It is ~300 lines of stdlib, thread-safe (one lock around the registry and counters).

Standalone, for benchmarks (streams from disk, nothing loaded into memory):

    python -m tests.http_server --dir DIR --port 8000     # serves DIR/<relative path>
"""

from __future__ import annotations

import argparse
import email.utils
import gzip
import hashlib
import re
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterable
from urllib.parse import unquote, urlsplit

try:  # the fixture needs pytest; the standalone server does not
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

FIXED_MTIME = 1_700_000_000  # Last-Modified of registered blobs unless given


@dataclass
class Fault:
    """What to do wrong on one response. Every field is optional; combine freely."""

    status: int | None = None  # answer with this status (tiny body) instead of the file
    retry_after: str | None = None  # Retry-After value sent with `status` (seconds or HTTP date)
    headers: dict[str, str] = field(default_factory=dict)  # extra / overriding response headers
    drop_after: int | None = None  # reset the connection (RST) after N body bytes
    short_body: int | None = None  # announce the full Content-Length, send N bytes, close (FIN)
    ignore_range: bool = False  # always 200 with the whole file
    ignore_if_range: bool = False  # serve the Range even when If-Range does not match
    range_offset: int | None = None  # 206 whose Content-Range and body start here, not where asked
    tamper: int | None = None  # flip the byte at this file offset (if it is sent)
    etag: str | None = None  # send this ETag instead of the resource's
    redirect: str | None = None  # redirect to this path or absolute URL
    redirect_status: int = 302
    gzip: bool = False  # Content-Encoding: gzip around the whole file (always a 200)
    drip: float | None = None  # bytes per second
    drip_chunk: int = 1  # bytes per drip
    delay: float = 0.0  # seconds to wait before the status line


@dataclass
class RequestRecord:
    path: str
    method: str
    headers: dict[str, str]
    status: int = 0
    body_bytes: int = 0  # body bytes handed to the socket


@dataclass
class PathStats:
    requests: int
    body_bytes: int
    records: list[RequestRecord]

    @property
    def range_headers(self) -> list[str | None]:
        return [r.headers.get("Range") for r in self.records]


class _Resource:
    def __init__(self, data: bytes | None = None, file: Path | None = None, etag: str | None = None,
                 last_modified: float | None = None):
        self.data, self.file = data, file
        if file is not None:
            st = file.stat()
            self.size = st.st_size
            mtime = st.st_mtime if last_modified is None else last_modified
            self.etag = etag or f'"{st.st_size:x}-{int(st.st_mtime_ns):x}"'
        else:
            self.size = len(data)
            mtime = FIXED_MTIME if last_modified is None else last_modified
            self.etag = etag or '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        self.last_modified = email.utils.formatdate(mtime, usegmt=True)

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) (only used for small blobs or fault paths)."""
        if self.data is not None:
            return self.data[start:end]
        with open(self.file, "rb") as f:
            f.seek(start)
            return f.read(end - start)


class _Entry:
    def __init__(self, resource: _Resource | None, faults: Iterable[Fault | None], default: Fault | None):
        self.resource, self.faults, self.default = resource, list(faults), default
        self.served = 0


class FaultServer(ThreadingHTTPServer):
    """The server. ``start()``/``stop()``; ``add()`` blobs; ``stats()`` counters."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, directory: Path | None = None,
                 ssl_context: ssl.SSLContext | None = None):
        super().__init__((host, port), _Handler)
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True)
        self.scheme = "https" if ssl_context is not None else "http"
        self.directory = Path(directory).resolve() if directory else None
        self.lock = threading.Lock()
        self.entries: dict[str, _Entry] = {}
        self.records: list[RequestRecord] = []
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- lifecycle
    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self) -> "FaultServer":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fault-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def handle_error(self, request, client_address):  # quiet about clients that hang up
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError, OSError)):
            return
        super().handle_error(request, client_address)

    # ---- registry
    def add(self, path: str, data: bytes | Path, *, faults: Iterable[Fault | None] = (),
            default: Fault | None = None, etag: str | None = None,
            last_modified: float | None = None) -> str:
        """Serve ``data`` (bytes, or a file streamed from disk) at ``path``; returns its URL.

        Re-adding a path replaces the content (new ETag unless given) and resets its faults.
        """
        res = _Resource(file=data, etag=etag, last_modified=last_modified) if isinstance(data, Path) \
            else _Resource(data=bytes(data), etag=etag, last_modified=last_modified)
        with self.lock:
            self.entries[path] = _Entry(res, faults, default)
        return self.url(path)

    def redirect(self, path: str, target: str, status: int = 302) -> str:
        """``path`` always redirects to ``target`` (a path or an absolute URL)."""
        with self.lock:
            self.entries[path] = _Entry(None, [], Fault(redirect=target, redirect_status=status))
        return self.url(path)

    def set_faults(self, path: str, faults: Iterable[Fault | None] = (), default: Fault | None = None):
        """New fault queue for ``path``; the request count for the queue starts again at 0."""
        with self.lock:
            e = self.entries[path]
            e.faults, e.default, e.served = list(faults), default, 0

    def stats(self, path: str) -> PathStats:
        with self.lock:
            recs = [r for r in self.records if r.path == path]
            return PathStats(len(recs), sum(r.body_bytes for r in recs), list(recs))

    def reset_stats(self) -> None:
        with self.lock:
            self.records.clear()

    def _lookup(self, path: str, record: RequestRecord) -> tuple[_Resource | None, Fault | None, bool]:
        """(resource, fault for this request, known path)."""
        with self.lock:
            self.records.append(record)
            entry = self.entries.get(path)
            if entry is not None:
                i = entry.served
                entry.served += 1
                fault = entry.faults[i] if i < len(entry.faults) else entry.default
                return entry.resource, fault, True
        if self.directory is not None:
            candidate = (self.directory / path.lstrip("/")).resolve()
            if candidate.is_file() and self.directory in candidate.parents:
                return _Resource(file=candidate), None, True
        return None, None, False


_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.I)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FaultServer/1"
    timeout = 30  # idle keep-alive connections die eventually
    server: FaultServer

    def log_message(self, format, *args):  # noqa: A002 - keep test output clean
        pass

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    # ---- helpers
    def _simple(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head=False):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head:
            self.wfile.write(body)
            self._record.body_bytes += len(body)

    def _serve(self, head: bool):
        path = unquote(urlsplit(self.path).path)
        self._record = RequestRecord(path, self.command, dict(self.headers.items()))
        res, fault, known = self.server._lookup(path, self._record)
        fault = fault or Fault()
        if fault.delay:
            time.sleep(fault.delay)
        if fault.redirect:
            target = fault.redirect
            if target.startswith("/"):
                target = self.server.url(target)
            self._record.status = fault.redirect_status
            return self._simple(fault.redirect_status, b"", {"Location": target}, head)
        if fault.status:
            self._record.status = fault.status
            hdrs = dict(fault.headers)
            if fault.retry_after is not None:
                hdrs["Retry-After"] = fault.retry_after
            return self._simple(fault.status, f"fault {fault.status}\n".encode(), hdrs, head)
        if res is None:
            self._record.status = 404
            return self._simple(404, b"not found\n", {}, head)

        etag = fault.etag or res.etag
        headers = {"ETag": etag, "Last-Modified": res.last_modified, "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        size = res.size
        if fault.gzip:
            body = gzip.compress(res.read(0, size), mtime=0)
            headers["Content-Encoding"] = "gzip"
            headers.update(fault.headers)
            return self._send(200, headers, body, 0, len(body), fault, head, gz=True)
        start, end, status = 0, size, 200
        m = _RANGE.match(self.headers.get("Range") or "")
        if m and not fault.ignore_range and (m.group(1) or m.group(2)):
            if_range = self.headers.get("If-Range")
            if if_range is None or fault.ignore_if_range or if_range in (res.etag, res.last_modified):
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)) + 1, size) if m.group(2) else size
                else:  # suffix range: last N bytes
                    start, end = max(size - int(m.group(2)), 0), size
                if start >= size or start >= end:
                    self._record.status = 416
                    return self._simple(416, b"", {"Content-Range": f"bytes */{size}", **headers,
                                                   **fault.headers}, head)
                status = 206
                if fault.range_offset is not None:
                    start = min(fault.range_offset, size - 1)
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers.update(fault.headers)
        return self._send(status, headers, res, start, end, fault, head)

    def _send(self, status, headers, source, start, end, fault: Fault, head, gz=False):
        self._record.status = status
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(end - start))
        if fault.drop_after is not None or fault.short_body is not None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if head:
            return
        limit = end - start
        for cut in (fault.drop_after, fault.short_body):
            if cut is not None:
                limit = min(limit, cut)
        plain = (fault.tamper is None and fault.drip is None and not gz
                 and isinstance(source, _Resource) and source.file is not None)
        sock = self.connection
        try:
            if plain and not isinstance(sock, ssl.SSLSocket):
                with open(source.file, "rb") as f:
                    sent = sock.sendfile(f, start, limit)
                    self._record.body_bytes += sent
            else:
                self._write_chunks(source, start, start + limit, fault)
        except OSError:
            self.close_connection = True
            return
        if fault.drop_after is not None and fault.drop_after < end - start:
            _wait_sent(sock)  # else the RST also discards bytes still queued for sending
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST: the client sees a connection reset
        elif fault.short_body is not None and fault.short_body < end - start:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # clean FIN: the body is just short
            except OSError:
                pass

    def _write_chunks(self, source, start: int, stop: int, fault: Fault):
        step = fault.drip_chunk if fault.drip else 256 * 1024
        pos = start
        while pos < stop:
            if self.server.stopping.is_set():
                raise ConnectionAbortedError("server stopping")
            n = min(step, stop - pos)
            chunk = source[pos:pos + n] if isinstance(source, bytes) else source.read(pos, pos + n)
            if fault.tamper is not None and pos <= fault.tamper < pos + n:
                b = bytearray(chunk)
                b[fault.tamper - pos] ^= 0xFF
                chunk = bytes(b)
            self.wfile.write(chunk)
            self._record.body_bytes += len(chunk)
            pos += n
            if fault.drip:
                time.sleep(n / fault.drip)


def _wait_sent(sock, timeout: float = 5.0) -> None:
    """Wait until the kernel has no unsent/unacknowledged bytes for ``sock`` (Linux SIOCOUTQ)."""
    try:
        import fcntl
        import termios
    except ImportError:  # pragma: no cover - not Linux/Unix
        time.sleep(0.05)
        return
    buf = bytearray(4)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf)
        except OSError:
            return
        if int.from_bytes(buf, "little") == 0:
            return
        time.sleep(0.002)


@pytest.fixture if pytest is not None else (lambda f: f)
def fault_server():
    """A started :class:`FaultServer` on 127.0.0.1 (ephemeral port), stopped at teardown."""
    server = FaultServer().start()
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Serve a directory over HTTP with Range/ETag support.")
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args(argv)
    server = FaultServer(args.host, args.port, directory=args.dir)
    print(f"serving {args.dir.resolve()} at http://{args.host}:{server.port}/", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def tls_with_test_ca(folder: Path, name: str = "ca.pem") -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 signed by a fresh test CA, and that CA's PEM file
    (what a client is told to trust: ``verify=``, ``REQUESTS_CA_BUNDLE``, ``SSL_CERT_FILE``)."""
    import pytest

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ca_file = Path(folder) / name
    ca.cert_pem.write_to_path(str(ca_file))
    return ctx, ca_file


if __name__ == "__main__":
    main()

