"""zoo.fetching.download: pure decisions directly, then every fault against a real loopback server."""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import json
import os
import random
import socket
import time

import pytest
import requests

from tests.http_server import Fault, FaultServer, tls_with_test_ca
from zoo.fetching.download import (Action, DownloadPolicy, backoff_delay, decide, download, if_range_value,
                                   parse_content_range, parse_retry_after, redirect_target, resume_offset)
from zoo.fetching.partial import PartialState, read_sidecar, sidecar_path, write_sidecar
from zoo.errors import DownloadError, IntegrityError

pytestmark = pytest.mark.timeout(30)

DATA = random.Random(1234).randbytes(2_000_000)
SHA = hashlib.sha256(DATA).hexdigest()
SIZE = len(DATA)
FAST = DownloadPolicy(backoff_base=0.01, backoff_max=0.05)


class RecordingSink:
    def __init__(self):
        self.buf = bytearray()
        self.restarts = 0

    def restart(self):
        self.buf.clear()
        self.restarts += 1

    def write(self, chunk):
        self.buf += chunk


class Sleeps(list):
    """An injectable sleep that records instead of waiting."""

    def __call__(self, seconds):
        self.append(seconds)


@pytest.fixture
def part(tmp_path):
    return tmp_path / "cache" / ".partial" / "m@1.part"


def fetch(url, part, **kw):
    kw.setdefault("expected_size", SIZE)
    kw.setdefault("expected_sha256", SHA)
    kw.setdefault("policy", FAST)
    kw.setdefault("sleep", Sleeps())
    kw.setdefault("label", "mobilenet_test")
    return download(url, part, **kw)


# --------------------------------------------------------------------------- pure decisions

STATE = PartialState(url="http://h/f", etag='"abc"', last_modified="Tue, 14 Nov 2023 22:13:20 GMT",
                     expected_size=100, total=100)


@pytest.mark.parametrize("size,state,url,expected,want", [
    (0, STATE, "http://h/f", 100, 0),
    (40, None, "http://h/f", 100, 0),
    (40, STATE, "http://h/other", 100, 0),
    (40, STATE, "http://h/f", 99, 0),  # catalog size changed
    (40, PartialState(url="http://h/f"), "http://h/f", 100, 0),  # no validators: not blindly
    (40, PartialState(url="http://h/f", etag='W/"weak"'), "http://h/f", 100, 0),
    (40, PartialState(url="http://h/f", etag='"e"', resumable=False), "http://h/f", 100, 0),
    (101, STATE, "http://h/f", 100, 0),
    (40, STATE, "http://h/f", 100, 40),
    (40, PartialState(url="http://h/f", last_modified="x"), "http://h/f", None, 40),
])
def test_resume_offset(size, state, url, expected, want):
    assert resume_offset(size, state, url, expected)[0] == want


def test_if_range_prefers_strong_etag():
    assert if_range_value(STATE) == '"abc"'
    assert if_range_value(PartialState(url="u", etag='W/"x"', last_modified="LM")) == "LM"
    assert if_range_value(PartialState(url="u")) is None


def test_parse_content_range():
    assert parse_content_range("bytes 10-99/100") == (10, 99, 100)
    assert parse_content_range("bytes 10-99/*") == (10, 99, None)
    assert parse_content_range("bytes */100") == (None, None, 100)
    for bad in (None, "", "items 1-2/3", "bytes 5-2/10", "bytes 1-200/100", "bytes x-y/z"):
        assert parse_content_range(bad) is None


def test_parse_retry_after():
    now = 1_700_000_000.0
    assert parse_retry_after("7", now) == 7
    assert parse_retry_after(email.utils.formatdate(now + 12, usegmt=True), now) == pytest.approx(12)
    assert parse_retry_after(email.utils.formatdate(now - 50, usegmt=True), now) == 0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


