"""One resumable, verified HTTP(S) (or file://) download into a partial file.

    download(url, partial, expected_size=..., expected_sha256=...) -> DownloadResult

* The bytes land in ``partial``; next to it ``<partial>.json`` (the sidecar, written
  atomically) records url, ETag, Last-Modified, sizes and whether byte offsets can be
  resumed, so a *later process* can continue with ``Range`` + ``If-Range``.
* sha256 is computed while the bytes arrive (a resumed prefix is hashed once, from disk,
  and replayed into the optional ``sink``); the digest decides in the end: on a mismatch
  the partial and its sidecar are deleted and :class:`IntegrityError` is raised.
* Retries: connection errors, timeouts, truncated bodies, 5xx and 429 (``Retry-After``
  honoured) back off exponentially with full jitter; the bound counts *consecutive
  attempts that added no bytes*, so a flaky link that keeps delivering still finishes.
  Other 4xx fail at once. A total ``deadline`` and a minimum throughput stop a server
  that drips bytes. Redirects are followed by hand (count, loops, no https -> http).
* ``Content-Encoding: gzip/deflate`` despite ``Accept-Encoding: identity`` is decoded
  (the digest is of the decoded tarball) and never resumed by offset.

The decisions are pure functions (:func:`resume_offset`, :func:`decide`,
:func:`redirect_target`, :func:`parse_retry_after`, :func:`backoff_delay`) so tests can
drive them directly; the loop over attempts lives in :class:`_HttpDownload` and
:func:`_copy_file`, the partial file's bytes and bookkeeping in :class:`zoo.fetching.partial.PartialFile`.
``sleep`` and ``clock`` are injectable so tests never wait for a real backoff.

Speed: writing + hashing a chunk runs on one helper thread while the next chunk is
received (hashlib and file writes release the GIL), so ``sink.write`` and ``progress``
are called from that helper thread - one call at a time, in order, never concurrently
with ``sink.restart``.
Importing this module does not import ``requests``; :func:`download` does.
"""

from __future__ import annotations

import email.utils
import enum
import logging
import random
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

from ..errors import DownloadError, ZooError
from .partial import PartialFile, PartialState, Sink, forget_sidecar, integrity_error, read_sidecar, remove_partial
from .._util.redact import redact

if TYPE_CHECKING:  # pragma: no cover
    import requests

log = logging.getLogger(__name__)

def _user_agent() -> str:
    from .. import __version__

    return f"mobilenet-zoo/{__version__} (+resumable downloader)"


USER_AGENT = _user_agent()
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_RETRY_STATUSES = frozenset({408, 429})
_rng = random.Random()  # module level so a test can seed or replace it


# --------------------------------------------------------------------------- values

@dataclass(frozen=True)
class DownloadPolicy:
    connect_timeout: float = 10
    read_timeout: float = 30
    max_attempts_without_progress: int = 5  # consecutive attempts that added no bytes
    backoff_base: float = 0.5
    backoff_max: float = 30.0  # exponential with full jitter
    deadline: float | None = None  # seconds for the whole download, all retries included
    min_rate: float | None = 1024  # bytes/s averaged over min_rate_window; below -> abort attempt
    min_rate_window: float = 30.0
    max_redirects: int = 5
    chunk_size: int = 1 << 20
    max_unknown_size: int = 2 << 30  # cap when the catalog gives no size (the biggest tarball is ~0.1 GB)


@dataclass
class DownloadResult:
    path: Path
    sha256: str
    size: int
    bytes_transferred: int  # bytes received over the wire in this call
    resumed: bool
    attempts: int


# --------------------------------------------------------------------------- pure decisions

def if_range_value(state: PartialState | None) -> str | None:
    """The validator to send in If-Range: a strong ETag, else Last-Modified, else None."""
    if state is None:
        return None
    if state.etag and not state.etag.startswith("W/"):
        return state.etag
    return state.last_modified or None


