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
drive them directly; the I/O lives in :class:`_HttpDownload` and :func:`_copy_file`.
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
import hashlib
import logging
import os
import random
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Protocol, Sequence
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

from .atomic import DamagedStateFile, atomic_write_json, read_state
from .errors import CacheError, DownloadError, IntegrityError, ZooError
from .redact import redact
from .safepath import open_file

if TYPE_CHECKING:  # pragma: no cover
    import requests

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"
def _user_agent() -> str:
    from . import __version__

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


class Sink(Protocol):
    """Optional tee, e.g. an unpacker consuming the stream while it downloads."""

    def restart(self) -> None: ...  # the file (re)starts from byte 0; called before any write

    def write(self, chunk: bytes) -> None: ...  # every byte of the file, in order (maybe from a helper thread)


@dataclass(frozen=True)
class PartialState:
    """What the sidecar remembers about a partial file."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    expected_size: int | None = None
    total: int | None = None  # full size the server announced (decoded size unknown if encoded)
    resumable: bool = True  # False once the server content-encoded the body: offsets mean nothing


# --------------------------------------------------------------------------- sidecar

def sidecar_path(partial: Path) -> Path:
    partial = Path(partial)
    return partial.with_name(partial.name + SIDECAR_SUFFIX)


def read_sidecar(partial: Path) -> PartialState | None:
    """The sidecar's state, or None when it is missing or unreadable (never trusted blindly)."""
    try:
        raw = read_state(sidecar_path(partial), cap=64 << 10)
        if not isinstance(raw, dict):
            return None
        state = PartialState(url=str(raw["url"]), etag=raw.get("etag"),
                             last_modified=raw.get("last_modified"),
                             expected_size=raw.get("expected_size"), total=raw.get("total"),
                             resumable=bool(raw.get("resumable", True)))
    except (DamagedStateFile, OSError, ValueError, KeyError, TypeError):
        return None
    ok_str = all(v is None or isinstance(v, str) for v in (state.etag, state.last_modified))
    ok_int = all(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
                 for v in (state.expected_size, state.total))
    return state if ok_str and ok_int else None


def write_sidecar(partial: Path, state: PartialState) -> None:
    """Write the sidecar atomically (temp file + os.replace)."""
    atomic_write_json(sidecar_path(partial), {"version": 1, **asdict(state)})


def remove_partial(partial: Path) -> None:
    """Delete a partial file and its sidecar (missing files are fine)."""
    for p in (Path(partial), sidecar_path(partial)):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


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


# --------------------------------------------------------------------------- verification

def _integrity_error(message: str, *, label: str | None, url: str, expected_sha256: str | None,
                     actual_sha256: str | None, expected_size: int | None, actual_size: int,
                     hint: str | None = None) -> IntegrityError:
    who = f"[{label}] " if label else ""
    text = (f"{who}{message}: {url}\n"
            f"  expected sha256 {expected_sha256 or '(not pinned)'}, size "
            f"{expected_size if expected_size is not None else '(unknown)'}\n"
            f"  actual   sha256 {actual_sha256 or '(not computed)'}, size {actual_size}\n"
            f"  the partial download was deleted")
    return IntegrityError(text, hint or "the server delivered different bytes than the catalog "
                          "pins; retry, try another mirror, or update the catalog if upstream "
                          "re-published the file", model_id=label, url=url, expected_sha256=expected_sha256,
                          actual_sha256=actual_sha256, expected_size=expected_size, actual_size=actual_size)