def test_backoff_full_jitter_and_caps():
    p = DownloadPolicy(backoff_base=1, backoff_max=5)
    rng = random.Random(0)
    for failures, cap in ((1, 1), (2, 2), (3, 4), (10, 5)):
        delays = [backoff_delay(failures, p, rng=rng) for _ in range(200)]
        assert 0 <= min(delays) and max(delays) <= cap and max(delays) > cap / 2
    assert backoff_delay(3, p, retry_after=3) == 3
    assert backoff_delay(3, p, retry_after=999) == 5  # capped by backoff_max


def test_decide_statuses():
    d = decide(200, {"Content-Length": "100"}, 0, 100, None)
    assert d.action is Action.WRITE_FROM_ZERO and d.total == 100
    d = decide(200, {"Content-Length": "100"}, 40, 100, STATE)
    assert d.action is Action.WRITE_FROM_ZERO and "ignored Range" in d.reason
    d = decide(200, {"Content-Length": "120"}, 0, 100, None)
    assert d.action is Action.FAIL and d.integrity
    d = decide(200, {"Content-Length": "37", "Content-Encoding": "gzip"}, 0, 100, None)
    assert d.action is Action.WRITE_FROM_ZERO and d.encoded and d.total == 100
    ok = {"Content-Range": "bytes 40-99/100", "ETag": '"abc"'}
    assert decide(206, ok, 40, 100, STATE).action is Action.APPEND
    assert decide(206, {**ok, "Content-Range": "bytes 0-99/100"}, 40, 100, STATE).action is Action.REFETCH
    assert decide(206, {**ok, "Content-Range": "bytes 40-119/120"}, 40, 100, STATE).action is Action.REFETCH
    d = decide(206, {**ok, "ETag": '"new"'}, 40, 100, STATE)
    assert d.action is Action.REFETCH and d.changed
    assert decide(206, {**ok, "Content-Encoding": "gzip"}, 40, 100, STATE).encoded
    assert decide(206, {}, 40, 100, STATE).action is Action.REFETCH
    assert decide(416, {"Content-Range": "bytes */100"}, 100, 100, STATE).action is Action.COMPLETE
    assert decide(416, {"Content-Range": "bytes */100"}, 100, None, STATE).action is Action.COMPLETE
    assert decide(416, {"Content-Range": "bytes */80"}, 100, None, STATE).action is Action.REFETCH
    d = decide(503, {"Retry-After": "4"}, 0, 100, None)
    assert d.action is Action.RETRY and d.retry_after == 4
    assert decide(429, {}, 0, 100, None).action is Action.RETRY
    assert decide(500, {}, 0, 100, None).action is Action.RETRY
    for status in (400, 401, 403, 404, 410, 451):
        d = decide(status, {}, 0, 100, None)
        assert d.action is Action.FAIL and str(status) in d.reason and d.hint
    assert decide(200, {"Content-Encoding": "br"}, 0, 100, None).action is Action.FAIL


def test_redirect_target_rules():
    assert redirect_target("http://h/a", "/b", ["http://h/a"], 5) == "http://h/b"
    assert redirect_target("http://h/a", "https://g/b", ["http://h/a"], 5) == "https://g/b"
    with pytest.raises(ValueError, match="https to plain http"):
        redirect_target("https://h/a", "http://h/b", ["https://h/a"], 5)
    with pytest.raises(ValueError, match="loop"):
        redirect_target("http://h/b", "/a", ["http://h/a", "http://h/b"], 5)
    with pytest.raises(ValueError, match="more than 2 redirects"):
        redirect_target("http://h/c", "/d", ["http://h/a", "http://h/b", "http://h/c"], 2)
    with pytest.raises(ValueError, match="scheme"):
        redirect_target("http://h/a", "ftp://h/b", ["http://h/a"], 5)


def test_sidecar_roundtrip_and_garbage(part):
    part.parent.mkdir(parents=True)
    write_sidecar(part, STATE)
    assert read_sidecar(part) == STATE
    sidecar_path(part).write_text("{not json")
    assert read_sidecar(part) is None


