"""zoo.fetching.verify directly: each status, the re-hash of the kept archive, and repair's two routes."""

from __future__ import annotations

import pytest

from zoo.fetching import layout
from zoo.fetching.cache import Cache
from zoo.catalog import load_catalog
from zoo.fetching.fetcher import FetchOptions, fetch_entry
from zoo.fetching.verify import cached_pairs, verify_entry

from .fetch_helpers import serve_models, v1_tarball


@pytest.fixture
def setup(fault_server, tmp_path):
    catalog_path, served = serve_models(fault_server, tmp_path, [("v1_a", v1_tarball("a"))])
    catalog = load_catalog(catalog_path, with_profile=False)
    entry, release = catalog.resolve("v1_a")
    opts = FetchOptions(cache_dir=tmp_path / "cache", warn=lambda m: None)
    return catalog, entry, release, opts, served[0], fault_server


def _flip(path, at=0):
    data = bytearray(path.read_bytes())
    data[at] ^= 1
    path.write_bytes(bytes(data))


def test_missing_then_ok(setup):
    catalog, entry, release, opts, _, _ = setup
    assert verify_entry(entry, release, opts).status == "missing"
    fetch_entry(entry, release, opts)
    assert verify_entry(entry, release, opts).status == "ok"
    assert cached_pairs(catalog, Cache(opts.cache_dir)) == [(entry, release)]


def test_rehash_of_the_kept_archive_finds_a_same_size_change(setup):
    catalog, entry, release, opts, served, _ = setup
    path = fetch_entry(entry, release, opts).path
    _flip(path / layout.ARCHIVE, at=50)
    report = verify_entry(entry, release, opts)
    assert report.status == "broken" and any(p.startswith("archive.tgz: sha256") for p in report.problems)


def test_rehash_of_unpacked_files_finds_a_same_size_change(setup):
    catalog, entry, release, opts, served, _ = setup
    path = fetch_entry(entry, release, opts).path
    victim = sorted((path / layout.MODEL_DIR).iterdir())[0]
    _flip(victim)
    report = verify_entry(entry, release, opts)
    assert report.status == "broken" and any("sha256 mismatch" in p and victim.name in p for p in report.problems)


def test_repair_prefers_the_kept_archive_and_works_offline(setup):
    catalog, entry, release, opts, served, server = setup
    path = fetch_entry(entry, release, opts).path
    _flip(sorted((path / layout.MODEL_DIR).iterdir())[0])
    server.reset_stats()
    opts.offline = True
    report = verify_entry(entry, release, opts, repair=True)
    assert (report.status, report.how) == ("repaired", "from the kept archive")
    assert server.stats(served.path).requests == 0
    assert verify_entry(entry, release, opts).status == "ok"


def test_repair_downloads_when_no_archive_was_kept(setup):
    catalog, entry, release, opts, served, server = setup
    opts.keep_archive = False
    path = fetch_entry(entry, release, opts).path
    assert not (path / layout.ARCHIVE).exists()
    _flip(sorted((path / layout.MODEL_DIR).iterdir())[0])
    server.reset_stats()
    report = verify_entry(entry, release, opts, repair=True)
    assert (report.status, report.how) == ("repaired", "by downloading again")
    assert server.stats(served.path).requests == 1
    assert verify_entry(entry, release, opts).status == "ok"


def test_repair_failure_is_reported_and_keeps_the_entry(setup):
    catalog, entry, release, opts, served, server = setup
    opts.keep_archive = False
    path = fetch_entry(entry, release, opts).path
    _flip(sorted((path / layout.MODEL_DIR).iterdir())[0])
    opts.offline = True
    report = verify_entry(entry, release, opts, repair=True)
    assert report.status == "repair-failed" and "offline" in report.problems[-1]
    assert path.is_dir()


def test_a_link_in_place_of_an_entry_is_an_error_of_that_model_only(setup, tmp_path):
    catalog, entry, release, opts, _, _ = setup
    (tmp_path / "elsewhere").mkdir()
    (opts.cache_dir / entry.id).mkdir(parents=True)
    (opts.cache_dir / entry.id / release.release).symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    report = verify_entry(entry, release, opts, repair=True)
    assert report.status == "error" and "symbolic link" in report.problems[0]
    assert (tmp_path / "elsewhere").is_dir()
