"""The README's promises under attack, one class of hole at a time, through the real CLI.

Every test states the exact exit code, that the message names the model/file and the fix,
that no traceback leaks, and compares a listing of everything *outside* the cache (and of
the cache's verified entries) before and after: nothing outside changed, nothing verified lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path

import pytest

from zoo.fetching import layout
from zoo.fetching.locking import CacheLock, host_name

from . import archives
from .conftest import STATE
from .fetch_helpers import model_entry, v1_tarball, write_catalog
from .http_server import Fault


# ------------------------------------------------------------------ the world under attack
class World:
    """A loopback server, a catalog of three models (two pinned, one not), a fetched cache and
    a victim folder next to the cache that no command may ever touch."""

    def __init__(self, server, tmp_path: Path, cli):
        self.server, self.tmp, self._cli = server, tmp_path, cli
        self.cache = tmp_path / "cache"
        self.victim = tmp_path / "victim"
        (self.victim / "sub").mkdir(parents=True)
        (self.victim / "precious.txt").write_text("do not touch\n")
        (self.victim / "sub" / "data.bin").write_bytes(os.urandom(4096))
        self.data = {"v1_a": v1_tarball("a"), "v1_b": v1_tarball("b"), "v1_u": v1_tarball("u")}
        self.entries = []
        for model_id, data in self.data.items():
            url = server.add(f"/models/{model_id}.tgz", data)
            unpinned = model_id == "v1_u"  # no sha256 and no size: trust on first use, no cap from the catalog
            self.entries.append(model_entry(model_id, url, data, pinned=not unpinned, known_size=not unpinned))
        self.catalog = write_catalog(tmp_path / "catalog.yaml", self.entries)

    def url(self, model_id: str) -> str:
        return self.server.url(f"/models/{model_id}.tgz")

    def sha(self, model_id: str) -> str:
        return hashlib.sha256(self.data[model_id]).hexdigest()

    def cli(self, *args: str, catalog: Path | None = None, env: dict | None = None):
        code, out, err = self._cli("--catalog", str(catalog or self.catalog), *args, env=env)
        assert "Traceback" not in out + err, out + err
        return code, out, err

    def fetch_all(self) -> None:
        code, _, err = self.cli("fetch", "v1_a", "v1_b", "v1_u", "-q")
        assert code == 0, err

    def outside(self) -> dict[str, str]:
        """path -> content digest (or link target) of everything under tmp_path but the cache
        and this user's private state (the bench profile and parsed catalog copies)."""
        out = {}
        for folder, dirs, files in os.walk(self.tmp):
            if Path(folder) == self.tmp:
                dirs[:] = [d for d in dirs if d not in ("cache", STATE)]
            for name in dirs + files:
                p = Path(folder) / name
                rel = p.relative_to(self.tmp).as_posix()
                if p.is_symlink():
                    out[rel] = "-> " + os.readlink(p)
                elif p.is_file():
                    out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() + f" {p.stat().st_mode & 0o777:o}"
                else:
                    out[rel] = "dir"
        return out

    def verified(self) -> dict[str, str]:
        """id@release -> archive sha256 of every entry whose manifest and files check out."""
        from zoo.fetching.cache import Cache
        from zoo.fetching.manifest import cheap_problems

        found = {}
        for cached in Cache(self.cache).entries():
            if cached.manifest is not None and not cheap_problems(cached.path, cached.manifest):
                found[f"{cached.model_id}@{cached.release}"] = cached.manifest.archive_sha256
        return found


@pytest.fixture
def world(fault_server, tmp_path, cli):
    return World(fault_server, tmp_path, cli)


def _bad_catalog(world: World, **changes) -> tuple[Path, int]:
    """A copy of the catalog whose second entry has ``changes``; returns (path, that entry's line)."""
    entries = [dict(e) for e in world.entries]
    release, url = changes.pop("release_name", None), changes.pop("url", None)
    entries[1].update(changes)
    if release is not None or url is not None:  # downloads live in the releases list only
        rel = dict(entries[1]["releases"][0])
        if release is not None:
            rel["release"] = release
        if url is not None:
            rel["url"] = url
        entries[1]["releases"] = [rel]
    return write_catalog(world.tmp / "bad.yaml", entries), 0


# ------------------------------------------------------------------ 1. catalog names become paths
HOSTILE_IDS = ["../victim", "..", "a/../../victim", "/abs", ".hidden", "v1_b/..", "back\\slash", "sp ace"]
HOSTILE_RELEASES = ["../../victim", "..", "r/1", ".", "-rf"]
HOSTILE_URL_PATHS = ["/models/../../victim/x.tgz", "/./x.tgz", "/a/../b.tgz", "/models/", "/x%00/../y.tgz"]


@pytest.mark.parametrize("bad_id", HOSTILE_IDS)
@pytest.mark.parametrize("command", [("fetch", "v1_a"), ("cache", "rm", "v1_a"), ("verify", "--repair"),
                                     ("cache", "prune", "--unlisted")])
def test_hostile_id_is_refused_at_load_naming_file_line_and_entry(world, bad_id, command):
    world.fetch_all()
    bad, _ = _bad_catalog(world, id=bad_id)
    before, verified = world.outside(), world.verified()
    code, out, err = world.cli(*command, catalog=bad)
    assert code == 2
    id_lines = [i for i, t in enumerate(bad.read_text().splitlines(), 1) if re.match(r"^[-\s]*id:", t)]
    assert f"{bad}:{id_lines[1]}:" in err or f"{bad}:{id_lines[1]}," in err, err   # the bad entry's id line
    assert "'id'" in err and "plain name" in err
    assert world.outside() == before and world.verified() == verified