# --------------------------------------------------------------------------- healthy paths

def test_plain_download_progress_and_sidecar(fault_server, part):
    url = fault_server.add("/m.tgz", DATA)
    seen = []
    r = fetch(url, part, progress=lambda done, total: seen.append((done, total)))
    assert part.read_bytes() == DATA and r.sha256 == SHA and r.size == SIZE
    assert r.bytes_transferred == SIZE and r.attempts == 1 and not r.resumed
    assert seen[-1] == (SIZE, SIZE) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    state = json.loads(sidecar_path(part).read_text())
    assert state["url"] == url and state["etag"] and state["last_modified"]
    assert state["expected_size"] == SIZE and state["resumable"] is True
    req = fault_server.stats("/m.tgz").records[0].headers
    assert req["Accept-Encoding"] == "identity" and "Range" not in req


def test_no_expectations_still_hashes(fault_server, part):
    url = fault_server.add("/m.tgz", DATA)
    r = download(url, part)
    assert r.sha256 == SHA and r.size == SIZE


# --------------------------------------------------------------------------- drops and resume

def test_drop_every_request_resumes_with_range(fault_server, part):
    url = fault_server.add("/m.tgz", DATA, default=Fault(drop_after=300_000))
    sink = RecordingSink()
    r = fetch(url, part, sink=sink)
    st = fault_server.stats("/m.tgz")
    assert part.read_bytes() == DATA and r.sha256 == SHA and bytes(sink.buf) == DATA
    assert r.attempts == st.requests >= 7 and r.resumed
    assert st.body_bytes < 1.3 * SIZE, "each retry must resume, not restart"
    assert all(h and h.startswith("bytes=") for h in st.range_headers[1:])
    assert all(rec.headers.get("If-Range") for rec in st.records[1:])


def test_short_body_is_retried_and_resumed(fault_server, part):
    url = fault_server.add("/m.tgz", DATA, faults=[Fault(short_body=123_456)])
    r = fetch(url, part)
    st = fault_server.stats("/m.tgz")
    assert part.read_bytes() == DATA and r.attempts == 2
    assert st.range_headers == [None, "bytes=123456-"]
    assert st.body_bytes == SIZE


def test_progress_resets_the_retry_bound(fault_server, part):
    """10 drops in a row, each delivering bytes: more than max_attempts_without_progress=3."""
    url = fault_server.add("/m.tgz", DATA, faults=[Fault(drop_after=150_000)] * 10)
    r = fetch(url, part, policy=DownloadPolicy(backoff_base=0.01, max_attempts_without_progress=3))
    assert r.sha256 == SHA and r.attempts == 11


def test_resume_across_two_calls(fault_server, part):
    # First call: 500 kB arrive, then the server only says 503 until the retries run out.
    url = fault_server.add("/m.tgz", DATA, faults=[Fault(drop_after=500_000)],
                           default=Fault(status=503))
    with pytest.raises(DownloadError, match="without progress"):
        fetch(url, part)
    assert part.stat().st_size == 500_000 and read_sidecar(part).etag
    # Second call (as a new process would): resumes from the partial on disk.
    fault_server.set_faults("/m.tgz")
    fault_server.reset_stats()
    sink = RecordingSink()
    r = fetch(url, part, sink=sink)
    st = fault_server.stats("/m.tgz")
    assert part.read_bytes() == DATA and r.sha256 == SHA and r.resumed
    assert st.range_headers == ["bytes=500000-"] and st.records[0].headers["If-Range"]
    assert r.bytes_transferred == SIZE - 500_000 == st.body_bytes
    assert bytes(sink.buf) == DATA and sink.restarts == 1  # prefix replayed from disk


def _partial_from_first_call(server, part, path="/m.tgz", n=400_000):
    url = server.add(path, DATA, faults=[Fault(drop_after=n)], default=Fault(status=503))
    with pytest.raises(DownloadError):
        fetch(url, part, policy=DownloadPolicy(backoff_base=0.001, max_attempts_without_progress=1))
    assert part.stat().st_size == n
    return url


