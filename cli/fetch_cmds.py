"""`fetch`, `verify`, `cache ...` and `mirror`: moving verified bytes into and out of the cache."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from .common import app, cache_dir, debug, family_option, json_option, load_catalog, quantized_option
from .completion import complete_model
from .output import print_json

cache_app = typer.Typer(help="Inspect and clean the model cache.\n\nExample: mobilenet-zoo cache ls",
                        no_args_is_help=True)
app.add_typer(cache_app, name="cache")


def _options(require_pinned: bool = False, keep_archive: bool = True, deadline: Optional[float] = None,
             min_speed: Optional[float] = None):
    from zoo.fetching.download import DownloadPolicy
    from zoo.fetching.fetcher import options_from_env

    policy = DownloadPolicy()
    if deadline is not None or min_speed is not None:
        policy = DownloadPolicy(deadline=deadline, min_rate=None if min_speed == 0 else (min_speed or policy.min_rate))
    return options_from_env(require_pinned=require_pinned, keep_archive=keep_archive, policy=policy)


def _select(names: list[str], family: Optional[list[str]], quantized: Optional[bool], all_models: bool):
    """Models named on the command line plus those matching the filters."""
    from zoo.errors import UsageError
    from zoo.fetching.fetcher import resolve_many
    from zoo.catalog.selection import Filters

    catalog = load_catalog()
    pairs = resolve_many(catalog, names)
    if all_models or family or quantized is not None:
        chosen = Filters(family=family or None, quantized=quantized).apply(catalog)
        known = {(e.id, r.release) for e, r in pairs}
        pairs += [(e, e.default_release) for e in chosen if (e.id, e.default_release.release) not in known]
    if not pairs:
        raise UsageError("no model given", "name models (e.g. `fetch 1.0_224`) or use --family / --quantized / --all")
    return pairs


@contextmanager
def _progress(enabled: bool):
    """The shared download progress (a bar on a terminal, lines in logs; see feedback), or None."""
    from . import feedback

    yield feedback.reporter() if enabled else None


def _item_failed(error, shown: bool) -> int:
    """One model of several failed: say so like any error (``errors.report``), and return the
    exit code it asks for: 3 for a bug of ours, else 1 (the others may have worked)."""
    from .errors import EXIT_BUG, report

    code = report(error, debug=debug(), message=shown)  # not shown with --json: it is in the JSON record
    return EXIT_BUG if code == EXIT_BUG else 1


def _show_progress(quiet: bool, json_out: bool) -> bool:
    return not quiet and not json_out


@app.command("fetch")
def fetch(
    models: Optional[list[str]] = typer.Argument(None, help="Model ids or names; NAME@RELEASE picks a release.",
                                                 autocompletion=complete_model),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, max=16, help="Fetch this many models at once."),
    family: Optional[list[str]] = family_option("Also fetch every model of a family; repeatable."),
    quantized: Optional[bool] = quantized_option("With the filters: only these."),
    all_models: bool = typer.Option(False, "--all", help="Fetch every model in the catalog."),
    require_pinned: bool = typer.Option(False, "--require-pinned",
                                        help="Refuse models without a published sha256 (no trust on first use)."),
    keep_archive: bool = typer.Option(True, "--keep-archive/--drop-archive",
                                      help="Keep the verified .tgz in the cache entry (verify re-hashes it)."),
    deadline: Optional[float] = typer.Option(None, "--deadline", min=1, metavar="SECONDS",
                                             help="Give up on a model after this long, retries included."),
    min_speed: Optional[float] = typer.Option(None, "--min-speed", min=0, metavar="BYTES/S",
                                              help="Abort a connection slower than this over 30 s "
                                                   "(default 1024; 0 disables)."),
    json_out: bool = json_option("One JSON result per model (a JSON array)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    from_file: Optional[Path] = typer.Option(
        None, "--from", metavar="FILE.tgz", dir_okay=False,
        help="Take the model's tarball from this file (copied by hand) instead of the network; "
             "verified and unpacked exactly like a download."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Say what would be downloaded, from where, and the total size; "
                                      "change nothing."),
) -> None:
    """Download, verify and unpack models into the cache; print each entry's path.

    Example: mobilenet-zoo fetch 1.0_224 v2_1.4_224 -j 2

    Air-gapped: mobilenet-zoo fetch --from ./mobilenet_v1_1.0_224.tgz v1_1.0_224
    """
    from rich.console import Console

    from zoo.fetching.fetcher import fetch_many

    pairs = _select(models or [], family, quantized, all_models)
    opts = _options(require_pinned, keep_archive, deadline, min_speed)
    if dry_run or from_file is not None:
        from . import airgap

        if dry_run:
            airgap.dry_run_fetch(pairs, opts, json_out)
        else:
            with _progress(_show_progress(quiet, json_out)) as update:
                opts.progress = update
                airgap.fetch_from_file(from_file, pairs, opts, json_out)
        return
    # warnings (trust on first use, a changed pin, a rebuilt entry) go to stderr even with --json
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    with _progress(_show_progress(quiet, json_out)) as update:
        opts.progress = update
        outcomes = fetch_many(pairs, opts, jobs)
    from zoo.fetching.fetcher import failure_json

    from .errors import spelled_record

    records, counts, exit_code = [], {"cached": 0, "fetched": 0, "failed": 0}, 0
    for (entry, result, error), (_, release) in zip(outcomes, pairs):
        if error is not None:
            counts["failed"] += 1
            exit_code = max(exit_code, _item_failed(error, shown=not json_out))
            records.append(spelled_record(failure_json(entry, release, error), error))
            continue
        counts[result.outcome] += 1
        records.append(result.to_json())
        if not json_out:
            note = "cached" if result.cached else f"fetched {result.bytes_downloaded:,} bytes from {result.source}"
            print(result.path)
            if not quiet:
                err.print(f"[green]{entry.id}[/] ({note}; sha256 {result.sha256[:16]}...)")
    if json_out:
        print_json(records)
    if len(outcomes) > 1 or counts["failed"]:
        summary = ", ".join(f"{n} {what}" for what, n in counts.items())
        print(summary, file=sys.stderr)
    if exit_code:
        raise typer.Exit(exit_code)


def fetch_one(entry, quiet: bool):
    """Fetch one entry's default release with the global options; used by `pick --fetch`."""
    from zoo.fetching.fetcher import fetch_entry

    opts = _options()
    if quiet:
        from zoo._util.redact import redact

        opts.warn = lambda msg: print(f"warning: {redact(msg)}", file=sys.stderr)
    with _progress(_show_progress(quiet, False)) as update:
        opts.progress = update
        return fetch_entry(entry, entry.default_release, opts)