@pytest.mark.parametrize("bad_release", HOSTILE_RELEASES)
def test_hostile_release_name_is_refused(world, bad_release):
    world.fetch_all()
    verified = world.verified()
    bad, _ = _bad_catalog(world, release_name=bad_release)
    before = world.outside()
    for command in (("fetch", "v1_b"), ("cache", "rm", "v1_b"), ("verify", "--repair"), ("mirror", str(world.tmp / "m"),
                                                                                         "--all")):
        code, out, err = world.cli(*command, catalog=bad)
        assert code == 2 and f"{bad}:" in err and "entry 'v1_b'" in err and "release name" in err, err
    assert world.outside() == before and world.verified() == verified


@pytest.mark.parametrize("path", HOSTILE_URL_PATHS)
def test_hostile_url_path_is_refused_before_mirror_writes(world, path):
    bad, _ = _bad_catalog(world, url=world.server.url(path))
    before = world.outside()  # (taken after writing the bad catalog)
    code, out, err = world.cli("mirror", str(world.tmp / "mirror"), "--all", catalog=bad)
    assert code == 2 and f"{bad}:" in err and "entry 'v1_b'" in err and "url" in err, err
    assert world.outside() == before


@pytest.mark.parametrize("field, value", [("files", {"checkpoint": "../../victim/precious.txt"}),
                                          ("files", {"tflite": "/etc/passwd"}), ("archive_root", "../..")])
def test_hostile_file_patterns_are_refused_at_load(world, field, value):
    bad, _ = _bad_catalog(world, **{field: value})
    before = world.outside()
    code, out, err = world.cli("show", "v1_b", catalog=bad)
    assert code == 2 and f"{bad}:" in err and "entry 'v1_b'" in err and "relative path" in err, err
    assert world.outside() == before


def test_paths_are_checked_again_where_they_are_computed(tmp_path):
    """Independently of the catalog check: an entry built in Python cannot leave the cache."""
    from dataclasses import replace

    from zoo.catalog import load_catalog
    from zoo.errors import CacheError
    from zoo.fetching.mirrors import mirror_target

    entry = load_catalog(with_profile=False).get("v1_1.0_224")
    for bad in ("../x", "a/b", "..", ""):
        with pytest.raises(CacheError, match="not a plain file name"):
            layout.entry_dir(tmp_path, replace(entry, id=bad), entry.default_release)
        with pytest.raises(CacheError):
            layout.entry_dir(tmp_path, entry, replace(entry.default_release, release=bad))
    for url in ("http://h/../../x.tgz", "http://h/a/./b.tgz"):
        with pytest.raises(CacheError, match="refusing to mirror"):
            mirror_target(tmp_path, url)


# ------------------------------------------------------------------ 2. the cache is shared ground
def _dead_name(model_id: str, suffix: str = ".part") -> str:
    return f"{model_id}@r1.{host_name()}.pid999999999.0badf00d{suffix}"


@pytest.mark.parametrize("plant", ["symlink", "hardlink", "symlink-sidecar", "other-user"])
def test_planted_partial_is_never_written_through(world, plant):
    """A leftover in .partial/ that is a link (or not ours) is never adopted: the fetch downloads
    fresh, the file outside keeps its bytes, and the leftover stays for prune to report."""
    partial_dir = world.cache / layout.PARTIAL_DIR
    partial_dir.mkdir(parents=True)
    target = world.victim / "precious.txt"
    planted = partial_dir / _dead_name("v1_a")
    if plant == "symlink":
        planted.symlink_to(target)
    elif plant == "hardlink":
        os.link(target, planted)
    elif plant == "symlink-sidecar":
        planted.write_bytes(world.data["v1_a"][:100])
        Path(str(planted) + ".json").symlink_to(target)
    else:
        if os.geteuid() != 0:
            pytest.skip("chown to another user needs root")
        planted.write_bytes(world.data["v1_a"][:100])
        os.chown(planted, 12345, 12345)
    before, verified = world.outside(), world.verified()
    code, out, err = world.cli("fetch", "v1_a")
    assert code == 0, err
    assert world.outside() == before
    assert world.verified() == {**verified, "v1_a@r1": world.sha("v1_a")}


@pytest.mark.parametrize("where", ["model", "release", "partial-dir", "staging-dir"])
def test_symlinked_cache_folders_are_refused_not_followed(world, where):
    world.fetch_all()
    if where == "model":
        link = world.cache / "v1_b"
        (world.victim / "r1").mkdir()
        (world.victim / "r1" / "keep").write_text("mine")
    elif where == "release":
        link = world.cache / "v1_b" / "r1"
    else:
        link = world.cache / (layout.PARTIAL_DIR if where == "partial-dir" else layout.STAGING_DIR)
        assert world.cli("cache", "rm", "v1_b")[0] == 0   # so that fetch must write there
    import shutil

    shutil.rmtree(link)
    link.symlink_to(world.victim, target_is_directory=True)
    before = world.outside()
    verified = {k: v for k, v in world.verified().items() if not k.startswith("v1_b")}
    for command in (("fetch", "v1_b"), ("cache", "rm", "v1_b"), ("verify", "--repair", "v1_b"),
                    ("cache", "prune", "--unlisted")):
        code, out, err = world.cli(*command)
        if where in ("model", "release"):
            if command[:2] == ("cache", "prune"):
                assert code == 0  # a link is not an entry: skipped, never followed
            else:
                assert code == 1, (command, out, err)
                assert "symbolic link" in out + err and str(link) in out + err, (command, out, err)
        else:
            # our private folders: the commands that write there meet the link and refuse
            if command[0] == "fetch":
                assert code == 1 and "symbolic link" in err and str(link) in err, (command, out, err)
        assert world.outside() == before, command
        assert {k: v for k, v in world.verified().items() if not k.startswith("v1_b")} == verified