def test_etag_changed_between_calls_restarts(fault_server, part):
    url = _partial_from_first_call(fault_server, part)
    new = bytes(reversed(DATA))
    fault_server.add("/m.tgz", new)  # new content, new ETag: If-Range no longer matches
    fault_server.reset_stats()
    sink = RecordingSink()
    r = fetch(url, part, expected_sha256=hashlib.sha256(new).hexdigest(), sink=sink)
    st = fault_server.stats("/m.tgz")
    assert part.read_bytes() == new and not r.resumed and bytes(sink.buf) == new
    assert st.requests == 1 and st.records[0].status == 200  # server answered the If-Range with 200
    assert read_sidecar(part).etag == fault_server.entries["/m.tgz"].resource.etag


def test_206_with_changed_etag_restarts(fault_server, part):
    """A broken server that ignores If-Range: the client notices the ETag itself."""
    url = _partial_from_first_call(fault_server, part)
    new = bytes(reversed(DATA))
    fault_server.add("/m.tgz", new, faults=[Fault(ignore_if_range=True)])
    fault_server.reset_stats()
    r = fetch(url, part, expected_sha256=hashlib.sha256(new).hexdigest())
    st = fault_server.stats("/m.tgz")
    assert part.read_bytes() == new and [rec.status for rec in st.records] == [206, 200]
    assert st.range_headers == ["bytes=400000-", None]
    assert r.attempts == 2


def test_server_ignoring_range_restarts_from_zero(fault_server, part):
    url = fault_server.add("/m.tgz", DATA, faults=[Fault(drop_after=700_000)],
                           default=Fault(ignore_range=True))
    sink = RecordingSink()
    r = fetch(url, part, sink=sink)
    st = fault_server.stats("/m.tgz")
    assert part.read_bytes() == DATA and bytes(sink.buf) == DATA and sink.restarts == 2
    assert st.range_headers == [None, "bytes=700000-"] and st.records[1].status == 200
    assert not r.resumed


def test_ignore_range_and_drops_gives_up(fault_server, part):
    """Never past 300 kB: no attempt makes progress, so the bound stops it."""
    url = fault_server.add("/m.tgz", DATA, default=Fault(ignore_range=True, drop_after=300_000))
    with pytest.raises(DownloadError, match="without progress"):
        fetch(url, part)
    assert fault_server.stats("/m.tgz").requests == 1 + FAST.max_attempts_without_progress


def test_wrong_content_range_offset_refetches(fault_server, part):
    url = fault_server.add("/m.tgz", DATA, faults=[Fault(drop_after=600_000), Fault(range_offset=0)])
    r = fetch(url, part)
    st = fault_server.stats("/m.tgz")
    assert part.read_bytes() == DATA and r.sha256 == SHA
    assert st.range_headers == [None, "bytes=600000-", None]


def test_no_validators_in_sidecar_restarts(fault_server, part):
    url = fault_server.add("/m.tgz", DATA)
    part.parent.mkdir(parents=True)
    part.write_bytes(DATA[:1000])
    write_sidecar(part, PartialState(url=url, expected_size=SIZE))
    r = fetch(url, part)
    assert fault_server.stats("/m.tgz").range_headers == [None] and not r.resumed
    assert part.read_bytes() == DATA


def test_416_on_complete_partial_is_checked_by_hash(fault_server, part):
    url = fault_server.add("/m.tgz", DATA)
    fetch(url, part)
    fault_server.reset_stats()
    r = fetch(url, part)
    st = fault_server.stats("/m.tgz")
    assert [rec.status for rec in st.records] == [416] and st.range_headers == [f"bytes={SIZE}-"]
    assert r.sha256 == SHA and r.bytes_transferred == 0 and r.resumed and r.attempts == 1
    # ... and a complete partial whose bytes are wrong is caught, not looped on.
    part.write_bytes(b"\0" * SIZE)
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        fetch(url, part)
    assert not part.exists() and not sidecar_path(part).exists()


