"""zoo.fetching.cache, zoo._util.safepath, zoo.fetching.locking and zoo._util.atomic, directly (the CLI tests are in test_hardening)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from zoo.fetching import layout
from zoo._util.atomic import DamagedStateFile, atomic_write_json, read_state
from zoo.fetching.cache import Cache, TrustStore, TrustStoreError, owner_of, private_name
from zoo.fetching.manifest import Manifest, ManifestError, load_manifest, read_manifest
from zoo.catalog import load_catalog
from zoo.errors import CacheError
from zoo.fetching.locking import CacheLock, LockTimeout, host_name
from zoo._util.safepath import inside, open_file, remove_tree

SHA = "ab" * 32


@pytest.fixture(scope="module")
def entry():
    return load_catalog(with_profile=False).get("v1_1.0_224")


def _manifest(entry, **changes) -> Manifest:
    m = Manifest(entry.id, entry.default_release.release, entry.default_release.url, SHA, 10,
                 (("a/b.txt", 3, SHA),), False, time.time(), True)
    return replace(m, **changes)


def _entry_on_disk(cache: Path, entry, manifest: Manifest | None = None) -> Path:
    path = layout.entry_dir(cache, entry, entry.default_release)
    (path / layout.MODEL_DIR / "a").mkdir(parents=True)
    (path / layout.MODEL_DIR / "a" / "b.txt").write_bytes(b"abc")
    (path / layout.ARCHIVE).write_bytes(b"0123456789")
    atomic_write_json(path / layout.MANIFEST, (manifest or _manifest(entry)).to_json())
    return path


# ------------------------------------------------------------------ private names
@pytest.mark.parametrize("name, expected", [
    ("v1_1.0_224@2018_08_02.myhost.pid42.0badf00d.part", ("v1_1.0_224@2018_08_02", "myhost", 42)),
    ("v1_1.0_224@2018_08_02.myhost.pid42.0badf00d.part.json", ("v1_1.0_224@2018_08_02", "myhost", 42)),
    ("v1_a@r1.pid7.abcd.part", ("v1_a@r1", None, 7)),                 # written before hosts were added
    ("trash.box-2.pid9.deadbeef", ("trash", "box-2", 9)),
    ("v1_a@r1.myhost.pid42.0badf00d", ("v1_a@r1", "myhost", 42)),     # a staging directory
])
def test_owner_of_reads_our_names(name, expected):
    owner = owner_of(name)
    assert (owner.key, owner.host, owner.pid) == expected


@pytest.mark.parametrize("name", ["notes.txt", "v1_a@r1.part", "../x@r1.h.pid1.abcd.part", "v1_a.h.pid1.abcd",
                                  "v1_a@r 1.h.pid1.abcd.part", "v1_a@r1.h.pid1.XYZW.part"])
def test_names_we_never_create_have_no_owner(name):
    assert owner_of(name) is None


def test_private_names_carry_this_host_and_only_local_dead_writers_are_dead(entry):
    name = private_name(entry, entry.default_release)
    owner = owner_of(name + ".part")
    assert owner.host == host_name() and owner.pid == os.getpid() and not owner.dead
    assert owner_of(f"{entry.id}@r.{host_name()}.pid999999999.abcd").dead
    assert not owner_of(f"{entry.id}@r.some-other-host.pid999999999.abcd").dead   # never judged from here


# ------------------------------------------------------------------ manifests
def test_manifest_round_trips(entry):
    m = _manifest(entry)
    assert Manifest.from_json(json.loads(json.dumps(m.to_json()))) == m


@pytest.mark.parametrize("field, value", [
    ("files[0].path", "../x"), ("files[0].path", "/abs"), ("files[0].path", "a//b"), ("files[0].path", 7),
    ("files[0].path", "a\x00b"), ("files[0].size", -1), ("files[0].size", 1.5), ("files[0].size", True),
    ("files[0].size", 10**20), ("files[0].sha256", "xyz"), ("archive.sha256", None), ("archive.size", "10"),
    ("model_id", ["x"]), ("url", None), ("created_at", "yesterday"), ("files", "all of them"),
])
def test_manifest_fields_are_validated(entry, field, value):
    data = _manifest(entry).to_json()
    target, key = data, field
    if "." in field:
        head, key = field.split(".")
        target = data["files"][0] if head == "files[0]" else data[head]
    target[key] = value
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Manifest.from_json(data)


def test_load_manifest_tells_missing_from_damaged(tmp_path, entry):
    assert load_manifest(tmp_path) is None
    (tmp_path / layout.MANIFEST).write_text('{"version": 1, "model_id": ')
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(tmp_path)
    assert read_manifest(tmp_path) is None
    (tmp_path / layout.MANIFEST).unlink()
    real = tmp_path / "real.json"
    atomic_write_json(real, _manifest(entry).to_json())
    (tmp_path / layout.MANIFEST).symlink_to(real)                # a planted link is not our manifest
    with pytest.raises(ManifestError, match="symbolic link"):
        load_manifest(tmp_path)


# ------------------------------------------------------------------ trust store
def test_trust_store_first_use_wins_and_url_must_match(tmp_path, entry):
    store, release = TrustStore(tmp_path), entry.default_release
    assert store.get(entry, release) is None
    store.record(entry, release, SHA, 10)
    store.record(entry, release, "cd" * 32, 10)
    assert store.get(entry, release) == SHA
    assert store.get(entry, replace(release, url=release.url + "?moved")) is None
    assert not list(tmp_path.glob("*.lock"))                    # the lock leaves no file behind


@pytest.mark.parametrize("text", ["{", "", "[1]", '{"k": "v"}', '{"k": {"url": "u"}}', '{"k": {"url": "u", '
                                  f'"sha256": "{SHA}", "size": -3}}'])
def test_damaged_trust_store_raises_naming_the_file(tmp_path, entry, text):
    (tmp_path / layout.TRUST_FILE).write_text(text)
    with pytest.raises(TrustStoreError) as info:
        TrustStore(tmp_path).get(entry, entry.default_release)
    assert str(tmp_path / layout.TRUST_FILE) in info.value.message and "mv " in info.value.hint
    with pytest.raises(TrustStoreError):
        TrustStore(tmp_path).record(entry, entry.default_release, SHA, 1)
    assert (tmp_path / layout.TRUST_FILE).read_text() == text


# ------------------------------------------------------------------ examining and removing entries
def test_examine_says_why_an_entry_cannot_serve(tmp_path, entry):
    cache, release = Cache(tmp_path), entry.default_release
    assert cache.examine(entry, release).problem == "not cached"
    path = _entry_on_disk(tmp_path, entry)
    assert cache.examine(entry, release).problem is None and cache.lookup(entry, release)[0] == path
    assert "catalog now says" in cache.examine(entry, replace(release, url=release.url + "x")).problem
    (path / layout.MODEL_DIR / "a" / "b.txt").write_bytes(b"ab")
    assert "size mismatch" in cache.examine(entry, release).problem
    (path / layout.MANIFEST).write_text("[]")
    assert "damaged" in cache.examine(entry, release).problem
    atomic_write_json(path / layout.MANIFEST, _manifest(entry, model_id="v2_x").to_json())
    assert "describes v2_x" in cache.examine(entry, release).problem


def test_entries_skip_links_and_foreign_names(tmp_path, entry):
    _entry_on_disk(tmp_path, entry)
    outside = tmp_path.parent / (tmp_path.name + "-outside")
    (outside / "r1").mkdir(parents=True)
    (tmp_path / "linked_model").symlink_to(outside, target_is_directory=True)
    (tmp_path / "bad name").mkdir()
    found = [(c.model_id, c.release) for c in Cache(tmp_path).entries()]
    assert found == [(entry.id, entry.default_release.release)]


def test_discard_and_remove_never_leave_the_cache(tmp_path, entry):
    cache = Cache(tmp_path / "cache")
    outside = tmp_path / "outside"
    (outside / entry.default_release.release).mkdir(parents=True)
    (outside / entry.default_release.release / "keep").write_text("x")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / entry.id).symlink_to(outside, target_is_directory=True)
    with pytest.raises(CacheError, match="symbolic link"):
        cache.remove(entry)
    with pytest.raises(CacheError):
        cache.discard(tmp_path / "cache" / entry.id / entry.default_release.release)
    with pytest.raises(CacheError, match="not inside"):
        cache.discard(outside)
    assert (outside / entry.default_release.release / "keep").read_text() == "x"


def test_remove_dry_run_and_for_real(tmp_path, entry):
    path = _entry_on_disk(tmp_path, entry)
    assert Cache(tmp_path).remove(entry, dry_run=True) == [path] and path.is_dir()
    assert Cache(tmp_path).remove(entry) == [path] and not path.exists()
    assert not (tmp_path / entry.id).exists()


def test_remove_tree_unlinks_links_and_keeps_their_targets(tmp_path):
    target = tmp_path / "target"
    (target / "d").mkdir(parents=True)
    (target / "d" / "f").write_text("keep")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "to_dir").symlink_to(target, target_is_directory=True)
    (tree / "to_file").symlink_to(target / "d" / "f")
    os.chmod(tree / "sub", 0o500)
    remove_tree(tree)
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    remove_tree(link)
    assert not tree.exists() and not link.exists() and (target / "d" / "f").read_text() == "keep"


# ------------------------------------------------------------------ partials of dead writers
def test_adopt_partial_takes_only_plain_leftovers_of_dead_local_writers(tmp_path, entry):
    cache, release = Cache(tmp_path), entry.default_release
    folder = tmp_path / layout.PARTIAL_DIR
    folder.mkdir()
    key = f"{entry.id}@{release.release}"
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"o" * 50)
    (folder / f"{key}.{host_name()}.pid999999991.aaaa.part").symlink_to(outside)        # a link: never
    os.link(outside, folder / f"{key}.{host_name()}.pid999999992.bbbb.part")            # a hard link: never
    (folder / f"{key}.otherhost.pid999999993.cccc.part").write_bytes(b"x" * 40)         # another host: never
    (folder / f"{key}.{host_name()}.pid{os.getpid()}.dddd.part").write_bytes(b"x" * 30)  # alive: never
    good = folder / f"{key}.{host_name()}.pid999999994.eeee.part"
    good.write_bytes(b"g" * 20)
    (folder / (good.name + ".json")).write_text("{}")
    mine = cache.adopt_partial(entry, release)
    assert mine.read_bytes() == b"g" * 20 and Path(str(mine) + ".json").exists()
    assert owner_of(mine.name).pid == os.getpid()
    assert outside.read_bytes() == b"o" * 50
    assert len(list(folder.glob("*.part"))) == 5


def test_prune_dry_run_lists_and_keeps(tmp_path, entry):
    folder = tmp_path / layout.PARTIAL_DIR
    folder.mkdir(parents=True)
    dead = folder / f"{entry.id}@r.{host_name()}.pid999999999.abcd.part"
    dead.write_bytes(b"x")
    (folder / "README").write_text("not ours")
    report = Cache(tmp_path).prune(dry_run=True)
    assert any(str(dead) in r for r in report.removed) and dead.exists()
    assert any("README" in k for k in report.kept)
    report = Cache(tmp_path).prune()
    assert not dead.exists() and (folder / "README").exists()


# ------------------------------------------------------------------ safe paths, opens, locks, state files
def test_inside_refuses_escapes_and_links(tmp_path):
    assert inside(tmp_path, "a", "b") == tmp_path / "a" / "b"
    for parts in (("..",), ("a/b",), ("",), ("a\x00",), (".",)):
        with pytest.raises(CacheError):
            inside(tmp_path, *parts)
    (tmp_path / "link").symlink_to(tmp_path.parent, target_is_directory=True)
    with pytest.raises(CacheError, match="symbolic link"):
        inside(tmp_path, "link", "x")


def test_open_file_refuses_links_hard_links_and_truncates_only_after_checks(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "sym").symlink_to(victim)
    os.link(victim, tmp_path / "hard")
    for name in ("sym", "hard"):
        for mode in ("wb", "r+b", "rb"):
            with pytest.raises(CacheError):
                open_file(tmp_path / name, mode)
    (tmp_path / "dir").mkdir()
    with pytest.raises(CacheError, match="not a regular file"):
        open_file(tmp_path / "dir", "rb")
    assert victim.read_bytes() == b"precious"
    with open_file(tmp_path / "new", "wb") as fh:
        fh.write(b"ok")
    assert (tmp_path / "new").read_bytes() == b"ok"


def test_lock_names_its_holder_refuses_links_and_leaves_no_file(tmp_path):
    path = tmp_path / "locks" / "m.lock"
    messages = []
    with CacheLock(path, timeout=5, what="fetching m"):
        assert "fetching m" in path.read_text()
        with pytest.raises(LockTimeout) as info:
            CacheLock(path, timeout=0.3, on_wait=messages.append, poll=0.05).acquire()
    assert f"pid {os.getpid()} on host {host_name()}" in info.value.message
    assert messages and "waiting for" in messages[0]
    assert not path.exists()
    victim = tmp_path / "victim"
    victim.write_text("keep")
    path.symlink_to(victim)
    with pytest.raises(CacheError, match="symbolic link"):
        CacheLock(path, timeout=1).acquire()
    assert victim.read_text() == "keep"


@pytest.mark.parametrize("text, reason", [("", "empty"), ("{", "not valid JSON"), ('{"a": NaN}', "non-finite"),
                                          ('{"a": Infinity}', "non-finite"), (b"\xff", "not valid JSON")])
def test_read_state_tells_missing_from_damaged(tmp_path, text, reason):
    path = tmp_path / "state.json"
    assert read_state(path) is None
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DamagedStateFile, match=reason):
        read_state(path)
    path.write_text('{"ok": [1, 2]}')
    assert read_state(path) == {"ok": [1, 2]}
    with pytest.raises(DamagedStateFile, match="larger than"):
        read_state(path, cap=4)