def test_symlinked_lock_file_is_refused(world):
    locks = world.cache / layout.LOCK_DIR
    locks.mkdir(parents=True)
    (locks / "v1_a@r1.lock").symlink_to(world.victim / "precious.txt")
    before = world.outside()
    code, out, err = world.cli("fetch", "v1_a")
    assert code == 1 and "symbolic link" in err and "v1_a@r1.lock" in err and "remove" in err
    assert world.outside() == before
    code, out, err = world.cli("cache", "prune")
    assert code == 0 and "v1_a@r1.lock" in out
    assert world.outside() == before and not (locks / "v1_a@r1.lock").is_symlink()
    assert world.cli("fetch", "v1_a", "-q")[0] == 0


@pytest.mark.parametrize("link", ["archive.tgz", "model-file", "manifest.json", "trusted.json"])
def test_links_planted_inside_the_cache_are_never_followed(world, link):
    world.fetch_all()
    entry = world.cache / "v1_a" / "r1"
    target = world.victim / "precious.txt"
    if link == "archive.tgz":
        (entry / layout.ARCHIVE).unlink()
        (entry / layout.ARCHIVE).symlink_to(target)
    elif link == "model-file":
        victim_file = sorted(p for p in (entry / layout.MODEL_DIR).rglob("*") if p.is_file())[0]
        victim_file.unlink()
        victim_file.symlink_to(target)
    elif link == "manifest.json":
        (world.tmp / "copy.json").write_bytes((entry / layout.MANIFEST).read_bytes())
        (entry / layout.MANIFEST).unlink()
        (entry / layout.MANIFEST).symlink_to(world.tmp / "copy.json")
    else:
        (world.cache / layout.TRUST_FILE).rename(world.tmp / "trusted-copy.json")
        (world.cache / layout.TRUST_FILE).symlink_to(world.tmp / "trusted-copy.json")
        (world.cache / "v1_u").rename(world.tmp / "moved-away")
    before = world.outside()
    if link == "trusted.json":
        code, out, err = world.cli("fetch", "v1_u")
        assert code == 1 and "symbolic link" in err and str(world.cache / layout.TRUST_FILE) in err
    else:
        code, out, err = world.cli("verify", "v1_a")
        assert code == 1 and "broken" in out
        code, out, err = world.cli("verify", "--repair", "v1_a")
        assert code == 0 and "repaired" in out, out + err
        assert world.verified()["v1_a@r1"] == world.sha("v1_a")
        assert not any(p.is_symlink() for p in entry.rglob("*"))
    assert world.outside() == before


def test_other_hosts_leftovers_are_never_reclaimed(world):
    """On a cache shared over NFS a pid means nothing on another machine."""
    world.fetch_all()
    partial_dir = world.cache / layout.PARTIAL_DIR
    theirs = partial_dir / "v1_a@r1.otherbox.pid999999999.0badf00d.part"
    mine_dead = partial_dir / _dead_name("v1_a")
    theirs.write_bytes(b"x" * 10)
    mine_dead.write_bytes(b"y" * 10)
    (world.cache / layout.STAGING_DIR / "v1_a@r1.otherbox.pid999999999.0badf00d").mkdir()
    code, out, err = world.cli("cache", "prune")
    assert code == 0 and str(mine_dead) in out and "otherbox" in err
    assert theirs.exists() and not mine_dead.exists()
    assert (world.cache / layout.STAGING_DIR / "v1_a@r1.otherbox.pid999999999.0badf00d").is_dir()
    assert world.cli("cache", "rm", "v1_a")[0] == 0
    assert world.cli("fetch", "v1_a", "-q")[0] == 0                  # a new download: theirs is not adopted
    assert theirs.read_bytes() == b"x" * 10
    assert (world.cache / layout.STAGING_DIR / "v1_a@r1.otherbox.pid999999999.0badf00d").is_dir()


# ------------------------------------------------------------------ 3. torn or ill-shaped state files
TRUST_DAMAGE = ['{"v1_u@r1": {"url": "', "", "[]", '"a string"', '{"v1_u@r1": []}', '{"v1_u@r1": {"url": 1}}',
                '{"v1_u@r1": {"url": "x", "sha256": "nothex"}}', '{"a": {"url": "u", "sha256": "%s", "size": 1e999}}'
                % ("0" * 64), "\xff\xfe"]


@pytest.mark.parametrize("damage", TRUST_DAMAGE)
def test_damaged_trust_store_is_an_error_never_an_empty_store(world, damage):
    world.fetch_all()
    trust = world.cache / layout.TRUST_FILE
    trust.write_bytes(damage.encode("utf-8", "surrogateescape") if damage != "\xff\xfe" else b"\xff\xfe")
    damaged = trust.read_bytes()
    (world.cache / "v1_u").rename(world.tmp / "moved-away")  # forces a new download of the unpinned model
    before = world.outside()
    code, out, err = world.cli("fetch", "v1_u")
    assert code == 1
    assert str(trust) in err and "damaged" in err and "mv " in err and "backup" in err
    assert trust.read_bytes() == damaged                       # not "repaired" into an empty store
    assert world.outside() == before


MANIFEST_DAMAGE = {
    "non-string path": lambda m: m["files"][0].update(path=7),
    "NUL in path": lambda m: m["files"][0].update(path="a\u0000b"),
    "escaping path": lambda m: m["files"][0].update(path="../../victim/precious.txt"),
    "infinite size": "Infinity",
    "negative size": lambda m: m["files"][0].update(size=-1),
    "files not a list": lambda m: m.update(files={"a": 1}),
    "archive not a mapping": lambda m: m.update(archive="x"),
    "truncated": "truncate",
    "a list": "list",
}


