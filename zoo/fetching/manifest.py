"""The manifest of a cache entry: what a verified entry holds, and the checks against it.

``manifest.json`` is written once, in the staging directory, after the archive's sha256
matched and the unpack was clean (``zoo.fetching.fetcher``); it lists the archive's digest and
every unpacked file's size and sha256. Read back, it is untrusted input: every field is
validated (:meth:`Manifest.from_json`), and a damaged one makes the entry broken (repairable),
never trusted. The cheap check (sizes, on every cache hit) and the deep one (`verify`:
every hash) compare the tree on disk with it (:func:`verify_tree`).

The unpacker (``zoo.fetching.unpack``) produces :class:`ManifestFile` rows; the cache (``zoo.fetching.cache``)
reads and checks manifests; both import this module, which imports neither.
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from . import layout
from .._util.atomic import DamagedStateFile, atomic_write_json, read_state
from .hashing import sha256_file

MANIFEST_VERSION = 1
MAX_BYTES = 1 << 40          # no MobileNet file comes near a terabyte: a bigger number is damage
HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ManifestFile:
    """One unpacked regular file; ``path`` is POSIX, relative to the unpack root."""

    path: str
    size: int
    sha256: str


class ManifestError(DamagedStateFile):
    """manifest.json exists but does not describe an entry: the entry is broken (repairable)."""


@dataclass(frozen=True)
class Manifest:
    """What a verified entry holds; written at unpack time, checked by `verify`."""

    model_id: str
    release: str
    url: str
    archive_sha256: str
    archive_size: int
    files: tuple[tuple[str, int, str], ...]   # (path, size, sha256)
    trusted_on_first_use: bool
    created_at: float
    archive_kept: bool
    # each role the catalog promises -> the file found for it at unpack time (None: not found)
    roles: tuple[tuple[str, str | None], ...] = ()

    def to_json(self) -> dict:
        return {
            "version": MANIFEST_VERSION, "model_id": self.model_id, "release": self.release, "url": self.url,
            "archive": {"sha256": self.archive_sha256, "size": self.archive_size, "kept": self.archive_kept},
            "files": [{"path": p, "size": s, "sha256": h} for p, s, h in self.files],
            "trusted_on_first_use": self.trusted_on_first_use, "created_at": self.created_at,
            "roles": dict(self.roles),
        }

    @classmethod
    def of_unpacked(cls, model_id: str, release: str, url: str, archive_sha256: str, archive_size: int,
                    files: Iterable[ManifestFile], *, trusted_on_first_use: bool, archive_kept: bool,
                    roles: Mapping[str, str | None] | None = None) -> "Manifest":
        """The manifest of an entry just unpacked from a verified archive (created now)."""
        return cls(model_id, release, url, archive_sha256, archive_size,
                   tuple((f.path, f.size, f.sha256) for f in files), trusted_on_first_use, time.time(), archive_kept,
                   tuple(sorted((roles or {}).items())))

    @classmethod
    def from_json(cls, data: object) -> "Manifest":
        """Validate every field (types, ranges, relative paths); ValueError names the first bad one."""
        def need(cond: bool, what: str, value: object) -> None:
            if not cond:
                raise ValueError(f"{what} is invalid ({short(value)})")

        need(isinstance(data, dict), "the top level", data)
        for key in ("model_id", "release", "url"):
            need(isinstance(data.get(key), str) and "\0" not in data[key], key, data.get(key))
        archive = data.get("archive")
        need(isinstance(archive, dict), "archive", archive)
        need(isinstance(archive.get("sha256"), str) and bool(HEX64.fullmatch(archive["sha256"])),
             "archive.sha256", archive.get("sha256"))
        need(is_count(archive.get("size")), "archive.size", archive.get("size"))
        files = data.get("files")
        need(isinstance(files, list), "files", files)
        out = []
        for i, item in enumerate(files):
            need(isinstance(item, dict), f"files[{i}]", item)
            path, size, sha = item.get("path"), item.get("size"), item.get("sha256")
            need(is_relative_path(path), f"files[{i}].path", path)
            need(is_count(size), f"files[{i}].size", size)
            need(isinstance(sha, str) and bool(HEX64.fullmatch(sha)), f"files[{i}].sha256", sha)
            out.append((path, size, sha))
        roles = data.get("roles", {})  # absent in manifests written before roles were recorded
        need(isinstance(roles, dict), "roles", roles)
        for role, found in roles.items():
            need(isinstance(role, str) and (found is None or is_relative_path(found)), f"roles[{role!r}]", found)
        created = data.get("created_at", 0)
        need(isinstance(created, (int, float)) and not isinstance(created, bool), "created_at", created)
        return cls(model_id=data["model_id"], release=data["release"], url=data["url"],
                   archive_sha256=archive["sha256"], archive_size=archive["size"], files=tuple(out),
                   trusted_on_first_use=data.get("trusted_on_first_use") is True,
                   created_at=float(created), archive_kept=archive.get("kept") is True,
                   roles=tuple(sorted(roles.items())))


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_count(value: object) -> bool:
    """A byte count as a state file may hold it: a plain int from 0 to MAX_BYTES."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_BYTES