def resume_offset(partial_size: int, state: PartialState | None, url: str,
                  expected_size: int | None) -> tuple[int, str]:
    """Where a new call should start: ``(partial_size, "resume")`` or ``(0, why not)``."""
    if partial_size <= 0:
        return 0, "no partial file"
    if state is None:
        return 0, "no sidecar next to the partial file"
    if state.url != url:
        return 0, "the partial file belongs to another url"
    if expected_size is not None and state.expected_size is not None \
            and state.expected_size != expected_size:
        return 0, "the expected size changed since the partial was started"
    if not state.resumable:
        return 0, "the server content-encodes this file; byte offsets cannot be resumed"
    if if_range_value(state) is None:
        return 0, "no ETag or Last-Modified stored; refusing to resume blindly"
    limit = expected_size if expected_size is not None else state.total
    if limit is not None and partial_size > limit:
        return 0, f"the partial file ({partial_size} bytes) is larger than the file ({limit})"
    return partial_size, "resume"


def parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None] | None:
    """``bytes a-b/t`` -> (a, b, t); ``bytes */t`` -> (None, None, t); t may be None for ``*``."""
    if not value:
        return None
    try:
        unit, _, spec = value.strip().partition(" ")
        if unit.lower() != "bytes":
            return None
        rng, _, total_s = spec.strip().partition("/")
        total = None if total_s.strip() == "*" else int(total_s)
        if rng.strip() == "*":
            return None, None, total
        a, _, b = rng.partition("-")
        start, end = int(a), int(b)
        if start < 0 or end < start or (total is not None and end >= total):
            return None
        return start, end, total
    except ValueError:
        return None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def backoff_delay(failures: int, policy: DownloadPolicy, retry_after: float | None = None,
                  rng: random.Random | None = None) -> float:
    """Delay before the next attempt: Retry-After if given, else full jitter.

    ``failures`` is the number of consecutive attempts without progress (0 after an attempt
    that made progress, which still waits a little before reconnecting).
    """
    if retry_after is not None:
        return min(max(retry_after, 0.0), policy.backoff_max)
    cap = min(policy.backoff_max, policy.backoff_base * (2 ** max(failures - 1, 0)))
    return (rng or _rng).uniform(0, cap)


def redirect_target(current: str, location: str, visited: Sequence[str], max_redirects: int) -> str:
    """The absolute URL a redirect points to; ValueError (with the reason) if it is refused."""
    target = urljoin(current, location.strip())
    cur_scheme, new_scheme = urlsplit(current).scheme.lower(), urlsplit(target).scheme.lower()
    if cur_scheme == "https" and new_scheme == "http":
        raise ValueError(f"refusing redirect from https to plain http ({target})")
    if new_scheme not in ("http", "https"):
        raise ValueError(f"refusing redirect to unsupported scheme {new_scheme!r} ({target})")
    if target in visited:
        raise ValueError(f"redirect loop: {' -> '.join([*visited, target])}")
    if len(visited) > max_redirects:  # visited holds the original url plus every hop
        raise ValueError(f"more than {max_redirects} redirects ({' -> '.join([*visited, target])})")
    return target


class Action(enum.Enum):
    WRITE_FROM_ZERO = "write-from-zero"  # 200: the body is the whole file
    APPEND = "append"  # 206 at the right offset: the body continues the partial
    REFETCH = "refetch"  # unusable answer: discard the partial, ask again without Range
    COMPLETE = "complete"  # 416 and the partial already is the whole file: check its hash
    RETRY = "retry"  # transient: back off and try again
    FAIL = "fail"  # permanent: give up now


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""
    total: int | None = None  # full (decoded) file size when known
    encoded: bool = False  # body is content-encoded (gzip/deflate)
    retry_after: float | None = None
    hint: str | None = None
    integrity: bool = False  # FAIL because the size contradicts expected_size
    changed: bool = False  # REFETCH because the file changed on the server (new ETag...)


def _content_encoding(headers: Mapping[str, str]) -> str | None:
    enc = (headers.get("content-encoding") or "").strip().lower()
    return None if enc in ("", "identity") else enc


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    try:
        v = int(headers.get(name, ""))
        return v if v >= 0 else None
    except (TypeError, ValueError):
        return None