@pytest.mark.parametrize("damage", list(MANIFEST_DAMAGE))
def test_damaged_manifest_is_a_broken_repairable_entry(world, damage):
    world.fetch_all()
    manifest = world.cache / "v1_a" / "r1" / layout.MANIFEST
    how = MANIFEST_DAMAGE[damage]
    text = manifest.read_text()
    if how == "Infinity":
        manifest.write_text(text.replace('"size": ', '"size": Infinity, "x": ', 1))
    elif how == "truncate":
        manifest.write_text(text[: len(text) // 2])
    elif how == "list":
        manifest.write_text("[1, 2]")
    else:
        data = json.loads(text)
        how(data)
        manifest.write_text(json.dumps(data))
    before = world.outside()
    others = {k: v for k, v in world.verified().items() if k != "v1_a@r1"}
    code, out, err = world.cli("cache", "ls", "--json")
    assert code == 0
    row = next(r for r in json.loads(out) if r["id"] == "v1_a")
    assert row["sizes_ok"] is False and "manifest.json is damaged" in row["problem"]
    code, out, err = world.cli("verify", "v1_a")
    assert code == 1 and "broken" in out and "manifest.json is damaged" in out and "verify --repair" in err
    code, out, err = world.cli("--offline", "verify", "--repair", "v1_a")   # from the kept archive
    assert code == 0 and "repaired" in out and "kept archive" in out, out + err
    assert world.outside() == before
    assert world.verified() == {**others, "v1_a@r1": world.sha("v1_a")}
    # and fetch meets a damaged manifest the same way, offline too (the kept archive suffices)
    manifest.write_text("{")
    code, out, err = world.cli("--offline", "fetch", "v1_a")
    assert code == 0 and "manifest.json is damaged" in err and "rebuilt from the verified archive" in err
    assert world.verified() == {**others, "v1_a@r1": world.sha("v1_a")}


# ------------------------------------------------------------------ 6. data loss by our own commands
def test_prune_keeps_verified_entries_the_catalog_does_not_list(world):
    """A private catalog's models and old releases are verified data: prune keeps them unless
    --unlisted, and never touches folders it did not create (even one named like an alias)."""
    world.fetch_all()
    foreign = world.cache / "V1-A"          # resolves as an alias of v1_a, but is not ours
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    no_manifest = world.cache / "v1_a" / "scratch"
    no_manifest.mkdir()
    (no_manifest / "x").write_text("mine too")
    only_a = write_catalog(world.tmp / "only_a.yaml", [world.entries[0]])
    listed_before = sorted(p.relative_to(world.cache).as_posix() for p in world.cache.rglob("*"))
    verified = world.verified()
    before = world.outside()

    code, out, err = world.cli("cache", "prune", catalog=only_a)
    assert code == 0 and world.verified() == verified
    assert "v1_b" in err and "--unlisted" in err and "not provably ours" in err
    code, out, err = world.cli("cache", "prune", "--unlisted", "--dry-run", catalog=only_a)
    assert code == 0 and "would remove" in out and "v1_b" in out and world.verified() == verified
    assert sorted(p.relative_to(world.cache).as_posix() for p in world.cache.rglob("*")) == listed_before

    code, out, err = world.cli("cache", "prune", "--unlisted", catalog=only_a)
    assert code == 0
    assert world.verified() == {"v1_a@r1": world.sha("v1_a")}
    assert (foreign / "notes.txt").read_text() == "mine" and (no_manifest / "x").read_text() == "mine too"
    assert world.outside() == before


def test_prune_unlisted_removes_releases_whose_url_changed(world):
    world.fetch_all()
    moved = [dict(e) for e in world.entries]
    moved[1] = model_entry("v1_b", world.server.add("/moved/v1_b.tgz", world.data["v1_b"]), world.data["v1_b"])
    cat = write_catalog(world.tmp / "moved.yaml", moved)
    code, out, err = world.cli("cache", "prune", catalog=cat)
    assert code == 0 and "another URL" in err and "v1_b@r1" in world.verified()
    code, out, err = world.cli("cache", "prune", "--unlisted", catalog=cat)
    assert code == 0 and "another URL" in out and "v1_b@r1" not in world.verified()
    assert set(world.verified()) == {"v1_a@r1", "v1_u@r1"}


def test_rm_dry_run_removes_nothing_and_names_what_it_would(world):
    world.fetch_all()
    verified = world.verified()
    code, out, err = world.cli("cache", "rm", "v1_a", "v1_b", "--dry-run")
    assert code == 0 and "would remove" in out and str(world.cache / "v1_a" / "r1") in out
    assert world.verified() == verified
    code, out, err = world.cli("cache", "rm", "v1_a", "nonexistent_model")   # names checked before removing
    assert code == 2 and "nonexistent_model" in err and world.verified() == verified


@pytest.mark.parametrize("damage", ["truncate-file", "flip-byte", "delete-file", "extra-manifest-field"])
def test_repair_rebuilds_from_the_kept_archive_offline(world, damage):
    world.fetch_all()
    model = world.cache / "v1_a" / "r1" / layout.MODEL_DIR
    victim = sorted(p for p in model.rglob("*") if p.is_file())[0]
    if damage == "truncate-file":
        victim.write_bytes(victim.read_bytes()[:-1])
    elif damage == "flip-byte":
        data = bytearray(victim.read_bytes())
        data[0] ^= 1
        victim.write_bytes(bytes(data))
    elif damage == "delete-file":
        victim.unlink()
    else:
        m = world.cache / "v1_a" / "r1" / layout.MANIFEST
        m.write_text(m.read_text().replace('"files": [', '"files": [{"path": "ghost", "size": 1, "sha256": "%s"},'
                                           % ("0" * 64), 1))
    world.server.reset_stats()
    code, out, err = world.cli("--offline", "verify", "--repair")
    assert code == 0 and "repaired" in out and "from the kept archive" in out, out + err
    assert world.server.stats("/models/v1_a.tgz").requests == 0
    assert world.cli("verify")[0] == 0 and world.verified()["v1_a@r1"] == world.sha("v1_a")


def test_repair_downloads_only_when_the_kept_archive_is_bad(world):
    world.fetch_all()
    entry = world.cache / "v1_a" / "r1"
    archive = entry / layout.ARCHIVE
    data = bytearray(archive.read_bytes())
    data[-20] ^= 1                                   # same size: only the re-hash sees it
    archive.write_bytes(bytes(data))
    code, out, err = world.cli("verify", "v1_a")
    assert code == 1 and "archive.tgz: sha256" in out
    code, out, err = world.cli("--offline", "verify", "--repair", "v1_a")
    assert code == 1 and "repair-failed" in out and "offline" in out     # nothing to rebuild from offline
    assert entry.is_dir()                                                  # and the old entry is still there
    world.server.reset_stats()
    code, out, err = world.cli("verify", "--repair", "v1_a")
    assert code == 0 and "by downloading again" in out
    assert world.server.stats("/models/v1_a.tgz").requests == 1
    assert archive.read_bytes() == world.data["v1_a"]


# ------------------------------------------------------------------ 9. the cache trusts the catalog, not its past
def test_cache_hit_compares_the_pin_and_says_what_changed(world):
    world.fetch_all()
    new_data = v1_tarball("a2")
    world.server.add("/models/v1_a.tgz", new_data)                 # upstream re-published the file
    repinned = [dict(e) for e in world.entries]
    repinned[0] = model_entry("v1_a", world.url("v1_a"), new_data)
    cat = write_catalog(world.tmp / "repinned.yaml", repinned)
    code, out, err = world.cli("--offline", "fetch", "v1_a", catalog=cat)
    assert code == 1 and "v1_a@r1" in err and "catalog now pins" in err and world.sha("v1_a")[:16] in err
    code, out, err = world.cli("fetch", "v1_a", "--json", catalog=cat)
    assert code == 0 and "catalog now pins" in err
    assert json.loads(out)[0]["sha256"] == hashlib.sha256(new_data).hexdigest()


def test_repin_with_a_server_still_serving_old_bytes_loses_nothing(world):
    world.fetch_all()
    repinned = [dict(e) for e in world.entries]
    repinned[0] = model_entry("v1_a", world.url("v1_a"), v1_tarball("other"))
    repinned[0]["releases"][0]["size_bytes"] = len(world.data["v1_a"])
    cat = write_catalog(world.tmp / "repinned.yaml", repinned)
    verified = world.verified()
    code, out, err = world.cli("fetch", "v1_a", catalog=cat)
    assert code == 1 and "sha256 mismatch" in err and "expected sha256" in err and "actual" in err
    assert world.verified() == verified    # the old verified entry is only replaced by a verified one


def test_mirrors_are_tried_before_upstream_and_a_failing_mirror_falls_back(world):
    host = world.url("v1_a").split("/")[2]
    world.server.add(f"/m1/{host}/models/v1_a.tgz", world.data["v1_a"])
    m1, m2 = world.server.url("/m1"), world.server.url("/m2")          # m2 has nothing
    code, out, err = world.cli("--mirror", m2, "--mirror", m1, "fetch", "v1_a", "--json")
    assert code == 0 and json.loads(out)[0]["source"] == f"mirror {m1}"
    assert world.server.stats("/models/v1_a.tgz").requests == 0
    assert world.server.stats(f"/m2/{host}/models/v1_a.tgz").requests == 1
    # mirrors failing in three ways (404, 500, wrong bytes): upstream still delivers
    world.server.add(f"/bad/{host}/models/v1_b.tgz", world.data["v1_a"])
    world.server.add(f"/err/{host}/models/v1_b.tgz", world.data["v1_b"],
                     default=Fault(status=500, retry_after="0"))   # retried without waiting, then given up
    code, out, err = world.cli("--mirror", m2, "--mirror", world.server.url("/bad"), "--mirror",
                               world.server.url("/err"), "fetch", "v1_b", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["source"] == "upstream"
    assert world.verified()["v1_b@r1"] == world.sha("v1_b")


def test_every_source_failing_keeps_each_sources_digests(world):
    host = world.url("v1_a").split("/")[2]
    wrong = bytearray(world.data["v1_a"])
    wrong[100] ^= 1                                               # same size, other bytes
    world.server.add(f"/bad/{host}/models/v1_a.tgz", bytes(wrong))
    world.server.set_faults("/models/v1_a.tgz", default=Fault(status=404))
    code, out, err = world.cli("--mirror", world.server.url("/bad"), "fetch", "v1_a")
    assert code == 1 and "every source failed" in err
    assert world.sha("v1_a") in err and hashlib.sha256(wrong).hexdigest() in err   # expected and actual
    assert "404" in err and "upstream" in err


@pytest.mark.parametrize("change", ["new-last-modified", "206-without-validators", "same-date-other-size"])
def test_changed_validator_on_a_206_restarts(world, change):
    """Last-Modified but no ETag, a server that ignores If-Range: the 206 of the new version must
    not be spliced onto the old prefix. Unpinned, so a splice would be trusted on first use."""
    old, new = v1_tarball("u"), v1_tarball("u2")
    half = len(old) // 2
    world.server.add("/models/v1_u.tgz", old, faults=[Fault(drop_after=half, headers={"ETag": ""})],
                     default=Fault(status=404), last_modified=1_700_000_000)
    code, out, err = world.cli("fetch", "v1_u")
    partials = list((world.cache / layout.PARTIAL_DIR).glob("*.part"))
    assert code == 1 and [p.stat().st_size for p in partials] == [half]
    dead = partials[0].with_name(_dead_name("v1_u"))     # as if that process had died (this one lives on)
    partials[0].rename(dead)
    Path(str(partials[0]) + ".json").rename(str(dead) + ".json")
    headers = {"ETag": ""}
    if change == "206-without-validators":
        headers["Last-Modified"] = ""
    world.server.add("/models/v1_u.tgz", new, default=Fault(ignore_if_range=True, headers=headers),
                     last_modified=1_700_000_000 if change == "same-date-other-size" else 1_700_086_400)
    code, out, err = world.cli("fetch", "v1_u", "--json")
    assert code == 0, out + err
    assert json.loads(out)[0]["sha256"] == hashlib.sha256(new).hexdigest()
    ranges = [r.headers.get("Range") for r in world.server.stats("/models/v1_u.tgz").records]
    assert ranges[-2:] == [f"bytes={half}-", None]       # tried to resume, saw the change, restarted
    trusted = json.loads((world.cache / layout.TRUST_FILE).read_text())
    assert trusted["v1_u@r1"]["sha256"] == hashlib.sha256(new).hexdigest()


# ------------------------------------------------------------------ 4. every stream has a cap
@pytest.mark.parametrize("body", ["html", "zeros", "random"])
def test_refusal_by_the_unpacker_stops_an_endless_download(world, body):
    """No size in the catalog and a server that keeps sending: the unpacker refuses at the first
    block and the download stops at once, not at the end of 64 MB."""
    size = 64 << 20
    head = {"html": b"<!DOCTYPE html><html>", "zeros": b"\0" * 4, "random": os.urandom(16)}[body]
    world.server.add("/models/v1_u.tgz", head + b"x" * (size - len(head)))
    code, out, err = world.cli("fetch", "v1_u")
    assert code == 1 and "v1_u" in err
    assert world.server.stats("/models/v1_u.tgz").body_bytes < size // 2
    assert list((world.cache / layout.PARTIAL_DIR).iterdir()) == []
    assert "v1_u@r1" not in world.verified()


def test_unbounded_gzip_padding_is_refused(world):
    padded = world.data["v1_u"] + b"\0" * (20 << 20)
    world.server.add("/models/v1_u.tgz", padded)
    code, out, err = world.cli("fetch", "v1_u")
    assert code == 1 and "v1_u" in err and "padding" in err
    assert "v1_u@r1" not in world.verified() and not (world.cache / "v1_u").exists()


def test_unknown_size_download_has_a_cap(tmp_path, fault_server):
    from zoo.fetching.download import DownloadPolicy, download
    from zoo.errors import DownloadError

    url = fault_server.add("/big.bin", b"y" * (3 << 20))
    partial = tmp_path / "p.part"
    with pytest.raises(DownloadError, match="catalog gives no size"):
        download(url, partial, policy=DownloadPolicy(max_unknown_size=1 << 20, chunk_size=1 << 16))
    assert not partial.exists()
    src = tmp_path / "big.bin"
    src.write_bytes(b"y" * (3 << 20))
    with pytest.raises(DownloadError, match="catalog gives no size"):
        download(src.as_uri(), partial, policy=DownloadPolicy(max_unknown_size=1 << 20, chunk_size=1 << 16))


# ------------------------------------------------------------------ 5. errors that lie or lose work
def test_one_failure_in_fetch_j_loses_no_other_result(world, monkeypatch):
    """A bug of ours in one model (simulated: the only fault injected by hand) and an ordinary
    failure in another: every model's outcome is reported, JSON records share their keys."""
    import zoo.fetching.fetcher as fetching

    real = fetching.fetch_entry

    def buggy(entry, release, opts, **kw):
        if entry.id == "v1_b":
            raise RuntimeError("simulated bug")
        return real(entry, release, opts, **kw)

    monkeypatch.setattr(fetching, "fetch_entry", buggy)
    assert world.cli("fetch", "v1_a", "-q")[0] == 0
    world.server.set_faults("/models/v1_u.tgz", default=Fault(status=403))
    code, out, err = world.cli("fetch", "v1_a", "v1_b", "v1_u", "-j", "3", "--json")
    assert code == 3                                        # a bug is among the failures
    rows = {r["id"]: r for r in json.loads(out)}
    assert set(rows) == {"v1_a", "v1_b", "v1_u"}
    assert len({tuple(sorted(r)) for r in rows.values()}) == 1          # same keys for every record
    assert {"release", "source", "error"} <= set(rows["v1_a"])
    assert rows["v1_a"]["status"] == "cached" and rows["v1_a"]["error"] is None
    assert rows["v1_b"]["status"] == "failed" and "simulated bug" in rows["v1_b"]["error"]
    assert rows["v1_u"]["status"] == "failed" and "403" in rows["v1_u"]["error"]
    assert err.strip().splitlines()[-1] == "1 cached, 0 fetched, 2 failed"
    code, out, err = world.cli("fetch", "v1_a", "v1_u", "-j", "2")
    assert code == 1 and "403" in err and err.strip().splitlines()[-1] == "1 cached, 0 fetched, 1 failed"


def test_unresolvable_host_says_so_and_leaves_nothing(world):
    entries = [dict(world.entries[0]), *world.entries[1:]]
    entries[0] = model_entry("v1_a", "http://no-such-host.invalid/models/v1_a.tgz", world.data["v1_a"])
    cat = write_catalog(world.tmp / "dns.yaml", entries)
    start = time.monotonic()
    code, out, err = world.cli("fetch", "v1_a", catalog=cat)
    assert code == 1 and "cannot resolve host 'no-such-host.invalid'" in err
    assert "--mirror" in err and "--offline" in err and "PROXY" in err and "kept" not in err
    assert time.monotonic() - start < 30                                   # no five rounds of backoff
    for sub in (layout.PARTIAL_DIR, layout.STAGING_DIR, layout.LOCK_DIR):
        assert list((world.cache / sub).iterdir()) == [], sub


def test_nothing_downloaded_is_not_called_kept(world):
    import socket

    with socket.socket() as sock:                     # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    entries = [model_entry("v1_a", f"http://127.0.0.1:{port}/v1_a.tgz", world.data["v1_a"]), *world.entries[1:]]
    cat = write_catalog(world.tmp / "refused.yaml", entries)
    code, out, err = world.cli("fetch", "v1_a", "--deadline", "2", catalog=cat)
    assert code == 1 and "v1_a" in err and "nothing was downloaded" in err and "kept" not in err
    for sub in (layout.PARTIAL_DIR, layout.STAGING_DIR, layout.LOCK_DIR):
        assert list((world.cache / sub).iterdir()) == [], sub


def test_waiting_for_a_lock_says_who_holds_it(world):
    lock = CacheLock(world.cache / layout.LOCK_DIR / "v1_a@r1.lock", timeout=5, what="fetching v1_a@r1")
    lock.acquire()
    threading.Timer(1.0, lock.release).start()
    code, out, err = world.cli("fetch", "v1_a")
    assert code == 0
    assert f"waiting for pid {os.getpid()} on host {host_name()}" in err and "fetching v1_a@r1" in err
    assert list((world.cache / layout.LOCK_DIR).iterdir()) == []             # released locks leave no file


def _tmpfs(path: Path, size: str) -> None:
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a real full or read-only disk) needs root")
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode:
        pytest.skip("mount -t tmpfs is not permitted here")


@pytest.fixture
def small_disk(tmp_path):
    import subprocess

    mounted = []

    def make(path: Path, size: str) -> Path:
        _tmpfs(path, size)
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)])