@app.command("verify")
def verify(
    models: Optional[list[str]] = typer.Argument(None, help="Models to check (default: everything cached).",
                                                 autocompletion=complete_model),
    repair: bool = typer.Option(False, "--repair", help="Rebuild what is broken: from the kept archive if it is "
                                                         "intact (works --offline), else by downloading again."),
    json_out: bool = json_option("Print a JSON report."),
) -> None:
    """Re-hash cached archives and every unpacked file against their manifests.

    Example: mobilenet-zoo verify --repair
    """
    from zoo.fetching.cache import Cache
    from zoo.fetching.fetcher import resolve_many
    from zoo.fetching.verify import cached_pairs, verify_entry

    catalog = load_catalog()
    opts = _options()
    pairs = resolve_many(catalog, models) if models else cached_pairs(catalog, Cache(opts.cache_dir))
    reports = [verify_entry(e, r, opts, repair=repair) for e, r in pairs]
    if json_out:
        print_json([r.to_json() for r in reports])
    else:
        if not reports:
            print("nothing cached to verify")
        for report in reports:
            how = f" ({report.how})" if report.how else ""
            print(f"{report.status:13s} {report.id}@{report.release}{how}")
            for problem in report.problems:
                print(f"    {problem}")
        broken = [r for r in reports if r.status == "broken"]
        if broken:
            from .errors import print_error

            print_error(None, f"`mobilenet-zoo verify --repair {' '.join(r.id for r in broken)}` rebuilds them "
                              "(from the kept archive when it is intact, else by downloading)")
    if any(r.status in ("broken", "missing", "repair-failed", "error") for r in reports):
        raise typer.Exit(1)