def is_relative_path(path: object) -> bool:
    """A POSIX path that stays below its root: no '/', '..', '.', empty or control-character parts."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
        return False
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def load_manifest(entry_dir: Path) -> Manifest | None:
    """The entry's manifest; None when there is none; ManifestError when it is damaged."""
    path = Path(entry_dir) / layout.MANIFEST
    try:
        data = read_state(path)
    except DamagedStateFile as exc:
        raise ManifestError(path, exc.reason) from None
    if data is None:
        return None
    try:
        return Manifest.from_json(data)
    except ValueError as exc:
        raise ManifestError(path, str(exc)) from None


def read_manifest(entry_dir: Path) -> Manifest | None:
    """Lenient form of :func:`load_manifest`: None when missing or damaged."""
    try:
        return load_manifest(entry_dir)
    except ManifestError:
        return None


def write_manifest(entry_dir: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` into a (staging) entry directory, atomically."""
    atomic_write_json(Path(entry_dir) / layout.MANIFEST, manifest.to_json())


def _listed_files(manifest: Manifest) -> list[ManifestFile]:
    return [ManifestFile(path, size, sha) for path, size, sha in manifest.files]


def cheap_problems(entry_dir: Path, manifest: Manifest) -> list[str]:
    """Size-only check of every file (stat calls, no hashing): run on every cache hit."""
    problems = verify_tree(entry_dir / layout.MODEL_DIR, _listed_files(manifest), deep=False, report_extra=False)
    if manifest.archive_kept:
        try:
            st = os.lstat(entry_dir / layout.ARCHIVE)
            if not stat.S_ISREG(st.st_mode):
                problems.append(f"{layout.ARCHIVE}: not a regular file")
            elif st.st_size != manifest.archive_size:
                problems.append(f"{layout.ARCHIVE}: wrong size")
        except OSError:
            problems.append(f"{layout.ARCHIVE}: missing")
    return problems


def deep_problems(entry_dir: Path, manifest: Manifest, expected_sha256: str | None) -> list[str]:
    """Re-hash the archive and every unpacked file against the manifest (what `verify` does)."""
    from .hashing import sha256_file
    problems = cheap_problems(entry_dir, manifest)
    if problems:
        return problems
    if expected_sha256 and manifest.archive_sha256 != expected_sha256:
        problems.append(f"entry was made from sha256 {manifest.archive_sha256}, the catalog pins {expected_sha256}")
    if manifest.archive_kept:
        try:
            actual = sha256_file(entry_dir / layout.ARCHIVE)
        except OSError as exc:
            problems.append(f"{layout.ARCHIVE}: unreadable ({exc.strerror or exc})")
        else:
            if actual != manifest.archive_sha256:
                problems.append(f"{layout.ARCHIVE}: sha256 {actual}, expected {manifest.archive_sha256}")
    return problems + verify_tree(entry_dir / layout.MODEL_DIR, _listed_files(manifest), deep=True)


def verify_tree(root: Path, manifest: Iterable[ManifestFile], *, deep: bool,
                ignore: Iterable[str] = (), report_extra: bool = True) -> list[str]:
    """Problems found comparing the tree under ``root`` with ``manifest`` (empty: all good).

    Cheap (``deep=False``): every listed file exists as a regular file of the listed size.
    Deep: its sha256 is recomputed too. Files (or symlinks, fifos...) that the manifest does
    not list are reported, except paths in ``ignore`` (relative POSIX paths such as
    ``manifest.json``; an ignored directory hides its whole subtree), unless ``report_extra``
    is False (the cheap check on every cache hit only asks whether the listed files are intact).
    """
    root = Path(root)
    ignored = {p.strip("/") for p in ignore}
    problems: list[str] = []
    if not root.is_dir():
        return [f"missing directory: {root}"]
    listed: set[str] = set()
    for item in manifest:
        listed.add(item.path)
        if not is_relative_path(item.path):
            problems.append(f"invalid manifest path: {item.path!r}")
            continue
        path = root / item.path
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            problems.append(f"missing: {item.path}")
            continue
        except OSError as exc:
            problems.append(f"unreadable: {item.path} ({exc.strerror})")
            continue
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"not a regular file: {item.path}")
        elif st.st_size != item.size:
            problems.append(f"size mismatch: {item.path} (expected {item.size} bytes, found {st.st_size})")
        elif deep:
            try:
                digest = sha256_file(path)
            except OSError as exc:
                problems.append(f"unreadable: {item.path} ({exc.strerror})")
                continue
            if digest != item.sha256:
                problems.append(f"sha256 mismatch: {item.path} (expected {item.sha256}, found {digest})")
    if report_extra:
        for rel, kind in _walk(root, ignored):
            if kind != "file" or rel not in listed:
                problems.append(f"unexpected {kind}: {rel}")
    return problems


def _walk(root: Path, ignored: set[str], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(relative path, kind) of every non-directory under ``root``, symlinks not followed."""
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        rel = prefix + entry.name
        if rel in ignored:
            continue
        if entry.is_symlink():
            yield rel, "symlink"
        elif entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path), ignored, rel + "/")
        elif entry.is_file(follow_symlinks=False):
            yield rel, "file"
        else:
            yield rel, "special file"
