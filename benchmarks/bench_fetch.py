"""Fetch speed against the pipeline users type by hand, on a loopback server.

    python benchmarks/bench_fetch.py [--mb 200] [--runs 5]

1. `mobilenet-zoo fetch` (download + sha256 + unpack, cold cache) against
   `curl -o f URL && sha256sum f && tar xzf f`, interleaved, median of --runs (goal <= 0.8).
2. `fetch -j 4` of four models against four sequential `fetch` runs.
3. A cache hit: `mobilenet-zoo fetch` of a cached model (whole process) and the library
   call alone (goal: under 0.3 s, no re-hashing).

Nothing leaves 127.0.0.1. Figures are printed as ratios against the baseline measured in
the same run, because absolute times on shared machines are noise.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.archives import write_upstream_v1_tarball  # noqa: E402
from tests.fetch_helpers import model_entry, write_catalog  # noqa: E402


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()




from common import console_script, timed  # noqa: E402 - benchmarks/ is on sys.path when run as a script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200, help="unpacked size of the big tarball")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--port", type=int, default=0, help="0: any free port")
    args = ap.parse_args()
    script = console_script()
    curl = shutil.which("curl")
    if not script or not curl:
        sys.exit("needs the installed mobilenet-zoo and curl")

    work = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
    srv = work / "srv"
    (srv / "m").mkdir(parents=True)
    print(f"building tarballs in {work} ...", flush=True)
    big = write_upstream_v1_tarball(srv / "m" / "big.tgz", args.mb * 10**6, stem="mobilenet_v1_big")
    smalls = [write_upstream_v1_tarball(srv / "m" / f"s{i}.tgz", args.mb * 10**6 // 4, stem=f"mobilenet_v1_s{i}")
              for i in range(4)]
    server = subprocess.Popen([sys.executable, "-m", "tests.http_server", "--dir", str(srv), "--port",
                               str(args.port)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    banner = server.stdout.readline()  # "serving DIR at http://127.0.0.1:PORT/"
    base = banner.split(" at ")[-1].strip().rstrip("/") + "/m"
    entries = []
    for path in [big, *smalls]:
        entry = model_entry(f"v1_{path.stem}", f"{base}/{path.name}", None)
        entry["releases"][0].update(sha256=sha256(path), size_bytes=path.stat().st_size)
        entries.append(entry)
    catalog = write_catalog(work / "catalog.yaml", entries)
    env = {**os.environ, "MOBILENET_ZOO_CATALOG": str(catalog), "MOBILENET_ZOO_PROFILE": str(work / "p.json")}
    size_mb = big.stat().st_size / 1e6
    print(f"big tarball: {size_mb:.0f} MB compressed, {args.mb} MB unpacked", flush=True)

    try:
        zoo_t, curl_t = [], []
        for i in range(args.runs):
            cache = work / f"cache{i}"
            zoo_t.append(timed([script, "fetch", "v1_big", "-q"], env={**env, "MOBILENET_ZOO_CACHE": str(cache)}))
            shutil.rmtree(cache)
            out = work / f"curl{i}"
            out.mkdir()
            curl_t.append(timed(["bash", "-c", f"curl -s -o f {base}/big.tgz && sha256sum f >/dev/null && tar xzf f"],
                                cwd=out))
            shutil.rmtree(out)
        z, c = statistics.median(zoo_t), statistics.median(curl_t)
        print(f"\n1. cold fetch, {size_mb:.0f} MB: mobilenet-zoo {z:.2f} s, curl+sha256sum+tar {c:.2f} s "
              f"-> ratio {z / c:.2f} (goal <= 0.8)")

        par_t, seq_t = [], []
        names = [f"v1_s{i}" for i in range(4)]
        for i in range(max(2, args.runs // 2)):
            cache = work / f"par{i}"
            par_t.append(timed([script, "fetch", *names, "-j", "4", "-q"], env={**env, "MOBILENET_ZOO_CACHE": str(cache)}))
            shutil.rmtree(cache)
            cache = work / f"seq{i}"
            start = time.perf_counter()
            for name in names:
                subprocess.run([script, "fetch", name, "-q"], check=True, stdout=subprocess.DEVNULL,
                               env={**env, "MOBILENET_ZOO_CACHE": str(cache)})
            seq_t.append(time.perf_counter() - start)
            shutil.rmtree(cache)
        p, s = statistics.median(par_t), statistics.median(seq_t)
        print(f"2. four models: fetch -j 4 {p:.2f} s, four sequential fetches {s:.2f} s -> ratio {p / s:.2f}")

        cache = work / "hit"
        henv = {**env, "MOBILENET_ZOO_CACHE": str(cache)}
        subprocess.run([script, "fetch", "v1_big", "-q"], check=True, stdout=subprocess.DEVNULL, env=henv)
        hit_t = [timed([script, "fetch", "v1_big", "-q"], env=henv) for _ in range(args.runs)]
        baseline = [timed([sys.executable, "-c", "import typer, rich, yaml"]) for _ in range(args.runs)]
        code = ("import os,time,zoo.fetching.fetcher as f,zoo.catalog as c;cat=c.load_catalog();e,r=cat.resolve('v1_big');"
                "o=f.options_from_env();t=time.perf_counter();f.fetch_entry(e,r,o);print(time.perf_counter()-t)")
        lib = float(subprocess.run([sys.executable, "-c", code], env=henv, capture_output=True, text=True,
                                   check=True).stdout)
        print(f"3. cache hit of the {size_mb:.0f} MB model: whole `mobilenet-zoo fetch` process "
              f"{statistics.median(hit_t):.3f} s (python+typer+rich+yaml import alone "
              f"{statistics.median(baseline):.3f} s); library call {lib * 1000:.1f} ms (goal < 0.3 s)")
    finally:
        server.terminate()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
