"""Real `mobilenet-zoo fetch` processes: concurrency, SIGKILL mid-download and mid-unpack."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from zoo.fetching import layout
from zoo.fetching.manifest import read_manifest

from .archives import upstream_v1_tarball
from .fetch_helpers import serve_models
from .http_server import Fault

pytestmark = pytest.mark.slow


from .conftest import console_script as _script  # noqa: E402


def _env(tmp_path: Path, catalog: Path) -> dict:
    return {**os.environ, "MOBILENET_ZOO_CACHE": str(tmp_path / "cache"), "MOBILENET_ZOO_CATALOG": str(catalog),
            "MOBILENET_ZOO_PROFILE": str(tmp_path / "profile.json")}


def _spawn(tmp_path, catalog, *args):
    return subprocess.Popen([_script(), "fetch", *args], env=_env(tmp_path, catalog), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def big_model(fault_server, tmp_path):
    data = upstream_v1_tarball("mobilenet_v1_big", size_scale=0.04)   # ~4 MB, incompressible-ish
    catalog, served = serve_models(fault_server, tmp_path, [("v1_big", data)])
    return catalog, served[0]


def test_concurrent_processes_make_one_entry_with_one_download(fault_server, big_model, tmp_path):
    catalog, served = big_model
    procs = [_spawn(tmp_path, catalog, "v1_big", "-q") for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [o[1] for o in outs]
    paths = {o[0].strip() for o in outs}
    assert paths == {str(tmp_path / "cache" / "v1_big" / "r1")}
    stats = fault_server.stats(served.path)
    assert stats.body_bytes < 1.2 * len(served.data), stats.body_bytes   # about one download of traffic
    assert read_manifest(Path(paths.pop())).archive_sha256 == served.sha256
    assert list((tmp_path / "cache" / layout.STAGING_DIR).iterdir()) == []


def test_sigkill_mid_download_then_rerun_resumes(fault_server, big_model, tmp_path):
    catalog, served = big_model
    size = len(served.data)
    fault_server.set_faults(served.path, [Fault(drip=size / 4, drip_chunk=32 * 1024)])   # ~4 s for the file
    proc = _spawn(tmp_path, catalog, "v1_big", "-q")
    partial_dir = tmp_path / "cache" / layout.PARTIAL_DIR

    def partial_is_half_done():
        parts = list(partial_dir.glob("*.part")) if partial_dir.is_dir() else []
        return any(p.stat().st_size > size // 3 for p in parts)

    _wait_for(partial_is_half_done, what="a partial download")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not (tmp_path / "cache" / "v1_big").exists()       # nothing a reader could trust
    killed_bytes = fault_server.stats(served.path).body_bytes

    rerun = _spawn(tmp_path, catalog, "v1_big", "--json")
    out, err = rerun.communicate(timeout=60)               # no stale lock: it does not wait
    assert rerun.returncode == 0, err
    stats = fault_server.stats(served.path)
    assert stats.range_headers[-1] and stats.range_headers[-1].startswith("bytes=")
    assert stats.body_bytes < 1.3 * size, (killed_bytes, stats.body_bytes, size)
    import json

    result = json.loads(out)[0]
    assert result["sha256"] == served.sha256 and result["bytes_downloaded"] < size
    assert list(partial_dir.iterdir()) == []


def test_sigkill_mid_unpack_then_rerun(fault_server, big_model, tmp_path):
    catalog, served = big_model
    size = len(served.data)
    fault_server.set_faults(served.path, [Fault(drip=size / 4, drip_chunk=32 * 1024)])
    proc = _spawn(tmp_path, catalog, "v1_big", "-q")
    staging = tmp_path / "cache" / layout.STAGING_DIR

    def unpacking():
        return staging.is_dir() and any(f.is_file() and f.stat().st_size > 0 for f in staging.rglob("*"))

    _wait_for(unpacking, what="files appearing in a staging directory")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not (tmp_path / "cache" / "v1_big").exists()
    assert any(staging.iterdir())                              # the dead process's leftover

    rerun = _spawn(tmp_path, catalog, "v1_big", "-q")
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    entry = Path(out.strip())
    manifest = read_manifest(entry)
    assert manifest.archive_sha256 == served.sha256
    assert list(staging.iterdir()) == []                       # leftover reclaimed
    verify = subprocess.run([_script(), "verify", "v1_big"], env=_env(tmp_path, catalog), capture_output=True,
                            text=True, timeout=60)
    assert verify.returncode == 0 and "ok" in verify.stdout
