"""zoo.fetching.unpack: hostile archives are refused with nothing left behind; genuine ones unpack
to the right files, modes and manifest; verify_tree spots damage."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
import threading
from pathlib import Path

import pytest

from tests import archives as A
from zoo.fetching import unpack as U
from zoo.errors import CacheError, IntegrityError, UnsafeArchiveError
from zoo.fetching.manifest import ManifestFile, verify_tree
from zoo.fetching.unpack import UnpackLimits, unpack_archive, unpack_stream

MODES = ("archive", "archive_noscan", "stream")


# ----------------------------------------------------------------------------- helpers
def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` (symlinks not followed) with its kind, mode and content hash."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            rel = path.relative_to(root).as_posix()
            if stat.S_ISREG(st.st_mode):
                out[rel] = ("file", st.st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            else:
                out[rel] = ("other", st.st_mode)
    return out


@pytest.fixture
def area(tmp_path):
    """tmp_path/outside (sentinels), tmp_path/staging (dest's parent, with a sibling entry)."""
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "keep.txt").write_text("keep")
    (outside / "sub" / "model.tflite").write_bytes(b"mine")
    staging = tmp_path / "staging"
    (staging / "sibling").mkdir(parents=True)
    (staging / "sibling" / "x").write_text("x")
    return tmp_path


def run(mode: str, data: bytes, dest: Path, **kw) -> list[ManifestFile]:
    if mode.startswith("archive"):
        path = dest.parent.parent / "in.tgz"
        path.write_bytes(data)
        return unpack_archive(path, dest, label="test.tgz", prescan=mode == "archive", **kw)
    return unpack_stream(A.Trickle(data), dest, label="test.tgz", **kw)


def expected_manifest(files: dict[str, bytes]) -> list[ManifestFile]:
    return sorted((ManifestFile(name.removeprefix("./"), len(data), hashlib.sha256(data).hexdigest())
                   for name, data in files.items()), key=lambda m: m.path)


# ----------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(A.HOSTILE))
def test_hostile_archive_is_refused_and_leaves_nothing(case, mode, area):
    builder, member, limits = A.HOSTILE[case]
    data = builder()
    dest = area / "staging" / "unpack-1"
    if mode.startswith("archive"):
        (area / "in.tgz").write_bytes(data)  # part of the "before" snapshot
    before = snapshot(area)
    assert not os.path.lexists("/tmp/zoo-evil")
    with pytest.raises(UnsafeArchiveError) as err:
        run(mode, data, dest, limits=UnpackLimits(**limits))
    assert err.value.member == member
    assert err.value.archive == "test.tgz"
    if member is not None:
        assert repr(member) in str(err.value)
    assert not os.path.lexists(dest)
    assert snapshot(area) == before  # the sentinels, dest's parent and its sibling are untouched
    assert not os.path.lexists("/tmp/zoo-evil")
    assert not [t for t in threading.enumerate() if t.name == "zoo-inflate"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case,reason", [
    ("not_gzip", "not a gzip file"), ("html_page", "HTML"), ("empty", "empty file"),
    ("plain_tar", "plain (uncompressed) tar"), ("truncated_gzip", "ends early"),
    ("truncated_gzip_trailer", "ends early"), ("corrupt_gzip_crc", "corrupt gzip data"),
    ("gzip_trailing_garbage", "after the end of the gzip stream"),
])
def test_damaged_bytes_raise_integrity_error(case, reason, mode, area):
    data = A.DAMAGED[case]()
    dest = area / "staging" / "unpack-1"
    if mode.startswith("archive"):
        (area / "in.tgz").write_bytes(data)
    before = snapshot(area)
    with pytest.raises(IntegrityError) as err:
        run(mode, data, dest)
    assert "test.tgz" in str(err.value) and reason in str(err.value)
    assert not os.path.lexists(dest)
    assert snapshot(area) == before


def test_refusal_messages_name_member_and_reason(area):
    cases = {
        A.dotdot_traversal(): "member '../evil': path escapes the archive root",
        A.absolute_path(): "member '/tmp/zoo-evil': absolute path",
        A.symlink_outside(): "member 'link': symbolic link (to '/tmp')",
        A.hardlink(): "member 'copy.tflite': hard link",
        A.char_device(): "member 'null': device file",
        A.fifo(): "member 'pipe': fifo",
        A.casefold_duplicates(): "collides with 'model.tflite' after case-folding",
        A.duplicate_names(): "duplicate name",
        A.huge_declared_size(): "more than the per-member limit",
        A.header_smaller_than_data(): "invalid header follows this member",
        A.header_larger_than_data(): "ends inside this member's data",
    }
    for data, text in cases.items():
        with pytest.raises(UnsafeArchiveError) as err:
            run("archive", data, area / "staging" / "unpack-1")
        assert text in str(err.value)
        assert "test.tgz" in str(err.value)