# --------------------------------------------------------------------------- integrity

def test_tampered_bytes_raise_and_delete(fault_server, part):
    url = fault_server.add("/m.tgz", DATA, default=Fault(tamper=1234))
    with pytest.raises(IntegrityError) as ei:
        fetch(url, part)
    msg = str(ei.value)
    assert "mobilenet_test" in msg and url in msg and SHA in msg and str(SIZE) in msg
    assert hashlib.sha256(bytes(a ^ (0xFF if i == 1234 else 0) for i, a in enumerate(DATA[:2000]))
                          + DATA[2000:]).hexdigest() in msg
    assert not part.exists() and not sidecar_path(part).exists()
    assert fault_server.stats("/m.tgz").requests == 1  # corruption is not retried


def test_more_bytes_than_expected_stops_early(fault_server, part):
    url = fault_server.add("/m.tgz", DATA)
    with pytest.raises(IntegrityError, match="catalog expects"):
        fetch(url, part, expected_size=1000)
    assert not part.exists()
    # Content-encoded: the decoded size is only known while decoding.
    url = fault_server.add("/g.tgz", DATA, default=Fault(gzip=True))
    with pytest.raises(IntegrityError, match="more bytes than expected"):
        fetch(url, part, expected_size=1000)
    assert not part.exists()


# --------------------------------------------------------------------------- statuses

def test_503_then_200_honours_retry_after(fault_server, part):
    url = fault_server.add("/m.tgz", DATA, faults=[Fault(status=503, retry_after="3"),
                                                   Fault(status=429, retry_after="2")])
    sleeps = Sleeps()
    r = fetch(url, part, sleep=sleeps, policy=DownloadPolicy(backoff_max=10))
    assert r.sha256 == SHA and r.attempts == 3 and sleeps == [3, 2]


def test_retry_after_http_date_capped_by_backoff_max(fault_server, part):
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    url = fault_server.add("/m.tgz", DATA, faults=[Fault(status=503, retry_after=when)])
    sleeps = Sleeps()
    fetch(url, part, sleep=sleeps, policy=DownloadPolicy(backoff_max=7))
    assert sleeps == [7]


def test_retry_after_beyond_deadline_fails_now(fault_server, part):
    url = fault_server.add("/m.tgz", DATA, default=Fault(status=503, retry_after="60"))
    sleeps = Sleeps()
    with pytest.raises(DownloadError, match="deadline"):
        fetch(url, part, sleep=sleeps, policy=DownloadPolicy(deadline=5, backoff_max=60))
    assert sleeps == [] and fault_server.stats("/m.tgz").requests == 1


def test_deadline_with_injected_clock(fault_server, part):
    """sleep advances a fake clock: the deadline stops the 503 loop without real waiting."""
    now = [1000.0]
    sleeps = Sleeps()

    def sleep(s):
        sleeps.append(s)
        now[0] += s

    url = fault_server.add("/m.tgz", DATA, default=Fault(status=503, retry_after="1"))
    with pytest.raises(DownloadError, match="3.5s deadline.*HTTP 503"):
        fetch(url, part, sleep=sleep, clock=lambda: now[0],
              policy=DownloadPolicy(deadline=3.5, max_attempts_without_progress=100))
    assert sleeps == [1, 1, 1] and fault_server.stats("/m.tgz").requests == 4


def test_5xx_exhausts_retries_with_growing_jitter(fault_server, part):
    url = fault_server.add("/m.tgz", DATA, default=Fault(status=500))
    sleeps = Sleeps()
    p = DownloadPolicy(backoff_base=1, backoff_max=100, max_attempts_without_progress=4)
    with pytest.raises(DownloadError, match="4 attempts in a row without progress.*HTTP 500"):
        fetch(url, part, sleep=sleeps, policy=p)
    assert len(sleeps) == 3 and all(0 <= s <= cap for s, cap in zip(sleeps, (1, 2, 4)))
    assert fault_server.stats("/m.tgz").requests == 4