def test_disk_full_during_unpack_is_a_space_error_and_keeps_the_download(world, small_disk):
    """A tarball that unpacks to 8 MB on a 4 MB disk: not a hostile archive, not deleted."""
    bomb = archives.tar_gz({"mobilenet_v1_u.ckpt.data-00000-of-00001": b"\0" * (8 << 20),
                            "mobilenet_v1_u.ckpt.index": b"i" * 100})
    world.server.add("/models/v1_u.tgz", bomb)
    cache = small_disk(world.cache, "4m")
    code, out, err = world.cli("fetch", "v1_u")
    assert code == 1
    assert "disk" in err and "full" in err and str(cache) in err
    assert "needs about 8.4 MB free (8.4 MB unpacked + the 0.0 MB archive)" in err     # from the headers
    assert "refusing" not in err and "hostile" not in err
    partials = list((cache / layout.PARTIAL_DIR).glob("*.part"))
    assert len(partials) == 1 and partials[0].read_bytes() == bomb              # the download is kept
    import subprocess

    subprocess.run(["mount", "-o", "remount,size=64m", str(cache)], check=True)
    dead = partials[0].with_name(_dead_name("v1_u"))
    partials[0].rename(dead)
    if Path(str(partials[0]) + ".json").exists():
        Path(str(partials[0]) + ".json").rename(str(dead) + ".json")
    world.server.reset_stats()
    code, out, err = world.cli("fetch", "v1_u")
    assert code == 0, err
    assert world.server.stats("/models/v1_u.tgz").body_bytes == 0              # nothing downloaded again


