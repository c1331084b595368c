"""`fetch --from`, `fetch --dry-run` and `mirror --dry-run`: for air-gapped sites and careful admins.

A dry run only reads: the catalog, the cache's manifests and the mirror directory's file
list. It says, per model, whether it is cached (or present in the mirror) and otherwise
where it would come from and how big it is, then the total.
"""

from __future__ import annotations

import sys
from pathlib import Path

from zoo._util.units import format_bytes

from .output import print_json


def _is_cached(cache_dir: Path, entry, release) -> Path | None:
    from zoo.fetching.cache import Cache
    from zoo.fetching.fetcher import expected_digest

    found = Cache(cache_dir).lookup(entry, release)
    if found is None:
        return None
    expected, _ = expected_digest(entry, release, cache_dir)
    path, manifest = found
    return path if expected is None or manifest.archive_sha256 == expected else None


def _report(records: list[dict], json_out: bool, verb: str) -> None:
    if json_out:
        print_json(records)
        return
    todo = [r for r in records if r["action"] == "download"]
    for r in records:
        name = r["model"]
        if r["action"] == "download":
            size = format_bytes(r["size_bytes"]) if r["size_bytes"] else "(size unknown)"
            print(f"{name}: would download {size} from {r['sources'][0]}")
            for other in r["sources"][1:]:
                print(f"    then {other}")
        elif r["action"] == "unavailable":
            print(f"{name}: not cached and no source allowed (--offline without a file mirror)")
        else:
            print(f"{name}: {r['action']} at {r['path']}")
    known = sum(r["size_bytes"] or 0 for r in todo)
    unknown = sum(1 for r in todo if not r["size_bytes"])
    size = format_bytes(known) if not unknown else (
        f"at least {format_bytes(known)} ({unknown} of unknown size)" if known else "of unknown size")
    have = len(records) - len(todo)
    print(f"total: would {verb} {len(todo)} model{'s' if len(todo) != 1 else ''}, {size}; "
          f"{have} already there; nothing was changed")


def dry_run_fetch(pairs, opts, json_out: bool) -> None:
    """What `fetch` would do, touching nothing."""
    from zoo.fetching.mirrors import sources_for
    from zoo._util.redact import redact

    records = []
    for entry, release in pairs:
        record = {"id": entry.id, "release": release.release, "model": entry.spec(release),
                  "size_bytes": release.size_bytes, "sha256": release.sha256, "path": None, "sources": []}
        cached = _is_cached(opts.cache_dir, entry, release)
        if cached is not None:
            record.update(action="cached", path=str(cached))
        else:
            sources = [redact(s.url) for s in sources_for(release.url, opts.mirrors, offline=opts.offline)]
            record.update(action="download" if sources else "unavailable", sources=sources)
        records.append(record)
    _report(records, json_out, "download")


def dry_run_mirror(directory: Path, pairs, opts, json_out: bool) -> None:
    """What `mirror DIR` would do, touching nothing (present files would be re-checked, not re-downloaded)."""
    from zoo.fetching.mirrors import mirror_target, sources_for
    from zoo._util.redact import redact

    records = []
    for entry, release in pairs:
        target = mirror_target(Path(directory), release.url)  # the same checked path `mirror` writes
        record = {"id": entry.id, "release": release.release, "model": entry.spec(release),
                  "size_bytes": release.size_bytes, "sha256": release.sha256, "path": str(target), "sources": []}
        if target.is_file():
            record["action"] = "present (would be re-checked)"
        else:
            record.update(action="download",
                          sources=[redact(s.url) for s in sources_for(release.url, opts.mirrors,
                                                                      offline=opts.offline)])
        records.append(record)
    _report(records, json_out, "download")


def fetch_from_file(archive: Path, pairs, opts, json_out: bool) -> None:
    """`fetch --from FILE.tgz MODEL`: one model, verified and published like a download."""
    from zoo.errors import UsageError
    from zoo.fetching.sideload import fetch_from_file as take_in

    if len(pairs) != 1:
        raise UsageError(f"--from takes one model, got {len(pairs)}",
                         hint="name the model the file belongs to, e.g. "
                              "`mobilenet-zoo fetch --from mobilenet_v1_1.0_224.tgz v1_1.0_224`")
    entry, release = pairs[0]
    result = take_in(entry, release, archive, opts)
    if json_out:
        print_json([result.to_json()])
        return
    print(result.path)
    note = ("already cached; the file was not needed" if result.cached
            else f"verified and unpacked from {archive}")
    print(f"{entry.spec(release)}: {note} (sha256 {result.sha256})", file=sys.stderr)