@pytest.mark.parametrize("status", [404, 403, 410, 400])
def test_4xx_not_retried(fault_server, part, status):
    url = fault_server.add("/m.tgz", DATA, default=Fault(status=status))
    with pytest.raises(DownloadError, match=f"HTTP {status}") as ei:
        fetch(url, part)
    assert ei.value.hint and ei.value.url == url and ei.value.model_id == "mobilenet_test"
    assert fault_server.stats("/m.tgz").requests == 1


def test_unknown_path_is_404(fault_server, part):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(fault_server.url("/nope.tgz"), part)


def test_connection_refused_is_retried_then_fails(part):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    sleeps = Sleeps()
    with pytest.raises(DownloadError, match="without progress.*ConnectionError"):
        fetch(f"http://127.0.0.1:{port}/m.tgz", part, sleep=sleeps)
    assert len(sleeps) == FAST.max_attempts_without_progress - 1


# --------------------------------------------------------------------------- redirects

def test_redirect_chain_ok(fault_server, part):
    fault_server.add("/real.tgz", DATA)
    fault_server.redirect("/b", "/real.tgz", status=307)
    url = fault_server.redirect("/a", fault_server.url("/b"), status=301)
    r = fetch(url, part)
    assert r.sha256 == SHA and r.attempts == 1
    assert read_sidecar(part).url == url  # the partial belongs to the url we were asked for


def test_redirect_keeps_range_on_resume(fault_server, part):
    fault_server.add("/real.tgz", DATA, faults=[Fault(drop_after=250_000)])
    url = fault_server.redirect("/a", "/real.tgz")
    fetch(url, part)
    assert fault_server.stats("/real.tgz").range_headers == [None, "bytes=250000-"]


def test_redirect_loop_and_too_many(fault_server, part):
    fault_server.redirect("/x", "/y")
    url = fault_server.redirect("/y", "/x")
    with pytest.raises(DownloadError, match="redirect loop"):
        fetch(url, part)
    fault_server.add("/end", DATA)
    for i in range(4):
        fault_server.redirect(f"/r{i}", f"/r{i + 1}" if i < 3 else "/end")
    with pytest.raises(DownloadError, match="more than 2 redirects"):
        fetch(fault_server.url("/r0"), part, policy=DownloadPolicy(max_redirects=2))
    assert fetch(fault_server.url("/r0"), part).sha256 == SHA


def test_https_to_http_redirect_refused(fault_server, part, tmp_path):
    ctx, ca_file = tls_with_test_ca(tmp_path)
    plain = fault_server.add("/m.tgz", DATA)
    with FaultServer(ssl_context=ctx) as tls, requests.Session() as session:
        session.verify, session.trust_env = str(ca_file), False  # env CA bundles would win
        tls.add("/m.tgz", DATA)
        assert fetch(tls.url("/m.tgz"), part, session=session).sha256 == SHA  # https works
        bad = tls.redirect("/down", plain)
        with pytest.raises(DownloadError, match="https to plain http"):
            fetch(bad, part, session=session)
    assert fault_server.stats("/m.tgz").requests == 0
    with FaultServer(ssl_context=ctx) as tls:  # untrusted certificate: fatal, not retried
        tls.add("/m.tgz", DATA)
        with pytest.raises(DownloadError, match="TLS error"):
            fetch(tls.url("/m.tgz"), part)
        assert tls.stats("/m.tgz").requests <= 1


# --------------------------------------------------------------------------- content-encoding

def test_gzip_wrapped_response_is_decoded(fault_server, part):
    url = fault_server.add("/m.tgz", DATA, default=Fault(gzip=True))
    r = fetch(url, part)
    assert part.read_bytes() == DATA and r.sha256 == SHA
    assert r.bytes_transferred == len(gzip.compress(DATA, mtime=0))
    assert read_sidecar(part).resumable is False