@app.command("mirror")
def mirror(
    directory: Path = typer.Argument(..., help="Directory to fill (served later with any static web server)."),
    models: Optional[list[str]] = typer.Argument(None, help="Models (default: with --all, every model).",
                                                 autocompletion=complete_model),
    family: Optional[list[str]] = family_option("Every model of a family; repeatable."),
    quantized: Optional[bool] = quantized_option("With the filters: only these."),
    all_models: bool = typer.Option(False, "--all", help="Every model in the catalog."),
    json_out: bool = json_option("Print a JSON array of results."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Say what would be downloaded into DIR and the total size; change nothing."),
) -> None:
    """Download and verify tarballs into DIR/<host>/<path>, the layout --mirror reads.

    Example: mobilenet-zoo mirror /srv/mobilenet --family v1 && mobilenet-zoo --mirror /srv/mobilenet fetch 1.0_224
    """
    from zoo.errors import UnexpectedError, ZooError
    from zoo.fetching.fetcher import failure_json

    from .errors import spelled_record
    from zoo.fetching.mirroring import mirror_one

    pairs = _select(models or [], family, quantized, all_models)
    opts = _options()
    if dry_run:
        from .airgap import dry_run_mirror

        dry_run_mirror(directory, pairs, opts, json_out)
        return
    results, failed, exit_code = [], 0, 0
    with _progress(_show_progress(False, json_out)) as update:
        opts.progress = update
        for entry, release in pairs:
            try:
                results.append(mirror_one(directory, entry, release, opts).to_json())
            except Exception as exc:  # every model's outcome is reported, also after a bug of ours
                if not isinstance(exc, ZooError):
                    exc = UnexpectedError(entry.id, exc)
                failed += 1
                exit_code = max(exit_code, _item_failed(exc, shown=True))
                results.append(spelled_record(failure_json(entry, release, exc), exc))
    if json_out:
        print_json(results)
    else:
        for r in results:
            if r["path"]:
                print(r["path"])
    if len(results) > 1 or failed:
        print(f"{len(results) - failed} mirrored, {failed} failed", file=sys.stderr)
    if exit_code:
        raise typer.Exit(exit_code)


@cache_app.command("path")
def cache_path(
    model: Optional[str] = typer.Argument(None, help="A cached model (NAME@RELEASE for one release): print its "
                                                     "files instead of the cache directory.",
                                    autocompletion=complete_model),
    role: Optional[str] = typer.Option(None, "--file", metavar="ROLE",
                                       help="Only this file: tflite, checkpoint (the prefix), frozen_graph, ..."),
) -> None:
    """Print the cache directory, or the paths of a cached model's files (one `ROLE<TAB>PATH` a line).

    Example: du -sh "$(mobilenet-zoo cache path)"; mobilenet-zoo cache path v1_1.0_224 --file tflite
    """
    if model is None:
        if role is not None:
            from zoo.errors import UsageError

            raise UsageError("--file needs a MODEL", hint="e.g. `mobilenet-zoo cache path v1_1.0_224 --file tflite`")
        print(cache_dir())
        return
    from zoo.fetching import layout
    from zoo.fetching.roles import find_file
    from zoo.fetching.cache import Cache
    from zoo.errors import CacheError, RestoreError, UsageError

    entry, release = load_catalog().resolve(model)
    found = Cache(cache_dir()).lookup(entry, release)
    if found is None:
        raise CacheError(f"{entry.spec(release)} is not in the cache ({cache_dir()})",
                         hint=f"run `mobilenet-zoo fetch {entry.spec(release)}` first")
    model_dir = found[0] / layout.MODEL_DIR
    if role and role not in entry.files:
        raise UsageError(f"{entry.id} has no {role!r} file", hint="files: " + ", ".join(entry.files))
    for name in [role] if role else list(entry.files):
        try:
            path = find_file(entry, model_dir, name)
        except (RestoreError, UsageError):
            if role:
                raise
            continue  # a file this tarball does not have
        print(path if role else f"{name}\t{path}")


@cache_app.command("ls")
def cache_ls(json_out: bool = json_option("Print a JSON array instead of a table."),
             features: bool = typer.Option(False, "--features",
                                           help="List finetune's cached feature passes instead of models.")) -> None:
    """Cached models with release, size and whether the last check passed, and the total size.

    Example: mobilenet-zoo cache ls --json
    """
    if features:
        return _feature_sets_ls(json_out)
    from zoo.fetching.cache import Cache
    from zoo.fetching.manifest import cheap_problems
    from zoo._util.units import format_bytes

    from .output import Column, print_table

    rows = []
    for cached in Cache(cache_dir()).entries():
        ok = cached.manifest is not None and not cheap_problems(cached.path, cached.manifest)
        rows.append({"id": cached.model_id, "release": cached.release, "path": str(cached.path),
                     "size_bytes": cached.size_bytes, "sizes_ok": ok, "problem": cached.problem,
                     "sha256": cached.manifest.archive_sha256 if cached.manifest else None,
                     "trusted_on_first_use": bool(cached.manifest and cached.manifest.trusted_on_first_use)})
    if json_out:
        print_json(rows)
        return
    if not rows:
        print(f"no models in the cache ({cache_dir()})")
        _feature_sets_summary()
        return
    columns = [Column("id"), Column("release", keep=3), Column("size", "right", keep=4), Column("check", keep=2),
               Column("digest", keep=1)]
    print_table(columns, [[r["id"], r["release"], format_bytes(r["size_bytes"]),
                           "sizes ok" if r["sizes_ok"] else "DAMAGED",
                           "first use" if r["trusted_on_first_use"] else "pinned"] for r in rows])
    total = sum(r["size_bytes"] for r in rows)
    print(f"total: {len(rows)} entr{'y' if len(rows) == 1 else 'ies'}, {format_bytes(total)} in "
          f"{cache_dir()}")
    _feature_sets_summary()


def _feature_sets_summary() -> None:
    from zoo.training.feature_cache import FeatureStore
    from zoo._util.units import format_bytes

    sets = FeatureStore(cache_dir()).sets()
    if sets:
        print(f"also {len(sets)} feature set(s) of finetune runs, {format_bytes(sum(f.size_bytes for f in sets))} "
              "(cache ls --features; cache prune --features removes them)")


def _feature_sets_ls(json_out: bool) -> None:
    from zoo.training.feature_cache import FeatureStore
    from zoo._util.units import format_bytes

    from .output import Column, print_table

    rows = [{"model": f.about.get("model"), "phase": f.about.get("phase"), "split": f.about.get("split"),
             "data": f.about.get("data"), "images": f.about.get("images"), "int8": f.about.get("int8"),
             "complete": f.complete, "size_bytes": f.size_bytes, "path": str(f.path)}
            for f in FeatureStore(cache_dir()).sets()]
    if json_out:
        print_json(rows)
        return
    if not rows:
        print(f"no feature sets in {cache_dir()}")
        return
    columns = [Column("model"), Column("phase", keep=3), Column("split", keep=3), Column("images", "right", keep=2),
               Column("size", "right", keep=4), Column("state", keep=2), Column("data", keep=1)]
    print_table(columns, [[r["model"] or "?", r["phase"] or "?", r["split"] or "?", str(r["images"] or "?"),
                           format_bytes(r["size_bytes"]), "complete" if r["complete"] else "half-filled",
                           r["data"] or "?"] for r in rows])


@cache_app.command("rm")
def cache_rm(models: list[str] = typer.Argument(..., help="Models to remove (NAME@RELEASE for one release).",
                                                autocompletion=complete_model),
             dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Only say what would be removed.")) -> None:
    """Remove models from the cache.

    Example: mobilenet-zoo cache rm v1_1.0_224
    """
    from zoo.catalog import names
    from zoo.fetching.cache import Cache

    catalog = load_catalog()
    cache = Cache(cache_dir())
    resolved = []
    for name in models:  # every name is checked before anything is removed
        entry = catalog.get(name)
        resolved.append((entry, entry.release(names.split_release(name)[1]) if "@" in name else None))
    verb = "would remove" if dry_run else "removed"
    for entry, release in resolved:
        removed = cache.remove(entry, release, dry_run=dry_run)
        for path in removed:
            print(f"{verb} {path}")
        print(f"{verb} {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} of {entry.id}")


@cache_app.command("prune")
def cache_prune(
    unlisted: bool = typer.Option(False, "--unlisted",
                                  help="Also remove verified entries the catalog does not list (another catalog's "
                                       "models, old releases, changed URLs)."),
    features: bool = typer.Option(False, "--features",
                                  help="Also remove finetune's cached feature passes (a later run recomputes them)."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Only say what would be removed."),
) -> None:
    """Remove what is provably ours and dead: partials and staging dirs of dead processes on this
    host, half-filled feature sets nobody is filling, and unheld locks. Verified entries stay
    unless --unlisted; complete feature sets unless --features.

    Example: mobilenet-zoo cache prune --dry-run
    """
    from zoo.fetching.cache import Cache

    report = Cache(cache_dir()).prune(load_catalog(), unlisted=unlisted,
                                                         dry_run=dry_run)
    from zoo.training.feature_cache import FeatureStore

    report.removed.extend(f"{path}  ({why})" for path, why in
                          FeatureStore(cache_dir()).prune(everything=features, dry_run=dry_run))
    verb = "would remove" if dry_run else "removed"
    for path in report.removed:
        print(f"{verb} {path}")
    for note in report.kept:
        print(f"kept {note}", file=sys.stderr)
    print(f"{verb} {len(report.removed)} item(s); left {len(report.kept)} alone")