def decide(status: int, headers: Mapping[str, str], offset: int, expected_size: int | None,
           state: PartialState | None, now: float | None = None) -> Decision:
    """What to do with a (non-redirect) response to a request for ``bytes=offset-``.

    ``offset`` is 0 when no Range was sent; ``state`` is what the sidecar holds (the
    validators the If-Range was built from). ``headers`` keys may have any case.
    """
    h = {k.lower(): v for k, v in headers.items()}
    enc = _content_encoding(h)
    if enc is not None and enc not in ("gzip", "x-gzip", "deflate"):
        return Decision(Action.FAIL, f"server sent an unsupported Content-Encoding {enc!r}",
                        hint="use another mirror")
    if status == 200:
        length = _int_header(h, "content-length")
        if enc is None and length is not None and expected_size is not None and length != expected_size:
            return Decision(Action.FAIL, f"server announces {length} bytes, the catalog expects "
                            f"{expected_size}", integrity=True,
                            hint="the mirror serves a different file; try another mirror")
        total = expected_size if enc else (length if length is not None else expected_size)
        why = "server ignored Range or If-Range says the file changed" if offset else ""
        return Decision(Action.WRITE_FROM_ZERO, why, total=total, encoded=enc is not None)
    if status == 206:
        cr = parse_content_range(h.get("content-range"))
        if enc is not None:
            return Decision(Action.REFETCH, "206 with a Content-Encoding: offsets are not resumable",
                            encoded=True)
        if cr is None or cr[0] is None:
            return Decision(Action.REFETCH, f"206 with unusable Content-Range {h.get('content-range')!r}")
        start, _end, total = cr
        if start != offset:
            return Decision(Action.REFETCH, f"206 starts at byte {start}, asked for {offset}")
        if expected_size is not None and total is not None and total != expected_size:
            return Decision(Action.REFETCH, f"206 says the file has {total} bytes, expected {expected_size}")
        # Any validator that changed means another version of the file: splicing it onto the
        # partial would mix two files, whatever If-Range should have made the server do.
        etag = h.get("etag")
        if state is not None and state.etag and etag and etag != state.etag:
            return Decision(Action.REFETCH, f"ETag changed ({state.etag} -> {etag})", changed=True)
        lm = h.get("last-modified")
        if state is not None and state.last_modified and lm and lm != state.last_modified:
            return Decision(Action.REFETCH, "Last-Modified changed", changed=True)
        if state is not None and state.total is not None and total is not None and total != state.total:
            return Decision(Action.REFETCH, f"the file's size changed ({state.total} -> {total})", changed=True)
        if state is not None and not state.etag and not lm and not etag:
            return Decision(Action.REFETCH, "206 without any validator: cannot prove it is the same file")
        return Decision(Action.APPEND, total=total if total is not None else expected_size)
    if status == 416:
        cr = parse_content_range(h.get("content-range"))
        server_total = cr[2] if cr else None
        if offset > 0 and ((expected_size is not None and offset == expected_size)
                           or (expected_size is None and server_total == offset)):
            return Decision(Action.COMPLETE, "416: the partial file is already complete", total=offset)
        return Decision(Action.REFETCH, f"416 for bytes={offset}- (server size {server_total})")
    if status in _RETRY_STATUSES or 500 <= status <= 599:
        wall = time.time() if now is None else now
        return Decision(Action.RETRY, f"HTTP {status}",
                        retry_after=parse_retry_after(h.get("retry-after"), wall))
    if status in (404, 410):
        return Decision(Action.FAIL, f"HTTP {status}: the file is not on this server",
                        hint="the url may have moved; try another mirror or update the catalog")
    if status in (401, 403):
        return Decision(Action.FAIL, f"HTTP {status}: access denied",
                        hint="the server refuses this download; try another mirror or check proxies")
    if 400 <= status <= 499:
        return Decision(Action.FAIL, f"HTTP {status}: the server rejected the request",
                        hint="try another mirror")
    return Decision(Action.FAIL, f"unexpected HTTP status {status}", hint="try another mirror")


# --------------------------------------------------------------------------- entry point

