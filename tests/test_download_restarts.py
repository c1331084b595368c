"""The downloader loop over zoo.fetching.partial's file: what a restart resets, when it waits, what it forgets.

(Added with the split of the partial file from the retry loop; tests/test_download.py is unchanged.)
"""

from __future__ import annotations

import pytest

from tests.http_server import Fault
from zoo.errors import DownloadError
from zoo.fetching.partial import PartialState, sidecar_path, write_sidecar

from .test_download import DATA, SHA, Sleeps, fetch

pytestmark = pytest.mark.timeout(30)


def test_a_resume_that_ends_in_a_restart_is_not_reported_as_resumed(fault_server, tmp_path):
    part = tmp_path / "m.part"
    url = fault_server.add("/m.tgz", DATA, faults=[Fault(drop_after=700_000), Fault(drop_after=100_000),
                                                   Fault(ignore_range=True)])
    r = fetch(url, part)
    statuses = [rec.status for rec in fault_server.stats("/m.tgz").records]
    assert statuses == [200, 206, 200] and r.sha256 == SHA
    assert not r.resumed  # the 206 appended, but the file that arrived was sent whole from byte 0


def test_a_refetch_asks_again_at_once_and_only_trouble_waits(fault_server, tmp_path):
    part = tmp_path / "m.part"
    url = fault_server.add("/m.tgz", DATA, faults=[Fault(drop_after=600_000), Fault(range_offset=0)])
    sleeps = Sleeps()
    r = fetch(url, part, sleep=sleeps)
    assert r.sha256 == SHA and fault_server.stats("/m.tgz").requests == 3
    assert len(sleeps) == 1  # after the dropped connection; the unusable 206 is refetched without waiting


def test_a_partial_that_cannot_be_resumed_loses_its_sidecar_at_once(fault_server, tmp_path):
    part = tmp_path / "m.part"
    part.write_bytes(DATA[:1000])
    write_sidecar(part, PartialState(url="http://elsewhere/m.tgz", etag='"x"', expected_size=len(DATA)))
    url = fault_server.add("/m.tgz", DATA, default=Fault(status=503))
    with pytest.raises(DownloadError, match="without progress"):
        fetch(url, part)
    assert part.stat().st_size == 0 and not sidecar_path(part).exists()  # no record of bytes it lacks
