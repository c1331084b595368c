"""`fetch` end to end against the loopback fault server: verification, trust, cache, mirrors."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from zoo.fetching import layout
from zoo.fetching.cache import Cache
from zoo.fetching.manifest import read_manifest
from zoo.catalog import load_catalog
from zoo.errors import CacheError, IntegrityError, UnsafeArchiveError
from zoo.fetching.fetcher import FetchOptions, _fetch_locked, expected_digest, fetch, fetch_entry
from zoo.notices import ZooWarning

from . import archives
from .fetch_helpers import model_entry, serve_models, snapshot, v1_tarball, v3_tarball, write_catalog
from .http_server import Fault


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar if m.isfile()}


def _opts(tmp_path: Path, **kw) -> FetchOptions:
    return FetchOptions(cache_dir=tmp_path / "cache", warn=kw.pop("warn", lambda m: None), **kw)


@pytest.fixture
def two_models(fault_server, tmp_path):
    catalog_path, served = serve_models(fault_server, tmp_path, [("v1_a", v1_tarball("a")), ("v3_b", v3_tarball())])
    return load_catalog(catalog_path, with_profile=False), served, catalog_path


def test_fetch_unpacks_verified_entry_and_hits_cache(fault_server, two_models, tmp_path):
    catalog, served, _ = two_models
    path = fetch("v1_a", catalog=catalog, cache_dir=tmp_path / "cache")
    assert path == tmp_path / "cache" / "v1_a" / "r1"
    manifest = read_manifest(path)
    assert manifest.archive_sha256 == served[0].sha256
    expected = _members(served[0].data)
    assert {p for p, _, _ in manifest.files} == set(expected)
    for name, data in expected.items():
        assert (path / "model" / name).read_bytes() == data
        assert dict((p, h) for p, _, h in manifest.files)[name] == hashlib.sha256(data).hexdigest()
    assert (path / layout.ARCHIVE).read_bytes() == served[0].data
    # v3 layout: one top-level directory
    v3 = fetch("v3_b", catalog=catalog, cache_dir=tmp_path / "cache")
    assert (v3 / "model" / "v3-large_224_1.0_float" / "ema" / "checkpoint").is_file()

    before = fault_server.stats(served[0].path).requests
    tree = snapshot(tmp_path / "cache")
    assert fetch("v1_a", catalog=catalog, cache_dir=tmp_path / "cache") == path
    assert fault_server.stats(served[0].path).requests == before      # no network on a hit
    assert snapshot(tmp_path / "cache") == tree                         # and no writes at all


def test_pinned_mismatch_names_everything_and_keeps_nothing(fault_server, tmp_path):
    good = v1_tarball("a")
    url = fault_server.add("/m.tgz", good, default=Fault(tamper=100))
    catalog = load_catalog(write_catalog(tmp_path / "c.yaml", [model_entry("v1_a", url, good)]), with_profile=False)
    with pytest.raises(IntegrityError) as info:
        fetch("v1_a", catalog=catalog, cache_dir=tmp_path / "cache")
    text = str(info.value)
    assert "v1_a" in text and url in text and hashlib.sha256(good).hexdigest() in text and str(len(good)) in text
    cache = tmp_path / "cache"
    assert not (cache / "v1_a").exists()
    assert not any((cache / layout.PARTIAL_DIR).iterdir())
    assert not any((cache / layout.STAGING_DIR).iterdir())


def test_trust_on_first_use_records_and_then_insists(fault_server, tmp_path):
    data = v1_tarball("a")
    url = fault_server.add("/m.tgz", data)
    entries = [model_entry("v1_a", url, data, pinned=False, known_size=False)]
    catalog = load_catalog(write_catalog(tmp_path / "c.yaml", entries), with_profile=False)
    warnings = []
    opts = _opts(tmp_path, warn=warnings.append)
    entry, release = catalog.resolve("v1_a")
    result = fetch_entry(entry, release, opts)
    assert result.trusted_on_first_use and any("trusting this first download" in w for w in warnings)
    assert expected_digest(entry, release, opts.cache_dir) == (hashlib.sha256(data).hexdigest(), True)
    # upstream silently changes the file: a later fetch must refuse it
    Cache(opts.cache_dir).remove(entry)
    fault_server.add("/m.tgz", v1_tarball("evil"))
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        fetch_entry(entry, release, opts)


def test_require_pinned_refuses_unpinned(fault_server, tmp_path):
    data = v1_tarball("a")
    url = fault_server.add("/m.tgz", data)
    catalog = load_catalog(write_catalog(tmp_path / "c.yaml", [model_entry("v1_a", url, data, pinned=False)]),
                           with_profile=False)
    with pytest.raises(IntegrityError, match="no published sha256"):
        fetch("v1_a", catalog=catalog, cache_dir=tmp_path / "cache", require_pinned=True)
    assert fault_server.stats("/m.tgz").requests == 0


@pytest.mark.parametrize("builder", ["dotdot_traversal", "absolute_path", "symlink_outside", "hardlink", "fifo",
                                     "duplicate_names", "casefold_duplicates", "char_device"])
def test_hostile_archive_with_matching_digest_is_refused(fault_server, tmp_path, builder):
    """A compromised upstream: the sha256 matches, the archive is still refused."""
    built = getattr(archives, builder)()
    data = built[0] if isinstance(built, tuple) else built
    url = fault_server.add("/evil.tgz", data)
    catalog = load_catalog(write_catalog(tmp_path / "c.yaml", [model_entry("v1_a", url, data)]), with_profile=False)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("untouched")
    before_outside, before_tmp = snapshot(outside), sorted({p.name for p in tmp_path.iterdir()} | {"cache"})
    with pytest.raises(UnsafeArchiveError):
        fetch("v1_a", catalog=catalog, cache_dir=tmp_path / "cache")
    cache = tmp_path / "cache"
    assert not (cache / "v1_a").exists()
    assert list((cache / layout.STAGING_DIR).iterdir()) == []
    assert list((cache / layout.PARTIAL_DIR).iterdir()) == []
    assert snapshot(outside) == before_outside
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before_tmp)


def test_stream_and_file_unpack_agree(fault_server, two_models, tmp_path):
    catalog, served, _ = two_models
    entry, release = catalog.resolve("v3_b")
    a = fetch_entry(entry, release, _opts(tmp_path / "s", stream_unpack=True))
    b = fetch_entry(entry, release, _opts(tmp_path / "f", stream_unpack=False))
    assert read_manifest(a.path).files == read_manifest(b.path).files


def test_damaged_entry_is_noticed_cheaply_and_rebuilt_from_kept_archive(fault_server, two_models, tmp_path):
    catalog, served, _ = two_models
    path = fetch("v1_a", catalog=catalog, cache_dir=tmp_path / "cache")
    victim = next((path / "model").iterdir())
    victim.write_bytes(victim.read_bytes()[:-1])     # truncated: size check catches it
    requests = fault_server.stats(served[0].path).requests
    with pytest.warns(ZooWarning) as shown:  # from the API, the notices are Python warnings
        path2 = fetch("v1_a", catalog=catalog, cache_dir=tmp_path / "cache")
    assert [str(w.message).split(": ", 1)[1][:18] for w in shown] == ["cached copy not us", "rebuilt from the v"]
    # the kept archive still matches the pin: rebuilt without the network
    assert path2 == path and fault_server.stats(served[0].path).requests == requests
    assert victim.read_bytes() == _members(served[0].data)[victim.name]
    # a damaged archive too: only then is it downloaded again
    victim.write_bytes(victim.read_bytes()[:-1])
    (path / layout.ARCHIVE).write_bytes(b"x" * len(served[0].data))
    with pytest.warns(ZooWarning, match="cached copy not used"):
        assert fetch("v1_a", catalog=catalog, cache_dir=tmp_path / "cache") == path
    assert fault_server.stats(served[0].path).requests == requests + 1
    assert victim.read_bytes() == _members(served[0].data)[victim.name]


def test_racing_writers_without_lock_make_one_valid_entry(fault_server, two_models, tmp_path):
    """Correctness never depends on the lock: two unlocked writers still publish one good entry."""
    import threading

    catalog, served, _ = two_models
    entry, release = catalog.resolve("v1_a")
    opts = _opts(tmp_path)
    Cache(opts.cache_dir).ensure_writable()
    from zoo.fetching.mirrors import sources_for

    results, errors = [], []

    def run():
        try:
            results.append(_fetch_locked(Cache(opts.cache_dir), entry, release, served[0].sha256, False,
                                         sources_for(release.url, [], offline=False), opts))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 3
    assert {r.path for r in results} == {opts.cache_dir / "v1_a" / "r1"}
    manifest = read_manifest(results[0].path)
    assert manifest.archive_sha256 == served[0].sha256
    assert list((opts.cache_dir / "v1_a").iterdir()) == [results[0].path]
    assert list((opts.cache_dir / layout.STAGING_DIR).iterdir()) == []


def test_unwritable_cache_fails_up_front(tmp_path, two_models):
    catalog, _, _ = two_models
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CacheError, match="not writable"):
        fetch("v1_a", catalog=catalog, cache_dir=blocker / "cache")


def test_free_space_check_names_the_need(tmp_path):
    cache = Cache(tmp_path)
    with pytest.raises(CacheError, match="not enough free disk space"):
        cache.check_free_space(1 << 62, "a huge model")


# ------------------------------------------------------------------ mirrors and offline
def test_http_mirror_layout_then_upstream_fallback(fault_server, tmp_path):
    data = v1_tarball("a")
    upstream_url = "http://download.example.invalid/models/mobilenet_v1_a.tgz"
    mirror_base = fault_server.url("/mirror")
    fault_server.add("/mirror/download.example.invalid/models/mobilenet_v1_a.tgz", data)
    catalog = load_catalog(write_catalog(tmp_path / "c.yaml", [model_entry("v1_a", upstream_url, data)]),
                           with_profile=False)
    path = fetch("v1_a", catalog=catalog, cache_dir=tmp_path / "cache", mirrors=[mirror_base])
    assert read_manifest(path).archive_sha256 == hashlib.sha256(data).hexdigest()


def test_every_source_failing_is_reported(fault_server, tmp_path):
    data = v1_tarball("a")
    url = fault_server.add("/up/m.tgz", data, default=Fault(status=404))
    bad_mirror = fault_server.url("/nothing-here")
    catalog = load_catalog(write_catalog(tmp_path / "c.yaml", [model_entry("v1_a", url, data)]), with_profile=False)
    with pytest.raises(Exception) as info:
        fetch("v1_a", catalog=catalog, cache_dir=tmp_path / "cache", mirrors=[bad_mirror, str(tmp_path / "nodir")])
    text = str(info.value)
    assert "every source failed" in text and "mirror " + bad_mirror in text and "upstream" in text
    assert "404" in text


def test_mirror_command_then_offline_fetch(cli, fault_server, two_models, tmp_path):
    catalog, served, catalog_path = two_models
    mirror_dir = tmp_path / "mirror"
    code, out, err = cli("--catalog", str(catalog_path), "mirror", str(mirror_dir), "v1_a", "v3_b", "--json")
    assert code == 0, err
    rows = json.loads(out)
    for row, s in zip(rows, served):
        assert Path(row["path"]).read_bytes() == s.data
        assert Path(row["path"]) == mirror_dir / "127.0.0.1:{}".format(fault_server.port) / "models" / f"{s.id}.tgz"
    fault_server.set_faults(served[0].path, default=Fault(status=500))   # upstream now broken
    code, out, err = cli("--catalog", str(catalog_path), "--offline", "--mirror", str(mirror_dir), "fetch", "v1_a",
                         "--json")
    assert code == 0, err
    assert json.loads(out)[0]["cached"] is False
    assert fault_server.stats(served[0].path).requests == 1  # only the mirror run touched upstream


def test_offline_missing_model_says_how_to_get_it(cli, two_models):
    _, _, catalog_path = two_models
    code, out, err = cli("--catalog", str(catalog_path), "--offline", "fetch", "v1_a")
    assert code == 1
    assert "v1_a" in err and "--offline" in err and "mobilenet-zoo fetch v1_a" in err


def test_offline_serves_cache(cli, two_models, fault_server):
    catalog, served, catalog_path = two_models
    assert cli("--catalog", str(catalog_path), "fetch", "v1_a", "-q")[0] == 0
    fault_server.reset_stats()
    code, out, _ = cli("--catalog", str(catalog_path), "--offline", "fetch", "v1_a")
    assert code == 0 and out.strip().endswith("v1_a/r1")
    assert fault_server.stats(served[0].path).requests == 0


# ------------------------------------------------------------------ CLI: several models, verify, cache
def test_fetch_several_jobs_and_failure_exit_code(cli, fault_server, tmp_path):
    specs = [(f"v1_m{i}", v1_tarball(f"m{i}")) for i in range(4)]
    catalog_path, served = serve_models(fault_server, tmp_path, specs)
    fault_server.set_faults(served[2].path, default=Fault(status=403))
    code, out, err = cli("--catalog", str(catalog_path), "fetch", "v1_m0", "v1_m1", "v1_m2", "v1_m3", "-j", "4",
                         "--json")
    assert code == 1
    rows = {r["id"]: r for r in json.loads(out)}
    assert set(rows) == {"v1_m0", "v1_m1", "v1_m2", "v1_m3"}
    assert "403" in rows["v1_m2"]["error"] and rows["v1_m2"]["path"] is None
    for i in (0, 1, 3):
        assert rows[f"v1_m{i}"]["sha256"] == served[i].sha256 and rows[f"v1_m{i}"]["cached"] is False
        assert rows[f"v1_m{i}"]["bytes_downloaded"] == len(served[i].data)
    # filters select models too
    code, out, _ = cli("--catalog", str(catalog_path), "fetch", "--all", "--json")
    assert code == 1 and sum(r["cached"] for r in json.loads(out)) == 3


def test_verify_and_repair(cli, fault_server, two_models, tmp_path):
    catalog, served, catalog_path = two_models
    args = ("--catalog", str(catalog_path))
    assert cli(*args, "fetch", "v1_a", "v3_b", "-q")[0] == 0
    code, out, _ = cli(*args, "verify", "--json")
    assert code == 0 and {r["status"] for r in json.loads(out)} == {"ok"}
    path = tmp_path / "cache" / "v1_a" / "r1" / "model"
    victim = sorted(path.iterdir())[0]
    data = bytearray(victim.read_bytes())
    data[0] ^= 0xFF                                   # same size: only a re-hash sees it
    victim.write_bytes(bytes(data))
    code, out, _ = cli(*args, "verify", "v1_a")
    assert code == 1 and "broken" in out and victim.name in out
    code, out, _ = cli(*args, "verify", "--repair", "--json")
    assert code == 0 and {r["id"]: r["status"] for r in json.loads(out)} == {"v1_a": "repaired", "v3_b": "ok"}
    assert cli(*args, "verify")[0] == 0


def test_cache_commands(cli, fault_server, two_models, tmp_path):
    catalog, served, catalog_path = two_models
    args = ("--catalog", str(catalog_path))
    assert cli(*args, "fetch", "v1_a", "v3_b", "-q")[0] == 0
    code, out, _ = cli(*args, "cache", "path")
    assert out.strip() == str(tmp_path / "cache")
    code, out, _ = cli(*args, "cache", "ls", "--json")
    assert {r["id"] for r in json.loads(out)} == {"v1_a", "v3_b"} and all(r["sizes_ok"] for r in json.loads(out))
    # leftovers of a dead process: a partial and a staging dir with an impossible pid
    dead = tmp_path / "cache" / layout.PARTIAL_DIR / "v1_a@r1.pid999999999.abcd.part"
    dead.write_bytes(b"x")
    (tmp_path / "cache" / layout.STAGING_DIR / "v1_a@r1.pid999999999.beef").mkdir()
    code, out, _ = cli(*args, "cache", "prune")
    assert code == 0 and "pid999999999" in out and not dead.exists()
    code, out, _ = cli(*args, "cache", "rm", "v1_a")
    assert code == 0 and not (tmp_path / "cache" / "v1_a").exists()
    assert (tmp_path / "cache" / "v3_b" / "r1" / "manifest.json").is_file()


def test_pick_fetch_chooses_and_fetches(cli, two_models, tmp_path):
    _, served, catalog_path = two_models
    code, out, err = cli("--catalog", str(catalog_path), "pick", "--max-macs", "1000", "--fetch", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["id"] == "v1_a" and read_manifest(Path(data["path"])).archive_sha256 == served[0].sha256


def test_global_options_reach_commands_that_fetch(cli, two_models, fault_server):
    """`--offline` applies to every command that may fetch (classify here), not just `fetch`."""
    pytest.importorskip("PIL")
    _, served, catalog_path = two_models
    image = Path(__file__).parent / "data" / "cat.bmp"
    code, out, err = cli("--catalog", str(catalog_path), "--offline", "classify", "v1_a", str(image))
    assert code == 1 and "--offline" in err and "v1_a" in err
    assert fault_server.stats(served[0].path).requests == 0


def test_deadline_flag_stops_a_dripping_server(cli, fault_server, two_models, tmp_path):
    import time

    _, served, catalog_path = two_models
    fault_server.set_faults(served[0].path, default=Fault(drip=2000, drip_chunk=100))
    start = time.monotonic()
    code, out, err = cli("--catalog", str(catalog_path), "fetch", "v1_a", "--deadline", "2", "-q")
    assert code == 1 and "v1_a" in err and time.monotonic() - start < 20
    assert not (tmp_path / "cache" / "v1_a").exists()