def download(url: str, partial: Path, *, expected_size: int | None = None,
             expected_sha256: str | None = None, policy: DownloadPolicy = DownloadPolicy(),
             progress: Callable[[int, int | None], None] | None = None, sink: Sink | None = None,
             session: "requests.Session | None" = None, sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic, label: str | None = None,
             token: str | None = None) -> DownloadResult:
    """Download ``url`` into ``partial`` (resuming it if possible), verified; see the module doc.

    Raises DownloadError (network, HTTP status, redirects, deadline, too slow; the partial
    is kept for a later resume) or IntegrityError (wrong size or sha256; partial deleted).
    """
    partial = Path(partial)
    partial.parent.mkdir(parents=True, exist_ok=True)
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        return _copy_file(url, partial, expected_size=expected_size, expected_sha256=expected_sha256,
                          policy=policy, progress=progress, sink=sink, label=label)
    if scheme not in ("http", "https"):
        raise DownloadError(f"unsupported URL scheme {scheme!r}", model_id=label, url=url,
                            hint="use an http(s):// or file:// url")
    job = _HttpDownload(url, partial, expected_size=expected_size, expected_sha256=expected_sha256,
                        policy=policy, progress=progress, sink=sink, session=session, sleep=sleep,
                        clock=clock, label=label, token=token)
    return job.run()


def _copy_file(url: str, partial: Path, *, expected_size: int | None, expected_sha256: str | None,
               policy: DownloadPolicy, progress, sink, label) -> DownloadResult:
    """file:// (a mirror directory): always a fresh copy, hashed and verified like HTTP."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise DownloadError("file:// urls must be local", model_id=label, url=url)
    src = Path(url2pathname(parts.path))
    if not src.is_file():
        raise DownloadError(f"no such file on the mirror: {src}", model_id=label, url=url,
                            hint="check the mirror directory, or remove it from the mirror list")
    forget_sidecar(partial)
    file = PartialFile(partial, url=url, label=label, expected_size=expected_size, expected_sha256=expected_sha256,
                       chunk_size=policy.chunk_size, max_unknown_size=policy.max_unknown_size, sink=sink,
                       progress=progress)
    if file.total is None:
        file.total = src.stat().st_size
    file.restart()
    with open(src, "rb") as r, file.appending():
        while chunk := r.read(policy.chunk_size):
            file.write(chunk)
    digest = file.verify()
    return DownloadResult(partial, digest, file.size, file.size, False, 1)


def _unresolved_host(exc: BaseException) -> str | None:
    """The host name when ``exc`` (or what caused it) is a DNS failure, else None."""
    import socket

    import urllib3

    seen = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        name_error = getattr(urllib3.exceptions, "NameResolutionError", None)
        if (name_error is not None and isinstance(e, name_error)) or isinstance(e, socket.gaierror):
            conn = getattr(e, "conn", None)
            return getattr(conn, "host", None) or "?"
        stack.extend([getattr(e, "reason", None), e.__cause__, e.__context__,
                      *[a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]])
    return None


def _get_following_redirects(session, url: str, headers: dict, *, token: str | None, max_redirects: int,
                             timeout: Callable[[], tuple[float, float]],
                             fail: Callable[..., DownloadError]):
    """GET ``url``, following redirects by hand (:func:`redirect_target` decides which are safe);
    the bearer token goes to ``url``'s own host only. Returns the first non-redirect response."""
    current, visited = url, [url]
    home = urlsplit(url).netloc.rpartition("@")[2].lower()
    while True:
        same_host = urlsplit(current).netloc.rpartition("@")[2].lower() == home
        auth = _Bearer(token) if token and same_host else None  # never to another host
        resp = session.get(current, headers=headers, stream=True, allow_redirects=False,
                           timeout=timeout(), auth=auth)
        if resp.status_code not in REDIRECT_STATUSES:
            return resp
        location = resp.headers.get("location")
        resp.close()
        if not location:
            raise fail(f"HTTP {resp.status_code} redirect without a Location header", hint="try another mirror")
        try:
            current = redirect_target(current, location, visited, max_redirects)
        except ValueError as exc:
            raise fail(str(exc), hint="the server's redirects are unsafe or broken; try another mirror") from None
        visited.append(current)


class _Bearer:
    """requests auth: ``Authorization: Bearer <token>`` (takes precedence over ~/.netrc)."""

    def __init__(self, token: str):
        self.token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class Next(enum.Enum):
    """How one attempt ended, for the loop: what to do next."""

    DONE = "done"  # the whole file is on disk: verify it
    RETRY = "retry"  # transient trouble: back off, then try again
    AGAIN = "again"  # ask again at once (the partial was restarted, or the body ended early but cleanly)


@dataclass(frozen=True)
class _Outcome:
    next: Next
    reason: str = ""
    retry_after: float | None = None
    slow: bool = False


