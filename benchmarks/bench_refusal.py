"""How much of an endless, hostile stream is read before the unpacker's refusal stops it.

    python benchmarks/bench_refusal.py [--mb 64]

A catalog entry without sha256 or size (trust on first use) points at a loopback server
that answers with an HTML page of --mb megabytes. Baseline, in the same run: the bare
download of that URL (no unpacker), which has nothing to refuse with and reads it all.
`fetch` must stop at the first block the unpacker refuses; the figure is the share of the
stream that left the server (kernel socket buffers and one chunk in flight included).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fetch_helpers import model_entry, v1_tarball, write_catalog  # noqa: E402
from tests.http_server import FaultServer  # noqa: E402
from zoo.catalog import load_catalog
from zoo.fetching.download import download
from zoo.errors import ZooError
from zoo.fetching.fetcher import FetchOptions, fetch_entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=64)
    args = ap.parse_args()
    size = args.mb << 20
    server = FaultServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            url = server.add("/page.tgz", b"<!DOCTYPE html><html>" + b"x" * (size - 21))
            t = time.monotonic()
            download(url, tmp / "baseline.part")
            base_s, base_bytes = time.monotonic() - t, server.stats("/page.tgz").body_bytes
            server.reset_stats()
            entry = model_entry("v1_u", url, v1_tarball("u"), pinned=False, known_size=False)
            catalog = load_catalog(write_catalog(tmp / "c.yaml", [entry]), with_profile=False)
            t = time.monotonic()
            try:
                fetch_entry(*catalog.resolve("v1_u"), FetchOptions(cache_dir=tmp / "cache", warn=lambda m: None))
                refused = "NOT refused"
            except ZooError as exc:
                refused = exc.message.splitlines()[0]
            fetch_s, fetch_bytes = time.monotonic() - t, server.stats("/page.tgz").body_bytes
    finally:
        server.stop()
    print(f"bare download (baseline): {base_bytes / 2**20:.1f} MiB sent, {base_s:.2f} s")
    print(f"fetch:                    {fetch_bytes / 2**20:.1f} MiB sent, {fetch_s:.2f} s ({refused})")
    print(f"ratio: fetch read {fetch_bytes / base_bytes:.2f} of the stream, in {fetch_s / base_s:.2f}x the time")


if __name__ == "__main__":
    main()