def test_gzip_drop_restarts_instead_of_offset_resume(fault_server, part):
    url = fault_server.add("/m.tgz", DATA, faults=[Fault(gzip=True, drop_after=500_000)],
                           default=Fault(gzip=True))
    sink = RecordingSink()
    r = fetch(url, part, sink=sink)
    assert r.sha256 == SHA and bytes(sink.buf) == DATA and sink.restarts == 2
    assert fault_server.stats("/m.tgz").range_headers == [None, None]


def test_deflate_wrapped_response(fault_server, part):
    import zlib

    url = fault_server.add("/m.tgz", zlib.compress(DATA), default=Fault(
        headers={"Content-Encoding": "deflate"}))
    assert fetch(url, part).sha256 == SHA


# --------------------------------------------------------------------------- slow servers

class StepClock:
    """A monotonic clock that moves ``step`` seconds each time it is read (and on sleep)."""

    def __init__(self, step: float) -> None:
        self.step, self.now = step, 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_dripping_server_hits_deadline(fault_server, part):
    url = fault_server.add("/m.tgz", DATA, default=Fault(drip=2000, drip_chunk=100))
    clock = StepClock(step=0.05)  # the download's own clock: no wall-clock bound to flake on
    with pytest.raises(DownloadError, match="within the 1.5s deadline"):
        fetch(url, part, policy=DownloadPolicy(deadline=1.5, min_rate=None), clock=clock)
    assert 1.5 <= clock.now < 3  # stopped at the deadline, not after the whole body
    assert 0 < part.stat().st_size < SIZE and read_sidecar(part)  # kept for a later resume


def test_dripping_server_below_min_rate(fault_server, part):
    url = fault_server.add("/m.tgz", DATA, default=Fault(drip=1000, drip_chunk=50))
    clock = StepClock(step=0.05)
    with pytest.raises(DownloadError, match="too slow.*below the minimum of 10000 B/s"):
        fetch(url, part, policy=DownloadPolicy(min_rate=10_000, min_rate_window=0.4,
                                               backoff_base=0.01), clock=clock, sleep=clock.sleep)
    assert clock.now < 3  # judged after one window per attempt, not after the whole body
    assert fault_server.stats("/m.tgz").requests == 2


def test_silent_server_read_timeout(fault_server, part):
    url = fault_server.add("/m.tgz", DATA, faults=[Fault(delay=1.0)])
    r = fetch(url, part, policy=DownloadPolicy(read_timeout=0.3, backoff_base=0.01))
    assert r.sha256 == SHA and r.attempts == 2


# --------------------------------------------------------------------------- file://

def test_file_url_copy(tmp_path, part):
    src = tmp_path / "mirror" / "m.tgz"
    src.parent.mkdir()
    src.write_bytes(DATA)
    sink = RecordingSink()
    r = fetch(src.as_uri(), part, sink=sink)
    assert part.read_bytes() == DATA and r.sha256 == SHA and bytes(sink.buf) == DATA
    src.write_bytes(DATA[:-1] + b"\0")
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        fetch(src.as_uri(), part)
    assert not part.exists()
    with pytest.raises(DownloadError, match="no such file"):
        fetch((tmp_path / "mirror" / "missing.tgz").as_uri(), part)


def test_unsupported_scheme(part):
    with pytest.raises(DownloadError, match="scheme"):
        download("ftp://127.0.0.1/x", part)


def test_large_file_from_disk_streams(fault_server, part, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(8):
            f.write(DATA)
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    url = fault_server.add("/big.bin", big, faults=[Fault(drop_after=5_000_000)])
    r = fetch(url, part, expected_size=8 * SIZE, expected_sha256=digest)
    assert r.sha256 == digest and fault_server.stats("/big.bin").body_bytes == 8 * SIZE
    assert os.path.getsize(part) == 8 * SIZE