def _looks_like_zlib(data: bytes) -> bool:
    """'deflate' is zlib-wrapped per RFC 9110, but some servers send raw deflate."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


class _Body:
    """One response body into the partial file: decoded if content-encoded, each chunk written and
    hashed on a helper thread while the next arrives, the deadline and the minimum rate watched."""

    def __init__(self, download: "_HttpDownload"):
        self.download = download

    def receive(self, resp, h: Mapping[str, str]) -> _Outcome:
        dl = self.download
        p, file = dl.policy, dl.file
        enc = _content_encoding(h)
        decoder = zlib.decompressobj(31) if enc in ("gzip", "x-gzip") else None
        length = _int_header(h, "content-length")
        got = 0
        win_t, win_bytes = dl.clock(), 0
        raw = resp.raw
        with file.appending():
            pending = None  # the previous chunk's write+hash, overlapping the next recv

            def put(chunk: bytes) -> None:
                nonlocal pending
                if pending is not None:
                    pending.result()
                pending = dl.pool.submit(file.write, chunk) if chunk else None

            try:
                while True:
                    data = raw.read1(p.chunk_size, decode_content=False)
                    now = dl.clock()
                    if not data:
                        break
                    got += len(data)
                    dl.wire += len(data)
                    win_bytes += len(data)
                    if enc == "deflate" and decoder is None:
                        decoder = zlib.decompressobj(15 if _looks_like_zlib(data) else -15)
                    put(decoder.decompress(data) if decoder is not None else data)
                    if dl.deadline_at is not None and now >= dl.deadline_at:
                        put(b"")
                        raise dl._deadline_error("transfer still running")
                    if p.min_rate and now - win_t >= p.min_rate_window:
                        rate = win_bytes / (now - win_t)
                        if rate < p.min_rate:
                            return _Outcome(Next.RETRY, f"{rate:.0f} B/s over {now - win_t:.1f}s, below "
                                            f"the minimum of {p.min_rate:.0f} B/s", slow=True)
                        win_t, win_bytes = now, 0
                if enc is not None and decoder is None:
                    return _Outcome(Next.RETRY, "compressed body ended before any byte")
                if decoder is not None:
                    put(decoder.flush())
                    if not decoder.eof:
                        return _Outcome(Next.RETRY, f"compressed body ended early after {got} bytes")
            finally:
                put(b"")  # wait for the last write (re-raises its IntegrityError, if any)
        if length is not None and got < length:
            return _Outcome(Next.RETRY, f"body ended after {got} of {length} bytes")
        if file.total is not None and file.size < file.total:
            return _Outcome(Next.AGAIN, f"response ended at byte {file.size} of {file.total}")
        return _Outcome(Next.DONE)


class _HttpDownload:
    """The downloader: loops over attempts, sends (ranged) requests and decides what each
    response means (with :func:`decide`); the bytes and their bookkeeping belong to
    ``self.file`` (:class:`zoo.fetching.partial.PartialFile`), never touched here directly."""

    def __init__(self, url, partial, *, expected_size, expected_sha256, policy, progress, sink,
                 session, sleep, clock, label, token=None):
        self.url, self.policy, self.label = url, policy, label
        self.session, self.sleep, self.clock = session, sleep, clock
        self.token = token  # bearer token for self.url's host only
        self.file = PartialFile(partial, url=url, label=label, expected_size=expected_size,
                                expected_sha256=expected_sha256, chunk_size=policy.chunk_size,
                                max_unknown_size=policy.max_unknown_size, sink=sink, progress=progress)
        self.wire = 0  # bytes received over the wire
        self.attempts = 0
        self.resumed = False
        self.high_water = 0  # most bytes the partial held for the current version of the file
        self.changes = 0  # restarts because the file changed on the server
        self.deadline_at: float | None = None
        self.pool = None  # one helper thread for write + hash (set by run())

    # ---- errors
    def _error(self, message: str, hint: str | None = None, params: tuple[str, ...] = ()) -> DownloadError:
        return DownloadError(message, model_id=self.label, url=self.url, hint=hint, params=params)

    def _kept(self, then: str) -> str:
        """The hint's first half: what is left on disk (only say "kept" when bytes arrived)."""
        if self.file.size > 0:
            return f"the partial download ({self.file.size} bytes) is kept and resumed by the next run; {then}"
        return f"nothing was downloaded; {then}"

    def _deadline_error(self, last: str | None) -> DownloadError:
        total = self.file.total
        got = f"{self.file.size} of {total if total is not None else '?'} bytes"
        return self._error(
            f"download did not finish within the {self.policy.deadline:g}s deadline ({got}"
            + (f"; last problem: {last}" if last else "") + ")",
            hint=self._kept("raise the deadline or try again later"), params=("deadline",))

    # ---- starting over
    def _restart(self, why: str, changed: bool = False) -> None:
        """Start the file over from byte 0, saying why; too many changes on the server stop us."""
        if why:
            log.info("%s: restarting from byte 0: %s", self.label or redact(self.url), why)
        self.file.restart()
        self.resumed = False
        if changed:
            self.high_water = 0
            self.changes += 1
            if self.changes > self.policy.max_attempts_without_progress:
                raise self._error(f"the file changed on the server {self.changes} times during "
                                  "the download", hint="try again later or use another mirror")

    def _sync(self) -> None:
        if not self.file.sync():  # the file shrank under us: start over
            self._restart("partial file shorter than recorded")

    # ---- the loop
    def run(self) -> DownloadResult:
        import requests

        from concurrent.futures import ThreadPoolExecutor

        own_session = self.session is None
        if own_session:
            self.session = requests.Session()  # honours HTTPS_PROXY / NO_PROXY and REQUESTS_CA_BUNDLE
            from ..config import ca_bundle

            self.session.verify = ca_bundle() or True  # ... and SSL_CERT_FILE, which requests ignores
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="zoo-download-write")
        try:
            return self._run()
        finally:
            self.pool.shutdown(wait=True)
            if own_session:
                self.session.close()

    def _run(self) -> DownloadResult:
        p, file = self.policy, self.file
        if p.deadline is not None:
            self.deadline_at = self.clock() + p.deadline
        file.state = read_sidecar(file.path)
        on_disk = file.on_disk()
        offset, why = resume_offset(on_disk, file.state, self.url, file.expected_size)
        if offset:
            file.resume_at(offset)
            self.high_water = offset
        else:
            file.state = None
            self._restart(why if on_disk else "")
            forget_sidecar(file.path)
        no_progress = slow = 0
        last: str | None = None
        while True:
            if self.deadline_at is not None and self.clock() >= self.deadline_at:
                raise self._deadline_error(last)
            self.attempts += 1
            before = self.high_water
            out = self._attempt()
            if out.next is Next.DONE:
                return self._finish()
            last = out.reason
            progressed = file.size > before
            self.high_water = max(self.high_water, file.size)
            no_progress = 0 if progressed else no_progress + 1
            slow = slow + 1 if out.slow else 0
            log.info("%s: attempt %d: %s (%d bytes so far)", self.label or redact(self.url),
                     self.attempts, out.reason, file.size)
            if slow >= 2:
                raise self._error(f"server too slow: {out.reason}",
                                  hint=self._kept("retry later or use another mirror"))
            if no_progress >= p.max_attempts_without_progress:
                raise self._error(f"giving up after {no_progress} attempts in a row without "
                                  f"progress; last problem: {out.reason}",
                                  hint=self._kept("try again later, use a mirror (mirrors) or the "
                                                  "cache (offline), or check proxy settings"),
                                  params=("mirrors", "offline"))
            if out.next is Next.AGAIN:
                continue
            delay = backoff_delay(no_progress, p, out.retry_after)
            if self.deadline_at is not None and self.clock() + delay >= self.deadline_at:
                raise self._deadline_error(last)
            if delay > 0:
                self.sleep(delay)

    def _timeout(self) -> tuple[float, float]:
        connect, read = self.policy.connect_timeout, self.policy.read_timeout
        if self.policy.min_rate:
            read = min(read, max(self.policy.min_rate_window, 0.1))
        if self.deadline_at is not None:
            left = max(self.deadline_at - self.clock(), 0.05)
            connect, read = min(connect, left), min(read, left)
        return connect, read

    def _attempt(self) -> _Outcome:
        import requests
        import urllib3

        file = self.file
        net_errors = (requests.RequestException, urllib3.exceptions.HTTPError, OSError, zlib.error)
        if file.size and (file.state is None or not file.state.resumable
                          or if_range_value(file.state) is None):
            self._restart("the server gave no validator (ETag/Last-Modified) or encodes the body; "
                          "not resuming by offset")
        offset = file.size
        headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = if_range_value(file.state)
        resp = self._send(headers)
        if isinstance(resp, _Outcome):
            return resp
        try:
            return self._act(resp, offset)
        except ZooError:
            raise
        except net_errors as exc:
            return _Outcome(Next.RETRY, f"{type(exc).__name__}: {exc}")
        finally:
            resp.close()

    def _act(self, resp, offset: int) -> _Outcome:
        """Do what the response means (``decide``): fail, retry, restart, or receive its body."""
        file = self.file
        d = decide(resp.status_code, resp.headers, offset, file.expected_size, file.state)
        if d.action is Action.RETRY:
            return _Outcome(Next.RETRY, d.reason, retry_after=d.retry_after)
        if d.action is Action.FAIL:
            if d.integrity:
                remove_partial(file.path)
                raise integrity_error(d.reason, label=self.label, url=self.url,
                                      expected_sha256=file.expected_sha256, actual_sha256=None,
                                      expected_size=file.expected_size, actual_size=0, hint=d.hint)
            raise self._error(d.reason, hint=d.hint)
        if d.action is Action.REFETCH:
            if d.encoded and file.state is not None:
                file.save_state({}, file.state.total, encoded=True, keep_validators=True)
            self._restart(d.reason, changed=d.changed)
            return _Outcome(Next.AGAIN, d.reason)
        if d.action is Action.COMPLETE:
            self.resumed = True
            return _Outcome(Next.DONE, d.reason)
        h = {k.lower(): v for k, v in resp.headers.items()}
        if d.action is Action.WRITE_FROM_ZERO:
            changed = file.state is None or (
                (h.get("etag"), h.get("last-modified")) != (file.state.etag, file.state.last_modified))
            if offset:
                self._restart(d.reason, changed=changed)
            elif file.hasher is None:
                self._restart("")
        else:  # APPEND
            self._sync()
            if file.size != offset:  # _sync found the file damaged and restarted
                return _Outcome(Next.AGAIN, "partial file changed on disk")
            if offset > 0:
                from .._util.units import format_bytes

                log.info("%s: resuming at %s of %s", self.label or self.url, format_bytes(offset),
                         format_bytes(d.total if d.total is not None else file.total))
            self.resumed = self.resumed or offset > 0
        if d.total is not None:
            file.total = d.total
        file.save_state(h, d.total, d.encoded, keep_validators=d.action is Action.APPEND)
        return _Body(self).receive(resp, h)

    def _send(self, headers: dict):
        """The response to one request, or the outcome when none came (errors that cannot pass raise)."""
        import requests
        import urllib3

        try:
            return self._request(headers)
        except ZooError:
            raise
        except requests.exceptions.SSLError as exc:
            raise self._error(f"TLS error: {exc}", hint="the server's certificate cannot be "
                              "verified; check the system clock, proxies and CA bundle "
                              "(behind TLS inspection, point SSL_CERT_FILE or REQUESTS_CA_BUNDLE "
                              "at your company's CA file)") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                requests.exceptions.MissingSchema) as exc:
            raise self._error(f"invalid url: {exc}") from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, zlib.error) as exc:
            host = _unresolved_host(exc)
            if host is not None:  # DNS will not answer differently in a second: say so now
                raise self._error(f"cannot resolve host {host!r} (no DNS answer)",
                                  hint="check the network and the URL, use a mirror (mirrors) or the cache "
                                       "(offline), or set HTTPS_PROXY/HTTP_PROXY if you need a proxy",
                                  params=("mirrors", "offline")) from None
            return _Outcome(Next.RETRY, f"{type(exc).__name__}: {exc}")

    def _request(self, headers: dict):
        return _get_following_redirects(self.session, self.url, headers, token=self.token,
                                        max_redirects=self.policy.max_redirects, timeout=self._timeout,
                                        fail=self._error)

    def _finish(self) -> DownloadResult:
        file = self.file
        self._sync()
        digest = file.verify()
        if file.progress is not None:
            file.progress(file.size, file.size)
        return DownloadResult(file.path, digest, file.size, self.wire, self.resumed, self.attempts)