@pytest.mark.parametrize("mode", MODES)
def test_limits(mode, area):
    dest = area / "staging" / "unpack-1"
    with pytest.raises(UnsafeArchiveError, match="more than 5 members") as err:
        run(mode, A.too_many_members(6), dest, limits=UnpackLimits(max_members=5))
    assert err.value.member == "f0005"
    with pytest.raises(UnsafeArchiveError, match="per-member limit") as err:
        run(mode, A.huge_total(3, 1000), dest, limits=UnpackLimits(max_member_bytes=999))
    assert err.value.member == "part0"
    assert not dest.exists()
    # exactly at the limits is fine
    manifest = run(mode, A.huge_total(3, 1000), dest,
                   limits=UnpackLimits(max_members=3, max_total_bytes=3000, max_member_bytes=1000))
    assert [m.size for m in manifest] == [1000] * 3


def test_archive_mode_writes_nothing_before_the_scan_is_done(area, monkeypatch):
    calls = []
    monkeypatch.setattr(U, "_make_dest", lambda dest: calls.append(dest))
    with pytest.raises(UnsafeArchiveError):
        run("archive", A.hardlink(), area / "staging" / "unpack-1")  # a good file precedes the link
    assert calls == []


def test_dest_must_be_fresh(area):
    dest = area / "staging" / "sibling"  # exists, not empty
    before = snapshot(area)
    with pytest.raises(CacheError, match="not empty"):
        run("stream", A.upstream_v1_tarball(), dest)
    assert snapshot(area) == before
    empty = area / "staging" / "empty"
    empty.mkdir()
    assert run("stream", A.upstream_v1_tarball(), empty)


# ----------------------------------------------------------------------------- genuine archives
@pytest.mark.parametrize("mode", MODES)
def test_upstream_v1_unpacks_with_manifest(mode, area):
    files = A.upstream_v1_files()
    data = A.upstream_v1_tarball()
    dest = area / "staging" / "unpack-1"
    manifest = run(mode, data, dest)
    assert manifest == expected_manifest(files)
    assert [m.path for m in manifest] == sorted(m.path for m in manifest)
    for name, content in files.items():
        path = dest / name.removeprefix("./")
        assert path.read_bytes() == content
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(os.listdir(dest)) == sorted(n.removeprefix("./") for n in files)
    assert verify_tree(dest, manifest, deep=True) == []


@pytest.mark.parametrize("mode", MODES)
def test_upstream_v3_unpacks_with_manifest(mode, area):
    stem = "v3-large_224_1.0_float"
    files = A.upstream_v3_files(stem)
    dest = area / "staging" / "unpack-1"
    manifest = run(mode, A.upstream_v3_tarball(stem), dest)
    assert manifest == expected_manifest(files)
    assert f"{stem}/ema/model-540000.index" in {m.path for m in manifest}
    for d in (stem, f"{stem}/ema", f"{stem}/pristine"):
        assert stat.S_IMODE((dest / d).lstat().st_mode) == 0o755
    for name, content in files.items():
        assert (dest / name).read_bytes() == content


def test_stream_handing_out_single_bytes(area):
    manifest = unpack_stream(A.Trickle(A.upstream_v1_tarball(), step=1), area / "staging" / "unpack-1")
    assert manifest == expected_manifest(A.upstream_v1_files())
    with pytest.raises(IntegrityError, match="plain"):
        unpack_stream(A.Trickle(A.plain_tar(), step=1), area / "staging" / "unpack-2")


def test_stream_is_read_to_the_end(area):
    data = A.upstream_v1_tarball() + b"\0" * 100  # zero padding after gzip is tolerated, like gzip(1)
    stream = A.Trickle(data, step=1000)
    unpack_stream(stream, area / "staging" / "unpack-1")
    assert stream.consumed == len(data)


def test_pax_and_implicit_directories(area):
    files = {"a/b/c.txt": b"c", "a/B2/d.txt": b"d" * 5000, "é/ü.bin": b"\0" * 1024}
    raw = A.tar_gz(files, dirs=[], gnu=False)
    manifest = run("archive", raw, area / "staging" / "unpack-1")
    assert manifest == expected_manifest(files)


