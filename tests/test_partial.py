"""zoo.fetching.partial directly: the partial file's names, sidecar and bookkeeping (real files)."""

from __future__ import annotations

import hashlib

import pytest

from zoo.errors import DownloadError, IntegrityError
from zoo.fetching.partial import (PartialFile, PartialState, move_partial, read_sidecar, remove_partial,
                                  sidecar_path, write_sidecar)

URL = "http://127.0.0.1:1/m.tgz"


class Recorder:
    """A sink that keeps what it was given."""

    def __init__(self):
        self.data, self.restarts = b"", 0

    def restart(self):
        self.data, self.restarts = b"", self.restarts + 1

    def write(self, chunk):
        self.data += chunk


def partial_file(path, **kwargs) -> PartialFile:
    options = dict(url=URL, label="m", expected_size=None, expected_sha256=None, chunk_size=7,
                   max_unknown_size=1000)
    options.update(kwargs)
    return PartialFile(path, **options)


def resumed(tmp_path, on_disk: bytes, recorded: int, **kwargs) -> tuple:
    """A partial file holding ``on_disk`` whose sidecar said ``recorded`` bytes arrived."""
    part = tmp_path / "a.part"
    part.write_bytes(on_disk)
    f = partial_file(part, **kwargs)
    f.resume_at(recorded)
    return part, f


def test_sidecar_is_named_moved_and_removed_with_its_partial(tmp_path):
    part = tmp_path / "a.part"
    assert sidecar_path(part) == tmp_path / "a.part.json"
    part.write_bytes(b"x")
    write_sidecar(part, PartialState(url=URL, etag='"e"'))
    move_partial(part, tmp_path / "b.part")
    assert read_sidecar(tmp_path / "b.part").etag == '"e"' and not sidecar_path(part).exists()
    remove_partial(tmp_path / "b.part")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "c.part").write_bytes(b"x")  # no sidecar: the partial still moves
    move_partial(tmp_path / "c.part", tmp_path / "d.part")
    assert [p.name for p in tmp_path.iterdir()] == ["d.part"]


def test_a_resumed_prefix_is_hashed_once_and_replayed_into_the_sink(tmp_path):
    sink = Recorder()
    part, f = resumed(tmp_path, b"0123456789", 10, sink=sink)
    assert f.sync() and sink.data == b"0123456789" and f.size == 10
    with f.appending():
        f.write(b"XYZ")
    assert part.read_bytes() == b"0123456789XYZ"
    assert f.verify() == hashlib.sha256(b"0123456789XYZ").hexdigest() and sink.data == b"0123456789XYZ"


def test_a_partial_shorter_than_recorded_is_not_in_sync(tmp_path):
    _, f = resumed(tmp_path, b"01234", 10)  # the sidecar said 10 bytes, the disk holds 5
    assert f.sync() is False and f.hasher is None


def test_restart_truncates_and_restarts_the_sink(tmp_path):
    sink = Recorder()
    part, f = resumed(tmp_path, b"old bytes", 9, sink=sink)
    f.restart()
    assert part.read_bytes() == b"" and f.size == 0 and sink.restarts == 1


def test_caps_stop_a_file_that_grows_too_big_and_delete_it(tmp_path):
    part = tmp_path / "a.part"
    f = partial_file(part, max_unknown_size=10)
    f.restart()
    write_sidecar(part, PartialState(url=URL))
    with pytest.raises(DownloadError, match="more than 10 bytes"), f.appending():
        f.write(b"123456")
        f.write(b"789012")
    assert not part.exists() and not sidecar_path(part).exists()
    f = partial_file(part, expected_size=8)
    f.restart()
    with pytest.raises(IntegrityError, match="more bytes than expected"), f.appending():
        f.write(b"123456789")
    assert not part.exists()


def test_verify_deletes_wrong_bytes(tmp_path):
    part = tmp_path / "a.part"
    f = partial_file(part, expected_sha256="0" * 64)
    f.restart()
    with f.appending():
        f.write(b"abc")
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        f.verify()
    assert not part.exists()


def test_a_206_without_validators_keeps_the_stored_ones(tmp_path):
    part = tmp_path / "a.part"
    f = partial_file(part, expected_size=100)
    f.state = PartialState(url=URL, etag='"v1"', last_modified="Mon, 01 Jan 2024 00:00:00 GMT",
                           expected_size=100, total=100)
    write_sidecar(part, f.state)
    f.save_state({}, 100, encoded=False, keep_validators=True)
    assert read_sidecar(part).etag == '"v1"' and read_sidecar(part).last_modified.startswith("Mon")
    f.save_state({"etag": '"v2"'}, 100, encoded=False)  # a 200: only what this response says
    assert read_sidecar(part).etag == '"v2"' and read_sidecar(part).last_modified is None
    f.save_state({}, None, encoded=True)
    assert read_sidecar(part).resumable is False