# ------------------------------------------------------------------ 7. ordinary situations are not bugs
def test_read_only_cache_commands_say_so(world, tmp_path, request):
    """A read-only mount as root (a real one), a cache without write permission otherwise."""
    import shutil
    import subprocess

    world.fetch_all()
    victim = sorted(p for p in (world.cache / "v1_a" / "r1" / layout.MODEL_DIR).rglob("*") if p.is_file())[0]
    data = bytearray(victim.read_bytes())
    data[0] ^= 1
    victim.write_bytes(bytes(data))                       # damaged: verify --repair has work to do
    (world.cache / layout.PARTIAL_DIR / _dead_name("v1_a")).write_bytes(b"x")
    if os.geteuid() == 0:
        ro = request.getfixturevalue("small_disk")(tmp_path / "ro", "32m")
        shutil.copytree(world.cache, ro / "cache", symlinks=True)
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        cache, expect = ro / "cache", "read-only"
    else:
        cache, expect = world.cache, "permission"
        for folder, dirs, files in os.walk(cache):
            os.chmod(folder, 0o555)
        request.addfinalizer(lambda: [os.chmod(f, 0o755) for f, _, _ in os.walk(cache)])
    env = {"MOBILENET_ZOO_CACHE": str(cache)}
    listing = sorted(str(p) for p in cache.rglob("*"))
    for command in (("cache", "prune"), ("cache", "rm", "v1_a"), ("verify", "--repair")):
        code, out, err = world.cli(*command, env=env)
        assert code == 1, (command, out, err)
        assert expect in (out + err).lower() and "unexpected" not in out + err, (command, out, err)
    assert sorted(str(p) for p in cache.rglob("*")) == listing
    code, out, err = world.cli("fetch", "v1_b", env=env)      # a populated read-only cache still serves
    assert code == 0 and str(cache / "v1_b" / "r1") in out