def test_concatenated_gzip_members(area):
    tar = gzip.decompress(A.upstream_v1_tarball())
    data = gzip.compress(tar[:5000], mtime=0) + gzip.compress(tar[5000:], mtime=0)
    manifest = run("stream", data, area / "staging" / "unpack-1")
    assert manifest == expected_manifest(A.upstream_v1_files())


@pytest.mark.parametrize("mode", MODES)
def test_setuid_bits_cleared(mode, area):
    os.umask(0o077)  # modes are set explicitly, whatever the umask
    dest = area / "staging" / "unpack-1"
    try:
        run(mode, A.setuid_file(), dest)
    finally:
        os.umask(0o022)
    assert stat.S_IMODE((dest / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "data").stat().st_mode) == 0o644


def test_mtime_kept(area):
    dest = area / "staging" / "unpack-1"
    run("archive", A.upstream_v1_tarball(), dest)
    assert int((dest / "mobilenet_v1_1.0_224.tflite").stat().st_mtime) == A.MTIME


# ----------------------------------------------------------------------------- verify_tree
@pytest.fixture
def unpacked(area):
    dest = area / "staging" / "unpack-1"
    return dest, run("archive", A.upstream_v1_tarball(), dest)


def test_verify_flipped_byte_needs_deep(unpacked):
    dest, manifest = unpacked
    path = dest / "mobilenet_v1_1.0_224.ckpt.data-00000-of-00001"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    assert verify_tree(dest, manifest, deep=False) == []
    problems = verify_tree(dest, manifest, deep=True)
    assert len(problems) == 1 and problems[0].startswith("sha256 mismatch: mobilenet_v1_1.0_224.ckpt.data")


def test_verify_truncated_missing_extra(unpacked):
    dest, manifest = unpacked
    with open(dest / "mobilenet_v1_1.0_224.tflite", "r+b") as fh:
        fh.truncate(10)
    (dest / "mobilenet_v1_1.0_224_info.txt").unlink()
    (dest / "extra.bin").write_bytes(b"?")
    (dest / "manifest.json").write_text("{}")
    (dest / "archive.tgz").write_bytes(b"")
    (dest / "link").symlink_to("mobilenet_v1_1.0_224.ckpt.index")
    problems = verify_tree(dest, manifest, deep=False, ignore=["manifest.json", "archive.tgz"])
    size = {m.path: m.size for m in manifest}["mobilenet_v1_1.0_224.tflite"]
    assert sorted(problems) == sorted([
        f"size mismatch: mobilenet_v1_1.0_224.tflite (expected {size} bytes, found 10)",
        "missing: mobilenet_v1_1.0_224_info.txt",
        "unexpected file: extra.bin",
        "unexpected symlink: link",
    ])
    assert "unexpected file: manifest.json" in verify_tree(dest, manifest, deep=False)


def test_verify_refuses_escaping_manifest_paths(unpacked):
    dest, _ = unpacked
    bad = [ManifestFile("../in.tgz", 1, "0" * 64), ManifestFile("/etc/passwd", 1, "0" * 64)]
    problems = verify_tree(dest, bad, deep=True)
    assert problems[:2] == ["invalid manifest path: '../in.tgz'", "invalid manifest path: '/etc/passwd'"]


def test_verify_missing_root(tmp_path):
    assert verify_tree(tmp_path / "nope", [], deep=False) == [f"missing directory: {tmp_path / 'nope'}"]


def test_builders_are_deterministic_and_upstream_shaped():
    assert A.upstream_v1_tarball() == A.upstream_v1_tarball()
    with tarfile.open(fileobj=__import__("io").BytesIO(A.upstream_v1_tarball())) as tar:
        names = tar.getnames()
    assert names[0] == "." and all(n.startswith("./mobilenet_v1_1.0_224") for n in names[1:])
    ratio = len(gzip.compress(A.weights("x", 1 << 20))) / (1 << 20)
    assert 0.8 < ratio < 0.97  # incompressible-ish, like real float checkpoints


def test_writer_never_follows_a_symlink_planted_in_dest(area):
    """Defence in depth against a racing process: directories are opened O_NOFOLLOW via fds."""
    dest = area / "staging" / "unpack-1"
    dest.mkdir()
    (dest / "sub").symlink_to(area / "outside")
    (dest / "f").symlink_to(area / "outside" / "keep.txt")
    before = snapshot(area / "outside")
    writer = U._Writer(dest)
    try:
        with pytest.raises(OSError):
            writer.file(("sub", "evil"))
        with pytest.raises(OSError):
            writer.file(("f",))  # O_EXCL|O_NOFOLLOW: an existing name, even a link, is never opened
    finally:
        writer.close()
    assert snapshot(area / "outside") == before