def _verify(partial: Path, *, digest: str, size: int, url: str, label: str | None,
            expected_size: int | None, expected_sha256: str | None) -> None:
    """Size then sha256; on failure delete the partial + sidecar and raise IntegrityError."""
    bad = None
    if expected_size is not None and size != expected_size:
        bad = "size mismatch"
    elif expected_sha256 and digest != expected_sha256.strip().lower():
        bad = "sha256 mismatch"
    if bad:
        remove_partial(partial)
        raise _integrity_error(bad, label=label, url=url, expected_sha256=expected_sha256,
                               actual_sha256=digest, expected_size=expected_size, actual_size=size)


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
    try:
        sidecar_path(partial).unlink()
    except FileNotFoundError:
        pass
    hasher, size = hashlib.sha256(), 0
    total = expected_size if expected_size is not None else src.stat().st_size
    if sink is not None:
        sink.restart()
    cap = expected_size if expected_size is not None else policy.max_unknown_size
    with open(src, "rb") as r, open_file(partial, "wb") as w:
        while chunk := r.read(policy.chunk_size):
            if size + len(chunk) > cap:
                w.close()
                remove_partial(partial)
                if expected_size is None:
                    raise DownloadError(f"the file is larger than {cap} bytes and the catalog gives no size; "
                                        "refusing to read on", model_id=label, url=url,
                                        hint="add size_bytes to the catalog entry if the file really is this big")
                raise _integrity_error("more bytes than expected", label=label, url=url,
                                       expected_sha256=expected_sha256, actual_sha256=None,
                                       expected_size=expected_size, actual_size=size + len(chunk))
            try:
                w.write(chunk)
            except OSError as exc:
                raise CacheError(f"cannot write {partial}: {exc.strerror or exc}",
                                 "free some disk space or point the cache elsewhere") from exc
            hasher.update(chunk)
            if sink is not None:
                sink.write(chunk)
            size += len(chunk)
            if progress is not None:
                progress(size, total)
    digest = hasher.hexdigest()
    _verify(partial, digest=digest, size=size, url=url, label=label,
            expected_size=expected_size, expected_sha256=expected_sha256)
    return DownloadResult(partial, digest, size, size, False, 1)


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


class _Bearer:
    """requests auth: ``Authorization: Bearer <token>`` (takes precedence over ~/.netrc)."""

    def __init__(self, token: str):
        self.token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


@dataclass
class _Outcome:
    kind: str  # "done" | "retry" | "refetch" | "continue"
    reason: str = ""
    retry_after: float | None = None
    slow: bool = False


