"""zoo.fetching.mirrors and zoo.fetching.mirroring directly: layout, order, offline, credentials, safe targets."""

from __future__ import annotations

import hashlib

import pytest

from zoo.catalog import load_catalog
from zoo.errors import (CacheError, DownloadError, IntegrityError, OfflineError, SourcesFailed,
                        UnsafeArchiveError, UsageError)
from zoo.fetching.fetcher import FetchOptions
from zoo.fetching.mirroring import mirror_one
from zoo.fetching.mirrors import Source, mirror_base, mirror_path, mirror_target, rewrite, sources_for, try_sources
from zoo._util.redact import redact

from .fetch_helpers import serve_models, v1_tarball
from .http_server import Fault

URL = "https://storage.googleapis.com/download.tensorflow.org/models/mobilenet_v1_1.0_224.tgz"


def test_mirror_layout_and_bases(tmp_path):
    assert mirror_path(URL) == "storage.googleapis.com/download.tensorflow.org/models/mobilenet_v1_1.0_224.tgz"
    assert mirror_path("http://u:p@h:81/a.tgz") == "h:81/a.tgz"
    assert rewrite(URL, "http://m/base/") == "http://m/base/" + mirror_path(URL)
    assert mirror_base(str(tmp_path)) == tmp_path.resolve().as_uri()
    with pytest.raises(UsageError):
        mirror_base("ftp://m/")


def test_sources_mirrors_first_in_order_then_upstream(tmp_path):
    sources = sources_for(URL, ["http://a", str(tmp_path), "https://b"], offline=False, token="t0k3n")
    assert [s.label.split()[0] for s in sources] == ["mirror", "mirror", "mirror", "upstream"]
    assert sources[0].url.startswith("http://a/") and sources[1].url.startswith("file://")
    assert [s.token for s in sources] == ["t0k3n", None, "t0k3n", None]       # never to files or upstream
    offline = sources_for(URL, ["http://a", str(tmp_path)], offline=True)
    assert [s.url.split(":")[0] for s in offline] == ["file"]


def test_labels_and_messages_mask_passwords(monkeypatch):
    sources = sources_for(URL, ["https://alice:hunter2@m.example/x"], offline=False)
    assert "hunter2" not in sources[0].label and "alice:***@" in sources[0].label
    assert redact("see http://a:b@h/x and https://c:d@e") == "see http://a:***@h/x and https://c:***@e"
    monkeypatch.setenv("MOBILENET_ZOO_MIRROR_TOKEN", "tok-abcdef")
    assert redact("Authorization: Bearer tok-abcdef") == "Authorization: Bearer ***"
    from zoo.errors import DownloadError

    err = DownloadError("failed", url="http://u:pw12345@h/x", hint="retry http://u:pw12345@h")
    assert "pw12345" not in str(err)


@pytest.mark.parametrize("url", ["http://h/../x.tgz", "http://h/a/./x.tgz", "http://h/", "http://h/a/b/"])
def test_mirror_paths_that_would_leave_the_directory_are_refused(tmp_path, url):
    with pytest.raises(CacheError, match="refusing to mirror"):
        mirror_target(tmp_path, url)


def test_mirror_target_refuses_a_planted_link(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "h").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(CacheError, match="symbolic link"):
        mirror_target(tmp_path / "dir", "http://h/x.tgz")


def test_mirror_one_writes_verifies_and_skips_what_is_there(fault_server, tmp_path):
    catalog_path, served = serve_models(fault_server, tmp_path, [("v1_a", v1_tarball("a"))])
    entry, release = load_catalog(catalog_path, with_profile=False).resolve("v1_a")
    opts = FetchOptions(cache_dir=tmp_path / "cache", warn=lambda m: None)
    result = mirror_one(tmp_path / "m", entry, release, opts)
    assert result.path.read_bytes() == served[0].data and not result.cached
    assert result.path == mirror_target(tmp_path / "m", release.url)
    again = mirror_one(tmp_path / "m", entry, release, opts)
    assert again.cached and fault_server.stats(served[0].path).requests == 1
    result.path.write_bytes(b"tampered")                                  # a bad copy is replaced
    fixed = mirror_one(tmp_path / "m", entry, release, opts)
    assert not fixed.cached and hashlib.sha256(fixed.path.read_bytes()).hexdigest() == served[0].sha256
    assert [p.name for p in result.path.parent.iterdir()] == [result.path.name]   # no partial left


