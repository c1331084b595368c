"""zoo._util.atomic directly: the one atomic writer and the one JSON state reader, and their users."""

from __future__ import annotations

import json
import os

import pytest

from zoo.catalog import parsed_copy as catalog_cache, profile
from zoo._util.atomic import DamagedStateFile, atomic_file, atomic_write_json, read_json, read_state
from zoo.fetching.locking import holder


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_file(target) as fh:
        fh.write(b"half")
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"a": 1} and os.listdir(tmp_path) == ["state.json"]


def test_reader_tells_missing_from_damaged_and_the_lenient_form_hides_both(tmp_path):
    path = tmp_path / "s.json"
    assert read_state(path) is None and read_json(path) is None
    for bad in (b"", b"{torn", b"[NaN]", b"\xff\xfe"):
        path.write_bytes(bad)
        with pytest.raises(DamagedStateFile):
            read_state(path)
        assert read_json(path) is None
    path.write_bytes(b"x" * 100)
    assert read_json(path, cap=10) is None
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    (tmp_path / "real.json").write_text("{}")
    with pytest.raises(DamagedStateFile, match="symbolic link"):
        read_state(tmp_path / "link.json")


def test_private_state_refuses_a_file_others_may_write(tmp_path):
    path = tmp_path / "p.json"
    atomic_write_json(path, {"k": 1}, mode=0o600)
    assert read_state(path, private=True) == {"k": 1}
    for mode in (0o620, 0o602):
        os.chmod(path, mode)
        with pytest.raises(DamagedStateFile, match="others may write"):
            read_state(path, private=True)
        assert read_state(path) == {"k": 1}  # a plain state file does not ask


def test_parsed_catalog_copy_is_used_only_while_private(tmp_path):
    source = tmp_path / "catalog.yaml"
    source.write_text("models: []\n")
    stat, data, models = source.stat(), source.read_bytes(), [{"id": "m"}]
    catalog_cache.store_models(source, stat, data, models)
    assert catalog_cache.load_models(source, stat, data) == models
    os.chmod(catalog_cache.cache_file(source), 0o666)  # planted or loosened: parse the YAML again
    assert catalog_cache.load_models(source, stat, data) is None


def test_profile_and_lock_holder_survive_damaged_files(tmp_path):
    path = tmp_path / "profile.json"
    path.write_text('{"measurements": ')
    assert profile.read_local_latencies(path) == {}
    profile.record("m", "tflite", 1, 2.0, 3.0, path=path)  # bench rewrites it whole
    assert profile.read_local_latencies(path)["m"]["local"] == 2.0
    lock = tmp_path / "x.lock"
    lock.write_text('{"pid": 12, "host": "h", "since": 0, "what": "fetching m"')  # torn by its writer
    assert holder(lock) is None
    lock.write_text('{"pid": 12, "host": "h", "since": 0, "what": "fetching m"}')
    assert holder(lock).startswith("pid 12 on host h (fetching m since")
