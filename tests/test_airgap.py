"""Air-gapped sites and corporate networks: fetch --from, --dry-run, proxies and custom CAs.

Through the real console script, against loopback servers (a TLS one whose certificate
comes from a test CA made by trustme, and a CONNECT proxy).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest

from zoo.fetching import layout

from .conftest import console_script
from .fetch_helpers import model_entry, serve_models, snapshot, v1_tarball, write_catalog
from .http_server import FaultServer, tls_with_test_ca
from .proxy_server import ProxyServer

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
              "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")


def run(args, catalog, cache, **env_extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env.update(MOBILENET_ZOO_CATALOG=str(catalog), MOBILENET_ZOO_CACHE=str(cache), NO_PROXY="127.0.0.1,localhost")
    env.update(env_extra)
    return subprocess.run([console_script(), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def served(fault_server, tmp_path):
    data = v1_tarball("g")
    catalog, (m,) = serve_models(fault_server, tmp_path, [("v1_g", data)])
    (tmp_path / "copied.tgz").write_bytes(data)
    return catalog, m, tmp_path / "cache"


def test_fetch_from_file_publishes_like_a_download(fault_server, served, tmp_path):
    catalog, m, cache = served
    result = run(["--offline", "fetch", "--from", str(tmp_path / "copied.tgz"), "v1_g"], catalog, cache)
    assert result.returncode == 0, result.stderr
    entry_dir = cache / "v1_g" / "r1"
    assert result.stdout.strip() == str(entry_dir) and fault_server.stats(m.path).requests == 0
    manifest = json.loads((entry_dir / layout.MANIFEST).read_text())
    assert manifest["archive"]["sha256"] == m.sha256 and (entry_dir / layout.ARCHIVE).read_bytes() == m.data
    downloaded = run(["fetch", "v1_g"], catalog, tmp_path / "other-cache")
    twin = json.loads((tmp_path / "other-cache" / "v1_g" / "r1" / layout.MANIFEST).read_text())
    assert twin["files"] == manifest["files"]  # the same files, sizes and digests as a download
    assert run(["verify", "v1_g"], catalog, cache).returncode == 0
    again = run(["fetch", "--from", str(tmp_path / "copied.tgz"), "v1_g"], catalog, cache)
    assert again.returncode == 0 and "already cached" in again.stderr


def test_fetch_from_wrong_file_is_refused_with_both_digests(served, tmp_path):
    catalog, m, cache = served
    wrong = tmp_path / "wrong.tgz"
    wrong.write_bytes(v1_tarball("other"))
    result = run(["fetch", "--from", str(wrong), "v1_g"], catalog, cache)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"expected sha256 {m.sha256}" in result.stderr
    assert f"actual   sha256 {hashlib.sha256(wrong.read_bytes()).hexdigest()}" in result.stderr
    assert not (cache / "v1_g").exists()
    assert list(snapshot(cache)) == []


def test_fetch_from_unpinned_records_on_first_use_then_insists(fault_server, tmp_path):
    data = v1_tarball("u")
    catalog = write_catalog(tmp_path / "c.yaml", [model_entry("v1_u", fault_server.url("/u.tgz"), data, pinned=False)])
    (tmp_path / "u.tgz").write_bytes(data)
    cache = tmp_path / "cache"
    first = run(["fetch", "--from", str(tmp_path / "u.tgz"), "v1_u"], catalog, cache)
    assert first.returncode == 0 and "trusting this first download" in first.stderr
    assert hashlib.sha256(data).hexdigest() in (cache / layout.TRUST_FILE).read_text()
    assert run(["cache", "rm", "v1_u"], catalog, cache).returncode == 0
    (tmp_path / "other.tgz").write_bytes(v1_tarball("v"))
    refused = run(["fetch", "--from", str(tmp_path / "other.tgz"), "v1_u"], catalog, cache)
    assert refused.returncode == 1 and "recorded on first use" in refused.stderr


def test_fetch_from_needs_exactly_one_model_and_an_existing_file(served, tmp_path):
    catalog, _, cache = served
    assert run(["fetch", "--from", str(tmp_path / "nope.tgz"), "v1_g"], catalog, cache).returncode == 2
    two = run(["fetch", "--from", str(tmp_path / "copied.tgz"), "v1_g", "v1_1.0_224"], catalog, cache)
    assert two.returncode == 2


def test_dry_run_touches_nothing(fault_server, tmp_path):
    catalog, served_models = serve_models(fault_server, tmp_path, [("v1_a", v1_tarball("a")), ("v1_b", v1_tarball("b"))])
    cache = tmp_path / "cache"
    assert run(["fetch", "v1_a"], catalog, cache).returncode == 0
    before = snapshot(cache)
    fault_server.reset_stats()
    result = run(["fetch", "--dry-run", "v1_a", "v1_b"], catalog, cache)
    assert result.returncode == 0, result.stderr
    assert "v1_a: cached at" in result.stdout
    b = served_models[1]
    assert f"v1_b: would download " in result.stdout and b.url in result.stdout
    assert "total: would download 1 model" in result.stdout
    assert snapshot(cache) == before and fault_server.stats(b.path).requests == 0
    data = json.loads(run(["fetch", "--dry-run", "--json", "v1_a", "v1_b"], catalog, cache).stdout)
    assert [d["action"] for d in data] == ["cached", "download"] and data[1]["size_bytes"] == len(b.data)

    mirror_dir = tmp_path / "mirror"
    result = run(["mirror", "--dry-run", str(mirror_dir), "v1_a", "v1_b"], catalog, cache)
    assert result.returncode == 0 and "total: would download 2 models" in result.stdout
    assert not mirror_dir.exists() and fault_server.stats(b.path).requests == 0


@pytest.fixture
def tls(tmp_path):
    ctx, ca_file = tls_with_test_ca(tmp_path, "company-ca.pem")
    with FaultServer(ssl_context=ctx) as server:
        yield server, ca_file


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_custom_ca_bundle_for_upstream_and_mirrors(tls, tmp_path, variable):
    server, ca_file = tls
    data = v1_tarball("t")
    catalog = write_catalog(tmp_path / "c.yaml", [model_entry("v1_t", server.add("/m/v1_t.tgz", data), data)])
    untrusted = run(["fetch", "v1_t"], catalog, tmp_path / "c0")
    assert untrusted.returncode == 1 and "TLS error" in untrusted.stderr and "SSL_CERT_FILE" in untrusted.stderr
    ok = run(["fetch", "v1_t"], catalog, tmp_path / "c1", **{variable: str(ca_file)})
    assert ok.returncode == 0, ok.stderr

    # a mirror behind the same company CA, upstream unreachable
    dead = write_catalog(tmp_path / "dead.yaml", [model_entry("v1_t", "http://127.0.0.1:9/m/v1_t.tgz", data)])
    mirrored = server.add("/mirror/127.0.0.1:9/m/v1_t.tgz", data)
    result = run(["--mirror", mirrored.rsplit("/127.0.0.1:9/", 1)[0], "fetch", "v1_t"], dead, tmp_path / "c2",
                 **{variable: str(ca_file)})
    assert result.returncode == 0, result.stderr


def test_https_proxy_is_used_and_no_proxy_bypasses_it(tls, tmp_path):
    server, ca_file = tls
    data = v1_tarball("p")
    url = server.add("/m/v1_p.tgz", data)
    catalog = write_catalog(tmp_path / "c.yaml", [model_entry("v1_p", url, data)])
    with ProxyServer() as proxy:
        result = run(["fetch", "v1_p"], catalog, tmp_path / "c1", HTTPS_PROXY=proxy.url, NO_PROXY="",
                     SSL_CERT_FILE=str(ca_file))
        assert result.returncode == 0, result.stderr
        assert proxy.seen and proxy.seen[0].startswith(f"CONNECT 127.0.0.1:{server.port} ")
        proxy.seen.clear()
        result = run(["fetch", "v1_p"], catalog, tmp_path / "c2", HTTPS_PROXY=proxy.url, NO_PROXY="127.0.0.1",
                     SSL_CERT_FILE=str(ca_file))
        assert result.returncode == 0 and proxy.seen == []