def test_broken_pipe_exits_quietly(tmp_path):
    import subprocess

    from .conftest import console_script

    script = console_script()
    for args in (["list"], ["list", "--json"], ["show", "v1_1.0_224", "--json"]):
        proc = subprocess.Popen([script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.close()                  # the reader is gone before anything is written
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=60)
        assert code == 1 and err == "", (args, code, err)


@pytest.mark.parametrize("as_json", [False, True])
def test_unwritable_profile_prints_figures_then_says_where(cli, tmp_path, as_json):
    pytest.importorskip("ai_edge_litert")
    from .test_bench_plot import TFLITE

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    profile = blocker / "profile.json"
    code, out, err = cli("bench", str(TFLITE), "--runs", "2", "--warmup", "0", *(["--json"] if as_json else []),
                         env={"MOBILENET_ZOO_PROFILE": str(profile)})
    assert code == 1 and "Traceback" not in err and "unexpected" not in err
    assert f"could not save the measurements to {profile}" in err and "MOBILENET_ZOO_PROFILE" in err
    if as_json:
        assert json.loads(out)[0]["median_ms"] > 0
    else:
        assert "median ms" in out


# ------------------------------------------------------------------ 8. secrets and sharing
def test_passwords_in_mirror_urls_are_masked_everywhere(world):
    host = world.url("v1_a").split("/")[2]
    world.server.add(f"/m/{host}/models/v1_a.tgz", world.data["v1_a"])
    secret = "s3cr3t-pw"
    mirror = world.server.url("/m").replace("http://", f"http://alice:{secret}@")
    broken = world.server.url("/none").replace("http://", f"http://bob:{secret}@")
    code, out, err = world.cli("--mirror", mirror, "fetch", "v1_a", "--json")
    assert code == 0 and secret not in out + err and "alice:***@" in json.loads(out)[0]["source"]
    world.server.set_faults("/models/v1_b.tgz", default=Fault(status=404))
    for command in (("fetch", "v1_b"), ("fetch", "v1_b", "--json"), ("mirror", str(world.tmp / "mm"), "v1_b")):
        code, out, err = world.cli("--mirror", broken, *command)
        assert code == 1 and secret not in out + err and "bob:***@" in out + err, (command, out, err)


def test_passwords_in_a_private_catalogs_urls_are_masked(world):
    world.fetch_all()
    secret = "catalog-pw-42"
    entries = [dict(e) for e in world.entries]
    for i in (0, 1):   # v1_a: the cached copy's URL changed (a warning); v1_b: a 404 (an error)
        url = world.url(entries[i]["id"]).replace("http://", f"http://carol:{secret}@")
        if i == 1:
            url = url.replace("/models/", "/missing/")
        entries[i] = model_entry(entries[i]["id"], url, world.data[entries[i]["id"]])
    cat = write_catalog(world.tmp / "private.yaml", entries)
    assert world.cli("cache", "rm", "v1_b")[0] == 0
    for args in (("fetch", "v1_a", "v1_b"), ("fetch", "v1_a", "v1_b", "--json"), ("verify",),
                 ("show", "v1_a"), ("show", "v1_a", "--json"), ("list", "--json"), ("pick", "--json"),
                 ("fetch", "v1_b", "--dry-run"), ("fetch", "v1_b", "--dry-run", "--json")):
        code, out, err = world.cli(*args, catalog=cat)
        assert secret not in out + err, (args, out, err)
        if args[0] in ("show", "list", "pick"):
            assert code == 0 and "carol:***@" in out, (args, out, err)
        if args[0] == "fetch":
            assert code == (0 if "--dry-run" in args else 1) and "carol:***@" in out + err, (args, out, err)
    # the first fetch warned about v1_a's changed URL (and rebuilt it from its kept archive)


def test_mirror_token_goes_to_mirrors_only_and_never_across_hosts(world):
    host = world.url("v1_a").split("/")[2]
    world.server.add(f"/m/{host}/models/v1_a.tgz", world.data["v1_a"])
    world.server.redirect(f"/m/{host}/models/v1_b.tgz",
                          world.url("v1_b").replace("127.0.0.1", "localhost"))    # another host name
    env = {"MOBILENET_ZOO_MIRROR_TOKEN": "tok-123456"}
    code, out, err = world.cli("--mirror", world.server.url("/m"), "fetch", "v1_a", "v1_b", "v1_u", env=env)
    assert code == 0, err
    seen = {path: [r.headers.get("Authorization") for r in world.server.stats(path).records]
            for path in (f"/m/{host}/models/v1_a.tgz", f"/m/{host}/models/v1_b.tgz", "/models/v1_b.tgz",
                         "/models/v1_u.tgz")}
    assert seen[f"/m/{host}/models/v1_a.tgz"] == ["Bearer tok-123456"]
    assert seen[f"/m/{host}/models/v1_b.tgz"] == ["Bearer tok-123456"]
    assert seen["/models/v1_b.tgz"] == [None]             # the redirect target is another host
    assert all(a is None for a in seen["/models/v1_u.tgz"])   # upstream (after the mirror's 404) gets nothing


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_files_we_write_honour_the_umask(world, umask):
    from zoo.catalog import profile

    old = os.umask(umask)
    try:
        assert world.cli("fetch", "v1_a", "v1_u", "-q")[0] == 0
        written = [world.cache / "v1_a" / "r1" / layout.MANIFEST, world.cache / layout.TRUST_FILE,
                   profile.record("v1_a", "tflite", 1, 1.0, 2.0, path=world.tmp / "prof" / "profile.json")]
    finally:
        os.umask(old)
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_plots_honour_the_umask(tmp_path, umask):
    pytest.importorskip("matplotlib")
    from zoo.catalog import load_catalog
    from zoo.catalog.plot import plot

    old = os.umask(umask)
    try:
        plot(load_catalog(with_profile=False).entries, x="macs", out=tmp_path / "p.png")
    finally:
        os.umask(old)
    assert (tmp_path / "p.png").stat().st_mode & 0o777 == 0o666 & ~umask