def test_mirror_offline_with_no_usable_source_says_so(fault_server, tmp_path):
    catalog_path, _ = serve_models(fault_server, tmp_path, [("v1_a", v1_tarball("a"))])
    entry, release = load_catalog(catalog_path, with_profile=False).resolve("v1_a")
    opts = FetchOptions(cache_dir=tmp_path / "cache", offline=True, mirrors=["http://m.example"],
                        warn=lambda m: None)
    with pytest.raises(OfflineError, match="offline"):
        mirror_one(tmp_path / "m", entry, release, opts)


# ---------------------------------------------------------------- one source loop (fetch and mirror)

def _source(label: str) -> Source:
    return Source(f"http://{label}.example/x.tgz", label, False)


def test_try_sources_with_no_source_is_an_offline_error_and_tries_nothing():
    tried = []
    with pytest.raises(OfflineError, match="v1_a.*offline"):
        try_sources([], tried.append, model="v1_a")
    assert tried == []
    custom = OfflineError("not in the cache", "go online")
    with pytest.raises(OfflineError) as info:
        try_sources([], tried.append, model="v1_a", no_source=lambda: custom)
    assert info.value is custom


def test_try_sources_keeps_every_failure_with_its_hint_and_returns_the_first_success():
    errors = {"a": DownloadError("HTTP 404", hint="hint of a"), "b": IntegrityError("sha256 mismatch", "hint of b")}

    def attempt(source):
        if source.label in errors:
            raise errors[source.label]
        return f"from {source.label}"

    assert try_sources([_source("a"), _source("c")], attempt, model="m") == "from c"
    with pytest.raises(SourcesFailed) as info:
        try_sources([_source("a"), _source("b")], attempt, model="m")
    failed = info.value
    assert isinstance(failed, DownloadError)
    assert [(s.label, e) for s, e in failed.failures] == [("a", errors["a"]), ("b", errors["b"])]
    assert "every source failed" in failed.message
    for text in ("a: HTTP 404", "hint: hint of a", "b: sha256 mismatch", "hint: hint of b"):
        assert text in failed.message
    with pytest.raises(DownloadError) as single:  # one source: its own error, unwrapped
        try_sources([_source("a")], attempt, model="m")
    assert single.value is errors["a"]


def test_try_sources_stops_at_a_refused_archive_and_lets_other_errors_through():
    tried = []

    def refuse(source):
        tried.append(source.label)
        raise UnsafeArchiveError("member escapes", archive="m")

    with pytest.raises(UnsafeArchiveError):
        try_sources([_source("a"), _source("b")], refuse, model="m")
    assert tried == ["a"]  # the bytes matched the trusted digest: another source is no better

    def bug(source):
        raise KeyError("ours")

    with pytest.raises(KeyError):
        try_sources([_source("a"), _source("b")], bug, model="m")


def test_mirror_reports_every_source_like_fetch(fault_server, tmp_path):
    catalog_path, served = serve_models(fault_server, tmp_path, [("v1_a", v1_tarball("a"))])
    entry, release = load_catalog(catalog_path, with_profile=False).resolve("v1_a")
    fault_server.set_faults(served[0].path, default=Fault(status=404))
    opts = FetchOptions(cache_dir=tmp_path / "cache", mirrors=[str(tmp_path / "nodir")], warn=lambda m: None)
    with pytest.raises(SourcesFailed) as info:
        mirror_one(tmp_path / "m", entry, release, opts)
    assert [s.label.split()[0] for s, _ in info.value.failures] == ["mirror", "upstream"]
    assert "hint: " in info.value.message  # each source's own hint, as fetch shows them
    assert not any(p.is_file() for p in (tmp_path / "m").rglob("*"))  # no partial, no sidecar left


def test_cli_mirror_offline_with_only_an_http_mirror_is_a_clean_error(cli, fault_server, tmp_path):
    catalog_path, _ = serve_models(fault_server, tmp_path, [("v1_a", v1_tarball("a"))])
    code, out, err = cli("--catalog", str(catalog_path), "--offline", "--mirror", "http://m.example",
                         "mirror", str(tmp_path / "m"), "v1_a")
    assert code == 1, err
    assert "--offline" in err and "v1_a" in err and "Traceback" not in err and "BaseException" not in err