def _looks_like_zlib(data: bytes) -> bool:
    """'deflate' is zlib-wrapped per RFC 9110, but some servers send raw deflate."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


class _HttpDownload:
    """The I/O half: requests, the partial file, the hasher and the sink."""

    def __init__(self, url, partial, *, expected_size, expected_sha256, policy, progress, sink,
                 session, sleep, clock, label, token=None):
        self.url, self.partial = url, partial
        self.expected_size, self.expected_sha256 = expected_size, expected_sha256
        self.policy, self.progress, self.sink = policy, progress, sink
        self.session, self.sleep, self.clock, self.label = session, sleep, clock, label
        self.hasher: hashlib._Hash | None = None  # None: not yet in sync with the file on disk
        self.size = 0  # bytes in the partial file
        self.total: int | None = expected_size
        self.state: PartialState | None = None
        self.wire = 0
        self.attempts = 0
        self.resumed = False
        self.high_water = 0  # most bytes the partial held for the current version of the file
        self.changes = 0  # restarts because the file changed on the server
        self.deadline_at: float | None = None
        self.pool = None  # one helper thread for write + hash (set by run())
        self.token = token  # bearer token for self.url's host only

    # ---- errors
    def _error(self, message: str, hint: str | None = None) -> DownloadError:
        return DownloadError(message, model_id=self.label, url=self.url, hint=hint)

    def _kept(self, then: str) -> str:
        """The hint's first half: what is left on disk (only say "kept" when bytes arrived)."""
        if self.size > 0:
            return f"the partial download ({self.size} bytes) is kept and resumed by the next run; {then}"
        return f"nothing was downloaded; {then}"

    def _deadline_error(self, last: str | None) -> DownloadError:
        got = f"{self.size} of {self.total if self.total is not None else '?'} bytes"
        return self._error(
            f"download did not finish within the {self.policy.deadline:g}s deadline ({got}"
            + (f"; last problem: {last}" if last else "") + ")",
            hint=self._kept("raise the deadline (--deadline) or try again later"))

    # ---- the partial file
    def _restart(self, why: str, changed: bool = False) -> None:
        """Truncate the partial and start over from byte 0."""
        if why:
            log.info("%s: restarting from byte 0: %s", self.label or redact(self.url), why)
        with open_file(self.partial, "wb"):
            pass
        self.hasher, self.size, self.resumed = hashlib.sha256(), 0, False
        if changed:
            self.high_water = 0
            self.changes += 1
            if self.changes > self.policy.max_attempts_without_progress:
                raise self._error(f"the file changed on the server {self.changes} times during "
                                  "the download", hint="try again later or use another mirror")
        if self.sink is not None:
            self.sink.restart()

    def _sync(self) -> None:
        """Hash the prefix already on disk once, replaying it into the sink."""
        if self.hasher is not None:
            return
        hasher = hashlib.sha256()
        if self.sink is not None:
            self.sink.restart()
        done = 0
        with open_file(self.partial, "rb") as f:
            while done < self.size and (chunk := f.read(min(self.policy.chunk_size, self.size - done))):
                hasher.update(chunk)
                if self.sink is not None:
                    self.sink.write(chunk)
                done += len(chunk)
        if done != self.size:  # the file shrank under us: start over
            self._restart("partial file shorter than recorded")
            return
        self.hasher = hasher

    def _write(self, f, data: bytes) -> None:
        if not data:
            return
        if self.expected_size is None and self.size + len(data) > self.policy.max_unknown_size:
            f.close()
            remove_partial(self.partial)
            raise self._error(f"the server sent more than {self.policy.max_unknown_size} bytes and the catalog "
                              "gives no size; refusing to read on",
                              hint="add size_bytes to the catalog entry if the file really is this big")
        if self.expected_size is not None and self.size + len(data) > self.expected_size:
            f.close()
            remove_partial(self.partial)
            raise _integrity_error("more bytes than expected", label=self.label, url=self.url,
                                   expected_sha256=self.expected_sha256, actual_sha256=None,
                                   expected_size=self.expected_size, actual_size=self.size + len(data))
        try:
            f.write(data)
        except OSError as exc:  # local disk, not the network: retrying would not help
            raise CacheError(f"cannot write {self.partial}: {exc.strerror or exc}",
                             "free some disk space or point the cache elsewhere") from exc
        self.hasher.update(data)
        if self.sink is not None:
            self.sink.write(data)
        self.size += len(data)
        if self.progress is not None:
            self.progress(self.size, self.total)

    def _save_state(self, headers: Mapping[str, str], total: int | None, encoded: bool,
                    keep_validators: bool = False) -> None:
        """Record the response's validators (a 206 may omit them: then keep the stored ones)."""
        old = self.state if keep_validators else None
        etag = headers.get("etag") or (old.etag if old else None)
        lm = headers.get("last-modified") or (old.last_modified if old else None)
        new = PartialState(url=self.url, etag=etag, last_modified=lm,
                           expected_size=self.expected_size, total=total, resumable=not encoded)
        if new != self.state:
            write_sidecar(self.partial, new)
            self.state = new

    # ---- the loop
    def run(self) -> DownloadResult:
        import requests

        from concurrent.futures import ThreadPoolExecutor

        own_session = self.session is None
        if own_session:
            self.session = requests.Session()  # honours HTTPS_PROXY / NO_PROXY and REQUESTS_CA_BUNDLE
            from .config import ca_bundle

            self.session.verify = ca_bundle() or True  # ... and SSL_CERT_FILE, which requests ignores
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="zoo-download-write")
        try:
            return self._run()
        finally:
            self.pool.shutdown(wait=True)
            if own_session:
                self.session.close()

    def _run(self) -> DownloadResult:
        p = self.policy
        if p.deadline is not None:
            self.deadline_at = self.clock() + p.deadline
        self.state = read_sidecar(self.partial)
        try:
            on_disk = os.lstat(self.partial).st_size
        except FileNotFoundError:
            on_disk = 0
        offset, why = resume_offset(on_disk, self.state, self.url, self.expected_size)
        if offset:
            self.size = self.high_water = offset  # hashed lazily, once a 206 is accepted
            if self.state.total is not None and self.total is None:
                self.total = self.state.total
        else:
            self.state = None
            self._restart(why if on_disk else "")
            try:
                sidecar_path(self.partial).unlink()
            except FileNotFoundError:
                pass
        no_progress = slow = 0
        last: str | None = None
        while True:
            if self.deadline_at is not None and self.clock() >= self.deadline_at:
                raise self._deadline_error(last)
            self.attempts += 1
            before = self.high_water
            out = self._attempt()
            if out.kind == "done":
                return self._finish()
            last = out.reason
            progressed = self.size > before
            self.high_water = max(self.high_water, self.size)
            no_progress = 0 if progressed else no_progress + 1
            slow = slow + 1 if out.slow else 0
            log.info("%s: attempt %d: %s (%d bytes so far)", self.label or redact(self.url),
                     self.attempts, out.reason, self.size)
            if slow >= 2:
                raise self._error(f"server too slow: {out.reason}",
                                  hint=self._kept("retry later or use another mirror"))
            if no_progress >= p.max_attempts_without_progress:
                raise self._error(f"giving up after {no_progress} attempts in a row without "
                                  f"progress; last problem: {out.reason}",
                                  hint=self._kept("try again later, use a mirror (--mirror) or the "
                                                  "cache (--offline), or check proxy settings"))
            if out.kind in ("continue", "refetch"):
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

        net_errors = (requests.RequestException, urllib3.exceptions.HTTPError, OSError, zlib.error)
        if self.size and (self.state is None or not self.state.resumable
                          or if_range_value(self.state) is None):
            self._restart("the server gave no validator (ETag/Last-Modified) or encodes the body; "
                          "not resuming by offset")
        offset = self.size
        headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = if_range_value(self.state)
        try:
            resp = self._request(headers)
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
        except net_errors as exc:
            host = _unresolved_host(exc)
            if host is not None:  # DNS will not answer differently in a second: say so now
                raise self._error(f"cannot resolve host {host!r} (no DNS answer)",
                                  hint="check the network and the URL, use a mirror (--mirror) or the cache "
                                       "(--offline), or set HTTPS_PROXY/HTTP_PROXY if you need a proxy") from None
            return _Outcome("retry", f"{type(exc).__name__}: {exc}")
        try:
            d = decide(resp.status_code, resp.headers, offset, self.expected_size, self.state)
            if d.action is Action.RETRY:
                return _Outcome("retry", d.reason, retry_after=d.retry_after)
            if d.action is Action.FAIL:
                if d.integrity:
                    remove_partial(self.partial)
                    raise _integrity_error(d.reason, label=self.label, url=self.url,
                                           expected_sha256=self.expected_sha256, actual_sha256=None,
                                           expected_size=self.expected_size, actual_size=0, hint=d.hint)
                raise self._error(d.reason, hint=d.hint)
            if d.action is Action.REFETCH:
                if d.encoded and self.state is not None:
                    self._save_state({}, self.state.total, encoded=True, keep_validators=True)
                self._restart(d.reason, changed=d.changed)
                return _Outcome("refetch", d.reason)
            if d.action is Action.COMPLETE:
                self.resumed = True
                return _Outcome("done", d.reason)
            h = {k.lower(): v for k, v in resp.headers.items()}
            if d.action is Action.WRITE_FROM_ZERO:
                changed = self.state is None or (
                    (h.get("etag"), h.get("last-modified")) != (self.state.etag, self.state.last_modified))
                if offset or self.size:
                    self._restart(d.reason, changed=changed)
                elif self.hasher is None:
                    self._restart("")
            else:  # APPEND
                self._sync()
                if self.size != offset:  # _sync found the file damaged and restarted
                    return _Outcome("refetch", "partial file changed on disk")
                if offset > 0:
                    from .units import format_bytes

                    log.info("%s: resuming at %s of %s", self.label or self.url, format_bytes(offset),
                             format_bytes(d.total if d.total is not None else self.total))
                self.resumed = self.resumed or offset > 0
            if d.total is not None:
                self.total = d.total
            self._save_state(h, d.total, d.encoded, keep_validators=d.action is Action.APPEND)
            return self._stream(resp, h, d)
        except ZooError:
            raise
        except net_errors as exc:
            return _Outcome("retry", f"{type(exc).__name__}: {exc}")
        finally:
            resp.close()

    def _request(self, headers: dict):
        current, visited = self.url, [self.url]
        home = urlsplit(self.url).netloc.rpartition("@")[2].lower()
        while True:
            same_host = urlsplit(current).netloc.rpartition("@")[2].lower() == home
            auth = _Bearer(self.token) if self.token and same_host else None  # never to another host
            resp = self.session.get(current, headers=headers, stream=True, allow_redirects=False,
                                    timeout=self._timeout(), auth=auth)
            if resp.status_code not in REDIRECT_STATUSES:
                return resp
            location = resp.headers.get("location")
            resp.close()
            if not location:
                raise self._error(f"HTTP {resp.status_code} redirect without a Location header",
                                  hint="try another mirror")
            try:
                current = redirect_target(current, location, visited, self.policy.max_redirects)
            except ValueError as exc:
                raise self._error(str(exc), hint="the server's redirects are unsafe or broken; "
                                  "try another mirror") from None
            visited.append(current)

    def _stream(self, resp, h: Mapping[str, str], d: Decision) -> _Outcome:
        p = self.policy
        enc = _content_encoding(h)
        decoder = None
        if enc in ("gzip", "x-gzip"):
            decoder = zlib.decompressobj(31)
        length = _int_header(h, "content-length")
        got = 0
        win_t, win_bytes = self.clock(), 0
        raw = resp.raw
        with open_file(self.partial, "r+b") as f:
            f.seek(self.size)
            pending = None  # the previous chunk's write+hash, overlapping the next recv

            def put(chunk: bytes) -> None:
                nonlocal pending
                if pending is not None:
                    pending.result()
                pending = self.pool.submit(self._write, f, chunk) if chunk else None

            try:
                while True:
                    data = raw.read1(p.chunk_size, decode_content=False)
                    now = self.clock()
                    if not data:
                        break
                    got += len(data)
                    self.wire += len(data)
                    win_bytes += len(data)
                    if enc == "deflate" and decoder is None:
                        decoder = zlib.decompressobj(15 if _looks_like_zlib(data) else -15)
                    put(decoder.decompress(data) if decoder is not None else data)
                    if self.deadline_at is not None and now >= self.deadline_at:
                        put(b"")
                        raise self._deadline_error("transfer still running")
                    if p.min_rate and now - win_t >= p.min_rate_window:
                        rate = win_bytes / (now - win_t)
                        if rate < p.min_rate:
                            return _Outcome("retry", f"{rate:.0f} B/s over {now - win_t:.1f}s, below "
                                            f"the minimum of {p.min_rate:.0f} B/s", slow=True)
                        win_t, win_bytes = now, 0
                if enc is not None and decoder is None:
                    return _Outcome("retry", "compressed body ended before any byte")
                if decoder is not None:
                    put(decoder.flush())
                    if not decoder.eof:
                        return _Outcome("retry", f"compressed body ended early after {got} bytes")
            finally:
                put(b"")  # wait for the last write (re-raises its IntegrityError, if any)
        if length is not None and got < length:
            return _Outcome("retry", f"body ended after {got} of {length} bytes")
        if self.total is not None and self.size < self.total:
            return _Outcome("continue", f"response ended at byte {self.size} of {self.total}")
        return _Outcome("done")

    def _finish(self) -> DownloadResult:
        self._sync()
        digest = self.hasher.hexdigest()
        _verify(self.partial, digest=digest, size=self.size, url=self.url, label=self.label,
                expected_size=self.expected_size, expected_sha256=self.expected_sha256)
        if self.progress is not None:
            self.progress(self.size, self.size)
        return DownloadResult(self.partial, digest, self.size, self.wire, self.resumed, self.attempts)
